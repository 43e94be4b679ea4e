"""Shared fixtures: real Lean data, a real redis-server, real warehouses.

Nothing of ours is mocked: warehouses are built by the same ingest, Prefect
flow, Feast apply and materialize that users run.

Data: ``data/demo/`` ships with the project (the demo's Lean daily bars, factor and
map files, option chains and interest rates, and the stocknet tweets of four
symbols; see each folder's SOURCE.txt), so most tests run from a clone alone.
The larger data sets (minute bars, fundamentals, coarse universes, EDGAR, FRBNY,
yfinance and StockCharts fixtures) are read from ``../shared/data`` through the
``shared_data`` / ``shared_lean_root`` fixtures, which skip loudly when it is
missing, except under ``CI=true``, where they fail.

Tiers: every test that needs a session warehouse, a server (redis, PostgreSQL,
Prefect, a CLI subprocess), the shared data, or takes over about a second gets the
``integration`` marker here (:func:`pytest_collection_modifyitems`); ``make
test-fast`` runs ``-m "not integration"``, ``make test`` runs everything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import free_port, no_redis, no_shared_data, no_spark, postgres_database

REPO = Path(__file__).resolve().parents[1]
#: shipped with the project (data/demo/*/SOURCE.txt): what the demo and most tests read
DATA = REPO / "data" / "demo"
LEAN = DATA / "quantconnect-lean"
STOCKNET = DATA / "stocknet-tweets-prices"
#: the larger data sets beside the repo, optional (see the module doc)
SHARED = REPO.parent / "shared" / "data"
SHARED_LEAN = SHARED / "quantconnect-lean"
#: symbols of the session warehouse: the AAPL 7:1 split (2014-06-09), an index ETF,
#: a long history, the GOOG->GOOGL ticker change and a delisted stub (UW, 1998).
WAREHOUSE_SYMBOLS = ["AAPL", "SPY", "IBM", "GOOGL", "UW"]

# the user's own warehouse settings must not leak into the tests
for _var in ("ALPHA_REDIS_URL", "ALPHA_BAR_DELAY_MINUTES", "ALPHA_HOME", "PREFECT_API_URL"):
    os.environ.pop(_var, None)


def _header(config) -> list[str]:
    expr = (config.option.markexpr or "").strip()
    tier = {"": "all (fast + integration)", "not integration": "fast (-m 'not integration')",
            "integration": "integration only"}.get(expr, f"custom (-m {expr!r})")
    return [
        f"tier: {tier}",
        f"shipped data: {DATA} ({'found' if LEAN.is_dir() and STOCKNET.is_dir() else 'MISSING'})",
        f"shared data: {SHARED} ({'found' if SHARED.is_dir() else 'MISSING: tests on it skip, or fail under CI=true'})",
    ]


def pytest_report_header(config):
    return _header(config)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    """``-q`` (make test, make test-fast) hides the report header: print the same lines."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.get_verbosity() < 0:
        for line in _header(session.config):
            reporter.write_line(line)


#: for a test that reads ``SHARED`` itself: skips (fails under CI=true) without it, and is an integration test
needs_shared_data = pytest.mark.usefixtures("shared_data")

#: fixtures that make a test an integration test: session warehouses, servers, the shared data
INTEGRATION_FIXTURES = frozenset({
    "warehouse", "client", "redis_warehouse", "redis_url", "postgres_url", "shared_data", "shared_lean_root",
    "spark", "spark_conf",
})
#: test modules that run the ``alpha`` / ``feast`` commands as subprocesses, or Prefect flows,
#: or Feast itself (importing feast alone takes ~5 s)
INTEGRATION_MODULES = frozenset({"test_cli.py", "test_ingest_cli.py", "test_orchestration.py", "test_offline_store.py",
                                 "test_online_store.py"})
