"""The two frames every check shares: the bars frame in, the findings frame out.

A bars frame has ``symbol``, ``session`` (naive date), ``open``, ``high``,
``low``, ``close``, ``volume`` and optionally ``dividends``. One finding is
one row: ``table, check, symbol, date, value, threshold, detail, severity``
("error" or "warning").
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from etl.core.config import DEFAULT_CALENDAR
from etl.quality.errors import BarsFrameError

FINDING_COLUMNS = ["table", "check", "symbol", "date", "value", "threshold", "detail", "severity"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
BAR_VALUE_COLUMNS = [*PRICE_COLUMNS, "volume"]
#: the silver table the bar checks report on
BARS_TABLE = "bars_daily"


def findings_frame(rows: list[dict]) -> pd.DataFrame:
    """Finding rows (see :func:`finding`) as a typed findings frame."""
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    frame["date"] = pd.to_datetime(frame["date"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["threshold"] = pd.to_numeric(frame["threshold"], errors="coerce").astype("float64")
    return frame


def finding(check, symbol, date, value, threshold, detail, severity, table=BARS_TABLE) -> dict:
    """One finding row."""
    return {"table": table, "check": check, "symbol": symbol, "date": date, "value": value,
            "threshold": threshold, "detail": detail, "severity": severity}


def calendar_for(symbol: str, calendar) -> str:
    """The calendar of ``symbol``: ``calendar`` is a name, or a mapping symbol -> name ("*": the rest)."""
    if isinstance(calendar, Mapping):
        return calendar.get(symbol, calendar.get("*", DEFAULT_CALENDAR))
    return calendar or DEFAULT_CALENDAR


def prepare_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Columns lower-cased, ``session`` naive, sorted by symbol and session."""
    missing = [c for c in ("symbol", "session") if c not in bars.columns]
    if missing:
        raise BarsFrameError(f"bars frame lacks column(s) {missing}")
    frame = bars.rename(columns={c: c.lower() for c in bars.columns if c.lower() in (*BAR_VALUE_COLUMNS, "dividends")})
    session = frame["session"]
    if not pd.api.types.is_datetime64_any_dtype(session):
        session = pd.to_datetime(session)
    if getattr(session.dt, "tz", None) is not None:
        session = session.dt.tz_localize(None)  # keep the exchange-local wall date
    frame = frame.assign(session=session, symbol=frame["symbol"].astype(str))
    if _in_order(frame):   # a stable sort would change nothing (frames read from silver come sorted)
        return frame.reset_index(drop=True)
    return frame.sort_values(["symbol", "session"], kind="stable").reset_index(drop=True)


def _in_order(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` is sorted by symbol, then session."""
    if len(frame) < 2:
        return True
    sym, ses = frame["symbol"].to_numpy(), frame["session"].to_numpy()
    if ses.dtype.kind != "M" or pd.isna(ses).any():
        return False
    same = sym[1:] == sym[:-1]
    return bool(np.all((sym[1:] > sym[:-1]) | (same & (ses[1:] >= ses[:-1]))))


def day(ts) -> str:
    """A date as ``YYYY-MM-DD``."""
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def fmt(x: float) -> str:
    """A price in a finding's text."""
    return f"{x:.6g}"
