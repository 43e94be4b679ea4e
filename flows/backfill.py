"""The backfill flow: one source over a date range and a universe, in parallel chunks.

    alpha run backfill polygon --symbols AAPL,MSFT,... --start 2015-01-01 --end 2024-12-31

The universe is cut into chunks of ``chunk_size`` symbols; each chunk is one
``ingest`` task on a thread pool of ``ALPHA_BACKFILL_WORKERS`` (default 4)
workers. Every vendor request takes a slot of the vendor's Prefect rate limit
(``flows.limits``), so the workers together stay within the vendor's quota.

Resumable: a chunk that finished is cached by its inputs, and within a chunk
each symbol's watermark advances only after its rows are committed (with
``resume``, the default, a symbol restarts after its watermark); silver's
idempotent append makes refetched rows no-ops. A backfill killed at any point
and started again ends with the same store as one that was never interrupted.
Symbols that fail are listed in the result and the summary artifact; the run
itself completes.
"""

from __future__ import annotations

import os
import time

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows import tasks

#: threads that run chunks at once (Prefect's default pool is unbounded: never use it)
WORKERS = int(os.environ.get("ALPHA_BACKFILL_WORKERS", "4"))


@flow(name="backfill", log_prints=True, persist_result=True, task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))
def backfill(home: str, source: str, start: str, end: str, symbols: list[str] | None = None,
             dataset: str | None = None, chunk_size: int = 25, resume: bool = True, refresh: bool = False) -> dict:
    """Pull ``source`` (``dataset``, default its configured or first one, with the datasets that
    table brings along: Polygon daily bars their splits and dividends, as the nightly does) for
    ``symbols`` (default: the source's [[ingest]] symbols, else the universe) from ``start`` to
    ``end``.
    ``refresh`` ignores cached pulls (e.g. to pick up a vendor's revisions with ``resume=False``)."""
    import pandas as pd
    from prefect.artifacts import create_markdown_artifact

    from etl.core.config import load_settings
    from etl.core.errors import ConfigError
    from etl.jobs import chunks, find_spec
    from flows.limits import ensure_vendor_limit

    logger = get_run_logger()
    settings = load_settings(home)
    spec = find_spec(settings, source, dataset)
    universe = list(symbols or spec.symbols or settings.universe)
    if not universe:
        raise ConfigError(f"no symbols to backfill {spec.label}: pass symbols or set universe in config.toml")
    start_s, end_s = f"{pd.Timestamp(start):%Y-%m-%d}", f"{pd.Timestamp(end):%Y-%m-%d}"
    if start_s > end_s:
        raise ConfigError(f"start {start_s} is after end {end_s}")
    limit = ensure_vendor_limit(settings, spec.source)
    parts = chunks(universe, chunk_size)
    logger.info("backfill %s %s..%s: %d symbols in %d chunk(s), %d worker(s), rate limit %s",
                spec.label, start_s, end_s, len(universe), len(parts), WORKERS, limit or "none (file source)")
    t0 = time.perf_counter()
    pull = tasks.pull_task().with_options(refresh_cache=refresh)
    # the datasets the table brings along (a vendor's raw daily bars: its splits and dividends), then its own
    pulls = spec.pulls() if dataset is None else (spec,)
    work = [(p, part, f"{p.label} {part[0]}..{part[-1]} ({i + 1}/{len(parts)})") for p in pulls for i, part in enumerate(parts)]
    futures = [
        pull.submit(home, p.source, p.dataset, part, start_s, end_s, resume, label=label, limit_name=limit)
        for p, part, label in work
    ]
    parts = [part for _, part, _ in work]
    labels = [label for _, _, label in work]
    runs, failures = [], []
    for part, label, fut in zip(parts, labels, futures, strict=True):
        fut.wait()
        run, failure = tasks.outcome(fut.state, label)
        if run:
            runs.append(run)
        if failure:
            # a task that failed as a whole (not per symbol) failed every symbol of its chunk
            failure["symbols"] = failure["symbols"] or list(part)
            failures.append({"step": f"ingest {label}", **failure})
        done = len(runs) + len(failures)
        logger.info("%d/%d chunks done (%s): +%d rows%s", done, len(parts), label, run["rows_written"] if run else 0,
                    f", FAILED {failure['symbols']}" if failure else "")
    result = {
        "source": spec.source, "dataset": spec.dataset, "start": start_s, "end": end_s,
        "datasets": [p.dataset for p in pulls], "symbols": len(universe), "chunks": len(parts),
        "rows_fetched": sum(r["rows_fetched"] for r in runs),
        "rows_written": sum(r["rows_written"] for r in runs),
        "rows_quarantined": sum(r["rows_quarantined"] for r in runs),
        "failed_symbols": sorted({s for f in failures for s in f["symbols"]}),
        "failures": failures,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    md = [f"# Backfill {spec.label} {start_s}..{end_s}", "",
          f"{len(universe)} symbols in {len(parts)} chunks: fetched {result['rows_fetched']:,} rows, "
          f"wrote {result['rows_written']:,}, quarantined {result['rows_quarantined']:,} in {result['seconds']:.1f} s."]
    if failures:
        md += ["", *tasks.failure_table(failures, "chunk", "task")]
    create_markdown_artifact(key="backfill-summary", markdown="\n".join(md),
                             description=f"Backfill {spec.label} {start_s}..{end_s}")
    if failures:
        logger.warning("failed symbols: %s", result["failed_symbols"] or failures)
    return result
