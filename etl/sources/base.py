"""The ingest pipeline every source runs through.

For each job (one source, dataset and symbol over a date range):

1. fetch: every response body is landed in bronze, filed under the job,
   *before* the source parses it (:meth:`Source.get_json`);
2. parse and validate: the source returns rows per silver table and the
   rows it rejected, each with a reason;
3. write: rejected rows to quarantine, good rows appended to silver (a lock
   serialises writers, so ``--parallel`` workers never race on a partition);
4. advance the watermark, only after silver is committed.

A crash between any two steps leaves the store valid; rerunning the same
command fetches the same range again and the idempotent silver append makes
it a no-op. A failing job (bad key, vendor down, malformed payload) is
reported with its error and does not stop the other jobs.

A source with :attr:`Source.all_or_nothing` (archives of files: Lean daily
bars, CSV folders) runs in two passes (:func:`_run_all_or_nothing`):

1. validate: every job is read, parsed and validated in turn, and its good
   rows are staged on disk (``<home>/.staging/``) when there are several jobs,
   so the run holds one job's rows at a time (a CSV folder is one job per chunk
   of 64 symbols). One rejected row or unreadable file anywhere stops the run
   after this pass: the rejected rows go to quarantine with their reasons,
   :class:`BadInputError` names each file and row, and nothing is landed or
   written: silver is left exactly as it was;
2. write: under the write lock, every file is landed in bronze, then each
   job's rows are written to silver, one job after the other, and the job's
   ``on_commit`` runs (a CSV folder records what it ingested per file).

A crash in the write pass leaves the jobs written so far, each whole; running
the same command again writes the others (the write is idempotent). Any error
other than bad input is raised as it is.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from etl.core import clock
from etl.core.config import Settings, require_writable
from etl.core.errors import AlphaError, BadInputError, BadSymbolError, ConfigError, VendorUnavailableError
from etl.storage import silver
from etl.storage.atomic import HomeLock
from etl.storage.tables import ALL as TABLES
from etl.storage.watermarks import WatermarkStore, open_watermarks

#: The one symbol rule of every source (command-line symbols, CSV file names, FX pairs,
#: Lean tickers): 1-20 of A-Z 0-9 . - = ^ _, starting with a letter or digit. Symbols
#: become partition folders and vendor URL paths; with no ``/`` and no leading dot, no
#: symbol can be a path segment like ``..`` that escapes a folder or a URL.
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-=^_]{0,19}$")
SYMBOL_RULE = "1-20 of A-Z 0-9 . - = ^ _, starts with a letter or digit"


def is_symbol(text: str) -> bool:
    """Whether ``text`` (already upper case) follows :data:`SYMBOL_RE`."""
    return SYMBOL_RE.match(text) is not None


def check_symbols(symbols: list[str]) -> list[str]:
    """Upper-cased symbols, or :class:`BadSymbolError` naming each bad one.

    Symbols become partition folders and vendor URL paths, so anything that
    could escape a folder (``../../etc``) or a URL is refused up front."""
    out, bad = [], []
    for s in symbols:
        t = str(s).strip().upper()
        if not is_symbol(t):
            bad.append(s)
        else:
            out.append(t)
    if bad:
        raise BadSymbolError(f"not valid symbol(s): {bad!r}; a symbol is {SYMBOL_RULE}")
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Job:
    source: str
    dataset: str
    symbol: str
    start: pd.Timestamp          # naive date, inclusive
    end: pd.Timestamp            # naive date, inclusive
    files: tuple[str, ...] = ()  # file sources: the files the job reads, when the source lists them up front

    def __str__(self) -> str:
        return f"{self.source}.{self.dataset} {self.symbol} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"


@dataclass
class Parsed:
    """What one job produced: rows per silver table, rejected rows (quarantine
    columns: source, source_file, source_row, symbol, raw, reason), the new
    watermark and how many rows the vendor sent.

    All-or-nothing sources also give every problem as ``(file, row, reason)``
    (rejected rows and unreadable files), the files to land in bronze once the
    run is known to be good, the symbols their rows are for, the files they did
    not read because they are unchanged since they were ingested (and those
    files' rows), and what to run once the job's rows are in silver."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    rejects: pd.DataFrame | None = None
    high_water: str | None = None
    rows_fetched: int = 0
    batch_key: str = ""
    problems: list[tuple[str, int | None, str]] = field(default_factory=list)
    land: list[tuple[Path, str]] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    unchanged_files: int = 0
    unchanged_rows: int = 0
    on_commit: Callable[[], None] | None = None


class Limiters:
    """Several rate limiters in turn: the vendor client's own token bucket and a
    shared one (e.g. a Prefect rate limit that spans every worker)."""

    def __init__(self, *limiters):
        self.limiters = [x for x in limiters if x is not None]

    def acquire(self) -> None:
        for limiter in self.limiters:
            limiter.acquire()


class Source:
    """A data source. Subclasses set ``name`` and ``datasets`` and implement
    :meth:`fetch_parse`; HTTP sources build their client with :meth:`http`,
    which lands every response in bronze before the source sees it."""

    name: str = ""
    datasets: tuple[str, ...] = ()
    needs_symbols: bool = True
    default_rate: float = 5.0     # requests per second unless [vendors.<name>] rate is set
    all_or_nothing: bool = False  # validate every job before writing any; one reject stops the run (module doc)

    def __init__(self, settings: Settings, path: str | None = None, limiter=None):
        self.settings = settings
        self.path = path   # file sources: the folder to read (the CLI's --path)
        self.shared_limiter = limiter   # acquired before every request, with the client's own

    def land(self, fetched, job: Job | None = None) -> None:
        """Keep one vendor response in bronze, filed under the job's dataset."""
        from etl.storage.bronze import land_payload

        land_payload(self.settings, fetched, job.dataset if job is not None else "adhoc")

    def get_json(self, job: Job | None, path_or_url: str, params: dict | None = None):
        """``(fetched, decoded JSON)`` of a GET through this source's client (``self.client``,
        built by :meth:`http`): the body is landed in bronze for ``job`` before it is decoded."""
        fetched = self.client.get(path_or_url, params)
        self.land(fetched, job)
        return fetched, fetched.json()

    def http(self, default_base_url: str, *, key_env: str | None = None, key_param: str | None = None,
             headers: dict | None = None):
        """This vendor's client: base URL, rate (requests/s, default :attr:`default_rate`), burst,
        retries and timeout from ``[vendors.<name>]`` in config.toml or ``ALPHA_<NAME>_BASE_URL`` /
        ``ALPHA_<NAME>_RATE``. Fetch through :meth:`get_json`, which lands each body in bronze."""
        from etl.core.http import HttpClient, RateLimiter, require_secret, settings_secrets

        cfg = self.settings.vendor(self.name)
        api_key = require_secret(key_env, self.name, self.settings.home) if key_env else None
        rate, burst = _rate(cfg, self.default_rate)
        own = RateLimiter(rate, burst=burst)
        return HttpClient(
            source=self.name,
            base_url=str(cfg.get("base_url", default_base_url)),
            api_key=api_key,
            key_param=key_param,
            headers=headers or {},
            limiter=own if self.shared_limiter is None else Limiters(own, self.shared_limiter),
            max_retries=int(cfg.get("max_retries", 4)),
            backoff=float(cfg.get("backoff", 0.5)),
            timeout=float(cfg.get("timeout", 20.0)),
            # the warehouse's own secrets (config.toml, the Redis password) are masked in bodies too
            redact_values=settings_secrets(self.settings),
        )

    def jobs(self, dataset: str, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> list[Job]:
        return [Job(self.name, dataset, s, start, end) for s in symbols]

    def fetch_parse(self, job: Job) -> Parsed:  # pragma: no cover - interface
        raise NotImplementedError

    def quarantine(self, table: str, rejects: pd.DataFrame, batch_key: str, now: pd.Timestamp) -> Path | None:
        """Keep rejected rows with their reasons (``quarantine/<table>/``)."""
        return silver.quarantine(self.settings, table, rejects, batch_key, now)

    def pending_actions(self) -> pd.DataFrame | None:
        """Corporate actions this run will write in a later job (a CSV folder's ``actions.csv``,
        its last job): the bars' plausibility check (:func:`screen_bars`) takes them as known."""
        return None

    def flush(self) -> None:
        """All-or-nothing sources: called under the write lock once the write pass ends (also
        when it failed), to persist what the ``on_commit`` of the jobs written recorded."""

    def close(self) -> None:
        pass


#: source name -> "module:Class"; imported only when used
REGISTRY: dict[str, str] = {
    "polygon": "etl.sources.vendors.polygon:PolygonSource",
    "edgar": "etl.sources.vendors.edgar:EdgarSource",
    "fred": "etl.sources.vendors.fred:FredSource",
    "lean": "etl.sources.lean.datasets:LeanSource",
    "stocknet": "etl.sources.news_files:StocknetSource",
    "fx": "etl.sources.fx:FxCsvSource",
    "csv": "etl.sources.csv_folder:CsvFolderSource",
}

#: (source, dataset) -> "module:Class" where one dataset of a source is its own class
#: (Lean daily bars run all-or-nothing, the other Lean datasets row by row)
DATASET_REGISTRY: dict[tuple[str, str], str] = {
    ("lean", "daily"): "etl.sources.lean.daily:LeanDailySource",
}


def get_source(name: str, settings: Settings, path: str | None = None, limiter=None, dataset: str | None = None) -> Source:
    """The source ``name`` (the class of ``dataset`` when that dataset has its own); ``limiter``
    (anything with ``acquire()``) is taken before every vendor request on top of the vendor's
    own rate from config."""
    return get_source_class(name, dataset)(settings, path=path, limiter=limiter)


def get_source_class(name: str, dataset: str | None = None) -> type[Source]:
    target = DATASET_REGISTRY.get((name, dataset)) if dataset else None
    if target is None:
        if name not in REGISTRY:
            raise ConfigError(f"unknown source {name!r}; known: {', '.join(sorted(REGISTRY))}")
        target = REGISTRY[name]
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def vendor_rate(settings: Settings, name: str) -> tuple[float, int]:
    """``(requests per second, burst)`` configured for a source (``[vendors.<name>]``), or the
    source's default."""
    return _rate(settings.vendor(name), get_source_class(name).default_rate)


def _rate(cfg: dict, default_rate: float) -> tuple[float, int]:
    return float(cfg.get("rate", default_rate)), int(cfg.get("burst", 1))


@dataclass
class JobResult:
    job: Job
    rows_fetched: int = 0
    written: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    quarantined: int = 0
    quarantine_path: str | None = None
    skipped: str | None = None
    error: str | None = None
    transient: bool = False      # the error may go away on a retry (vendor down, network); not a 4xx or bad payload
    seconds: float = 0.0
    revised: int = 0             # of the rows written, how many are revisions of stored rows (daily bars)
    symbols: list[str] = field(default_factory=list)   # all-or-nothing sources: the symbols written
    unchanged_files: int = 0     # all-or-nothing sources: files not read, unchanged since they were ingested


@dataclass
class IngestSummary:
    source: str
    dataset: str
    results: list[JobResult]
    seconds: float

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if r.error]

    @property
    def rows_fetched(self) -> int:
        return sum(r.rows_fetched for r in self.results)

    @property
    def rows_written(self) -> int:
        return sum(sum(r.written.values()) for r in self.results)

    @property
    def rows_quarantined(self) -> int:
        return sum(r.quarantined for r in self.results)

    def text(self) -> str:
        ok = len(self.results) - len(self.failed)
        skipped = sum(1 for r in self.results if r.skipped)
        lines = [
            f"{self.source}.{self.dataset}: {ok}/{len(self.results)} jobs ok"
            + (f" ({skipped} already up to date)" if skipped else "")
            + f"; rows fetched {self.rows_fetched:,}, written {self.rows_written:,}, "
            f"unchanged {sum(r.unchanged for r in self.results):,}, quarantined {self.rows_quarantined:,} "
            f"in {self.seconds:.1f} s"
        ]
        for r in self.results:
            if r.quarantined:
                lines.append(f"  quarantined {r.quarantined} row(s) of {r.job.symbol}: {r.quarantine_path}")
        for r in self.failed:
            lines.append(f"  FAILED {r.job}: {r.error}")
        return "\n".join(lines)




@dataclass
class IngestReport:
    """What an all-or-nothing ingest of an archive wrote (:func:`etl.sources.lean.daily.ingest_lean`,
    :func:`etl.sources.csv_folder.ingest_csv_folder`)."""

    source: str
    files: int
    rows_read: int
    new: int
    revised: int
    unchanged: int
    symbols: list[str] = field(default_factory=list)
    unchanged_files: int = 0     # files not read: the same bytes as when they were last ingested

    def summary(self) -> str:
        skipped = f" ({self.unchanged_files} unchanged since the last ingest, not read)" if self.unchanged_files else ""
        return (
            f"{self.source}: {self.files} files{skipped}, {self.rows_read} rows read, {len(self.symbols)} symbols; "
            f"silver: {self.new} new, {self.revised} revised, {self.unchanged} unchanged"
        )

    @classmethod
    def of(cls, summary: IngestSummary) -> IngestReport:
        written = sum(sum(r.written.values()) for r in summary.results)
        revised = sum(r.revised for r in summary.results)
        return cls(
            summary.source,
            files=sum(len(r.job.files) for r in summary.results),
            rows_read=summary.rows_fetched,
            new=written - revised,
            revised=revised,
            unchanged=sum(r.unchanged for r in summary.results),
            symbols=sorted({s for r in summary.results for s in r.symbols}),
            unchanged_files=sum(r.unchanged_files for r in summary.results),
        )


#: the date range of a job that ingests a whole archive (every file, whatever its dates)
EVERY_DAY = (pd.Timestamp("1900-01-01"), pd.Timestamp("2199-12-31"))


class BarArchiveSource(Source):
    """An archive of daily-bar files (Lean daily, a CSV folder) ingested whole: one job of
    every file, all-or-nothing, rejected bars kept in the bars quarantine."""

    datasets = ("daily",)
    needs_symbols = False
    all_or_nothing = True

    def quarantine(self, table: str, rejects: pd.DataFrame, batch_key: str, now: pd.Timestamp) -> Path:
        from etl.storage.bars import quarantine_rejects

        return quarantine_rejects(self.settings, rejects, batch_key, now)


def ingest_archive(settings: Settings, source_name: str, path: str | Path, symbols: list[str] | None = None,
                   now: pd.Timestamp | None = None, step: Callable[[str, int, int], None] | None = None) -> IngestReport:
    """Ingest the archive at ``path`` with the :class:`BarArchiveSource` ``source_name``, written
    at ``now`` (default: the wall clock), and report it as an :class:`IngestReport`. ``step``
    follows the two passes (see :func:`run_ingest`)."""
    summary = run_ingest(settings, source_name, "daily", symbols, *EVERY_DAY, now=clock.utc_us(now), path=str(Path(path)), step=step)
    return IngestReport.of(summary)


def plan(source: Source, dataset: str, symbols: list[str], start, end, incremental: bool, marks: WatermarkStore) -> tuple[list[Job], list[JobResult]]:
    """Jobs to run and jobs already up to date (incremental: from the day after
    each symbol's watermark)."""
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if start > end:
        raise ConfigError(f"--start {start:%Y-%m-%d} is after --end {end:%Y-%m-%d}")
    todo, done = [], []
    for job in source.jobs(dataset, symbols, start, end):
        if incremental:
            mark = marks.get(job.source, job.dataset, job.symbol)
            if mark is not None:
                nxt = pd.Timestamp(mark[:10]) + pd.Timedelta(days=1)
                if nxt > job.end:
                    done.append(JobResult(job, skipped=f"watermark {mark} covers the range"))
                    continue
                job = replace(job, start=max(job.start, nxt))
        todo.append(job)
    return todo, done


def run_ingest(
    settings: Settings,
    source_name: str,
    dataset: str,
    symbols: list[str] | None,
    start,
    end,
    incremental: bool = False,
    parallel: int = 1,
    progress: Callable[[JobResult, int], None] | None = None,
    now: pd.Timestamp | None = None,
    path: str | None = None,
    limiter=None,
    step: Callable[[str, int, int], None] | None = None,
) -> IngestSummary:
    """Run every job of one source and dataset; see the module docstring. ``limiter``
    (with ``acquire()``) is shared by every request on top of the vendor's own rate.
    ``progress(result, total)`` follows the jobs; for an all-or-nothing source
    ``step(pass, jobs done, jobs)`` also follows its two passes (``"validate"``, ``"write"``)."""
    t0 = time.perf_counter()
    require_writable(settings)   # a read-only home fails here, with the reason, before any request
    source = get_source(source_name, settings, path=path, limiter=limiter, dataset=dataset)
    if dataset not in source.datasets:
        raise ConfigError(f"{source_name} has no dataset {dataset!r}; it has: {', '.join(source.datasets)}")
    if source.needs_symbols and not symbols:
        raise ConfigError(f"{source_name}.{dataset} needs symbols, e.g. AAPL,MSFT")
    symbols = check_symbols(symbols or [])
    if parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {parallel}")
    silver.recover(settings)
    # an all-or-nothing run opens the watermark store only if it needs it
    marks = None if source.all_or_nothing and not incremental else open_watermarks(settings)
    write_lock = HomeLock(settings.home)
    try:
        todo, results = plan(source, dataset, symbols, start, end, incremental, marks)
        total = len(todo) + len(results)
        for r in results:
            if progress:
                progress(r, total)
        if source.all_or_nothing:
            for r in _run_all_or_nothing(settings, source, todo, now, write_lock, step):
                results.append(r)
                if progress:
                    progress(r, total)
        else:
            _run_each(settings, source, todo, results, now, write_lock, marks, parallel, lambda r: progress and progress(r, total))
    finally:
        source.close()
        if marks is not None:
            marks.dispose()
    order = {s: i for i, s in enumerate(symbols)}
    results.sort(key=lambda r: order.get(r.job.symbol, len(order)))
    return IngestSummary(source_name, dataset, results, time.perf_counter() - t0)


def _stamp(now: pd.Timestamp | None) -> pd.Timestamp:
    return now if now is not None else clock.utc_now()


def _run_each(settings: Settings, source: Source, todo: list[Job], results: list[JobResult], now, write_lock: HomeLock,
              marks: WatermarkStore, parallel: int, report: Callable[[JobResult], object]) -> None:
    """Row-level runs: each job fetched, parsed and written on its own; a failing job is
    reported in its result and the other jobs go on."""

    def run(job: Job) -> JobResult:
        t = time.perf_counter()
        res = JobResult(job)
        try:
            parsed = source.fetch_parse(job)
            screen_bars(settings, source, job, parsed)
            res.rows_fetched = parsed.rows_fetched
            stamp = _stamp(now)
            with write_lock:
                _quarantine(source, job, parsed, res, stamp)
                _write(settings, parsed, res, stamp)
                if parsed.high_water:
                    marks.advance(job.source, job.dataset, job.symbol, parsed.high_water, sum(res.written.values()))
        except AlphaError as exc:
            res.error = str(exc)
            res.transient = isinstance(exc, VendorUnavailableError)
        except OSError as exc:  # network or disk trouble below the vendor client
            res.error, res.transient = f"{type(exc).__name__}: {exc}", True
        except Exception as exc:  # noqa: BLE001 -- a bug or an unexpected library error: report it in the job, keep going
            res.error = f"{type(exc).__name__}: {exc}"
        res.seconds = time.perf_counter() - t
        return res

    if parallel == 1 or len(todo) <= 1:
        for job in todo:
            r = run(job)
            results.append(r)
            report(r)
    else:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix=f"ingest-{source.name}") as pool:
            futures = [pool.submit(run, job) for job in todo]
            for fut in as_completed(futures):
                r = fut.result()
                results.append(r)
                report(r)


