"""Serve the nightly flow as a scheduled Prefect deployment.

    PREFECT_API_URL=http://localhost:4200/api ALPHA_HOME=/data/alpha python -m flows.serve

Registers the deployment ``nightly/nightly`` with the Prefect server named by
``PREFECT_API_URL``, on a cron in exchange time (default: 16:45 America/New_York,
Monday to Friday, after the close), with ``home`` set to the warehouse of
``$ALPHA_HOME``, then polls for scheduled runs until stopped. The schedule is
paused when the process stops and resumed when it is served again.

Environment:
    PREFECT_API_URL      required: the server that schedules the runs and shows them
    ALPHA_HOME           the warehouse the runs work on (see etl.config)
    ALPHA_REDIS_URL      optional: Redis online store (checked at start-up)
    ALPHA_NIGHTLY_CRON   optional: cron string (default "45 16 * * 1-5")
    ALPHA_NIGHTLY_TZ     optional: IANA time zone of the cron (default "America/New_York")

Nothing happens at import time: everything, including importing Prefect, is in
:func:`main`.
"""

from __future__ import annotations

import os
import sys

DEPLOYMENT_NAME = "nightly"
DEFAULT_CRON = "45 16 * * 1-5"
DEFAULT_TIMEZONE = "America/New_York"


def main() -> None:
    from etl.config import load_settings
    from etl.errors import AlphaError

    if not os.environ.get("PREFECT_API_URL"):
        # Without a server, Prefect would schedule against a temporary one that
        # disappears with this process: nothing would ever run or be visible.
        sys.exit("error: set PREFECT_API_URL (e.g. http://localhost:4200/api) to serve the nightly flow")
    try:
        settings = load_settings()  # $ALPHA_HOME; fails early on a malformed ALPHA_REDIS_URL
    except AlphaError as exc:
        sys.exit(f"error: {exc}")
    home = str(settings.home)
    os.environ["ALPHA_HOME"] = home  # flow-run subprocesses and feature_repo/repo.py see the same home

    # A long-running service should send the flow's INFO logs to the server's UI;
    # configure_prefect only fills in what is still unset (it leaves PREFECT_HOME
    # alone because PREFECT_API_URL is set).
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    from flows.prefect_env import configure_prefect

    configure_prefect(settings)

    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.nightly import nightly

    cron = os.environ.get("ALPHA_NIGHTLY_CRON") or DEFAULT_CRON
    tz = os.environ.get("ALPHA_NIGHTLY_TZ") or DEFAULT_TIMEZONE
    print(
        f"serving nightly/{DEPLOYMENT_NAME}: cron {cron!r} ({tz}), home={home}, "
        f"online store={settings.online_store_kind}, api={os.environ['PREFECT_API_URL']}",
        flush=True,
    )
    nightly.serve(
        name=DEPLOYMENT_NAME,
        schedules=[Cron(cron, timezone=tz)],
        parameters={"home": home},
        description="Factors -> gold write -> feast apply -> materialize, after the close.",
        tags=["alpha-warehouse"],
        limit=1,  # never two nightly runs at once on this worker
        # flows.nightly is installed with the package, so runs do not depend on the cwd
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


if __name__ == "__main__":
    main()
