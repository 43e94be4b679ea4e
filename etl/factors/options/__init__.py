"""Options factors (family ``options``, view ``options_daily``): implied volatility, greeks,
term structure, skew, flow and realised volatility of one underlying from its end-of-day
option chains. Pure: frames in, frames out.

The model, the inputs as known at each chain date, every output's definition and the checks
are in docs/factors.md (Options). By concept:

- ``pricing``: numpy kernels (Bjerksund-Stensland 2002, Black-Scholes-Merton, implied
  volatility, greeks);
- ``carry``: rates, dividend yield, corporate actions and bars as known at a chain's date;
- ``chains``: per-contract prices, strike scale, stale chains, implied vols and deltas;
- ``surface``: ATM and 25-delta IVs, constant maturity, IV rank;
- ``realised``: realised volatility of the underlying;
- ``family``: the declarations; ``compute``: :func:`compute_options`, the family's compute.
"""

from etl.factors.options.carry import DIVIDEND_WINDOW_DAYS, NEW_YORK, dividend_yield, rates_from_lean
from etl.factors.options.chains import SPLIT_LIFE_DAYS, SPLIT_MIN_RATIO, chain_ivs
from etl.factors.options.compute import compute_options
from etl.factors.options.family import FACTORS, FAMILY, MIN_CONTRACTS, OUTPUTS, VIEW, output_columns
from etl.factors.options.pricing import (
    SQRT5_T1,
    VOL_HI,
    VOL_LO,
    american_price,
    bivariate_normal_cdf,
    bsm_price,
    greeks,
    implied_vol,
    model_delta,
)
from etl.factors.options.realised import ANNUAL, RV_WINDOW, rv_close_to_close, rv_parkinson, rv_yang_zhang
from etl.factors.options.surface import (
    ATM_BAND,
    ATM_STRIKES,
    MIN_EXPIRY_DAYS,
    RANK_MIN_PERIODS,
    RANK_WINDOW,
    TARGET_DAYS,
    WING_BAND,
    constant_maturity,
    iv_rank_percentile,
    term_structure,
)

__all__ = [
    "ANNUAL",
    "ATM_BAND",
    "ATM_STRIKES",
    "DIVIDEND_WINDOW_DAYS",
    "FACTORS",
    "FAMILY",
    "MIN_CONTRACTS",
    "MIN_EXPIRY_DAYS",
    "NEW_YORK",
    "OUTPUTS",
    "RANK_MIN_PERIODS",
    "RANK_WINDOW",
    "RV_WINDOW",
    "SPLIT_LIFE_DAYS",
    "SPLIT_MIN_RATIO",
    "SQRT5_T1",
    "TARGET_DAYS",
    "VIEW",
    "VOL_HI",
    "VOL_LO",
    "WING_BAND",
    "american_price",
    "bivariate_normal_cdf",
    "bsm_price",
    "chain_ivs",
    "compute_options",
    "constant_maturity",
    "dividend_yield",
    "greeks",
    "implied_vol",
    "iv_rank_percentile",
    "model_delta",
    "output_columns",
    "rates_from_lean",
    "rv_close_to_close",
    "rv_parkinson",
    "rv_yang_zhang",
    "term_structure",
]
