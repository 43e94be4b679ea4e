"""Prefect tasks shared by the nightly and backfill flows.

Every task is a thin wrapper over one function of ``etl/`` (``etl.jobs``):
the flows add scheduling, retries, caching, the vendor rate limit and what
the Prefect UI shows, never logic of their own.

* Retries: a task is retried (with backoff) only when the failure may go away
  by itself: a vendor that was down or rate-limited us past the client's own
  retries, a network error, an unreachable online store. A 4xx, a malformed
  payload or a bug fails at once: retrying would fetch the same refusal.
* Failures per symbol: an ingest task that could not pull some symbols raises
  :class:`IngestFailures` after storing everything else; the flow reports
  those symbols and goes on, so one bad ticker never loses a night's data.
* Caching: a vendor pull that succeeded for every symbol is cached by its
  inputs (home, source, dataset, symbols, range), so a restarted backfill or
  a rerun of the same session does not call the vendor again; a pull with any
  failure is never cached, nor one whose range ends in the last few days (a
  vendor may publish those sessions late; the watermarks keep such reruns
  cheap: only symbols still short of the range are asked again).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from prefect import task
from prefect.tasks import exponential_backoff

from etl.core.config import load_settings
from etl.core.errors import OnlineStoreError


class IngestFailures(Exception):
    """Some symbols of an ingest task failed; ``run`` is the task's whole report
    (what was stored too), ``transient`` whether a retry may help."""

    def __init__(self, run: dict):
        self.run = run
        self.transient = any(f["transient"] for f in run["failed"])
        failed = ", ".join(f"{f['symbol']} ({f['error'][:120]})" for f in run["failed"][:10])
        super().__init__(f"{run['source']}.{run['dataset']}: {len(run['failed'])} symbol(s) failed: {failed}")

    def __reduce__(self):  # picklable with its report, for Prefect's result store
        return (IngestFailures, (self.run,))


def retry_transient(task, task_run, state) -> bool:
    """Retry on I/O trouble only (vendor down past its own retries, network, online store)."""
    try:
        state.result()
    except IngestFailures as exc:
        return exc.transient
    except (OnlineStoreError, OSError):
        return True
    except Exception:  # noqa: BLE001 -- anything else is a bug or a refusal: never retried
        return False
    return False


#: a pull is cached only when its range ended this many days ago: a vendor may publish the
#: last sessions late, and a pull that got nothing for them must be able to ask again
SETTLED_DAYS = 3


def _pull_key(context, parameters: dict) -> str | None:
    """Cache key of a vendor pull: exactly its inputs (not the chunk's label); ``None`` (no
    caching) while its range reaches into the last :data:`SETTLED_DAYS` days."""
    import pandas as pd

    if pd.Timestamp(parameters["end"]) >= pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() - pd.Timedelta(days=SETTLED_DAYS):
        return None
    keep = {k: v for k, v in parameters.items() if k not in ("label", "limit_name", "parallel")}
    return "pull-" + hashlib.sha256(repr(sorted(keep.items())).encode()).hexdigest()[:32]


@task(
    name="ingest",
    task_run_name="ingest {label}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
    cache_key_fn=_pull_key,
    cache_expiration=timedelta(days=30),
    persist_result=True,
)
def pull(home: str, source: str, dataset: str, symbols: list[str], start: str | None, end: str,
         resume: bool = True, label: str = "", limit_name: str | None = None, parallel: int = 1) -> dict:
    """``etl.jobs.ingest_spec`` for some symbols of one source, under the vendor's Prefect rate limit."""
    from etl.jobs import find_spec, ingest_spec
    from flows.limits import PrefectRateLimit

    settings = load_settings(home)
    spec = find_spec(settings, source, dataset)
    limiter = PrefectRateLimit.for_source(settings, source, limit_name) if limit_name else None
    run = ingest_spec(settings, spec, end, symbols=symbols, start=start, incremental=resume, limiter=limiter,
                      parallel=parallel).as_dict()
    if run["failed"]:
        raise IngestFailures(run)
    return run


@task(name="health-report")
def health(home: str) -> dict:
    from etl.jobs import health_summary

    return health_summary(load_settings(home))


@task(name="compute-factors")
def compute(home: str, session: str | None, force: bool = False) -> dict:
    from prefect import get_run_logger

    from etl.jobs import compute_factors

    logger = get_run_logger()
    return compute_factors(load_settings(home), session, force=force, progress=logger.info)


@task(name="feast-apply")
def apply(home: str, force: bool = False) -> dict:
    from etl.jobs import apply_if_changed

    return apply_if_changed(load_settings(home), force=force)


@task(name="materialize", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
def materialize(home: str, gold_fingerprint: str | None) -> dict:
    from etl.jobs import materialize_if_needed

    return materialize_if_needed(load_settings(home), gold_fingerprint)


def pull_task():
    """:func:`pull` with the retry backoff of ``ALPHA_TASK_RETRY_BACKOFF_SECONDS`` (default 5:
    waits of about 5, 10, 20 s)."""
    import os

    factor = float(os.environ.get("ALPHA_TASK_RETRY_BACKOFF_SECONDS", "5"))
    return pull.with_options(retry_delay_seconds=exponential_backoff(backoff_factor=factor))


def outcome(state, label: str) -> tuple[dict | None, dict | None]:
    """``(run report, failure)`` of the finished pull task ``label``: a report either way when
    the task got that far; ``failure`` names the symbols (or the whole task) that failed."""
    if state.is_completed():
        run = dict(state.result())
        run["cached"] = state.name == "Cached"   # an identical pull already succeeded: no vendor call
        return run, None
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, IngestFailures):
        return exc.run, {"task": label, "symbols": [f["symbol"] for f in exc.run["failed"]],
                         "errors": exc.run["failed"]}
    return None, {"task": label, "symbols": [], "errors": [{"error": f"{type(exc).__name__}: {exc}"}]}


def failure_table(failures: list[dict], heading: str, key: str) -> list[str]:
    """Markdown rows of the summaries' failure table: ``failure[key]``, symbol, error (one row
    per failed symbol, or per task that failed as a whole)."""
    rows = [f"| {heading} | symbol | error |", "|---|---|---|"]
    rows += [f"| {f[key]} | {e.get('symbol', '')} | {str(e.get('error', '')).replace('|', '/')[:200]} |"
             for f in failures for e in f["errors"]]
    return rows