#: (test module, fixture): module fixtures that start a server or run a Prefect flow, or
#: whose setup takes over about a second (``pytest --durations=0`` on this 2-core machine)
SLOW_FIXTURES = frozenset({
    ("test_incremental_build.py", "homes"),      # 30 nights of ingest + build on three symbols (~90 s)
    ("test_user_factors.py", "lab"),             # `alpha` subprocesses: ingest, nightly, build, apply (~150 s)
    ("test_truncation.py", "cut"),               # two warehouses over every family with inputs (~60 s)
    ("test_bounded_memory.py", "peaks"),         # two `alpha nightly` runs on generated universes (~4 min)
    ("test_shared_registry.py", "shared"),       # PostgreSQL
    ("test_options_factors.py", "data"),         # Lean bars and option chains through the real ingest (~4 s)
    ("test_technical_grid.py", "lean"),          # three symbols through ingest and the TA-Lib grid (~3 s)
    ("test_news_factors.py", "home"),            # tweets through the real ingest (~2 s)
    ("test_revisions.py", "revised"),            # ~2 s
    ("test_health.py", "lean_store"),            # ~1 s
})
#: module::test (every parametrization) that takes over about a second by itself (``--durations=0``,
#: and its CPU time, which the load of the machine does not inflate)
SLOW_TESTS = frozenset({
    "test_feature_registry.py::test_feast_objects_are_generated_from_the_declarations",   # imports feast (~5 s)
    "test_feature_registry.py::test_features_list_json_is_the_registry",                  # `alpha` subprocess
    "test_feature_registry.py::test_features_list_table_totals_per_family",               # `alpha` subprocess
    "test_health.py::test_run_health_finds_a_conflict_and_a_100x_revision",
    "test_health.py::test_a_report_checked_symbol_by_symbol_is_the_report_of_one_pass",     # ~10 s
    "test_sdk_errors.py::test_empty_warehouse_says_what_to_run",                           # imports feast (~8 s)
    "test_labels_splits.py::test_purged_kfold_never_trains_on_an_interval_overlapping_the_test",   # hypothesis
    "test_labels_splits.py::test_walk_forward_trains_only_on_labels_ended_before_the_test",        # hypothesis
    "test_http.py::test_one_rate_limiter_shared_by_four_threads_never_exceeds_its_rate",
    "test_ingest.py::test_kill_mid_write_leaves_old_or_new_file_never_partial",
    "test_ingest.py::test_reingest_is_idempotent_byte_for_byte",
    "test_macro_regime_factors.py::test_fred_every_session_matches_as_of_queries_on_the_rows",
    "test_pit_engine.py::test_engine_equals_brute_force",
    "test_pit_engine.py::test_engine_with_a_fixed_knowledge_time",
    "test_silver_store.py::test_daily_bars_compact_without_changing_reads",
    "test_vendor_edgar.py::test_apple_fiscal_2014_net_income_first_report_and_later_rereports",
    "test_vendor_edgar.py::test_apple_restatement_in_a_10k_amendment_is_a_new_row_known_from_its_filing",
    "test_vendor_edgar.py::test_no_fact_is_available_before_its_filing_day_or_at_its_period_end",
    "test_vendor_edgar.py::test_same_ingest_twice_is_byte_identical_and_incremental_rerun_writes_nothing",
    "test_vendor_edgar.py::test_bad_payload_raises_and_is_kept_in_bronze",
    "test_vendor_edgar.py::test_malformed_facts_are_quarantined_with_reasons",
    "test_vendor_edgar.py::test_unknown_ticker_fails_its_job_only_and_config_ciks_extend_the_map",
    "test_vendor_fred.py::test_same_ingest_twice_is_byte_identical",
    "test_vendor_fred.py::test_a_later_clipped_window_does_not_repeat_values_silver_already_has",
    "test_vendor_fred.py::test_bad_payload_raises_and_is_kept_in_bronze",
    "test_vendor_polygon.py::test_the_same_ingest_twice_leaves_silver_byte_identical",
    "test_vendor_polygon.py::test_the_key_is_never_stored",
})


def pytest_collection_modifyitems(config, items):
    """Mark the integration tier (see the module doc); everything else is the fast tier."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        module = item.path.name
        if (names & INTEGRATION_FIXTURES or module in INTEGRATION_MODULES
                or item.get_closest_marker("slow") or item.get_closest_marker("redis")
                or any((module, name) in SLOW_FIXTURES for name in names)
                or f"{module}::{item.originalname}" in SLOW_TESTS):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def lean_root() -> Path:
    """The Lean data shipped with the project (data/demo/quantconnect-lean)."""
    if not LEAN.is_dir():
        pytest.fail(f"the shipped Lean data is missing at {LEAN}; it is part of the repository")
    return LEAN


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: the larger data sets not shipped with the project."""
    if not SHARED.is_dir():
        no_shared_data(f"no shared data at {SHARED} (clone the repo beside ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def shared_lean_root(shared_data) -> Path:
    """The full shared Lean folder (minute bars, fine fundamentals, coarse universes, ...)."""
    if not SHARED_LEAN.is_dir():
        no_shared_data(f"no Lean data at {SHARED_LEAN}")
    return SHARED_LEAN


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
    from etl.jobs import compute_factors
    from etl.serving import feast_store
    from etl.sources.archive import ingest_lean

    home = tmp_path_factory.mktemp("redis_warehouse")
    (home / "config.toml").write_text(f'redis_url = "{redis_url}"\n')
    settings = load_settings(home)
    assert settings.online_store_kind == "redis"
    ingest_lean(settings, lean_root, ["AAPL", "SPY", "IBM"])
    compute_factors(settings)
    feast_store.apply(settings)
    feast_store.materialize(settings)
    return settings


#: the [spark] table of the tests' homes: local[2], a 1 GB driver, no UI, few shuffle partitions
SPARK_TEST_CONF = {"master": "local[2]", "driver_memory": "1g", "ui": False,
                   "conf": {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"}}


@pytest.fixture(scope="session")
def spark_conf() -> dict:
    """The ``[spark]`` settings of the tests (skips loudly without pyspark or Java; fails under CI=true)."""
    from etl.core import spark as engine

    reason = engine.available()
    if reason:
        no_spark(reason)
    return SPARK_TEST_CONF


def spark_toml(redis_url: str | None = None) -> str:
    """config.toml of a home on the Spark engine with the tests' session settings."""
    conf = ", ".join(f'"{k}" = "{v}"' for k, v in SPARK_TEST_CONF["conf"].items())
    text = ('engine = "spark"\n' + (f'redis_url = "{redis_url}"\n' if redis_url else "")
            + f'[spark]\nmaster = "{SPARK_TEST_CONF["master"]}"\ndriver_memory = "{SPARK_TEST_CONF["driver_memory"]}"\n'
            + f"ui = false\nconf = {{ {conf} }}\n")
    return text


@pytest.fixture(scope="session")
def spark(spark_conf):
    """The process's SparkSession (local[2]), opened once per test worker."""
    from etl.core import spark as engine

    return engine.session(spark=spark_conf)


@pytest.fixture
def tmp_home(tmp_path):
    from etl.core.config import load_settings

    return load_settings(tmp_path / "home")


@pytest.fixture
def postgres_url():
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    with postgres_database() as url:
        yield url
