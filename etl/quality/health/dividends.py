"""Dividend sanity: unit errors, unadjusted splits, dividends the price did not show, duplicates."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from etl.quality.health.actions import actions_by_symbol
from etl.quality.health.frames import day, finding, findings_frame, fmt, prepare_bars
from etl.quality.health.moves import SymbolMoves, symbol_moves
from etl.quality.health.thresholds import resolve_thresholds


def check_dividends(bars: pd.DataFrame, actions: pd.DataFrame | None = None, thresholds: Mapping | None = None) -> pd.DataFrame:
    """Dividend sanity (when the bars have a ``dividends`` column or the
    corporate actions carry dividends). One finding per dividend."""
    th = resolve_thresholds(thresholds)
    frame = prepare_bars(bars)
    acts = actions_by_symbol(actions)
    if "dividends" not in frame.columns:
        if not acts:
            return findings_frame([])
        divs = pd.concat([a[["symbol", "ex_date", "dividend"]] for a in acts.values()], ignore_index=True)
        divs = divs.groupby(["symbol", "ex_date"], as_index=False)["dividend"].sum()
        frame = frame.merge(divs.rename(columns={"ex_date": "session", "dividend": "dividends"}),
                            on=["symbol", "session"], how="left")
        frame["dividends"] = frame["dividends"].fillna(0.0)
    rows = []
    for symbol, g in frame.groupby("symbol", sort=True):
        if not (pd.to_numeric(g["dividends"], errors="coerce") > 0).any():
            continue
        rows += _symbol_dividends(symbol_moves(symbol, g, acts.get(symbol)), th)
    return findings_frame(rows)


def _symbol_dividends(s: SymbolMoves, th: dict) -> list[dict]:
    f = s.frame
    div = pd.to_numeric(f["dividends"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    close = f["close"].to_numpy(dtype=float)
    sessions = f["session"]
    idx = np.flatnonzero(div > 0)
    idx = idx[idx > 0]  # a dividend needs the previous close to be judged
    if len(idx) == 0:
        return []
    prev = close[idx - 1]
    yields = div[idx] / prev
    # the ex-date move net of any split explained that day
    move = np.exp(s.x_nodiv[idx]) - 1.0
    rows = []
    days = sessions.iloc[idx].dt.normalize().to_numpy()
    first_day = sessions.iloc[0].normalize().to_datetime64()
    for k, t in enumerate(idx):
        y, m, d = yields[k], move[k], div[t]
        reasons, severity = [], "warning"
        others = np.delete(yields, k)
        usual = float(np.median(others)) if len(others) >= 2 else float("nan")
        head = f"dividend {fmt(d)} on {day(sessions.iloc[t])} is {y:.2%} of the previous close {fmt(prev[k])}"
        fell = m <= -y / 2  # the ex-date price fell by at least half the dividend
        if np.isfinite(usual) and usual > 0:
            rel = y / usual
            if abs(abs(math.log10(rel)) - 2.0) <= 0.5:
                if rel > 1:
                    reasons.append(f"about 100x the symbol's usual yield {usual:.2%}: a currency-unit error?"
                                   + (f" (the price did fall {-m:.1%})" if fell else ""))
                    severity = "error" if not fell else severity
                else:  # small one-off payments (an AGM bonus, a stub distribution) are real
                    reasons.append(f"about 1/100 of the symbol's usual yield {usual:.2%}: a currency-unit error?")
            else:
                for r in s.splits.itertuples():
                    near = abs((pd.Timestamp(r.ex_date) - pd.Timestamp(days[k])).days) <= 2 * th["split_window_sessions"]
                    if near and abs(math.log(rel) - math.log(r.split)) <= 0.25 and abs(math.log(r.split)) >= math.log(2):
                        reasons.append(f"{rel:.3g}x the usual yield {usual:.2%}, the ratio of the split of {r.split:g} on "
                                       f"{day(r.ex_date)}: not adjusted for the split?")
                        severity = "error"
                        break
        if y > th["max_dividend_yield"]:
            if fell:
                reasons.append(f"above {th['max_dividend_yield']:.0%} of the close, but the price fell {-m:.1%} that day (a special dividend?)")
            else:
                reasons.append(f"above {th['max_dividend_yield']:.0%} of the close and the price moved {m:+.1%}, not down by the dividend")
                severity = "error"
        elif y >= th["dividend_drop_min_yield"] and m > -y / 3:
            # how far the ex-date move is from the expected fall, in daily sigmas
            z = (m + y) / s.sigma[t]
            reasons.append(f"the price moved {m:+.1%} on the ex-date, not down by the dividend ({z:.1f} sigma)")
            if z >= 4:
                severity = "error"
        year_ago = days[k] - np.timedelta64(365, "D")
        if first_day <= year_ago:  # a full year of history: the trailing-year yield
            window = (days > year_ago) & (days <= days[k])
            annual = float(np.sum(div[idx][window]) / prev[k])
            if annual < th["min_annual_dividend_yield"]:
                reasons.append(f"the trailing-year dividends are only {annual:.3%} of the close: 100x too small?")
                severity = "error"
        elif y < th["min_annual_dividend_yield"] / 4:  # even paid quarterly it would not reach the minimum
            reasons.append(f"below a quarter of {th['min_annual_dividend_yield']:.1%} (the least plausible yearly yield): 100x too small?")
            severity = "error"
        near = np.abs((days - days[k]).astype("timedelta64[D]").astype(int)) <= th["dividend_duplicate_days"]
        near[k] = False
        for j in np.flatnonzero(near):
            other = div[idx[j]]
            same = abs(other - d) <= 0.02 * max(other, d)
            reasons.append(f"another dividend of {fmt(other)} on {day(days[j])}" + (": a duplicate?" if same else ""))
            if same:
                severity = "error"
        if reasons:
            rows.append(finding("dividend", s.symbol, sessions.iloc[t], y, th["max_dividend_yield"],
                                 f"{head}; " + "; ".join(reasons), severity))
    return rows

