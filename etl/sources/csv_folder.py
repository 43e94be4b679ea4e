"""The generic CSV folder: one ``<SYMBOL>.csv`` per symbol with columns
``date,open,high,low,close,volume`` (raw prices, exchange-local session dates)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from etl.core.errors import BadInputError
from etl.quality.bars import REQUIRED_CSV_COLUMNS

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,14}$")


def list_csv_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError([(str(folder), None, "not a folder; expected a folder of <SYMBOL>.csv files")])
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    if not files:
        raise BadInputError([(str(folder), None, "no <SYMBOL>.csv files in the folder")])
    return files


def read_csv_folder(folder: Path) -> tuple[pd.DataFrame, list[tuple[str, int | None, str]]]:
    """Raw string rows of every CSV in ``folder`` plus file-level problems.

    ``source_row`` is the 1-based line number in the file (the header is line 1).
    """
    frames, problems = [], []
    for path in list_csv_files(folder):
        symbol = path.stem.upper()
        if not SYMBOL_RE.match(symbol):
            problems.append((str(path), None, f"file name {path.name!r} is not a valid symbol (A-Z, 0-9, '.', '-')"))
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
