"""Daily bars: validation, quarantine and the silver table.

Adapters hand over a *raw* frame of strings exactly as read (one row per
input line, with ``source_file`` and ``source_row``); :func:`validate_bars`
parses it, and every row that cannot be trusted is returned with a reason
instead of being coerced. Silver rows carry three times:

- ``event_timestamp``: when the bar could first be known, the session's close
  on the exchange calendar plus the configured delay (the same for every
  version of a bar: it says which session the value belongs to);
- ``known_timestamp``: when THIS version became knowable. For a first print
  from an archive (Lean, a CSV history) that is the event time; for a revision
  it is when we received it;
- ``created_timestamp``: when we wrote the row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from etl import clock
from etl.config import Settings
from etl.errors import BadInputError, NotIngestedError
from etl.store import atomic_write_frame, read_parquet_dir

PRICE_COLUMNS = ["open", "high", "low", "close"]
VALUE_COLUMNS = PRICE_COLUMNS + ["volume"]
REQUIRED_CSV_COLUMNS = ["date", *VALUE_COLUMNS]
SILVER_COLUMNS = [
    "symbol", "session", "ticker", *VALUE_COLUMNS, "source",
    "event_timestamp", "known_timestamp", "created_timestamp",
]
QUARANTINE_COLUMNS = ["source_file", "source_row", "symbol", "raw", "reason", "created_timestamp"]


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
    raw: pd.DataFrame, calendar: str = "XNYS", date_format: str | None = None, price_divisor: float = 1.0
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


# --------------------------------------------------------------------- silver

def silver_bars_dir(settings: Settings) -> Path:
    return settings.silver / "bars_daily"


def quarantine_rejects(settings: Settings, rejects: pd.DataFrame, batch_key: str, now: pd.Timestamp) -> Path:
    """Keep rejected rows with their reasons; the same input always lands in the same file."""
    out = rejects.copy()
    out["created_timestamp"] = now
    name = hashlib.sha256(batch_key.encode()).hexdigest()[:16]
    path = settings.quarantine / "bars_daily" / f"batch-{name}.parquet"
    atomic_write_frame(out[QUARANTINE_COLUMNS], path)
    return path


def raise_if_rejected(settings: Settings, validated: Validated, batch_key: str, now: pd.Timestamp) -> None:
    if len(validated.rejects):
        path = quarantine_rejects(settings, validated.rejects, batch_key, now)
        raise BadInputError(validated.problems, str(path))


def write_silver_bars(settings: Settings, good: pd.DataFrame, source: str, now: pd.Timestamp | None = None) -> dict:
    """Add validated bars to the silver table (``silver/bars_daily/year=YYYY/part-*.parquet``).

    Idempotent: a row equal to the latest stored version of its
    ``(symbol, session)`` is skipped. A row that differs is a *revision* and is
    appended as a new version, known from when we received it (never earlier
    than the session's availability): history is never overwritten. New rows
    of a year go into one new part file, written atomically.
    """
    from etl import silver
    from etl.tables import BARS_DAILY

    now = clock.to_utc_us(pd.DatetimeIndex([now or pd.Timestamp.now(tz="UTC")]))[0]
    if good.empty:
        return {"new": 0, "revised": 0, "unchanged": 0}
    frame = good.copy()
    frame["ticker"] = frame["ticker"] if "ticker" in frame else frame["symbol"]
    frame["source"] = source
    frame["event_timestamp"] = clock.availability_times(frame["session"], settings.bar_delay_minutes, settings.calendar)
    frame["known_timestamp"] = frame["event_timestamp"]  # archive first prints: known at availability
    frame["created_timestamp"] = now
    frame = _silver_types(frame)
    stats = {"new": 0, "revised": 0, "unchanged": 0}
    existing = read_parquet_dir(silver_bars_dir(settings), filters=_symbols_filter(frame["symbol"].unique().tolist()))
    if existing is not None and len(existing):
        latest = existing.sort_values(["known_timestamp", "created_timestamp"], kind="stable").drop_duplicates(["symbol", "session"], keep="last")
        merged = frame.merge(latest[["symbol", "session", "ticker", *VALUE_COLUMNS]], on=["symbol", "session"], how="left", suffixes=("", "_old"), indicator=True)
        known = (merged["_merge"] == "both").to_numpy()
        same = known.copy()
        for col in ["ticker", *VALUE_COLUMNS]:
            same &= (merged[col] == merged[f"{col}_old"]).to_numpy()
        revised = known & ~same
        frame = frame.loc[~same].copy()
        rev_mask = revised[~same]
        frame.loc[rev_mask, "known_timestamp"] = frame.loc[rev_mask, "event_timestamp"].clip(lower=now)
        stats.update(unchanged=int(same.sum()), revised=int(revised.sum()), new=int((~known).sum()))
    else:
        stats["new"] = len(frame)
    silver.append(settings, BARS_DAILY, frame, now)
    return stats


def _symbols_filter(symbols: list[str]):
    import pyarrow.dataset as ds

    return ds.field("symbol").isin(symbols)


def _silver_types(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[SILVER_COLUMNS].copy()
    out["session"] = pd.to_datetime(out["session"]).astype("datetime64[us]")
    for col in ("event_timestamp", "known_timestamp", "created_timestamp"):
        out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[us, UTC]")
    for col in VALUE_COLUMNS:
        out[col] = out[col].astype("float64")
    for col in ("symbol", "ticker", "source"):
        out[col] = out[col].astype(str)
    return out


def read_silver_bars(settings: Settings, symbols: list[str] | None = None, versions: str = "first") -> pd.DataFrame:
    """Silver bars, one row per (symbol, session).

    ``versions="first"`` keeps, for each bar, the version first written (what
    was knowable at the session's availability time); ``"all"`` returns every
    version.
    """
    frame = read_parquet_dir(silver_bars_dir(settings), filters=_symbols_filter(symbols) if symbols else None)
    if frame is None or frame.empty:
        raise NotIngestedError(
            f"no daily bars in {silver_bars_dir(settings)}; run `alpha ingest lean` or `alpha ingest csv PATH` first"
        )
    frame = frame.drop(columns=["year"], errors="ignore")
    frame = frame.sort_values(["symbol", "session", "known_timestamp", "created_timestamp"], kind="stable")
    if versions == "first":
        frame = frame.drop_duplicates(["symbol", "session"], keep="first")
    return frame.reset_index(drop=True)
