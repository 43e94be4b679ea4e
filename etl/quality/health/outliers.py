"""Implausible daily moves: 100x unit errors, misplaced or unapplied splits, spikes, jumps."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from etl.quality.health.actions import actions_by_symbol
from etl.quality.health.frames import day, finding, findings_frame, fmt, prepare_bars
from etl.quality.health.moves import SymbolMoves, symbol_moves
from etl.quality.health.thresholds import resolve_thresholds

#: split ratios (new shares per old share, and their reverses) a bad series often shows
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)


def _nearest_split_ratio(x: float) -> tuple[float, float]:
    """(ratio, |log distance|) of the split ratio (or reverse) nearest exp(x)."""
    logs = np.log(np.array(SPLIT_RATIOS))
    logs = np.concatenate([logs, -logs])
    i = int(np.argmin(np.abs(logs - x)))
    return float(np.exp(logs[i])), float(abs(logs[i] - x))


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.4g}x" if ratio >= 1 else f"1/{1 / ratio:.4g}"


def check_outliers(bars: pd.DataFrame, actions: pd.DataFrame | None = None, thresholds: Mapping | None = None) -> pd.DataFrame:
    """Implausible daily moves: 100x unit errors, moves that match a split
    recorded on another day, spikes that reverse, split-like ratios without a
    corporate action, and other extreme jumps. One finding per bar."""
    th = resolve_thresholds(thresholds)
    frame = prepare_bars(bars)
    acts = actions_by_symbol(actions)
    rows = []
    for symbol, g in frame.groupby("symbol", sort=True):
        s = symbol_moves(symbol, g, acts.get(symbol))
        rows += _series_outliers(s, th)
    return findings_frame(rows)


def _series_outliers(s: SymbolMoves, th: dict) -> list[dict]:
    rows = []
    n = len(s.x)
    sessions = s.frame["session"]
    close = s.frame["close"].to_numpy(dtype=float)
    split_pos = []
    if len(s.splits):
        pos_of_day = {d: i for i, d in enumerate(sessions.dt.normalize())}
        split_pos = [(pos_of_day.get(r.ex_date), r.ex_date, float(r.split)) for r in s.splits.itertuples()]
    log100 = math.log(100.0)
    reverted = -1  # the bar that takes back a flagged move is the way back, not a second problem
    with np.errstate(invalid="ignore"):   # only moves large enough to be any kind of outlier are looked at
        moves = np.flatnonzero(np.isfinite(s.x) & (np.abs(s.x) >= min(th["split_tolerance"] * 3, th["spike_min_move"])))
    for t in moves[moves >= 1].tolist():
        x = s.x[t]
        if t == reverted:
            continue
        prev_close = close[t - 1]
        head = f"close {fmt(close[t])} after {fmt(prev_close)} ({_ratio_text(math.exp(s.x_raw[t]))})"
        apart = not s.overlap_prev[t]
        found = None  # (kind, severity, threshold, detail)
        # 1. currency unit: 100x or 1/100
        if abs(abs(x) - log100) <= th["unit_tolerance"]:
            found = ("unit_100x", "error", th["unit_tolerance"],
                     f"{head}: about {'100x' if x > 0 else '1/100'} the previous close, a currency-unit error (pence vs pounds, cents vs units)?")
        # 2. a recorded split of the symbol explains this ratio, but on another day
        if found is None and apart:
            for pos, ex_date, split in split_pos:
                want = -math.log(split)
                if abs(want) < 3 * th["split_tolerance"] or abs(x - want) > th["split_tolerance"]:
                    continue
                if pos == t:
                    continue
                dist = _session_distance(sessions, t, pos, ex_date)
                if dist <= th["split_window_sessions"]:
                    found = ("split_misaligned", "error", th["split_tolerance"],
                             f"{head} matches the split of {split:g} recorded on {day(ex_date)}, "
                             f"{dist} session(s) away, not on this day: split applied on the wrong day or only partly?")
                    break
        # 3. spike: extreme and taken back by the next bar
        big = abs(x) >= max(th["spike_min_move"], th["spike_sigmas"] * s.sigma[t])
        if found is None and big and t + 1 < n and np.isfinite(s.x[t + 1]):
            nxt = s.x[t + 1]
            if np.sign(nxt) == -np.sign(x) and abs(nxt) >= th["spike_reversal"] * abs(x):
                isolated = apart and not s.overlap_next[t]
                found = ("spike", "error" if isolated else "warning", th["spike_min_move"],
                         f"{head}, then {fmt(close[t + 1])} on {day(sessions.iloc[t + 1])}: a spike that reverses"
                         + ("" if isolated else " (the bar's range overlaps a neighbour's, so it may be real)"))
        # 4. split-like ratio with no corporate action
        if found is None and apart:
            split_ratio, dist = _nearest_split_ratio(x)
            if dist <= th["split_tolerance"] and abs(math.log(split_ratio)) > 3 * th["split_tolerance"]:
                severe = abs(math.log(split_ratio)) >= math.log(3.0) - 1e-9
                found = ("split_like", "error" if severe else "warning", th["split_tolerance"],
                         f"{head} is close to a split ratio of {_ratio_text(split_ratio)} and no corporate action is "
                         f"recorded that day: an unapplied split?")
        # 5. any other extreme move
        if found is None and abs(x) >= max(th["jump_min_move"], th["spike_sigmas"] * s.sigma[t]):
            found = ("jump", "warning", th["jump_min_move"], f"{head}: an extreme move with no corporate action")
        if found:
            if t + 1 < n and np.sign(s.x[t + 1]) == -np.sign(x) and abs(s.x[t + 1]) >= th["spike_reversal"] * abs(x):
                reverted = t + 1
            kind, severity, threshold, detail = found
            rows.append(finding("outlier", s.symbol, sessions.iloc[t], math.exp(s.x_raw[t]), threshold,
                                 f"{kind}: {detail}", severity))
    return rows


def _session_distance(sessions: pd.Series, t: int, pos: int | None, ex_date: pd.Timestamp) -> int:
    if pos is not None:
        return abs(pos - t)
    # the split's day has no bar: count the bars between
    idx = int(np.searchsorted(sessions.dt.normalize().to_numpy(), np.datetime64(ex_date)))
    return abs(idx - t) + (1 if idx <= t else 0)

