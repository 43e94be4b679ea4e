"""The TA-Lib grid (family ``technical``): every TA-Lib function that applies to daily bars,
over parameter grids, in the point-in-time price scale. Pure: frames in, frames out.

Names, views, what is left out and why, the warm-up rule, the point-in-time price scale and
availability are in docs/factors.md (Technical). By concept:

- ``grid``: the declarations (one :class:`~etl.factors.spec.Factor` per function and
  parameter set) and the TA-Lib call behind each;
- ``etl.factors.warmup`` (shared with the core factors): the convergence margin of functions with memory, ``WARMUP_CAP``;
- ``engine``: the numpy kernel (split regimes, scaled windows, the preallocated block);
- ``compute``: :func:`compute_technical` (one symbol) and :func:`compute_technical_many`
  (chunks of symbols in forked processes, streamed).
"""

from etl.factors.technical.compute import compute_technical, compute_technical_many
from etl.factors.technical.engine import DEFAULT_PLAN, Plan, plan_for, run_call, scaled_window, split_regimes
from etl.factors.technical.grid import (
    AVAILABILITY,
    BAR_COLUMNS,
    CALLS,
    CHG_PERIODS,
    DROPPED,
    EXCLUDED_FUNCTIONS,
    EXCLUDED_GROUPS,
    FACTORS,
    FAMILY,
    GRID,
    GROUP_VIEWS,
    INPUT_OVERRIDES,
    LEVEL_POST,
    MA_PAIRS,
    MACD_SETS,
    MAX_WARMUP,
    MOMENTUM_PERIODS,
    OUTPUT_NAMES,
    PERIODS,
    Call,
    calls_for,
    output_names,
)
from etl.factors.warmup import MEMORY, WARMUP_CAP

__all__ = [
    "AVAILABILITY",
    "BAR_COLUMNS",
    "CALLS",
    "CHG_PERIODS",
    "DEFAULT_PLAN",
    "DROPPED",
    "EXCLUDED_FUNCTIONS",
    "EXCLUDED_GROUPS",
    "FACTORS",
    "FAMILY",
    "GRID",
    "GROUP_VIEWS",
    "INPUT_OVERRIDES",
    "LEVEL_POST",
    "MACD_SETS",
    "MA_PAIRS",
    "MAX_WARMUP",
    "MEMORY",
    "MOMENTUM_PERIODS",
    "OUTPUT_NAMES",
    "PERIODS",
    "WARMUP_CAP",
    "Call",
    "Plan",
    "calls_for",
    "compute_technical",
    "compute_technical_many",
    "output_names",
    "plan_for",
    "run_call",
    "scaled_window",
    "split_regimes",
]
