"""``alpha nightly``, ``alpha run nightly|backfill``, ``alpha serve``: the Prefect flows.

Prefect is imported inside the commands (``configure_prefect`` must run first). A run in this
process holds the home's run lock and, without ``PREFECT_API_URL``, gets a temporary Prefect
server that dies with it (:func:`flows.prefect_env.prefect_run`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from cli.common import HomeOpt, done, friendly, step
from etl.core.config import load_settings
from etl.core.errors import AlphaError


def run_nightly(settings, session: str | None = None, force: bool = False, wait_lock: bool = True) -> dict:
    """The nightly flow in this process, under the home's run lock (``wait_lock``: wait for a
    run that holds it, else fail at once with :class:`~etl.core.errors.HomeBusyError`)."""
    from flows.prefect_env import prefect_run

    with prefect_run(settings, "nightly", wait=wait_lock, say=_say):
        from flows.nightly import nightly

        return nightly(str(settings.home), session=session, force=force)


def _say(text: str) -> None:
    typer.secho(f"    {text}", fg=typer.colors.YELLOW, err=True)


def nightly_line(result: dict) -> str:
    g, o = result["gold"], result["online"]
    ingest = "; ".join(f"{r['source']}.{r['dataset']} +{r['rows_written']:,} rows" + (" (cached)" if r.get("cached") else "")
                       for r in result["ingest"]) or "no [[ingest]] sources"
    factors = g["skipped"] if "skipped" in g else f"{g['symbols']} symbols, {g['rows']} rows written, {g['features']} features"
    failed = sum(max(1, len(f["symbols"])) for f in result["failures"])
    return (f"session {result['session']}: {ingest}; {factors}; apply: {result['apply'].get('skipped') or 'done'}; "
            f"online ({o['online_store']}): {o.get('skipped') or 'materialized'}" + (f"; {failed} FAILURE(S), see the summary" if failed else ""))


SessionOpt = typer.Option(None, "--session", help="Session to close, YYYY-MM-DD (default: the last one whose data is complete).")
ForceOpt = typer.Option(False, "--force", help="Recompute factors and re-apply even if nothing changed.")
BusyOpt = typer.Option(False, "--fail-if-busy", help="Fail at once when another nightly or backfill runs on this home "
                       "(default: wait for it).")


@friendly
def nightly(home: Path | None = HomeOpt, session: str | None = SessionOpt, force: bool = ForceOpt,
            fail_if_busy: bool = BusyOpt):
    """Run the nightly flow in this process: ingest -> health -> factors -> apply -> materialize."""
    settings = load_settings(home)
    t0 = step(f"nightly flow on {settings.home} (online store: {settings.online_store_kind})")
    result = run_nightly(settings, session, force, wait_lock=not fail_if_busy)
    done(t0, nightly_line(result))


def _trigger(settings, deployment: str, parameters: dict, wait: bool) -> dict | None:
    """Run a served deployment through the Prefect API; the result when waited for."""
    from flows.prefect_env import configure_prefect

    configure_prefect(settings)
    from prefect.deployments import run_deployment

    api = os.environ["PREFECT_API_URL"].rstrip("/")
    typer.echo(f"    triggering {deployment} on {api} with {parameters}")
    run = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False)
    ui = os.environ.get("PREFECT_UI_URL") or api.removesuffix("/api")
    typer.echo(f"    flow run {run.name}: {ui}/runs/flow-run/{run.id}")
    if not wait:
        return None
    run = _follow(run.id)
    typer.echo(f"    flow run {run.name}: {run.state.name}")
    if not run.state.is_completed():
        raise AlphaError(f"flow run {run.name} ended {run.state.name}: {run.state.message or ''}")
    try:  # the flow persists its result in the home's Prefect storage (PREFECT_LOCAL_STORAGE_PATH)
        return run.state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a worker on another machine: the state is what we have
        typer.echo(f"    (result not readable here: {exc}; see the run's artifacts in the UI)")
        return None


def _follow(flow_run_id, poll_seconds: float = 2.0):
    """Wait for a flow run to finish, printing each task run as it ends (progress of long
    backfills); the final flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    seen: set = set()
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            tasks, page = [], None
            while page is None or len(page) == 200:   # the API pages by 200
                page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                             sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=len(tasks))
                tasks += page
            for t in sorted((t for t in tasks if t.state and t.state.is_final() and t.id not in seen),
                            key=lambda t: t.end_time or t.expected_start_time):
                seen.add(t.id)
                typer.echo(f"      {t.state.name:<10} {t.name}")
            if run.state and run.state.is_final():
                return run
            time.sleep(poll_seconds)