def _run_all_or_nothing(settings: Settings, source: Source, todo: list[Job], now, write_lock: HomeLock,
                        step: Callable[[str, int, int], None] | None = None) -> list[JobResult]:
    """The two passes of an all-or-nothing run (module doc): every job parsed and validated,
    its good rows staged; any problem -> quarantine and :class:`BadInputError` with nothing
    written; else every file landed in bronze and each job written in turn."""
    t = time.perf_counter()
    stamp = _stamp(now)
    staging = _Staging(settings) if len(todo) > 1 else None
    try:
        staged: list[tuple[Job, Parsed, dict[str, Path]]] = []
        problems: list[tuple[str, int | None, str]] = []
        bad: list[tuple[Job, Parsed]] = []
        for i, job in enumerate(todo):
            x = source.fetch_parse(job)
            screen_bars(settings, source, job, x)
            found = x.problems or _problems(x.rejects)
            if found:
                problems += found
                if x.rejects is not None and len(x.rejects):
                    bad.append((job, x))
            elif not problems:   # once the run is known to fail, keep no rows
                kept = {name: staging.put(frame) for name, frame in x.tables.items()} if staging else {}
                staged.append((job, replace(x, tables={}) if staging else x, kept))
            if step:
                step("validate", i + 1, len(todo))
        if problems:
            where = None
            if bad:
                rejects = pd.concat([x.rejects for _, x in bad], ignore_index=True)
                key = ";".join(x.batch_key or str(job) for job, x in bad)
                where = source.quarantine(next(iter(bad[0][1].tables), bad[0][0].dataset), rejects, key, stamp)
            raise BadInputError(problems, str(where) if where is not None else None)
        return _write_staged(settings, source, staged, staging, stamp, write_lock, step, t)
    finally:
        if staging is not None:
            staging.close()


