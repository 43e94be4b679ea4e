"""The nightly flow: close one exchange session end to end.

    ingest every [[ingest]] source up to the session (incremental, rate-limited; a polygon
      daily table brings its symbols' splits and dividends along, pulled first)
      -> health report -> factors and families into gold (skipped when nothing changed)
      -> feast apply (only when the definitions changed) -> incremental materialize
      -> a summary artifact in the Prefect UI and reports/nightly/<session>.json

``session`` defaults to the last session whose close plus the longest source
delay has passed (``etl.schedule``), so the scheduled run after the close
processes that day, and a rerun, or a run on a holiday, changes nothing.
Each step is one task over all symbols (a task costs ~0.1 s, so work is
batched); per-symbol failures are reported, not fatal.
"""

from __future__ import annotations

import json
import time

from prefect import flow, get_run_logger

from flows import tasks

#: symbols of one source fetched at once (all under the vendor's rate limit)
INGEST_THREADS = 4


@flow(name="nightly", log_prints=True, persist_result=True)
def nightly(home: str, session: str | None = None, force: bool = False) -> dict:
    """Ingest -> health -> factors -> apply -> materialize for one session; see the module docstring."""

    from etl.core.config import load_settings
    from etl.core.schedule import resolve_session
    from etl.jobs import check_specs
    from flows.limits import ensure_vendor_limit

    logger = get_run_logger()
    settings = load_settings(home)
    check_specs(settings)
    day = resolve_session(settings, session)
    day_s = f"{day:%Y-%m-%d}"
    timings: dict[str, float] = {}
    failures: list[dict] = []
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    ingest: list[dict] = []
    if not settings.ingest:
        logger.info("no [[ingest]] sources in config.toml: computing from what silver holds")
    for spec in settings.ingest:
        runs: dict[str, dict] = {}
        for pull in spec.pulls():   # the table's corporate actions first, then its own dataset
            label = f"{pull.label} to {day_s}"
            state = tasks.pull_task()(
                # a dataset pulled along has no [[ingest]] table of its own: it gets the table's start
                home, pull.source, pull.dataset, list(pull.symbols), None if pull is spec else pull.start, day_s,
                label=label, limit_name=ensure_vendor_limit(settings, pull.source), parallel=INGEST_THREADS,
                return_state=True,
            )
            run, failure = tasks.outcome(state, label)
            if run:
                runs[pull.dataset] = run
            if failure:
                failures.append({"step": f"ingest {pull.label}", **failure})
                logger.warning("ingest %s: %s", pull.label, failure)
        # reported as configured: the table's own dataset first, then what it brought along
        ingest.extend(runs[d] for d in sorted(runs, key=lambda d: d != spec.dataset))
    timings["ingest"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    logger.info("health report ...")
    health = tasks.health(home)
    timings["health"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    logger.info("factors: the generic builder over every family ...")
    gold = tasks.compute(home, day_s, force)
    timings["factors"] = time.perf_counter() - t0
    logger.info("factors: %s", gold.get("skipped") or f"run {gold['run']}: {gold['rows']:,} rows written for "
                f"{sum(f['entities'] for f in gold['families'].values()):,} entity builds in {gold['seconds']} s "
                f"(engine {gold.get('engine', 'local')})")

    t0 = time.perf_counter()
    logger.info("feast apply (if the definitions changed) ...")
    applied = tasks.apply(home, force)
    timings["apply"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if settings.nightly_strict_health and health["failed_thresholds"]:
        # gold (point-in-time, for research) is written; the live side keeps the last good values
        online = {"online_store": settings.online_store_kind,
                  "skipped": f"held back: health thresholds breached ({'; '.join(health['failed_thresholds'])[:300]})"}
        failures.append({"step": "health", "symbols": [], "errors": [{"error": e} for e in health["failed_thresholds"]]})
        logger.warning("online push held back: %s", health["failed_thresholds"])
    else:
        logger.info("materialize what the builds since the last push wrote ...")
        online = tasks.materialize(home, gold.get("fingerprint"))
    timings["materialize"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all

    from prefect.runtime import flow_run

    result = {
        "session": day_s,
        "flow_run": str(flow_run.id),
        "ingest": ingest,
        "health": health,
        "gold": gold,
        "apply": {k: v for k, v in applied.items() if k != "objects"},
        "applied": applied.get("objects", []),
        "online": online,
        "failures": failures,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    publish_summary(settings, result)
    return result


def summary_markdown(result: dict) -> str:
    """The run as Markdown: what was ingested, checked, computed, applied and pushed."""
    g, a, o, h = result["gold"], result["apply"], result["online"], result["health"]
    lines = [f"# Nightly {result['session']}", ""]
    if result["failures"]:
        n = sum(max(1, len(f["symbols"])) for f in result["failures"])
        lines += [f"**{n} failure(s)**; everything else was stored.", ""]
    lines += ["## Ingest", "", "| source | jobs | up to date | fetched | written | quarantined | failed | s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["ingest"]:
        if r.get("cached"):
            lines.append(f"| {r['source']}.{r['dataset']} | cached: this pull already succeeded, no vendor call | | | | | | |")
            continue
        lines.append(f"| {r['source']}.{r['dataset']} | {r['jobs']} | {r['up_to_date']} | {r['rows_fetched']:,} | "
                     f"{r['rows_written']:,} | {r['rows_quarantined']:,} | {len(r['failed'])} | {r['seconds']:.1f} |")
    if not result["ingest"]:
        lines.append("| (no [[ingest]] sources configured) | | | | | | | |")
    lines += ["", "## Health", "", f"{h['errors']} error(s), {h['warnings']} warning(s) over {h['bars']:,} bars"
              + (f"; thresholds breached: {', '.join(h['failed_thresholds'])}" if h["failed_thresholds"] else "")
              + f" ({h['html']})", "", "## Factors", ""]
    if "skipped" in g:
        lines.append(f"skipped: {g['skipped']}")
    else:
        lines.append(f"run {g['run']}: {g['symbols']} symbols, {g['rows']:,} rows written, {g['features']:,} features, "
                     f"{len(g['views'])} views (engine {g.get('engine', 'local')})")
        lines += ["", "| family | mode | entities built | chunks | rows |", "|---|---|---:|---:|---:|"]
        lines += [f"| {name} | {f['mode']} | {f['entities']:,} | {f['chunks']} | {f['rows']:,} |" for name, f in g["families"].items()]
    applied = a.get("skipped") or f"{len(result['applied'])} objects registered"
    lines += ["", "## Feast", "", f"apply: {applied}"]
    report = o.get("report") if isinstance(o.get("report"), dict) else None
    lines.append(f"materialize ({o.get('online_store')}): " + (o.get("skipped") or (json.dumps(report) if report else "done")))
    if result["failures"]:
        lines += ["", "## Failures", "", *tasks.failure_table(result["failures"], "step", "step")]
    lines += ["", "## Timings (s)", "", "| " + " | ".join(result["timings"]) + " |",
              "|" + "---:|" * len(result["timings"]), "| " + " | ".join(f"{v:.1f}" for v in result["timings"].values()) + " |"]
    return "\n".join(lines)


def publish_summary(settings, result: dict) -> None:
    """The summary as a Prefect artifact (key ``nightly-summary``) and as JSON in the home."""
    from prefect.artifacts import create_markdown_artifact

    from etl.storage.atomic import atomic_write_text

    atomic_write_text(settings.reports / "nightly" / f"{result['session']}.json", json.dumps(result, indent=1, default=str))
    create_markdown_artifact(key="nightly-summary", markdown=summary_markdown(result),
                             description=f"Nightly {result['session']}: rows, features, failures, timings")
