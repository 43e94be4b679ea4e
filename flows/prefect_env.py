"""Prefect settings for a warehouse, set before Prefect is imported.

Without ``PREFECT_API_URL`` Prefect runs the flow against a temporary local
server whose database lives in ``$ALPHA_HOME/prefect`` (so two warehouses never
share run history). With ``PREFECT_API_URL`` set, runs show in that server's UI.
"""

from __future__ import annotations

import os

from etl.core.config import Settings


def configure_prefect(settings: Settings) -> None:
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    # task results (the cache of vendor pulls) live in the warehouse, whichever server runs the flow
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(settings.home / "prefect" / "storage"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary server's 20 s default is too little on a loaded 2-core machine (a nightly failed so)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # ...but a run's own log lines (each step, the factor build's chunks with an estimate of
    # what remains) go to the console and the run's logs in the UI
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
