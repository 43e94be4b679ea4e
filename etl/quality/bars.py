"""Daily bars: validation.

Adapters hand over a *raw* frame of strings exactly as read (one row per
input line, with ``source_file`` and ``source_row``, optionally the
``date_format`` of each row's file); :func:`validate_bars` parses it, and every row that cannot be trusted is returned with a reason
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
#: date texts pandas skips when it infers a format from the first date (they are no date)
_NOT_A_DATE = frozenset({"", "nat", "nan", "now", "today"})


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


def infer_date_format(dates) -> str | None:
    """The format of a file's dates, inferred from its first date as pandas does
    (``2024-01-02`` -> ``%Y-%m-%d``); ``None`` when there is no date or no format fits."""
    from pandas.tseries.api import guess_datetime_format

    for value in dates:
        text = str(value).strip()
        if text.lower() not in _NOT_A_DATE:
            return guess_datetime_format(text)
    return None


def _swap_day_month(fmt: str) -> str | None:
    """``fmt`` with its day and month exchanged (``%m/%d/%Y`` -> ``%d/%m/%Y``), or None when it
    does not have both or is year-first (``%Y-%m-%d``, ``%Y/%m/%d``: never day-first in practice)."""
    if "%d" not in fmt or "%m" not in fmt or fmt.startswith(("%Y", "%y")):
        return None
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def resolve_date_format(dates, declared: str | None = None, how: str = "") -> tuple[str | None, str | None]:
    """``(format, problem)`` of one file's dates.

    A year-first format (ISO ``2024-01-02``, ``20240102``, ``2024/01/02``) is taken as inferred
    from the first date. Otherwise a ``declared`` format is used. Undeclared, a format with the
    day and the month (``03/04/2024``) is tried both ways on every date of the file: when both
    read every date, and read some differently, the file is ambiguous (``problem`` says so and
    ``how`` to declare the format); when only one reads them all (a day above 12 proves the
    order), that one is used for the whole file; when neither does, the inferred one is (the
    dates it cannot read are then rejected, each with its line)."""
    text = pd.Series([str(v).strip() for v in dates], dtype=object)
    text = text[~text.str.lower().isin(_NOT_A_DATE)]
    guessed = infer_date_format(text)
    if guessed is not None and guessed.startswith(("%Y", "%y")):
        return guessed, None
    if declared is not None:
        return declared, None
    swapped = None if guessed is None else _swap_day_month(guessed)
    if swapped is None:
        return guessed, None
    a = pd.to_datetime(text, format=guessed, errors="coerce")
    b = pd.to_datetime(text, format=swapped, errors="coerce")
    ok_a, ok_b = bool(a.notna().all()), bool(b.notna().all())
    if ok_a and ok_b:
        differ = (a != b).to_numpy()
        if not differ.any():   # every date has its day equal to its month: both read the same
            return guessed, None
        k = int(np.flatnonzero(differ)[0])
        month_first, day_first = (a, b) if guessed.index("%m") < guessed.index("%d") else (b, a)
        mf, df = (guessed, swapped) if guessed.index("%m") < guessed.index("%d") else (swapped, guessed)
        return None, (f"ambiguous dates: {text.iloc[k]!r} is {month_first.iloc[k]:%Y-%m-%d} month first ({mf}) or "
                      f"{day_first.iloc[k]:%Y-%m-%d} day first ({df}), and no date of the file has a day above 12 "
                      f"to tell; declare the format{how}")
    if ok_b and not ok_a:
        return swapped, None
    return guessed, None


#: every character ``str.strip()`` removes (``str.isspace``); tests/test_ingest.py keeps it complete
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                 "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_EDGE_SPACE = f"^[{PY_WHITESPACE}]|[{PY_WHITESPACE}]$"


def _stripped(values: pd.Series) -> pd.Series:
    """``values.astype(str).str.strip()``, without the per-value Python call when no value has
    whitespace at either end (the usual case; Arrow's regex finds out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = values.astype(str)
    if not len(text) or not pc.any(pc.match_substring_regex(pa.array(text.to_numpy(), pa.string()), _EDGE_SPACE)).as_py():
        return text
    return text.str.strip()


def _parse_dates(frame: pd.DataFrame, date_format: str | None) -> pd.Series:
    """Each row's date: with ``date_format`` if given, else with its ``date_format`` column,
    else with the format inferred from the first date of its ``source_file``."""
    text = _stripped(frame["date"])
    if date_format is not None:
        return pd.to_datetime(text, format=date_format, errors="coerce")
    if "date_format" in frame.columns:
        formats = frame["date_format"]
    else:
        by_file = {f: infer_date_format(g) for f, g in text.groupby(frame["source_file"], sort=False)}
        formats = frame["source_file"].map(by_file)
    formats = formats.astype(object).where(formats.notna(), "")
    groups = formats.groupby(formats, sort=False).groups
    if len(groups) <= 1:   # one format (the usual case): one call, whatever it returns
        return pd.to_datetime(text, format=next(iter(groups), "") or None, errors="coerce")
    out = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    for fmt, idx in groups.items():
        out.loc[idx] = pd.to_datetime(text.loc[idx], format=fmt or None, errors="coerce")
    return out


def validate_bars(
    raw: pd.DataFrame, calendar: str = DEFAULT_CALENDAR, date_format: str | None = None, price_divisor: float = 1.0,
    delay_minutes: int | None = None,
) -> Validated:
    """Split raw string rows into parsed good rows and rejected rows with a reason.

    Dates are parsed with ``date_format`` if given, else with the ``date_format``
    column of the raw rows if they have one, else with the format inferred from
    the first date of each ``source_file`` (see :func:`infer_date_format`).
    Checks, per row: a parseable date that is a session of ``calendar``; every
    price and the volume present and numeric; prices > 0; volume >= 0;
    low <= open, close <= high; with ``delay_minutes`` (the bar delay), a date no later than
    the last completed session (:mod:`etl.quality.plausible`: checked before the calendar, so
    a date in 2030 is said to be in the future, not "not a session"). Prices are divided by ``price_divisor``
    (Lean stores deci-cents: 10000). Per symbol: no date twice (every copy of a
    duplicated date is rejected: we cannot know which one is right).
    """
    frame = raw.reset_index(drop=True).copy()
    rejects: list[pd.DataFrame] = []
    bad = np.zeros(len(frame), dtype=bool)

    dates = _parse_dates(frame, date_format)
    m = dates.isna().to_numpy() & ~bad
    if m.any():
        rejects.append(_reject(frame, m, lambda r: [f"unparseable date {d!r}" for d in r["date"]]))
        bad |= m

    values = {}
    for col in VALUE_COLUMNS:
        text = _stripped(frame[col])
        num = pd.to_numeric(text, errors="coerce")
        values[col] = num
        # a missing value is never a number: look for the words among the values that are not numbers
        missing = np.zeros(len(frame), dtype=bool)
        nan = num.isna().to_numpy()
        if nan.any():
            odd = text[nan]
            missing[nan] = ((odd == "") | odd.str.lower().isin(["nan", "none", "null", "na"])).to_numpy()
        m = missing & ~bad
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
    if delay_minutes is not None:
        from etl.quality.plausible import future_mask, future_reason

        now = clock.utc_now()
        last_done = clock.last_completed_session(delay_minutes, calendar, now)
        m = future_mask(session, last_done) & ~bad
        if m.any():
            rejects.append(_reject(frame, m, lambda r: [future_reason(d, last_done, calendar, delay_minutes, now)
                                                        for d in session[r.index]]))
            bad |= m
    not_session = np.zeros(len(frame), dtype=bool)
    not_session[valid_date] = ~clock.is_session(pd.DatetimeIndex(session[valid_date]), calendar)
    m = not_session & ~bad
    if m.any():
        rejects.append(_reject(frame, m, lambda r: clock.off_calendar_reasons(r["date"], calendar)))
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
