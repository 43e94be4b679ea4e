"""Deployments as code: serve the nightly and backfill flows on a Prefect server.

    PREFECT_API_URL=http://localhost:4200/api ALPHA_HOME=/data/alpha alpha serve

Registers two deployments with the server named by ``PREFECT_API_URL`` and
runs their flow runs in subprocesses until stopped:

* ``nightly/nightly``: on a cron in the exchange's time zone, weekdays at the
  regular close + the longest source delay + a margin (``etl.core.schedule``;
  16:45 in New York with the defaults), ``home`` preset;
* ``backfill/backfill``: no schedule, triggered with ``alpha run backfill``
  (or from the UI with its parameters).

It also creates each configured vendor's rate limit (``flows.limits``).
``ALPHA_NIGHTLY_CRON`` / ``ALPHA_NIGHTLY_TZ`` override the schedule. The
schedules are paused when the process stops and resumed when it is served
again. Nothing happens at import time, and the warehouse travels to each flow
run as its ``home`` parameter (this process never sets ``ALPHA_HOME``).
"""

from __future__ import annotations

import os
import sys

NIGHTLY = "nightly/nightly"
BACKFILL = "backfill/backfill"


def deployments(settings):
    """The two deployments (Prefect ``RunnerDeployment`` objects) for a warehouse."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from etl.core.schedule import nightly_cron
    from flows.backfill import backfill
    from flows.nightly import nightly

    cron, tz = nightly_cron(settings)
    cron = os.environ.get("ALPHA_NIGHTLY_CRON") or cron
    tz = os.environ.get("ALPHA_NIGHTLY_TZ") or tz
    home = str(settings.home)
    common = {"tags": ["alpha-warehouse"], "entrypoint_type": EntrypointType.MODULE_PATH}  # runs do not depend on the cwd
    return [
        nightly.to_deployment(
            name="nightly", schedules=[Cron(cron, timezone=tz)], parameters={"home": home},
            description=f"Close the session after the close: ingest -> health -> factors -> apply -> materialize ({cron}, {tz}).",
            concurrency_limit=1,   # never two nightly runs of this warehouse at once
            **common,
        ),
        backfill.to_deployment(
            name="backfill", parameters={"home": home},
            description="A source over a date range and a universe, in chunks under the vendor's rate limit.",
            **common,
        ),
    ]


def main(settings=None) -> None:
    from etl.core.config import load_settings
    from etl.core.errors import AlphaError

    if not os.environ.get("PREFECT_API_URL"):
        # Without a server, Prefect would schedule against a temporary one that
        # disappears with this process: nothing would ever run or be visible.
        sys.exit("error: set PREFECT_API_URL (e.g. http://localhost:4200/api) to serve the flows")
    try:
        settings = settings or load_settings()  # $ALPHA_HOME; fails early on a malformed setting
        from etl.jobs import check_specs

        check_specs(settings)   # a worker with a broken [[ingest]] table refuses to start
    except AlphaError as exc:
        sys.exit(f"error: {exc}")
    # A long-running service sends the flows' INFO logs to the server's UI.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    from flows.prefect_env import configure_prefect

    configure_prefect(settings)
    from prefect import serve

    from flows.limits import ensure_vendor_limit

    limits = [n for n in (ensure_vendor_limit(settings, s) for s in {spec.source for spec in settings.ingest}) if n]
    deps = deployments(settings)
    print(
        f"serving {NIGHTLY} ({deps[0].schedules[0].schedule.cron}, {deps[0].schedules[0].schedule.timezone}) and {BACKFILL}: "
        f"home={settings.home}, online store={settings.online_store_kind}, vendor limits={limits or 'none'}, "
        f"api={os.environ['PREFECT_API_URL']}",
        flush=True,
    )
    serve(*deps, limit=2)


if __name__ == "__main__":
    main()
