"""Point-in-time labels: forward returns and the time each became knowable.

The label of a row (symbol, t) over a horizon of ``h`` sessions is the compounded
total return of the symbol's next ``h`` rows::

    fwd_ret_h   = prod(1 + ret_1d[t+1 .. t+h]) - 1
    fwd_known_h = the decision time of the row t+h

``ret_1d`` is the point-in-time total-return daily return (splits and dividends as they
happened), so a split is not a loss. ``fwd_known_h`` is when the label could first be
known: the availability time of its last return. A label is missing (NaN, and its
``fwd_known`` NaT) when the symbol has no row t+h or any return in between is missing.

The frame holds one row per symbol per session, as ``alpha.history`` with symbols and
dates returns it: the "next h sessions" are the symbol's next h rows. A value that the
history carried forward within its view's TTL after the symbol's last bar (a delisting, a
halt) is not a new return: when the frame has a ``session_date`` column
(``bars_daily:session_date``), a row whose session repeats the row before it is a
carried value and its return counts as missing.

A label used at time ``T`` must have ``fwd_known <= T``; :func:`mask_unknown` applies that
rule, and ``history_labels(..., as_of=T)`` returns a label whose horizon has not ended by
``T`` as missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import ArgumentError, MissingColumnError, NaiveTimestampError

__all__ = ["SESSION_COL", "check_horizons", "forward_returns", "history_labels", "known_col", "label_col",
           "mask_unknown"]

#: the column that tells a new bar from a value carried forward within the view's TTL
SESSION_COL = "session_date"
#: the features :func:`history_labels` reads
LABEL_INPUTS = ["technicals:ret_1d", "bars_daily:session_date"]


def label_col(horizon: int) -> str:
    """The name of the forward-return label over ``horizon`` sessions: ``fwd_ret_<h>``."""
    return f"fwd_ret_{horizon}"


def known_col(horizon: int) -> str:
    """The name of the time that label became knowable: ``fwd_known_<h>``."""
    return f"fwd_known_{horizon}"


def check_horizons(horizons: Sequence[int]) -> list[int]:
    """The horizons as a list of distinct positive ints (in the order given), or an ArgumentError."""
    if isinstance(horizons, (int, np.integer)) and not isinstance(horizons, bool):
        horizons = [int(horizons)]
    try:
        out = list(horizons)
    except TypeError:
        raise ArgumentError(f"horizons={horizons!r} must be a list of positive session counts, e.g. [1, 5, 21]") from None
    if not out:
        raise ArgumentError("horizons is empty; pass at least one session count, e.g. [5]")
    bad = [h for h in out if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1]
    if bad:
        raise ArgumentError(f"horizons must be positive ints (sessions), got {bad}")
    if len(set(out)) != len(out):
        raise ArgumentError(f"horizons {out} repeat a value; pass each once")
    return [int(h) for h in out]


def _check_time(values: pd.Series, column: str) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(values):
        raise ArgumentError(f"{column} must hold tz-aware datetimes, got dtype {values.dtype}")
    if getattr(values.dt, "tz", None) is None:
        raise NaiveTimestampError(f"{column} has no time zone; localize it (e.g. .dt.tz_localize('UTC')) first")
    if values.isna().any():
        raise ArgumentError(f"{column} is missing in {int(values.isna().sum())} row(s); every row needs its time")
    return values


def forward_returns(
    frame: pd.DataFrame,
    horizons: Sequence[int],
    *,
    time_col: str = "decision_time",
    ret_col: str = "ret_1d",
    session_col: str | None = SESSION_COL,
) -> pd.DataFrame:
    """``fwd_ret_<h>`` and ``fwd_known_<h>`` for each horizon, aligned to ``frame``'s rows
    (same index, same order); see the module doc for the rule.

    ``frame`` needs ``symbol``, ``time_col`` (tz-aware) and ``ret_col``; at most one row per
    (symbol, time). When ``session_col`` is a column of the frame, a row repeating the previous
    row's session (a value carried forward, no new bar) has no return.
    """
    horizons = check_horizons(horizons)
    need = ["symbol", time_col, ret_col]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise MissingColumnError(f"forward_returns needs columns {missing}; the frame has {list(frame.columns)}")
    times = _check_time(frame[time_col], time_col)
    if frame.duplicated(["symbol", time_col]).any():
        dup = frame.loc[frame.duplicated(["symbol", time_col], keep=False), ["symbol", time_col]].head(3)
        raise ArgumentError(f"forward_returns needs one row per (symbol, {time_col}); repeated: "
                            f"{dup.to_dict('records')}")

    codes = pd.factorize(frame["symbol"])[0]
    order = np.lexsort((times.array.asi8, codes))  # by symbol, then time
    sym = codes[order]
    ret = pd.to_numeric(frame[ret_col], errors="coerce").to_numpy(dtype=float)[order]
    if session_col is not None and session_col in frame.columns:
        session = frame[session_col].to_numpy(dtype=object)[order]
        repeat = np.zeros(len(order), dtype=bool)
        repeat[1:] = (sym[1:] == sym[:-1]) & (session[1:] == session[:-1])
        ret = np.where(repeat | pd.isna(session), np.nan, ret)
    growth = 1.0 + ret
    sorted_times = times.iloc[order].reset_index(drop=True)

    n = len(order)
    rows = np.arange(n)
    back = np.empty(n, dtype=np.int64)
    back[order] = rows  # the sorted position of each input row
    acc = np.ones(n)
    out: dict[str, pd.Series] = {}
    wanted = set(horizons)
    for k in range(1, max(horizons) + 1):
        ahead = rows + k
        same = ahead < n
        same[same] = sym[ahead[same]] == sym[same]
        step = np.full(n, np.nan)
        step[same] = growth[ahead[same]]
        acc = acc * step  # NaN from the first missing return or the symbol's end on
        if k in wanted:
            label = acc - 1.0
            ok = np.isfinite(label)
            known = sorted_times.iloc[np.where(ok, ahead, 0)].reset_index(drop=True).where(ok)
            out[label_col(k)] = pd.Series(label[back], index=frame.index)
            out[known_col(k)] = pd.Series(known.array[back], index=frame.index).astype(times.dtype)
    columns = [c for h in horizons for c in (label_col(h), known_col(h))]
    return pd.DataFrame(out, index=frame.index)[columns]


def mask_unknown(labels: pd.DataFrame, at) -> pd.DataFrame:
    """A copy of ``labels`` in which every ``fwd_ret_<h>`` not known at ``at`` (a tz-aware time)
    is missing: its ``fwd_known_<h>`` is after ``at``, or missing. ``fwd_known`` stays (it says
    when the label will be known); a label known exactly at ``at`` is kept."""
    at = clock.to_utc(at, "at")
    pairs = [(c, "fwd_known_" + c.removeprefix("fwd_ret_")) for c in labels.columns if c.startswith("fwd_ret_")]
    if not pairs:
        raise MissingColumnError(f"mask_unknown needs fwd_ret_<h> / fwd_known_<h> columns (forward_returns' output); "
                                 f"got {list(labels.columns)}")
    out = labels.copy()
    for ret, known in pairs:
        if known not in out.columns:
            raise MissingColumnError(f"mask_unknown: {ret} has no {known} column saying when it became known")
        when = _check_known(out[known], known)
        out[ret] = out[ret].where(when.notna() & (when <= at))
    return out


def _check_known(values: pd.Series, column: str) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(values) or getattr(values.dt, "tz", None) is None:
        raise NaiveTimestampError(f"{column} must hold tz-aware times, got dtype {values.dtype}")
    return values


def history_labels(client, symbols: Sequence[str] | str, start, end, horizons: Sequence[int], *,
                   as_of=None) -> pd.DataFrame:
    """Forward-return labels from the warehouse: one row per symbol per session in [start, end]
    with ``symbol``, ``decision_time`` and ``fwd_ret_<h>`` / ``fwd_known_<h>`` per horizon.

    Reads ``technicals:ret_1d`` (and ``bars_daily:session_date``, see the module doc) through
    ``client.history`` from ``start`` to ``max(horizons)`` sessions after ``end``, so the labels
    of the last sessions are complete when the data is there. ``as_of`` (a tz-aware time):
    the history as known then, and a label whose ``fwd_known`` is after ``as_of`` is missing --
    a query for a label before its horizon has ended returns it missing.
    """
    horizons = check_horizons(horizons)
    if as_of is not None:
        as_of = clock.to_utc(as_of, "as_of")
    calendar = client.settings.calendar
    base = client.entity_frame(symbols, start, end)
    last = base["event_timestamp"].max()
    last_session = clock.naive_date(end)
    after = clock.sessions_in_range(last_session + pd.Timedelta(days=1),
                                    last_session + pd.Timedelta(days=2 * max(horizons) + 14), calendar)
    ext_end = after[min(max(horizons), len(after)) - 1] if len(after) else last_session
    hist = client.history(symbols, LABEL_INPUTS, start=start, end=ext_end, as_of=as_of)
    frame = hist.rename(columns={"event_timestamp": "decision_time"})
    labels = forward_returns(frame, horizons)
    out = pd.concat([frame[["symbol", "decision_time"]], labels], axis=1)
    out = out.loc[out["decision_time"] <= last]
    if as_of is not None:
        out = mask_unknown(out, as_of)
    return out.reset_index(drop=True)
