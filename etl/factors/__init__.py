"""The factor library: declared once, computed by pure functions (docs/factors.md).

- ``spec``: how a factor is declared; ``registry``: every declaration, the views and services;
- ``core``: the curated daily factors of the ``technicals`` view and the point-in-time
  corporate-action arithmetic every price factor shares;
- one module or package per family: ``technical`` (the TA-Lib grid), ``options``, ``news``,
  ``fundamentals``, ``macro``, ``regime``.
"""

from etl.factors.core import FACTORS, compute_factors, cumulative_factors, feature_columns

__all__ = ["FACTORS", "compute_factors", "cumulative_factors", "feature_columns"]