def _write_staged(settings: Settings, source: Source, staged: list, staging: _Staging | None, stamp: pd.Timestamp,
                  write_lock: HomeLock, step, t: float) -> list[JobResult]:
    results = []
    marks = None
    try:
        with write_lock:
            try:
                land = [pair for _, x, _ in staged for pair in x.land]
                if land:
                    from etl.storage.bronze import land_files

                    land_files(settings, source.name, land, stamp)
                for i, (job, x, kept) in enumerate(staged):
                    if staging is not None:
                        x.tables = {name: staging.get(path) for name, path in kept.items()}
                    res = JobResult(job, rows_fetched=x.rows_fetched, symbols=list(x.symbols), unchanged=x.unchanged_rows,
                                    unchanged_files=x.unchanged_files)
                    _write(settings, x, res, stamp)
                    x.tables = {}
                    if x.high_water:
                        marks = marks or open_watermarks(settings)
                        marks.advance(job.source, job.dataset, job.symbol, x.high_water, sum(res.written.values()))
                    if x.on_commit is not None:
                        x.on_commit()
                    res.seconds = time.perf_counter() - t
                    results.append(res)
                    if step:
                        step("write", i + 1, len(staged))
            finally:
                source.flush()
    finally:
        if marks is not None:
            marks.dispose()
    return results


