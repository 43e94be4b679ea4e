"""Ingest entry points: land bronze, validate, quarantine, write silver.

All-or-nothing per call: every input is read and validated before anything
is written to silver. If any row is rejected, the rejected rows go to the
quarantine table with their reasons, :class:`BadInputError` names each file
and row, and the silver store is left exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import BadInputError
from etl.quality.bars import raise_if_rejected, validate_bars
from etl.sources.csv_folder import list_csv_files, read_csv_folder
from etl.sources.lean import formats as lean
from etl.storage.actions import write_corporate_actions, write_symbol_map
from etl.storage.bars import write_silver_bars
from etl.storage.bronze import land_files
from etl.storage.silver import recover


@dataclass
class IngestReport:
    source: str
    files: int
    rows_read: int
    new: int
    revised: int
    unchanged: int
    symbols: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.source}: {self.files} files, {self.rows_read} rows read, {len(self.symbols)} symbols; "
            f"silver: {self.new} new, {self.revised} revised, {self.unchanged} unchanged"
        )


def _now() -> pd.Timestamp:
    return clock.to_utc_us(pd.DatetimeIndex([pd.Timestamp.now(tz="UTC")]))[0]


def ingest_csv_folder(settings: Settings, folder: str | Path, now: pd.Timestamp | None = None) -> IngestReport:
    """Ingest a folder of ``<SYMBOL>.csv`` files (columns date,open,high,low,close,volume)."""
    now = now or _now()
    recover(settings)
    folder = Path(folder).resolve()
    raw, problems = read_csv_folder(folder)
    validated = validate_bars(raw, settings.calendar)
    batch_key = f"csv:{folder}:" + ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in list_csv_files(folder))
    if problems:
        all_problems = problems + validated.problems
        if len(validated.rejects):
            from etl.storage.bars import quarantine_rejects

            path = quarantine_rejects(settings, validated.rejects, batch_key, now)
            raise BadInputError(all_problems, str(path))
        raise BadInputError(all_problems)
    raise_if_rejected(settings, validated, batch_key, now)
    files = list_csv_files(folder)
    land_files(settings, "csv", [(p, f"{folder.name}/{p.name}") for p in files], now)
    stats = write_silver_bars(settings, validated.good, source=f"csv:{folder.name}", now=now)
    return IngestReport("csv", len(files), len(raw), symbols=sorted(validated.good["symbol"].unique()), **stats)


def ingest_lean(settings: Settings, root: str | Path, symbols: list[str] | None = None, now: pd.Timestamp | None = None) -> IngestReport:
    """Ingest Lean daily bars with their factor and map files (all-or-nothing:
    one rejected row stops the whole ingest before anything is written)."""
    now = now or _now()
    recover(settings)
    root = Path(root).resolve()
    files = lean.daily_files(root, symbols)
    if not files:
        raise BadInputError([(str(root / lean.DAILY), None, "no Lean daily files found")])
    raw = pd.concat([lean.read_daily_raw(p) for p in files], ignore_index=True)
    validated = validate_bars(raw, settings.calendar, date_format=lean.DATE_FORMAT, price_divisor=lean.PRICE_DIVISOR)
    batch_key = "lean:" + ",".join(f"{p.name}:{p.stat().st_size}" for p in files)
    raise_if_rejected(settings, validated, batch_key, now)

    extra: list[tuple[Path, str]] = []
    factor_frames, map_frames = [], []
    for p in files:
        ff = root / lean.FACTORS / p.name
        mf = root / lean.MAPS / p.name
        if ff.exists():
            factor_frames.append(lean.read_factor_file(ff, settings.calendar))
            extra.append((ff, f"{lean.FACTORS}/{ff.name}"))
        if mf.exists():
            map_frames.append(lean.read_map_file(mf))
            extra.append((mf, f"{lean.MAPS}/{mf.name}"))
    land_files(settings, "lean", [(p, f"{lean.DAILY}/{p.name}") for p in files] + extra, now)

    good = validated.good
    maps = pd.concat(map_frames, ignore_index=True) if map_frames else pd.DataFrame(columns=["symbol", "last_date", "ticker", "exchange"])
    tickers = []
    for sym, g in good.groupby("symbol", sort=False):
        tickers.append(pd.Series(lean.ticker_as_traded(g["session"], maps[maps["symbol"] == sym], sym), index=g.index))
    good = good.assign(ticker=pd.concat(tickers))
    if factor_frames:
        write_corporate_actions(settings, pd.concat(factor_frames, ignore_index=True), now)
    if map_frames:
        write_symbol_map(settings, maps, now)
    stats = write_silver_bars(settings, good, source="lean", now=now)
    return IngestReport("lean", len(files), len(raw), symbols=sorted(good["symbol"].unique()), **stats)
