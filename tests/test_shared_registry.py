"""Feast's SQL registry on PostgreSQL (``registry_url``): one researcher applies, another
home that shares the gold tables and the registry queries without applying anything."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.jobs import compute_factors
from etl.serving import feast_store
from etl.sources.archive import ingest_lean
from tests.servers import postgres_database


@pytest.fixture(scope="module")
def shared(tmp_path_factory, lean_root):
    with postgres_database("alpha_registry") as url:
        yield _build(tmp_path_factory, lean_root, url)


def _build(tmp_path_factory, lean_root, url):
    root = tmp_path_factory.mktemp("shared")
    (root / "a").mkdir()
    (root / "a" / "config.toml").write_text(f'registry_url = "{url}"\n')
    a = load_settings(root / "a")
    ingest_lean(a, lean_root, ["AAPL", "SPY"])
    compute_factors(a)
    applied = feast_store.apply(a)
    # researcher B: the same gold on a shared volume, the same registry, no apply of its own
    (root / "b").mkdir()
    (root / "b" / "gold").symlink_to(a.gold)
    (root / "b" / "config.toml").write_text(f'registry_url = "{url}"\n')
    return a, load_settings(root / "b"), url, applied


def test_the_registry_lives_in_postgresql_not_in_the_home(shared):
    import sqlalchemy as sa

    a, b, url, applied = shared
    assert not a.registry_path.exists() and not b.registry_path.exists()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        views = {r[0] for r in conn.execute(sa.text("select feature_view_name from feature_views where project_id = 'alpha_warehouse'"))}
        services = {r[0] for r in conn.execute(sa.text("select feature_service_name from feature_services"))}
    engine.dispose()
    from etl.factors import registry

    assert views == set(registry.views()) and views <= set(applied)
    assert services == set(registry.SERVICES)


def test_a_second_home_queries_through_the_shared_registry(shared):
    from sdk import connect

    a, b, _, _ = shared
    refs = ["bars_daily:close", "technicals:rsi_14", "regime_daily:regime_vol"]
    mine = connect(a.home).history(["AAPL", "SPY"], refs, start="2020-03-02", end="2020-03-31")
    theirs = connect(b.home).history(["AAPL", "SPY"], refs, start="2020-03-02", end="2020-03-31")
    pd.testing.assert_frame_equal(mine, theirs)
    assert len(theirs) == 2 * 22 and theirs["close"].notna().all() and theirs["regime_vol"].notna().all()
    assert set(connect(b.home).features()) >= {"daily_v1", "daily_v2", "leakage_v2", "ta_momentum"}
