"""The ingest pipeline every source runs through.

For each job (one source, dataset and symbol over a date range):

1. fetch: the source's HTTP client lands every response body in bronze
   *before* the source parses it (the client's ``on_response`` hook);
2. parse and validate: the source returns rows per silver table and the
   rows it rejected, each with a reason;
3. write: rejected rows to quarantine, good rows appended to silver (a lock
   serialises writers, so ``--parallel`` workers never race on a partition);
4. advance the watermark, only after silver is committed.

A crash between any two steps leaves the store valid; rerunning the same
command fetches the same range again and the idempotent silver append makes
it a no-op. A failing job (bad key, vendor down, malformed payload) is
reported with its error and does not stop the other jobs.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextvars import ContextVar
from dataclasses import dataclass, field

import pandas as pd

from etl.core.config import Settings
from etl.core.errors import AlphaError, BadSymbolError, ConfigError, VendorUnavailableError
from etl.storage import silver
from etl.storage.atomic import HomeLock
from etl.storage.tables import ALL as TABLES
from etl.storage.watermarks import WatermarkStore, open_watermarks

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-=^_]{0,19}$")


def check_symbols(symbols: list[str]) -> list[str]:
    """Upper-cased symbols, or :class:`BadSymbolError` naming each bad one.

    Symbols become partition folders and vendor URL paths, so anything that
    could escape a folder (``../../etc``) or a URL is refused up front."""
    out, bad = [], []
    for s in symbols:
        t = str(s).strip().upper()
        if not SYMBOL_RE.match(t) or ".." in t:
            bad.append(s)
        else:
            out.append(t)
    if bad:
        raise BadSymbolError(
            f"not valid symbol(s): {bad!r}; a symbol is 1-20 of A-Z 0-9 . - = ^ _, starts with a letter or digit"
        )
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Job:
    source: str
    dataset: str
    symbol: str
    start: pd.Timestamp          # naive date, inclusive
    end: pd.Timestamp            # naive date, inclusive

    def __str__(self) -> str:
        return f"{self.source}.{self.dataset} {self.symbol} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"


@dataclass
class Parsed:
    """What one job produced: rows per silver table, rejected rows (quarantine
    columns: source, source_file, source_row, symbol, raw, reason), the new
    watermark and how many rows the vendor sent."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    rejects: pd.DataFrame | None = None
    high_water: str | None = None
    rows_fetched: int = 0
    batch_key: str = ""


