"""One tick of the live loop: ``alpha.latest`` -> the same strategy function.

Values older than the view's TTL relative to the freshest value in the
universe are treated as missing -- exactly what the point-in-time join does
in the backtest -- so live and backtest give the same targets.
"""

from __future__ import annotations

import pandas as pd

from etl.factors.registry import DAILY_TTL
from strategy import trend_rsi

TTL = pd.Timedelta(DAILY_TTL)  # the daily views' TTL: what the point-in-time join allows


def live_once(client, symbols: list[str] | None = None, strategy=trend_rsi) -> pd.DataFrame:
    symbols = symbols or client.symbols()
    # the warehouse's last session, not the wall clock: a tick on the data there is (the demo's
    # 2021 data); staleness is judged below against the freshest value, as the backtest's TTL does
    latest = client.latest(symbols, strategy.FEATURES, now="warehouse", allow_stale=True)
    names = [f.split(":", 1)[1] for f in strategy.FEATURES]
    ts_cols = [n + "__ts" for n in names]
    newest = latest[ts_cols].max().max()
    frame = latest.copy()
    for n in names:
        stale = frame[n + "__ts"].isna() | (frame[n + "__ts"] < newest - TTL)
        frame.loc[stale, n] = float("nan")
    frame["decision_time"] = newest
    frame["as_of"] = frame[ts_cols].max(axis=1)
    frame["target_weight"] = strategy.target_positions(frame)
    return frame[["symbol", "as_of", *names, "target_weight"]]
