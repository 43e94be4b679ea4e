"""One symbol's daily moves after its corporate actions: what the outlier and dividend checks judge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.quality.health.frames import PRICE_COLUMNS


@dataclass
class SymbolMoves:
    """One symbol's valid bars, with the move of each bar after corporate actions."""

    symbol: str
    frame: pd.DataFrame          # valid rows (close > 0), sorted
    x: np.ndarray                # log(close / previous close), corporate-action adjusted
    x_raw: np.ndarray            # unadjusted
    sigma: np.ndarray            # robust daily sigma around each bar
    overlap_prev: np.ndarray     # the bar's range overlaps the previous bar's range
    overlap_next: np.ndarray
    split_on: np.ndarray         # split recorded on the bar's day (1.0 = none)
    x_nodiv: np.ndarray          # the move after a split of that day, before any dividend
    splits: pd.DataFrame         # the symbol's recorded splits (ex_date, split)


def symbol_moves(symbol: str, g: pd.DataFrame, acts: pd.DataFrame | None) -> SymbolMoves:
    """The moves of one symbol's prepared bars ``g`` given its actions (see ``actions_by_symbol``).

    Each bar's move is the smallest in size of: the raw log ratio, the ratio
    after a split of that day, and the ratio after a dividend of that day."""
    close = pd.to_numeric(g["close"], errors="coerce")
    valid = g.loc[np.isfinite(close) & (close > 0)].reset_index(drop=True)
    c = valid["close"].to_numpy(dtype=float)
    n = len(valid)
    day = valid["session"].dt.normalize()
    split_on = np.ones(n)
    div_on = np.zeros(n)
    splits = pd.DataFrame(columns=["ex_date", "split"])
    if acts is not None and len(acts):
        by_day = acts.groupby("ex_date").agg(split=("split", "prod"), dividend=("dividend", "sum"))
        split_on = day.map(by_day["split"]).fillna(1.0).to_numpy(dtype=float)
        div_on = day.map(by_day["dividend"]).fillna(0.0).to_numpy(dtype=float)
        splits = acts.loc[np.abs(np.log(acts["split"])) > 1e-6, ["ex_date", "split"]]
    prev = np.concatenate([[np.nan], c[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        x_raw = np.log(c / prev)
        cands = [x_raw, x_raw + np.log(split_on)]
        net = prev - div_on
        cands.append(np.where((div_on > 0) & (net > 0), np.log(c / np.where(net > 0, net, np.nan)), np.nan))
    stack = np.vstack(cands)
    pick = np.nanargmin(np.where(np.isnan(stack), np.inf, np.abs(stack)), axis=0)
    x = stack[pick, np.arange(n)] if n else x_raw
    # the move a split alone explains (for judging a dividend's ex-date)
    x_nodiv = np.where(np.abs(cands[1]) < np.abs(x_raw), cands[1], x_raw)
    absx = pd.Series(np.abs(x))
    sigma = (absx.rolling(63, center=True, min_periods=10).median() * 1.4826).to_numpy()
    overall = float(np.nanmedian(np.abs(x))) * 1.4826 if np.isfinite(x).any() else 0.0
    sigma = np.where(np.isfinite(sigma), sigma, overall)
    sigma = np.maximum(sigma, 0.01)
    lo, hi = _bar_range(valid)
    # the previous bar's range, rescaled by the corporate action when it explained the move
    scale = np.where(pick == 1, 1.0 / split_on, 1.0)
    prev_lo = np.concatenate([[np.nan], lo[:-1]]) * scale
    prev_hi = np.concatenate([[np.nan], hi[:-1]]) * scale
    overlap_prev = ~((lo > prev_hi) | (hi < prev_lo))  # NaN comparisons are False: unknown counts as overlap
    overlap_next = np.concatenate([overlap_prev[1:], [True]])
    return SymbolMoves(symbol, valid, x, x_raw, sigma, overlap_prev, overlap_next, split_on, x_nodiv, splits)


def _bar_range(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cols = [c for c in PRICE_COLUMNS if c in frame.columns]
    block = frame[cols]
    if not all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes):
        block = block.apply(pd.to_numeric, errors="coerce")
    values = block.to_numpy(dtype=float)
    values = np.where(values > 0, values, np.nan)
    with np.errstate(all="ignore"):
        return np.nanmin(values, axis=1), np.nanmax(values, axis=1)