_current = threading.local()   # the job a worker thread is running (labels its bronze records)
_shared_limiter: ContextVar = ContextVar("shared_limiter", default=None)  # see get_source


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

    def __init__(self, settings: Settings, path: str | None = None):
        self.settings = settings
        self.path = path   # file sources: the folder to read (the CLI's --path)
        self.shared_limiter = _shared_limiter.get()   # acquired before every request, with the client's own

    def land(self, fetched) -> None:
        from etl.storage.bronze import land_payload

        job = getattr(_current, "job", None)
        land_payload(self.settings, fetched, job.dataset if job is not None else "adhoc")

    def http(self, default_base_url: str, *, key_env: str | None = None, key_param: str | None = None,
             headers: dict | None = None):
        """This vendor's client: base URL, rate (requests/s, default :attr:`default_rate`), burst,
        retries and timeout from ``[vendors.<name>]`` in config.toml or ``ALPHA_<NAME>_BASE_URL`` /
        ``ALPHA_<NAME>_RATE``."""
        from etl.core.http import HttpClient, RateLimiter, require_secret

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
            on_response=self.land,
        )

    def jobs(self, dataset: str, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> list[Job]:
        return [Job(self.name, dataset, s, start, end) for s in symbols]

    def fetch_parse(self, job: Job) -> Parsed:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


#: source name -> "module:Class"; imported only when used
REGISTRY: dict[str, str] = {
    "polygon": "etl.sources.vendors.polygon:PolygonSource",
    "edgar": "etl.sources.vendors.edgar:EdgarSource",
    "fred": "etl.sources.vendors.fred:FredSource",
    "lean": "etl.sources.lean.datasets:LeanSource",
    "stocknet": "etl.sources.news_files:StocknetSource",
    "fx": "etl.sources.lean.datasets:FxCsvSource",
}


def get_source(name: str, settings: Settings, path: str | None = None, limiter=None) -> Source:
    """The source ``name``; ``limiter`` (anything with ``acquire()``) is taken before every
    vendor request on top of the vendor's own rate from config."""
    cls = get_source_class(name)
    token = _shared_limiter.set(limiter)
    try:
        return cls(settings, path=path)
    finally:
        _shared_limiter.reset(token)


def get_source_class(name: str) -> type[Source]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown source {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
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
                job = Job(job.source, job.dataset, job.symbol, max(job.start, nxt), job.end)
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
) -> IngestSummary:
    """Run every job of one source and dataset; see the module docstring. ``limiter``
    (with ``acquire()``) is shared by every request on top of the vendor's own rate."""
    t0 = time.perf_counter()
    source = get_source(source_name, settings, path=path, limiter=limiter)
    if dataset not in source.datasets:
        raise ConfigError(f"{source_name} has no dataset {dataset!r}; it has: {', '.join(source.datasets)}")
    if source.needs_symbols and not symbols:
        raise ConfigError(f"{source_name}.{dataset} needs symbols, e.g. AAPL,MSFT")
    symbols = check_symbols(symbols or [])
    if parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {parallel}")
    silver.recover(settings)
    marks = open_watermarks(settings)
    write_lock = HomeLock(settings.home)
    try:
        todo, results = plan(source, dataset, symbols, start, end, incremental, marks)
        total = len(todo) + len(results)
        for r in results:
            if progress:
                progress(r, total)

        def run(job: Job) -> JobResult:
            t = time.perf_counter()
            res = JobResult(job)
            _current.job = job
            try:
                parsed = source.fetch_parse(job)
                res.rows_fetched = parsed.rows_fetched
                stamp = now if now is not None else pd.Timestamp.now(tz="UTC")
                with write_lock:
                    if parsed.rejects is not None and len(parsed.rejects):
                        key = parsed.batch_key or str(job)
                        table = next(iter(parsed.tables), dataset)
                        path = silver.quarantine(settings, table, parsed.rejects, key, stamp)
                        res.quarantined, res.quarantine_path = len(parsed.rejects), str(path)
                    for name, frame in parsed.tables.items():
                        stats = write_table(settings, name, frame, stamp)
                        res.written[name] = stats.new
                        res.unchanged += stats.unchanged
                    if parsed.high_water:
                        marks.advance(job.source, job.dataset, job.symbol, parsed.high_water, sum(res.written.values()))
            except AlphaError as exc:
                res.error = str(exc)
                res.transient = isinstance(exc, VendorUnavailableError)
            except OSError as exc:  # network or disk trouble below the vendor client
                res.error, res.transient = f"{type(exc).__name__}: {exc}", True
            except Exception as exc:  # a bug or an unexpected library error: report it, keep going
                res.error = f"{type(exc).__name__}: {exc}"
            res.seconds = time.perf_counter() - t
            return res

        if parallel == 1 or len(todo) <= 1:
            for job in todo:
                r = run(job)
                results.append(r)
                if progress:
                    progress(r, total)
        else:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix=f"ingest-{source_name}") as pool:
                futures = [pool.submit(run, job) for job in todo]
                for fut in as_completed(futures):
                    r = fut.result()
                    results.append(r)
                    if progress:
                        progress(r, total)
    finally:
        source.close()
        marks.dispose()
    order = {s: i for i, s in enumerate(symbols)}
    results.sort(key=lambda r: order.get(r.job.symbol, len(order)))
    return IngestSummary(source_name, dataset, results, time.perf_counter() - t0)


def write_table(settings: Settings, name: str, frame: pd.DataFrame, now: pd.Timestamp) -> silver.WriteStats:
    """Append rows to a silver table; daily bars go through the revision-aware writer."""
    if name == "bars_daily":
        from etl.storage.bars import write_silver_bars

        stats = write_silver_bars(settings, frame, source=str(frame["source"].iloc[0]) if "source" in frame and len(frame) else name, now=now)
        return silver.WriteStats(new=stats["new"] + stats["revised"], unchanged=stats["unchanged"])
    if name not in TABLES:
        raise ConfigError(f"no silver table {name!r}; known: {', '.join(sorted(TABLES))}")
    return silver.append(settings, TABLES[name], frame, now)
