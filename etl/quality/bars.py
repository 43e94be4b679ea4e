"""Daily bars: validation.

Adapters hand over a *raw* frame of strings exactly as read (one row per
input line, with ``source_file`` and ``source_row``); :func:`validate_bars`
parses it, and every row that cannot be trusted is returned with a reason
instead of being coerced; :func:`raise_if_rejected` quarantines them
(``etl.storage.bars``, which also says what the three times of a silver row mean)
and stops the ingest with every reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR, Settings
from etl.core.errors import BadInputError
from etl.storage.bars import PRICE_COLUMNS, QUARANTINE_COLUMNS, VALUE_COLUMNS, quarantine_rejects

REQUIRED_CSV_COLUMNS = ["date", *VALUE_COLUMNS]


@dataclass(frozen=True)
class Validated:
    good: pd.DataFrame          # symbol, session, open..volume, source_file, source_row
    rejects: pd.DataFrame       # source_file, source_row, symbol, raw, reason

    @property
    def problems(self) -> list[tuple[str, int | None, str]]:
        return [
            (r.source_file, None if pd.isna(r.source_row) else int(r.source_row), r.reason)
            for r in self.rejects.itertuples()
        ]


def _reject(frame: pd.DataFrame, mask: np.ndarray, reason) -> pd.DataFrame:
    rows = frame.loc[mask]
    raw = rows[["date", *VALUE_COLUMNS]].astype(str).agg(",".join, axis=1)
    reasons = reason(rows) if callable(reason) else reason
    return pd.DataFrame(
        {
            "source_file": rows["source_file"].values,
            "source_row": rows["source_row"].values,
            "symbol": rows["symbol"].values,
            "raw": raw.values,
            "reason": reasons if isinstance(reasons, str) else np.asarray(reasons, dtype=object),
        }
    )


def validate_bars(
    raw: pd.DataFrame, calendar: str = DEFAULT_CALENDAR, date_format: str | None = None, price_divisor: float = 1.0
) -> Validated:
    """Split raw string rows into parsed good rows and rejected rows with a reason.

    Checks, per row: a parseable date that is a session of ``calendar``; every
    price and the volume present and numeric; prices > 0; volume >= 0;
    low <= open, close <= high. Prices are divided by ``price_divisor``
    (Lean stores deci-cents: 10000). Per symbol: no date twice (every copy of a
    duplicated date is rejected: we cannot know which one is right).
    """
    frame = raw.reset_index(drop=True).copy()
    rejects: list[pd.DataFrame] = []
    bad = np.zeros(len(frame), dtype=bool)

    dates = pd.to_datetime(frame["date"].str.strip(), format=date_format, errors="coerce")
    m = dates.isna().to_numpy() & ~bad
    if m.any():
        rejects.append(_reject(frame, m, lambda r: [f"unparseable date {d!r}" for d in r["date"]]))
        bad |= m

    values = {}
    for col in VALUE_COLUMNS:
        text = frame[col].astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce")
        values[col] = num
        missing = (text == "") | text.str.lower().isin(["nan", "none", "null", "na"])
        m = missing.to_numpy() & ~bad
        if m.any():
            rejects.append(_reject(frame, m, f"missing {col}"))
            bad |= m
        m = num.isna().to_numpy() & ~bad
        if m.any():
            rejects.append(_reject(frame, m, lambda r, c=col: [f"non-numeric {c} {v!r}" for v in r[c]]))
            bad |= m
        m = (~np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))) & ~bad
        if m.any():
            rejects.append(_reject(frame, m, f"non-finite {col}"))
            bad |= m

    for col in PRICE_COLUMNS:
        m = (values[col] <= 0).to_numpy() & ~bad
        if m.any():
            rejects.append(_reject(frame, m, lambda r, c=col: [f"{c} must be > 0, got {v}" for v in r[c]]))
            bad |= m
    m = (values["volume"] < 0).to_numpy() & ~bad
    if m.any():
        rejects.append(_reject(frame, m, lambda r: [f"negative volume {v}" for v in r["volume"]]))
        bad |= m
    lo, hi = values["low"], values["high"]
    inconsistent = (lo > hi) | (values["open"] > hi) | (values["close"] > hi) | (values["open"] < lo) | (values["close"] < lo)
    m = inconsistent.to_numpy() & ~bad
    if m.any():
        rejects.append(_reject(frame, m, "inconsistent bar: need low <= open, close <= high"))
        bad |= m

    session = dates.dt.normalize()
    valid_date = ~dates.isna().to_numpy()
    not_session = np.zeros(len(frame), dtype=bool)
    not_session[valid_date] = ~clock.is_session(pd.DatetimeIndex(session[valid_date]), calendar)
    m = not_session & ~bad
    if m.any():
        rejects.append(_reject(frame, m, lambda r: [f"{d} is not a {calendar} session" for d in r["date"]]))
        bad |= m

    dup = pd.DataFrame({"s": frame["symbol"], "d": session}).duplicated(keep=False).to_numpy() & valid_date
    m = dup & ~bad
    if m.any():
        rejects.append(_reject(frame, m, lambda r: [f"duplicated date {d}" for d in r["date"]]))
        bad |= m

    good = pd.DataFrame(
        {
            "symbol": frame["symbol"],
            "session": session,
            **{c: values[c].astype("float64") / price_divisor for c in PRICE_COLUMNS},
            "volume": values["volume"].astype("float64"),
            "source_file": frame["source_file"],
            "source_row": frame["source_row"],
        }
    ).loc[~bad].reset_index(drop=True)
    rej = (
        pd.concat(rejects, ignore_index=True).sort_values(["source_file", "source_row"], kind="stable")
        if rejects
        else pd.DataFrame(columns=QUARANTINE_COLUMNS[:-1])
    )
    return Validated(good=good, rejects=rej.reset_index(drop=True))


def raise_if_rejected(settings: Settings, validated: Validated, batch_key: str, now: pd.Timestamp) -> None:
    if len(validated.rejects):
        path = quarantine_rejects(settings, validated.rejects, batch_key, now)
        raise BadInputError(validated.problems, str(path))