class _Staging:
    """The validated rows of an all-or-nothing run waiting for its write pass, one Parquet
    file per job and table in ``<home>/.staging/<pid>-<n>/``, deleted when the run ends (a
    crashed run's folder is deleted by the next run)."""

    def __init__(self, settings: Settings):
        self.root = settings.home / ".staging"
        self.dir: Path | None = None
        self.n = 0

    def put(self, frame: pd.DataFrame) -> Path:
        if self.dir is None:
            self.root.mkdir(parents=True, exist_ok=True)
            silver.remove_dead_stages(self.root)
            self.dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.root))
        self.n += 1
        path = self.dir / f"{self.n:05d}.parquet"
        frame.to_parquet(path, index=False)
        return path

    @staticmethod
    def get(path: Path) -> pd.DataFrame:
        return pd.read_parquet(path)

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def screen_bars(settings: Settings, source: Source, job: Job, parsed: Parsed) -> None:
    """Move the daily bars of ``parsed`` that cannot be true (a session in the future, an absurd
    price, an unexplained jump: :mod:`etl.quality.plausible`) to its rejects, each with its
    file, row and reason (and, for an all-or-nothing source, to its problems, which stop the
    run); the watermark never passes the last completed session. Every bar source goes through
    it, after its own parse and validation and before anything is written."""
    bars = parsed.tables.get("bars_daily")
    if bars is None or not len(bars):
        return
    from etl.quality.plausible import screen_bars as reasons_of

    src = str(bars["source"].iloc[0]) if "source" in bars.columns else source.name
    reasons = reasons_of(bars, calendar=settings.calendar, delay_minutes=settings.bar_delay_minutes,
                         max_jump=settings.max_price_jump, stored=_stored_closes(settings, bars, src),
                         actions=_known_actions(settings, source, parsed))
    if parsed.high_water:
        last = clock.last_completed_session(settings.bar_delay_minutes, settings.calendar)
        parsed.high_water = min(parsed.high_water, f"{last:%Y-%m-%d}")
    bad = reasons != ""
    if not bad.any():
        return
    rows = bars.loc[bad]
    session = pd.to_datetime(rows["session"]).dt.strftime("%Y-%m-%d")
    values = rows[["open", "high", "low", "close", "volume"]].astype(str)
    raw = session.str.cat([values[c] for c in values.columns], sep=",")
    rejects = pd.DataFrame({
        "source": source.name,
        "source_file": rows["source_file"].astype(str).to_numpy() if "source_file" in rows else str(job),
        "source_row": rows["source_row"].to_numpy() if "source_row" in rows else pd.NA,
        "symbol": rows["symbol"].astype(str).to_numpy(),
        "raw": raw.to_numpy(),
        "reason": reasons[bad],
    })
    if parsed.rejects is not None and len(parsed.rejects):
        rejects = pd.concat([parsed.rejects, rejects[[c for c in rejects.columns if c in parsed.rejects.columns]]],
                            ignore_index=True)
    parsed.rejects = rejects
    parsed.tables["bars_daily"] = bars.loc[~bad].reset_index(drop=True)
    if source.all_or_nothing:
        parsed.problems = list(parsed.problems) + _problems(rejects.iloc[len(rejects) - int(bad.sum()):])


