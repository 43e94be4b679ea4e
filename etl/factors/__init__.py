"""The factor library: declared once, computed by pure functions.

- ``core``: the curated daily factors of the ``technicals`` view (returns,
  realised volatility, RSI, SMA, MACD, ATR, Bollinger %B) and the
  point-in-time corporate-action arithmetic every price factor shares.
"""

from etl.factors.core import FACTORS, FactorSpec, compute_factors, cumulative_factors, feature_columns

__all__ = ["FACTORS", "FactorSpec", "compute_factors", "cumulative_factors", "feature_columns"]
