"""Daily bars that parse but cannot be true: a session in the future, an absurd price, a jump.

Every bar source runs its parsed bars through :func:`screen_bars` before they are written
(:func:`etl.sources.base.screen_bars`, the common ingest path: CSV folders, Lean, Polygon).
A bar is refused, with its reason, when

- its session is after the **last completed session**: the last session whose close on the
  exchange calendar plus the bar delay (``bar_delay_minutes``: when a bar becomes available,
  its ``event_timestamp``) is at or before the wall clock (:func:`etl.core.clock.last_completed_session`).
  A bar dated tomorrow, in 2027, or today's before its close and delay cannot have been seen;
- a price is not between :data:`MIN_PRICE` and :data:`MAX_PRICE`, or the volume is above
  :data:`MAX_VOLUME` (finite, but absurd: ``1e300`` overflows every feature computed from it);
- its close is more than ``max_price_jump`` times (config.toml, default 20) above or below the
  previous close of the same symbol and source, and no corporate action between the two
  sessions explains it. The previous close (at most :data:`MAX_GAP`, 14 days, earlier: Lean's
  ``wm.csv`` resumes at 28.58 ten months after a close of 0.16) is the bar before it in the same ingest, else the
  latest version stored in silver by the same source (an incremental ingest that adds one
  session compares it with the stored one). An action explains a jump when the close ratio
  adjusted by the action (times the split ratio, divided by the dividend factor) is within the
  limit: a 7:1 split's 1/7 is explained, a 1e300 on the ex-date of a 7:1 split is not. The
  actions are those stored in silver (as known now, every source) and those of the same
  ingest (Lean factor files, a CSV folder's ``actions.csv``). A refused bar is never the
  previous close of the next one: a spike (95, 1e300, 96) refuses the 1e300 only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.storage.bars import PRICE_COLUMNS

#: prices outside [MIN_PRICE, MAX_PRICE] are not prices (Berkshire A trades below 1e6; Lean's smallest tick is 1e-4)
MIN_PRICE = 1e-6
MAX_PRICE = 1e8
#: more shares than exist in any market in one session
MAX_VOLUME = 1e15
#: a close is compared with a previous close at most this many days before it: across a longer
#: gap (a halt, a delisting and relisting, a file that skips months) a price may have moved anywhere
MAX_GAP = pd.Timedelta(days=14)


def future_reason(session: pd.Timestamp, last_done: pd.Timestamp, calendar: str, delay_minutes: int,
                  now: pd.Timestamp) -> str:
    return (f"session {pd.Timestamp(session):%Y-%m-%d} is in the future: the last completed {calendar} session is "
            f"{pd.Timestamp(last_done):%Y-%m-%d} (a bar is available at its session's close + {delay_minutes} min; "
            f"now {pd.Timestamp(now).tz_convert('UTC'):%Y-%m-%d %H:%M} UTC)")


def future_mask(sessions: pd.Series, last_done: pd.Timestamp) -> np.ndarray:
    """Which sessions (naive dates; NaT is not in the future) are after ``last_done``."""
    s = pd.to_datetime(pd.Series(sessions)).dt.normalize()
    return (s > pd.Timestamp(last_done)).fillna(False).to_numpy(dtype=bool)


def absurd_reasons(bars: pd.DataFrame) -> np.ndarray:
    """Each bar's reason its values are absurd ('' where they are not)."""
    out = np.full(len(bars), "", dtype=object)
    for col in [*PRICE_COLUMNS, "volume"]:
        if col not in bars:
            continue
        v = pd.to_numeric(bars[col], errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            if col == "volume":
                bad = ~np.isfinite(v) | (v > MAX_VOLUME)
                why = "implausible volume {:g}: not a finite count at most " + f"{MAX_VOLUME:g}"
            else:
                bad = ~np.isfinite(v) | (v < MIN_PRICE) | (v > MAX_PRICE)
                why = f"implausible {col} " + "{:g}" + f": a price is between {MIN_PRICE:g} and {MAX_PRICE:g}"
        m = bad & (out == "")
        if m.any():   # a message only for the bars refused (none, on good data)
            out[m] = [why.format(x) for x in v[m]]
    return out


def _adjustment(acts: pd.DataFrame, prev_close: float) -> float:
    """What the close ratio across ``acts`` (one symbol's actions between two sessions) is
    multiplied by to compare like with like: each split ratio, divided by each dividend factor."""
    adj = 1.0
    for split, dfac, cash in zip(acts["split_ratio"].to_numpy(float), acts["dividend_factor"].to_numpy(float),
                                 acts["cash_dividend"].to_numpy(float), strict=True):
        if np.isfinite(split) and split > 0:
            adj *= split
        if not (np.isfinite(dfac) and 0 < dfac <= 1):
            dfac = 1.0 - cash / prev_close if np.isfinite(cash) and 0 < cash < prev_close else 1.0
        adj /= dfac
    return adj


def _jump_reason(close: float, session, prev: float, prev_session, ratio: float, max_jump: float, acted: bool) -> str:
    way = "above" if ratio > 1 else "below"
    times = ratio if ratio > 1 else 1 / ratio
    tail = ("the corporate actions between them do not explain it" if acted
            else "no corporate action between them")
    return (f"implausible close {close:g} on {pd.Timestamp(session):%Y-%m-%d}: {times:.3g} times {way} the previous close "
            f"{prev:g} on {pd.Timestamp(prev_session):%Y-%m-%d}, {tail} (max_price_jump = {max_jump:g})")


def jump_reasons(bars: pd.DataFrame, stored: pd.DataFrame | None, actions: pd.DataFrame | None, max_jump: float,
                 skip: np.ndarray | None = None) -> np.ndarray:
    """Each of ``bars``' (symbol, session, close) reason its close is an implausible jump from
    the previous close ('' where it is not); rows under ``skip`` (refused already) are neither
    checked nor a previous close. ``stored``: the same source's stored (symbol, session, close)
    (a bar of ``bars`` replaces a stored one of its session); ``actions``: symbol, ex_date,
    split_ratio, dividend_factor, cash_dividend."""
    n = len(bars)
    out = np.full(n, "", dtype=object)
    if n == 0:
        return out
    skip = np.zeros(n, dtype=bool) if skip is None else np.asarray(skip, dtype=bool)
    new = pd.DataFrame({"symbol": bars["symbol"].astype(str).to_numpy(), "session": pd.to_datetime(bars["session"]).to_numpy(),
                        "close": pd.to_numeric(bars["close"], errors="coerce").to_numpy(float), "i": np.arange(n)})
    new = new.loc[~skip]
    if stored is not None and len(stored):
        old = pd.DataFrame({"symbol": stored["symbol"].astype(str).to_numpy(), "session": pd.to_datetime(stored["session"]).to_numpy(),
                            "close": stored["close"].to_numpy(float), "i": -1})
        old = old.merge(new[["symbol", "session"]], on=["symbol", "session"], how="left", indicator=True)
        old = old.loc[old["_merge"] == "left_only"].drop(columns="_merge")
        series = pd.concat([new, old], ignore_index=True)
    else:
        series = new.reset_index(drop=True)
    series = series.sort_values(["symbol", "session"], kind="stable").reset_index(drop=True)
    same = series["symbol"].eq(series["symbol"].shift()).to_numpy() & (series["session"].diff() <= MAX_GAP).to_numpy()
    prev = series["close"].shift().to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = series["close"].to_numpy(float) / prev
        jump = np.maximum(ratio, 1 / ratio)
    suspect = same & (series["i"].to_numpy() >= 0) & (jump > max_jump)
    if not suspect.any():
        return out
    acts = _actions_by_symbol(actions)
    for sym in series.loc[suspect, "symbol"].unique():
        g = series[series["symbol"] == sym]
        mine = acts.get(sym)
        ref = None   # (session, close) of the last bar accepted or stored
        for session, close, i in zip(g["session"].to_numpy(), g["close"].to_numpy(float), g["i"].to_numpy(), strict=True):
            if ref is None or i < 0 or session - ref[0] > MAX_GAP:
                ref = (session, close)
                continue
            r = close / ref[1]
            if max(r, 1 / r) > max_jump:
                between = None if mine is None else mine[(mine["ex_date"] > ref[0]) & (mine["ex_date"] <= session)]
                acted = between is not None and len(between) > 0
                ra = r * _adjustment(between, ref[1]) if acted else r
                if max(ra, 1 / ra) > max_jump:
                    out[i] = _jump_reason(close, session, ref[1], ref[0], r, max_jump, acted)
                    continue
            ref = (session, close)
    return out


def _actions_by_symbol(actions: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    if actions is None or not len(actions):
        return {}
    a = pd.DataFrame({
        "symbol": actions["symbol"].astype(str).to_numpy(),
        "ex_date": pd.to_datetime(actions["ex_date"]).dt.normalize().to_numpy(),
        "split_ratio": pd.to_numeric(actions["split_ratio"], errors="coerce").to_numpy(float)
        if "split_ratio" in actions else 1.0,
        "dividend_factor": pd.to_numeric(actions["dividend_factor"], errors="coerce").to_numpy(float)
        if "dividend_factor" in actions else np.nan,
        "cash_dividend": pd.to_numeric(actions["cash_dividend"], errors="coerce").to_numpy(float)
        if "cash_dividend" in actions else 0.0,
    })
    a = a.drop_duplicates(["symbol", "ex_date", "split_ratio", "dividend_factor", "cash_dividend"])
    return {s: g.sort_values("ex_date") for s, g in a.groupby("symbol", sort=False)}


def screen_bars(bars: pd.DataFrame, *, calendar: str, delay_minutes: int, max_jump: float,
                stored: pd.DataFrame | None = None, actions: pd.DataFrame | None = None,
                now: pd.Timestamp | None = None) -> np.ndarray:
    """Each bar's reason it cannot be true ('' where it can): module doc. ``bars``: symbol,
    session (naive), open, high, low, close, volume."""
    from etl.core import clock

    now = clock.utc_now() if now is None else clock.to_utc(now, "now")
    last_done = clock.last_completed_session(delay_minutes, calendar, now)
    out = np.full(len(bars), "", dtype=object)
    if not len(bars):
        return out
    fut = future_mask(bars["session"], last_done)
    if fut.any():
        out[fut] = [future_reason(s, last_done, calendar, delay_minutes, now) for s in pd.to_datetime(bars.loc[fut, "session"])]
    absurd = absurd_reasons(bars)
    m = (absurd != "") & (out == "")
    out[m] = absurd[m]
    jumps = jump_reasons(bars, stored, actions, max_jump, skip=out != "")
    m = (jumps != "") & (out == "")
    out[m] = jumps[m]
    return out