#: sessions before a batch's first one searched for the stored previous close (then the whole history, per symbol)
def _stored_closes(settings: Settings, bars: pd.DataFrame, source_name: str) -> pd.DataFrame | None:
    """The latest stored close of each (symbol, session) of ``source_name`` from :data:`plausible.MAX_GAP`
    before the batch's first session to its last: every previous close the batch can be compared
    with (a close further back is never a reference, :func:`plausible.jump_reasons`)."""
    from etl.quality import plausible
    from etl.storage.bars import _read

    symbols = sorted(bars["symbol"].astype(str).unique())
    sessions = pd.to_datetime(bars["session"])
    cols = ["symbol", "session", "close", "source", "known_timestamp", "created_timestamp"]
    frame = _read(settings, symbols, sessions.min() - plausible.MAX_GAP, sessions.max(), columns=cols)
    if frame is None or not len(frame):
        return None
    frame = frame[frame["source"].astype(str) == source_name]
    return frame.sort_values(["known_timestamp", "created_timestamp"], kind="stable").drop_duplicates(
        ["symbol", "session"], keep="last")[["symbol", "session", "close"]]


def _known_actions(settings: Settings, source: Source, parsed: Parsed) -> pd.DataFrame | None:
    """The corporate actions a batch's bars may cross: stored in silver (as known now, read once
    per run), of the same job (Lean factor files) and of a later job of the run (a CSV folder's
    ``actions.csv``)."""
    from etl.storage.actions import actions_from_factor_rows, read_actions

    if not hasattr(source, "_stored_actions"):
        source._stored_actions = read_actions(settings)
    parts = [source._stored_actions, source.pending_actions()]
    same = parsed.tables.get("corporate_actions")
    if same is not None and len(same):
        parts.append(same if "split_ratio" in same.columns else actions_from_factor_rows(same))
    parts = [p for p in parts if p is not None and len(p)]
    return pd.concat(parts, ignore_index=True) if parts else None