@friendly
def run_nightly_cmd(home: Path | None = HomeOpt, session: str | None = SessionOpt, force: bool = ForceOpt,
                    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the run to finish."),
                    fail_if_busy: bool = BusyOpt):
    """Trigger the nightly flow."""
    settings = load_settings(home)
    t0 = step(f"nightly on {settings.home}")
    if os.environ.get("PREFECT_API_URL"):
        from flows.serve import NIGHTLY

        result = _trigger(settings, NIGHTLY, {"home": str(settings.home), "session": session, "force": force}, wait)
        done(t0, nightly_line(result) if isinstance(result, dict) else "")
        return
    done(t0, nightly_line(run_nightly(settings, session, force, wait_lock=not fail_if_busy)))


@friendly
def run_backfill_cmd(
    source: str = typer.Argument(..., help="polygon, edgar, fred, lean, stocknet, fx"),
    start: str = typer.Option(..., "--start", help="First date, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last date, YYYY-MM-DD."),
    symbols: str | None = typer.Option(None, "--symbols", help="Comma-separated (default: the source's [[ingest]] symbols or the universe)."),
    dataset: str | None = typer.Option(None, "--dataset"),
    chunk_size: int = typer.Option(25, "--chunk-size", help="Symbols per task."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Start each symbol after its watermark."),
    refresh: bool = typer.Option(False, "--refresh", help="Call the vendor even for chunks an identical earlier pull cached."),
    wait: bool = typer.Option(True, "--wait/--no-wait"),
    fail_if_busy: bool = BusyOpt,
    home: Path | None = HomeOpt,
):
    """Trigger a backfill of SOURCE over a date range, fanned out in chunks under the vendor's rate limit."""
    settings = load_settings(home)
    params = {"home": str(settings.home), "source": source, "start": start, "end": end,
              "symbols": [s for s in symbols.split(",") if s.strip()] if symbols else None,
              "dataset": dataset, "chunk_size": chunk_size, "resume": resume, "refresh": refresh}
    t0 = step(f"backfill {source} {start}..{end} on {settings.home}")
    if os.environ.get("PREFECT_API_URL"):
        from flows.serve import BACKFILL

        result = _trigger(settings, BACKFILL, params, wait)
    else:
        from flows.prefect_env import prefect_run

        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")   # the per-chunk progress lines
        with prefect_run(settings, "backfill", wait=not fail_if_busy, say=_say):
            from flows.backfill import backfill

            result = backfill(**params)
    if isinstance(result, dict):
        done(t0, f"{result['symbols']} symbols in {result['chunks']} chunks: fetched {result['rows_fetched']:,}, "
                  f"wrote {result['rows_written']:,}, quarantined {result['rows_quarantined']:,}"
                  + (f"; FAILED: {', '.join(result['failed_symbols'])}" if result["failures"] else ""))
        if result["failures"]:
            raise typer.Exit(1)


@friendly
def serve(home: Path | None = HomeOpt):
    """Register the nightly (cron after the close, exchange time zone) and backfill deployments
    on PREFECT_API_URL and run them when scheduled or triggered (until stopped)."""
    settings = load_settings(home)
    from flows.serve import main as serve_main

    serve_main(settings)

