"""One tick of the live loop: ``alpha.latest`` -> the same strategy function.

Staleness has one rule, :func:`judge_freshness`, shared with the live loop
(``strategy.live_loop.latest_features``): a value is missing when it is older
than the view's TTL at the decision time, or after it -- exactly what the
point-in-time join does in the backtest -- so live and backtest give the same
targets. The tick's decision time is the warehouse's clock: its newest bar's
availability time (``sdk.online.store_clock``, the ``now="warehouse"`` of the read).
The symbols are the universe's members at that time (:mod:`strategy.universe`):
a delisted symbol is neither asked for nor reported stale.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from etl.factors.registry import DAILY_TTL
from strategy import trend_rsi
from strategy.universe import LISTED

TTL = pd.Timedelta(DAILY_TTL)  # the daily views' TTL: what the point-in-time join allows
log = logging.getLogger("alpha.live")


def judge_freshness(latest: pd.DataFrame, names: list[str], decision_time: pd.Timestamp,
                    ttl: pd.Timedelta = TTL) -> tuple[pd.DataFrame, dict[str, str]]:
    """The staleness rule of the live loop and the live tick. ``latest`` is ``alpha.latest``'s
    frame (``f`` and ``f__ts`` per feature name). A value that is missing, older than ``ttl`` at
    ``decision_time`` or after it (not knowable yet) becomes NaN; returns the frame (a copy) and
    why each symbol is stale."""
    t = decision_time
    frame = latest.copy()
    reasons: dict[str, list[str]] = {}
    for n in names:
        ts = frame[n + "__ts"]
        missing = ts.isna() | frame[n].isna()
        old = ~missing & (ts < t - ttl)
        future = ~missing & (ts > t)
        for sym, miss, o, f, when in zip(frame["symbol"], missing, old, future, ts, strict=True):
            if miss:
                reasons.setdefault(sym, []).append(f"{n} missing")
            elif o:
                reasons.setdefault(sym, []).append(f"{n} from {when:%Y-%m-%d %H:%M}Z, older than the {ttl.days}-day TTL")
            elif f:
                reasons.setdefault(sym, []).append(f"{n} from {when:%Y-%m-%d %H:%M}Z, after the decision time")
        frame.loc[missing | old | future, n] = np.nan
    return frame, {s: "; ".join(r) for s, r in reasons.items()}


def live_once(client, symbols: list[str] | None = None, strategy=trend_rsi, *, universe: str | None = LISTED) -> pd.DataFrame:
    """One tick: the targets of ``strategy`` at the warehouse's clock for the members of
    ``universe`` then (``symbols``, default all, intersected with the membership; None: every
    symbol asked). One row per member: ``symbol``, ``as_of``, the features, ``target_weight``."""
    # the warehouse's last session, not the wall clock: a tick on the data there is (the demo's
    # 2021 data). A member whose values are older than the TTL at that time is not traded, as in
    # the live loop.
    from sdk.online import store_clock
    from strategy.universe import universe_at

    decision_time = store_clock(client.settings)
    names = [f.split(":", 1)[1] for f in strategy.FEATURES]
    chosen = universe_at(client, decision_time, symbols=symbols, universe=universe)
    if chosen.left_out:
        log.info("%s", chosen.line())
    if not chosen.members:
        return pd.DataFrame({c: pd.Series(dtype=float if c in (*names, "target_weight") else object)
                             for c in ["symbol", "as_of", *names, "target_weight"]})
    latest = client.latest(chosen.members, strategy.FEATURES, now=decision_time, allow_stale=True)
    ts_cols = [n + "__ts" for n in names]
    frame, _ = judge_freshness(latest, names, decision_time)
    frame["decision_time"] = decision_time
    frame["as_of"] = frame[ts_cols].max(axis=1)
    frame["target_weight"] = strategy.target_positions(frame)
    return frame[["symbol", "as_of", *names, "target_weight"]]