def _problems(rejects: pd.DataFrame | None) -> list[tuple[str, int | None, str]]:
    if rejects is None or not len(rejects):
        return []
    rows = [None if pd.isna(r) else int(r) for r in rejects["source_row"]]
    return list(zip(rejects["source_file"].astype(str), rows, rejects["reason"].astype(str), strict=True))


def _quarantine(source: Source, job: Job, parsed: Parsed, res: JobResult, stamp: pd.Timestamp) -> None:
    if parsed.rejects is not None and len(parsed.rejects):
        key = parsed.batch_key or str(job)
        table = next(iter(parsed.tables), job.dataset)
        path = source.quarantine(table, parsed.rejects, key, stamp)
        res.quarantined, res.quarantine_path = len(parsed.rejects), str(path)


def _write(settings: Settings, parsed: Parsed, res: JobResult, stamp: pd.Timestamp) -> None:
    for name, frame in parsed.tables.items():
        stats = _write_stats(settings, name, frame, stamp)
        res.written[name] = stats["new"] + stats["revised"]
        res.revised += stats["revised"]
        res.unchanged += stats["unchanged"]


def _write_stats(settings: Settings, name: str, frame: pd.DataFrame, now: pd.Timestamp) -> dict[str, int]:
    """``{new, revised, unchanged}`` rows of one write. Daily bars go through the revision-aware
    writer, corporate actions through the bitemporal actions writer (Lean's factor-file actions, a
    side table of its daily job, counted as nothing); Lean's symbol map replaces its table (counted
    as nothing)."""
    if name == "bars_daily":
        from etl.storage.bars import write_silver_bars

        return write_silver_bars(settings, frame, source=str(frame["source"].iloc[0]) if "source" in frame and len(frame) else name, now=now)
    if name == "corporate_actions":
        from etl.storage.actions import write_actions, write_corporate_actions

        # actions (symbol, ex_date, split_ratio, cash_dividend, ...), or Lean factor-file rows: a side
        # table of Lean's daily job, counted as nothing (its counts are the bars')
        if "split_ratio" in frame.columns:
            return write_actions(settings, frame, now)
        write_corporate_actions(settings, frame, now)
        return {"new": 0, "revised": 0, "unchanged": 0}
    if name == "symbol_map":
        from etl.storage.actions import write_symbol_map

        write_symbol_map(settings, frame, now)
        return {"new": 0, "revised": 0, "unchanged": 0}
    if name not in TABLES:
        raise ConfigError(f"no silver table {name!r}; known: {', '.join(sorted(TABLES))}")
    stats = silver.append(settings, TABLES[name], frame, now)
    return {"new": stats.new, "revised": 0, "unchanged": stats.unchanged}
