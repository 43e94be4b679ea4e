"""The generic CSV folder: one ``<SYMBOL>.csv`` per symbol with columns
``date,open,high,low,close,volume`` (raw prices, exchange-local session dates).

``alpha ingest csv --path FOLDER`` ingests every file of the folder in chunks
of at most :data:`CHUNK_SYMBOLS` symbols (whole silver buckets,
:func:`etl.storage.bars.symbol_chunks`): one job per chunk, so the run holds one
chunk's rows at a time, whatever the folder holds.

**All or nothing, per run** (:attr:`etl.sources.base.Source.all_or_nothing`,
the two passes of :func:`etl.sources.base._run_all_or_nothing`): the first pass
reads and validates every file, chunk by chunk, staging each chunk's good rows
on disk. One unreadable file or rejected row anywhere stops the run after that
pass: the rejected rows go to quarantine, :class:`BadInputError` names every
file and row, and nothing is landed or written. Only a clean folder reaches the
second pass, which lands the files in bronze and writes the chunks to silver
one after the other. A crash in that pass leaves the chunks written so far,
each whole; the same command again writes the rest and adds nothing twice.

**Incremental by file.** After a chunk is in silver, what was ingested is
recorded per file (:func:`etl.storage.bars.read_file_record`: size,
modification time, sha256, rows, last session, date format). On the next run
a file is

- *unchanged*: the same size and sha256 as recorded (a touched file with the
  same bytes included). It is not parsed; its rows count as unchanged. (Its
  rows are not compared with silver again: a bar another source wrote since
  for the same symbol and session stands);
- *grown*: the recorded bytes are a prefix of the file (same sha256), ended
  with a line break and hold no quote, and every new row is dated after the
  recorded last session. Only the new lines are parsed and validated, numbered
  as in the whole file: the old lines passed before, and no new date can
  repeat an old one, so the result is that of reading the whole file. This is
  a night that appends one session to every file: it costs its new lines;
- *read whole* otherwise (a new file, an edit, a truncation, a new line dated
  on or before the last session, any parse problem in the new lines), and its
  rows are compared with the symbol's stored rows only: a changed bar is a
  revision (a new version known from now), an equal one is unchanged.

Dates: each file's dates are parsed with the format inferred from its first
date (``2024-01-02``, ``01/02/2024`` ...); appended lines with the recorded
format. A year-first format (ISO) needs nothing more. A format with a day and a
month (``03/04/2024``) is tried both ways on every date of the file
(:func:`etl.quality.bars.resolve_date_format`): if both read every date, and
differently, the file is **refused** as ambiguous until the folder declares its
format (``date_format = "%d/%m/%Y"`` in ``FOLDER/format.toml``, or
``ingest_csv_folder(..., date_format=...)``); if only one reads them all (a day
above 12 proves the order), the whole file is read that way. A declared format
applies to every date of the folder that is not year-first (the bars' and
``actions.csv``'s ex_dates).

Refused before anything is read (:func:`list_csv_files`, one
:class:`BadInputError` naming every entry): two files of one symbol
(``msft.csv`` and ``MSFT.csv``: names are matched without case), a symbolic link
(to a file or a folder) that resolves outside the folder or to nothing. A link
that stays inside the folder is read like the file it points to. A header that
names a column twice (``close,close``, ``close,Close``) refuses its file.

Every bar also passes the plausibility check of every bar source
(:mod:`etl.quality.plausible`): no session after the last completed one, no
absurd price, no jump beyond ``max_price_jump`` from the previous close that no
corporate action (stored, or in this run's ``actions.csv``) explains.

**Corporate actions.** ``actions.csv`` in the folder (never a bar file), or a
file given apart (``--actions FILE``), holds the splits and dividends of the
folder's symbols (format and checks: :mod:`etl.sources.csv_actions`). It is
the run's last job, in the same all-or-nothing run: a bad line stops the run
like a bad bar, quarantined in ``quarantine/corporate_actions/``. It is
recorded like a bar file: unchanged, it is not read; changed, it is read whole
(the actions writer stores only new versions, so a reread adds nothing twice).
Its actions are written after the run's bars, known when ``known_at`` says,
else from the open of their ex-dates (:mod:`etl.storage.actions`).

Every bar row and action carries ``payload``: the sha256 of the file it was
read from, the name of that file in bronze (``bronze/csv/files/<sha[:2]>/<sha>-<name>``).
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import BadInputError, ConfigError
from etl.quality.bars import REQUIRED_CSV_COLUMNS, resolve_date_format, validate_bars
from etl.sources import csv_actions
from etl.sources.base import EVERY_DAY, SYMBOL_RULE, BarArchiveSource, IngestReport, Job, Parsed, is_symbol, run_ingest
from etl.storage.bars import bar_files, read_file_record, symbol_chunks, write_file_record

#: symbols per job: the rows one chunk holds in memory (64 x 10 years of daily bars ~ 160,000 rows)
CHUNK_SYMBOLS = 64
#: the ``symbol`` of the job that reads the corporate-actions file
ACTIONS_JOB = "actions"

Problem = tuple[str, int | None, str]


def list_csv_files(folder: Path) -> list[Path]:
    """The ``<SYMBOL>.csv`` files of ``folder`` (not its ``actions.csv``), or
    :class:`BadInputError` naming every entry refused: a symbolic link (file or folder) that
    resolves outside the folder or to nothing, and two files of one symbol (``msft.csv`` and
    ``MSFT.csv``: names are matched without case). A link that stays inside the folder is read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError([(str(folder), None, "not a folder; expected a folder of <SYMBOL>.csv files")])
    inside = folder.resolve()
    problems: list[Problem] = []
    files = []
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            target = p.resolve()
            if not target.is_relative_to(inside):
                problems.append((str(p), None, f"a symbolic link to {target}, outside the folder {inside}: refused "
                                               "(copy the file into the folder, or link within it)"))
                continue
            if not target.exists():
                problems.append((str(p), None, f"a symbolic link to {target}, which does not exist"))
                continue
        if p.suffix.lower() == ".csv" and p.is_file() and not csv_actions.is_actions_file(p):
            files.append(p)
    by_symbol: dict[str, list[Path]] = defaultdict(list)
    for p in files:
        by_symbol[p.stem.upper()].append(p)
    for symbol, same in sorted(by_symbol.items()):
        if len(same) > 1:
            names = " and ".join(q.name for q in same)
            problems += [(str(q), None, f"{names} are both the bars of {symbol} (file names are matched without case): "
                                        "keep one file per symbol") for q in same]
    if problems:
        raise BadInputError(problems)
    if not files:
        raise BadInputError([(str(folder), None, "no <SYMBOL>.csv files in the folder")])
    return files


