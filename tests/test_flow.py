"""The nightly Prefect flow (run for real by the `warehouse` fixture)."""

from __future__ import annotations

import pytest

from etl.core.errors import NotIngestedError


def test_nightly_chains_factors_apply_and_materialize(warehouse):
    result = warehouse["nightly"]
    assert result["gold"]["symbols"] == 5
    assert result["gold"]["views"]["bars_daily"]["rows"] == warehouse["ingest"].rows_read
    from etl.factors import registry

    views = registry.views()
    declared = [f for f in registry.features().values() if views[f.view].lag_of is None]
    assert result["gold"]["features"] == len(declared) > 1000
    assert set(result["applied"]) >= {"symbol", "market", "daily_v1", "daily_v2", "leakage_v2", *views}
    assert result["online"]["online_store"] == "sqlite"
    settings = warehouse["settings"]
    assert settings.registry_path.exists() and settings.online_sqlite_path.exists()


def test_nightly_on_an_empty_warehouse_fails_fast_with_what_to_run(tmp_path, warehouse):
    from flows.nightly import nightly

    with pytest.raises(NotIngestedError, match="alpha ingest"):
        nightly(str(tmp_path / "empty"))
