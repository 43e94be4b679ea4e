"""Shared fixtures: real Lean data, a real redis-server, real warehouses.

Nothing of ours is mocked: warehouses are built by the same ingest, Prefect
flow, Feast apply and materialize that users run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import free_port, no_redis, postgres_database

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
LEAN = SHARED / "quantconnect-lean"
#: symbols of the session warehouse: the AAPL 7:1 split (2014-06-09), an index ETF,
#: a long history, the GOOG->GOOGL ticker change and a delisted stub (UW, 1998).
WAREHOUSE_SYMBOLS = ["AAPL", "SPY", "IBM", "GOOGL", "UW"]

# the user's own warehouse settings must not leak into the tests
for _var in ("ALPHA_REDIS_URL", "ALPHA_BAR_DELAY_MINUTES", "ALPHA_HOME", "PREFECT_API_URL"):
    os.environ.pop(_var, None)


def pytest_report_header(config):
    return [f"shared data: {SHARED} ({'found' if SHARED.exists() else 'MISSING'})"]


@pytest.fixture(scope="session")
def lean_root() -> Path:
    if not LEAN.exists():
        pytest.fail(f"the shared Lean data is missing at {LEAN}; clone the repo beside ../shared")
    return LEAN


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis: our own redis-server on a free port, else $REDIS_URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        url = os.environ.get("REDIS_URL")
        if not url:
            no_redis("no redis-server binary on PATH and no REDIS_URL set")
        yield url
        return
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory, lean_root):
    """A SQLite-backed warehouse built by the real nightly Prefect flow."""
    from etl.core.config import load_settings
    from etl.sources.archive import ingest_lean

    home = tmp_path_factory.mktemp("warehouse")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    settings = load_settings(home)
    report = ingest_lean(settings, lean_root, WAREHOUSE_SYMBOLS)
    from flows.prefect_env import configure_prefect

    configure_prefect(settings)
    from flows.nightly import nightly

    result = nightly(str(home))
    return {"settings": settings, "ingest": report, "nightly": result}


@pytest.fixture(scope="session")
def client(warehouse):
    from sdk import connect

    return connect(warehouse["settings"].home)


@pytest.fixture(scope="session")
def redis_warehouse(tmp_path_factory, lean_root, redis_url):
    """A warehouse whose online store is the test's own redis-server."""
    from etl.core.config import load_settings
    from etl.gold.core import build_gold
    from etl.gold.families import build_families
    from etl.serving import feast_store
    from etl.sources.archive import ingest_lean

    home = tmp_path_factory.mktemp("redis_warehouse")
    (home / "config.toml").write_text(f'redis_url = "{redis_url}"\n')
    settings = load_settings(home)
    assert settings.online_store_kind == "redis"
    ingest_lean(settings, lean_root, ["AAPL", "SPY", "IBM"])
    build_gold(settings)
    build_families(settings)  # every family view must exist before feast apply
    feast_store.apply(settings)
    feast_store.materialize(settings)
    return settings


@pytest.fixture
def tmp_home(tmp_path):
    from etl.core.config import load_settings

    return load_settings(tmp_path / "home")


@pytest.fixture
def postgres_url():
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    with postgres_database() as url:
        yield url