def read_csv_folder(folder: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Raw string rows of every CSV in ``folder`` plus file-level problems (see :func:`read_csv_files`)."""
    return read_csv_files(list_csv_files(folder))


def read_csv_files(files: list[Path]) -> tuple[pd.DataFrame, list[Problem]]:
    """Raw string rows of the given ``<SYMBOL>.csv`` files plus file-level problems.

    ``source_row`` is the 1-based line number in the file (the header is line 1).
    """
    frames, problems = [], []
    for path in files:
        raw, problem = parse_csv(path, path.read_bytes())
        if problem:
            problems.append(problem)
        elif raw is not None:
            frames.append(raw)
    return _concat(frames), problems


def parse_csv(path: Path, data: bytes, first_row: int = 2, header: bytes | None = None) -> tuple[pd.DataFrame | None, Problem | None]:
    """The raw string rows of one ``<SYMBOL>.csv`` held in ``data``, or the file's problem.

    ``header`` given: ``data`` is the lines after it (the new lines of a grown file), the first
    of them line ``first_row`` of the file."""
    symbol = path.stem.upper()
    if not is_symbol(symbol):
        return None, (str(path), None, f"file name {path.name!r} is not a valid symbol ({SYMBOL_RULE})")
    twice = _repeated_columns(header if header is not None else data)
    if twice:
        return None, (str(path), 1, twice)
    try:
        raw = pd.read_csv(io.BytesIO(header + data if header is not None else data), dtype=str, keep_default_na=False,
                          skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        return None, (str(path), None, f"cannot parse as CSV: {exc}")
    except pd.errors.EmptyDataError:
        return None, (str(path), None, "empty file")
    raw.columns = [c.strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in raw.columns]
    if missing:
        return None, (str(path), 1, f"missing column(s) {missing}; need {REQUIRED_CSV_COLUMNS}, found {list(raw.columns)}")
    if raw.empty:
        return None, (str(path), None, "no data rows")
    raw = raw[REQUIRED_CSV_COLUMNS].copy()
    raw["symbol"] = symbol
    raw["source_file"] = str(path)
    raw["source_row"] = range(first_row, len(raw) + first_row)
    return raw, None


def _repeated_columns(data: bytes) -> str | None:
    """Why the header line of ``data`` is refused: a column named twice, also in another case
    or with spaces around it (``close,close``, ``close,Close``: which one holds the closes?)."""
    import csv

    end = data.find(b"\n")
    try:
        line = (data if end < 0 else data[:end]).decode("utf-8-sig").rstrip("\r")
        names = next(csv.reader([line], skipinitialspace=True), [])
    except (UnicodeDecodeError, csv.Error):
        return None   # pandas says what is wrong with it
    seen: dict[str, list[str]] = defaultdict(list)
    for n in names:
        seen[n.strip().lower()].append(n)
    twice = {k: v for k, v in seen.items() if len(v) > 1 and k}
    if not twice:
        return None
    said = "; ".join(f"{k!r} as {', '.join(repr(x) for x in v)}" for k, v in twice.items())
    return (f"the header names a column more than once ({said}): each column must appear once "
            f"(names are matched without case or surrounding spaces); header: {line!r}")


#: the per-folder settings file of a CSV folder (``date_format = "%d/%m/%Y"``)
FOLDER_SETTINGS = "format.toml"
FOLDER_KEYS = ("date_format",)


def check_date_format(fmt: object, where: str) -> str:
    """A declared date format (``%d/%m/%Y``), or :class:`ConfigError` saying why it is none:
    it must write and read back a date with a day above 12."""
    day = pd.Timestamp("2024-03-14")
    try:
        ok = isinstance(fmt, str) and "%" in fmt and pd.to_datetime(day.strftime(fmt), format=fmt) == day
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(f"{where}: date_format must be a strftime format with the year, month and day, such as "
                          f"\"%d/%m/%Y\" (day first) or \"%m/%d/%Y\" (month first); got {fmt!r}")
    return fmt


def folder_date_format(folder: Path) -> str | None:
    """The ``date_format`` declared in the folder's ``format.toml``, if any."""
    import tomllib

    path = Path(folder) / FOLDER_SETTINGS
    if not path.is_file():
        return None
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(cfg) - set(FOLDER_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {', '.join(FOLDER_KEYS)}")
    return check_date_format(cfg["date_format"], str(path)) if "date_format" in cfg else None


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame(columns=[*REQUIRED_CSV_COLUMNS, "symbol", "source_file", "source_row"])


@dataclass
class FileRead:
    """How one file of a chunk is read this run (module doc) and what to record for it."""

    path: Path
    data: bytes
    entry: dict                    # size, mtime_ns, sha256 now; rows, last_session, date_format once read
    mode: str                      # "unchanged", "grown" or "whole"
    before: dict = field(default_factory=dict)   # the recorded entry


def plan_read(path: Path, before: dict | None, whole: bool = False, declared: str | None = None) -> FileRead:
    """Read ``path`` once and decide, from what was recorded ``before``, whether it is
    unchanged, grown or to be read whole (``whole=True`` forces the last, as does a declared
    date format other than the one recorded for a file whose dates are not year-first)."""
    st = path.stat()
    data = path.read_bytes()
    size = len(data)
    h = hashlib.sha256()
    grown_from = int(before.get("size", -1)) if before else -1
    prefix_sha = None
    if 0 < grown_from < size:
        h.update(memoryview(data)[:grown_from])
        prefix_sha = h.copy().hexdigest()
        h.update(memoryview(data)[grown_from:])
    else:
        h.update(data)
    entry = {"size": size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest(), "symbol": path.stem.upper()}
    recorded = (before or {}).get("date_format")
    if declared is not None and isinstance(recorded, str) and not recorded.startswith(("%Y", "%y")) and recorded != declared:
        whole = True
    if before and not whole:
        if before.get("size") == size and before.get("sha256") == entry["sha256"]:
            entry.update({k: before.get(k) for k in ("rows", "last_session", "date_format")})
            return FileRead(path, data, entry, "unchanged", before)
        fmt = before.get("date_format") if isinstance(before.get("date_format"), str) else ""
        if (prefix_sha is not None and prefix_sha == before.get("sha256") and data[grown_from - 1:grown_from] == b"\n"
                and b'"' not in data and fmt and "%z" not in fmt and "%Z" not in fmt
                and before.get("last_session") and before.get("rows")):
            return FileRead(path, data, entry, "grown", before)
    return FileRead(path, data, entry, "whole", before or {})


def split_new_lines(f: FileRead) -> list[list[str]] | None:
    """The fields of the lines a grown file gained, split as ``pandas.read_csv`` (``dtype=str``,
    ``keep_default_na=False``, ``skipinitialspace=True``) splits them, in the required column
    order; ``None`` when a line is not plain (a blank line, a carriage return, a short or long
    row, a header that is not plain), and the file is then read whole by pandas."""
    head_end = f.data.find(b"\n")
    try:
        header = f.data[:head_end].decode("utf-8-sig")
        text = f.data[int(f.before["size"]):].decode("utf-8")
    except UnicodeDecodeError:
        return None
    names = [c.strip().lower() for c in header.split(",")]
    if head_end < 0 or "\r" in header or "\r" in text or len(set(names)) != len(names):
        return None
    try:
        order = [names.index(c) for c in REQUIRED_CSV_COLUMNS]
    except ValueError:
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = []
    for line in lines:
        fields = line.split(",")
        if not line.strip() or len(fields) != len(names):
            return None
        rows.append([fields[i].lstrip(" ") for i in order])
    return rows or None


def read_new_lines(grown: list[FileRead]) -> tuple[pd.DataFrame, list[FileRead]]:
    """The raw rows of the lines the ``grown`` files gained, numbered as in the whole files and
    with their recorded date formats, and the files whose new lines cannot stand for the whole
    file (module doc): those are to be read whole."""
    kept: list[FileRead] = []
    whole: list[FileRead] = []
    last: list[str] = []   # each row's file's recorded last session
    cols: dict[str, list] = {c: [] for c in [*REQUIRED_CSV_COLUMNS, "symbol", "source_file", "source_row", "date_format"]}
    for f in grown:
        rows = split_new_lines(f)
        if rows is None or not is_symbol(f.path.stem.upper()):
            whole.append(f)
            continue
        first = int(f.before["rows"]) + 2
        for j, row in enumerate(rows):
            for c, v in zip(REQUIRED_CSV_COLUMNS, row, strict=True):
                cols[c].append(v)
            cols["source_row"].append(first + j)
        n = len(rows)
        cols["symbol"] += [f.path.stem.upper()] * n
        cols["source_file"] += [str(f.path)] * n
        cols["date_format"] += [f.before["date_format"]] * n
        last += [f.before["last_session"]] * n
        kept.append(f)
    raw = pd.DataFrame(cols)
    if len(raw):
        raw["source_row"] = raw["source_row"].astype("int64")
        dates = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
        for fmt, idx in raw.groupby("date_format", sort=False).groups.items():
            dates.loc[idx] = pd.to_datetime(raw.loc[idx, "date"].str.strip(), format=fmt, errors="coerce")
        early = (dates.dt.normalize() <= pd.to_datetime(pd.Series(last, index=raw.index))).to_numpy()
        if early.any():   # a new line dated on or before the last session: read that file whole
            bad = set(raw.loc[early, "source_file"])
            whole += [f for f in kept if str(f.path) in bad]
            raw = raw.loc[~raw["source_file"].isin(bad)].reset_index(drop=True)
    return raw, whole


class CsvFolder(str):
    """A CSV folder's path (the ``str``) with a corporate-actions file given apart from it
    (``--actions FILE``): what :func:`ingest_csv_folder` passes to :func:`run_ingest` as the
    source's ``path``, so that the source, built there, knows both."""

    actions: str | None
    date_format: str | None

    def __new__(cls, folder: str | Path, actions: str | Path | None = None, date_format: str | None = None) -> CsvFolder:
        out = super().__new__(cls, str(Path(folder)))
        out.actions = None if actions is None else str(Path(actions))
        out.date_format = None if date_format is None else check_date_format(date_format, "date_format")
        return out


class CsvFolderSource(BarArchiveSource):
    """Every ``<SYMBOL>.csv`` of the folder ``path``, one all-or-nothing job per chunk of
    symbols, then one of its corporate actions; files unchanged since the last ingest skipped
    (module doc)."""

    name = "csv"

    def __init__(self, settings: Settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
        self.actions_given = getattr(path, "actions", None)   # --actions FILE (a CsvFolder path)
        self.format_given = getattr(path, "date_format", None)   # date_format= (a CsvFolder path)
        self._declared: tuple[str | None] | None = None
        self._pending: pd.DataFrame | None = None
        self._record: dict[str, dict] | None = None
        self._committed: dict[str, dict] = {}
        self._actions_read: set[str] = set()   # the actions files of this run (their rejects' quarantine)

    def folder(self) -> Path:
        if not self.path:
            raise ConfigError("csv reads a folder of <SYMBOL>.csv files: pass --path FOLDER")
        return Path(self.path).resolve()

    def declared_format(self) -> str | None:
        """The folder's declared date format: given (``date_format=``), else its ``format.toml``'s;
        both and different is an error."""
        if self._declared is None:
            inside = folder_date_format(self.folder())
            if self.format_given is not None and inside is not None and inside != self.format_given:
                raise ConfigError(f"date_format {self.format_given!r} given, but {self.folder() / FOLDER_SETTINGS} "
                                  f"declares {inside!r}: give one of them")
            self._declared = (self.format_given or inside,)
        return self._declared[0]

    def how_to_declare(self) -> str:
        return (f': date_format = "%d/%m/%Y" (day first) or "%m/%d/%Y" (month first) in '
                f"{self.folder() / FOLDER_SETTINGS}")

    def actions_file(self) -> Path | None:
        """The corporate-actions file of the run: ``--actions FILE``, else the folder's
        ``actions.csv`` (any case), else none."""
        inside = sorted(p for p in self.folder().iterdir() if csv_actions.is_actions_file(p) and p.is_file())
        if self.actions_given is not None:
            given = Path(self.actions_given).resolve()
            if not given.is_file():
                raise BadInputError([(str(given), None, "no such file (--actions FILE: a CSV of symbol,ex_date,split_ratio,cash_dividend)")])
            if any(p != given for p in inside):
                raise ConfigError(f"both --actions {given} and {inside[0]} give corporate actions: give one of them")
            return given
        if len(inside) > 1:
            raise BadInputError([(str(p), None, "more than one actions.csv in the folder: keep one") for p in inside])
        return inside[0] if inside else None

    def jobs(self, dataset: str, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> list[Job]:
        if symbols:
            raise ConfigError(f"csv reads every <SYMBOL>.csv of the folder; give no symbols (got {symbols})")
        by_symbol: dict[str, list[Path]] = defaultdict(list)
        for p in list_csv_files(self.folder()):
            by_symbol[p.stem.upper()].append(p)
        chunks = symbol_chunks(by_symbol, CHUNK_SYMBOLS)
        jobs = [Job(self.name, dataset, f"files {k}/{len(chunks)}", start, end,
                    files=tuple(str(p) for s in chunk for p in by_symbol[s]))
                for k, chunk in enumerate(chunks, 1)]
        actions = self.actions_file()
        if actions is not None:   # last: its actions are written after the run's bars
            jobs.append(Job(self.name, dataset, ACTIONS_JOB, start, end, files=(str(actions),)))
        return jobs

    def record(self) -> dict[str, dict]:
        if self._record is None:
            self._record = read_file_record(self.settings, self.name)
        return self._record

    def fetch_parse(self, job: Job) -> Parsed:
        if job.symbol == ACTIONS_JOB:
            return self.fetch_actions(job)
        folder = self.folder()
        files = [Path(f) for f in job.files]
        declared = self.declared_format()
        reads = [plan_read(p, self.record().get(str(p)), declared=declared) for p in files]
        new_lines, again = read_new_lines([f for f in reads if f.mode == "grown"])
        frames, problems = [new_lines], []
        for f in again:
            f.mode = "whole"
        for f in reads:
            if f.mode != "whole":
                continue
            raw, problem = parse_csv(f.path, f.data)
            if problem:
                problems.append(problem)
                continue
            fmt, problem = resolve_date_format(raw["date"], declared, self.how_to_declare())
            if problem:
                problems.append((str(f.path), int(raw["source_row"].iloc[0]), problem))
                continue
            frames.append(raw.assign(date_format=fmt))
        raw = _concat([x for x in frames if len(x)])
        validated = validate_bars(raw, self.settings.calendar, delay_minutes=self.settings.bar_delay_minutes)
        batch_key = f"csv:{folder}:" + ",".join(f"{f.path.name}:{f.entry['size']}:{f.entry['mtime_ns']}" for f in reads)
        unchanged = [f for f in reads if f.mode == "unchanged"]
        common = {"rows_fetched": len(raw), "batch_key": batch_key, "unchanged_files": len(unchanged),
                  "unchanged_rows": sum(int(f.entry.get("rows") or 0) for f in unchanged)}
        if problems or len(validated.rejects):
            rejects = validated.rejects if len(validated.rejects) else None
            return Parsed(rejects=rejects, problems=problems + validated.problems, **common)
        good = validated.good
        entries = self._entries(reads, raw, good)
        payload = good["source_file"].map({str(f.path): f.entry["sha256"] for f in reads})   # the whole file's, as landed
        return Parsed(
            tables={"bars_daily": good.assign(source=f"csv:{folder.name}", payload=payload)} if len(good) else {},
            land=[(f.path, f"{folder.name}/{f.path.name}") for f in reads if f.mode != "unchanged"],
            symbols=sorted({f.path.stem.upper() for f in reads}),
            on_commit=lambda: self._committed.update(entries),
            **common,
        )

    @staticmethod
    def _entries(reads: list[FileRead], raw: pd.DataFrame, good: pd.DataFrame) -> dict[str, dict]:
        """What to record for each file of a clean chunk once it is in silver."""
        rows = raw.groupby("source_file").size().to_dict() if len(raw) else {}
        last = good.groupby("source_file")["session"].max().to_dict() if len(good) else {}
        formats = raw.groupby("source_file")["date_format"].first().to_dict() if len(raw) else {}
        out = {}
        for f in reads:
            key, entry = str(f.path), dict(f.entry)
            if f.mode != "unchanged":
                read, newest = int(rows.get(key, 0)), last.get(key)
                if f.mode == "grown":   # the new lines are all dated after the recorded last session
                    read += int(f.before["rows"])
                    newest = newest if newest is not None else f.before["last_session"]
                fmt = formats.get(key)
                entry.update(rows=read, last_session=None if newest is None else f"{pd.Timestamp(newest):%Y-%m-%d}",
                             date_format=fmt if isinstance(fmt, str) else None)
            out[key] = entry
        return out

    def fetch_actions(self, job: Job) -> Parsed:
        """The corporate actions of the run's actions file: not read when it is unchanged since
        it was ingested (and the actions table is there), else read whole."""
        path = Path(job.files[0])
        self._actions_read.add(str(path))
        data = path.read_bytes()
        before = self.record().get(str(path)) or {}
        entry = {"size": len(data), "mtime_ns": path.stat().st_mtime_ns, "sha256": hashlib.sha256(data).hexdigest(),
                 "kind": "actions"}
        key = f"csv-actions:{path}:{entry['size']}:{entry['mtime_ns']}"
        from etl.storage.actions import actions_path

        if before.get("sha256") == entry["sha256"] and before.get("size") == entry["size"] and actions_path(self.settings).exists():
            entry["rows"] = before.get("rows")
            return Parsed(batch_key=key, unchanged_files=1, unchanged_rows=int(before.get("rows") or 0),
                          on_commit=lambda: self._committed.update({str(path): entry}))
        read = csv_actions.read_actions(path, data, self.settings.calendar, self.symbols_with_bars, entry["sha256"],
                                        date_format=self.declared_format(), how=self.how_to_declare())
        if read.problems:
            return Parsed(rejects=read.rejects if len(read.rejects) else None, problems=read.problems, rows_fetched=read.rows,
                          batch_key=key)
        entry["rows"] = read.rows
        return Parsed(
            tables={"corporate_actions": read.actions} if len(read.actions) else {},
            land=[(path, f"{self.folder().name}/{path.name}")],
            symbols=sorted(set(read.actions["symbol"])),
            rows_fetched=read.rows, batch_key=key,
            on_commit=lambda: self._committed.update({str(path): entry}),
        )

    def pending_actions(self) -> pd.DataFrame | None:
        """The good actions of the run's actions file (read for the bars' plausibility check,
        before its own job reads and checks it)."""
        if self._pending is None:
            path = self.actions_file()
            if path is None:
                self._pending = pd.DataFrame(columns=csv_actions.COLUMNS)
            else:
                self._pending = csv_actions.read_actions(path, path.read_bytes(), self.settings.calendar, lambda s: s, "",
                                                         date_format=self.declared_format()).actions
        return self._pending

    def symbols_with_bars(self, symbols: set[str]) -> set[str]:
        """Which of ``symbols`` have bars: a ``<SYMBOL>.csv`` of the folder, or rows in silver."""
        have = symbols & {p.stem.upper() for p in list_csv_files(self.folder())}
        rest = sorted(symbols - have)
        if rest:
            import pyarrow as pa
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            for part in bar_files(self.settings, rest):
                col = pq.read_table(part, columns=["symbol"]).column("symbol")
                have |= set(pc.unique(col.filter(pc.is_in(col, value_set=pa.array(rest, pa.string())))).to_pylist())
        return have

    def quarantine(self, table: str, rejects: pd.DataFrame, batch_key: str, now: pd.Timestamp) -> Path:
        """Rejected bars to the bars quarantine, rejected actions to ``quarantine/corporate_actions/``;
        the one folder, or the quarantine root when there are both."""
        from etl.storage import silver

        acts = rejects["source_file"].astype(str).isin(self._actions_read).to_numpy()
        paths = []
        if (~acts).any():
            paths.append(super().quarantine(table, rejects.loc[~acts], batch_key, now))
        if acts.any():
            paths.append(silver.quarantine(self.settings, "corporate_actions", rejects.loc[acts].assign(source=csv_actions.SOURCE),
                                           batch_key, now))
        return paths[0] if len(paths) == 1 else self.settings.quarantine

    def flush(self) -> None:
        """Merge what the chunks written recorded into the record on disk (under the write lock)."""
        if not self._committed:
            return
        files = read_file_record(self.settings, self.name)
        files.update(self._committed)
        write_file_record(self.settings, self.name, files)
        self._record = files
        self._committed = {}


def ingest_csv_folder(settings: Settings, folder: str | Path, now: pd.Timestamp | None = None, step=None,
                      actions: str | Path | None = None, date_format: str | None = None) -> IngestReport:
    """Ingest a folder of ``<SYMBOL>.csv`` files (columns date,open,high,low,close,volume) and
    its corporate actions (``actions``, else the folder's ``actions.csv`` if there is one);
    ``date_format`` declares how its dates are written where they are not year-first (else
    the folder's ``format.toml`` may; module doc); ``step`` follows the validate and write
    passes (:func:`etl.sources.base.run_ingest`)."""
    summary = run_ingest(settings, "csv", "daily", None, *EVERY_DAY, now=clock.utc_us(now),
                         path=CsvFolder(folder, actions, date_format), step=step)
    return IngestReport.of(summary)

