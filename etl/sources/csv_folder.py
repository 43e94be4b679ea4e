"""The generic CSV folder: one ``<SYMBOL>.csv`` per symbol with columns
``date,open,high,low,close,volume`` (raw prices, exchange-local session dates).

``alpha ingest csv --path FOLDER`` reads every file of the folder as one
all-or-nothing batch (:attr:`etl.sources.base.Source.all_or_nothing`): one
unreadable file or rejected row stops the ingest before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from etl.core.config import Settings
from etl.core.errors import BadInputError, ConfigError
from etl.quality.bars import REQUIRED_CSV_COLUMNS, validate_bars
from etl.sources.base import SYMBOL_RULE, BarArchiveSource, IngestReport, Job, Parsed, ingest_archive, is_symbol


def list_csv_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError([(str(folder), None, "not a folder; expected a folder of <SYMBOL>.csv files")])
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    if not files:
        raise BadInputError([(str(folder), None, "no <SYMBOL>.csv files in the folder")])
    return files


def read_csv_folder(folder: Path) -> tuple[pd.DataFrame, list[tuple[str, int | None, str]]]:
    """Raw string rows of every CSV in ``folder`` plus file-level problems (see :func:`read_csv_files`)."""
    return read_csv_files(list_csv_files(folder))


def read_csv_files(files: list[Path]) -> tuple[pd.DataFrame, list[tuple[str, int | None, str]]]:
    """Raw string rows of the given ``<SYMBOL>.csv`` files plus file-level problems.

    ``source_row`` is the 1-based line number in the file (the header is line 1).
    """
    frames, problems = [], []
    for path in files:
        symbol = path.stem.upper()
        if not is_symbol(symbol):
            problems.append((str(path), None, f"file name {path.name!r} is not a valid symbol ({SYMBOL_RULE})"))
            continue
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            problems.append((str(path), None, f"cannot parse as CSV: {exc}"))
            continue
        except pd.errors.EmptyDataError:
            problems.append((str(path), None, "empty file"))
            continue
        raw.columns = [c.strip().lower() for c in raw.columns]
        missing = [c for c in REQUIRED_CSV_COLUMNS if c not in raw.columns]
        if missing:
            problems.append((str(path), 1, f"missing column(s) {missing}; need {REQUIRED_CSV_COLUMNS}, found {list(raw.columns)}"))
            continue
        if raw.empty:
            problems.append((str(path), None, "no data rows"))
            continue
        raw = raw[REQUIRED_CSV_COLUMNS].copy()
        raw["symbol"] = symbol
        raw["source_file"] = str(path)
        raw["source_row"] = range(2, len(raw) + 2)
        frames.append(raw)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*REQUIRED_CSV_COLUMNS, "symbol", "source_file", "source_row"])
    return frame, problems


class CsvFolderSource(BarArchiveSource):
    """Every ``<SYMBOL>.csv`` of the folder ``path`` as one all-or-nothing job of daily bars."""

    name = "csv"

    def folder(self) -> Path:
        if not self.path:
            raise ConfigError("csv reads a folder of <SYMBOL>.csv files: pass --path FOLDER")
        return Path(self.path).resolve()

    def jobs(self, dataset: str, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> list[Job]:
        if symbols:
            raise ConfigError(f"csv reads every <SYMBOL>.csv of the folder; give no symbols (got {symbols})")
        files = list_csv_files(self.folder())
        return [Job(self.name, dataset, "ALL", start, end, files=tuple(str(p) for p in files))]

    def fetch_parse(self, job: Job) -> Parsed:
        folder = self.folder()
        files = [Path(f) for f in job.files]
        raw, problems = read_csv_files(files)
        validated = validate_bars(raw, self.settings.calendar)
        batch_key = f"csv:{folder}:" + ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        if problems or len(validated.rejects):
            rejects = validated.rejects if len(validated.rejects) else None
            return Parsed(rejects=rejects, problems=problems + validated.problems, rows_fetched=len(raw), batch_key=batch_key)
        good = validated.good.assign(source=f"csv:{folder.name}")
        return Parsed(
            tables={"bars_daily": good},
            rows_fetched=len(raw),
            batch_key=batch_key,
            land=[(p, f"{folder.name}/{p.name}") for p in files],
            symbols=sorted(good["symbol"].unique()),
        )


def ingest_csv_folder(settings: Settings, folder: str | Path, now: pd.Timestamp | None = None) -> IngestReport:
    """Ingest a folder of ``<SYMBOL>.csv`` files (columns date,open,high,low,close,volume)."""
    return ingest_archive(settings, "csv", folder, None, now)
