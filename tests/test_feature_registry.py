"""The factor registry: declarations -> Feast views and services -> CLI, and
the ``_lag1`` twins, on the shared Lean data through the real nightly flow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.factors import registry
from etl.factors.spec import FAMILIES, Output
from etl.gold.builder import lag_rows

REPO = Path(__file__).resolve().parents[1]
ALPHA = str(Path(sys.executable).with_name("alpha"))
SIX = {"technical", "options", "news", "fundamentals", "macro", "regime"}


def run(args, home: Path | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API"))}
    if home is not None:
        env["ALPHA_HOME"] = str(home)
    return subprocess.run([ALPHA, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def plain_features():
    views = registry.views()
    return [f for f in registry.features().values() if views[f.view].lag_of is None]


# ----------------------------------------------------------------- declarations

def test_every_family_is_declared_and_the_grid_has_over_1000_features_per_symbol_session():
    feats = plain_features()
    by_family = {fam: [f for f in feats if f.family == fam] for fam in SIX}
    assert set(FAMILIES) == SIX
    assert all(by_family[fam] for fam in SIX), {k: len(v) for k, v in by_family.items()}
    grid = [f for f in feats if f.view.startswith("ta_")]
    assert len(grid) >= 1000
    assert {f.entity for f in grid} == {"symbol"}
    # macro and regime values are market-wide; the rest are per symbol
    assert {f.entity for f in by_family["macro"] + by_family["regime"]} == {"market"}
    assert {f.entity for fam in ("technical", "options", "news", "fundamentals") for f in by_family[fam]} == {"symbol"}


def test_names_are_unique_and_every_feature_has_a_dtype_description_and_factor():
    names = [o.name for v in registry.views().values() for o in v.outputs]
    assert len(names) == len(set(names))
    for f in registry.features().values():
        assert f.dtype in {"float64", "float32", "int64", "string", "bool"}, f
        assert f.description.strip(), f.name
        if f.view != registry.BARS_VIEW and not f.view.startswith(registry.BARS_VIEW):
            assert f.factor is not None, f.name
    for factor in registry.all_factors():
        assert factor.inputs and factor.availability and factor.warmup >= 0, factor.name


def test_every_view_but_the_grid_has_a_lag_twin_with_the_same_features_renamed():
    views = registry.views()
    for name, view in views.items():
        if view.lag_of is not None:
            continue
        twin = views.get(name + "_lag1")
        if name.startswith("ta_"):
            assert twin is None
            continue
        assert twin is not None and twin.lag_of == name and twin.entity == view.entity
        assert twin.output_names == [n + "_lag1" for n in view.output_names]
        assert [o.dtype for o in twin.outputs] == [o.dtype for o in view.outputs]


def test_feast_objects_are_generated_from_the_declarations(tmp_path):
    from feast import FeatureService, FeatureView
    from feast.types import Float32, Float64, String

    from feature_repo.definitions import build_definitions

    defs = build_definitions(tmp_path)
    views = registry.views()
    assert list(defs.views) == list(views)
    assert set(defs.entities) == {"symbol", "market"}
    kinds = {"float64": Float64, "float32": Float32, "string": String}
    for name, view in views.items():
        fv = defs.views[name]
        assert isinstance(fv, FeatureView)
        assert [f.name for f in fv.features] == view.output_names
        assert [f.dtype for f in fv.features] == [kinds.get(o.dtype, f.dtype) for o, f in zip(view.outputs, fv.features, strict=True)]
        assert fv.entities == [view.entity]
        assert fv.ttl == view.ttl
        assert defs.sources[name].path == f"gold/{name}"  # the view's folder of part files, relative to the home
        assert fv.tags["family"] == view.family
    for name in registry.SERVICES:
        svc = defs.services[name]
        assert isinstance(svc, FeatureService)
        assert [p.name for p in svc.feature_view_projections] == registry.service_views(name)


def test_released_services_are_pinned():
    """A released service never changes: a new feature set is a new version."""
    assert registry.service_views("daily_v1") == ["bars_daily", "technicals"]
    v1 = [o.name for v in ("bars_daily", "technicals") for o in registry.views()[v].outputs]
    assert v1 == [
        "open", "high", "low", "close", "volume", "ticker", "session_date",
        "ret_1d", "ret_5d", "ret_21d", "rv_21d", "rsi_14", "sma_20", "macd", "macd_signal", "macd_hist",
        "atr_14", "bb_pctb_20",
    ]
    assert registry.service_views("daily_v2") == [
        "bars_daily", "technicals", "ta_overlap", "ta_momentum", "ta_volatility", "ta_volume",
        "ta_cycle", "ta_pattern", "ta_price", "ta_statistic", "options_daily", "news_daily",
        "fundamentals_daily", "macro_daily", "regime_daily",
    ]
    assert registry.service_views("leakage_v2") == [
        v + "_lag1" for v in registry.service_views("daily_v2") if not v.startswith("ta_")
    ]


# ----------------------------------------------------------------- CLI

def test_features_list_json_is_the_registry():
    out = run(["features", "list", "--json"])
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == len(plain_features())
    assert {"name", "view", "family", "dtype", "description"} <= set(rows[0])
    assert {r["family"] for r in rows} == SIX
    assert not any(r["name"].endswith("_lag1") for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["rsi_14"] == {**by_name["rsi_14"], "view": "technicals", "family": "technical", "dtype": "float64"}
    assert by_name["regime_vol"]["family"] == "regime" and by_name["regime_vol"]["entity"] == "market"

    options = json.loads(run(["features", "list", "--json", "--family", "options"]).stdout)
    assert options and {r["family"] for r in options} == {"options"}
    assert len(options) == sum(1 for r in rows if r["family"] == "options")
    lagged = json.loads(run(["features", "list", "--json", "--lagged"]).stdout)
    assert len(lagged) == len(registry.features())


def test_features_list_table_totals_per_family():
    out = run(["features", "list", "--family", "news"])
    assert out.returncode == 0, out.stderr
    n = sum(1 for f in plain_features() if f.family == "news")
    assert f"{n} features: news {n}" in out.stdout
    assert all(f.name in out.stdout for f in plain_features() if f.family == "news")


def test_describe_shows_lineage_and_coverage(warehouse):
    home = warehouse["settings"].home
    out = run(["features", "describe", "rsi_14_lag1", "--json"], home)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["view"] == "technicals_lag1" and info["family"] == "technical"
    assert info["lineage"]["lag of"] == "technicals"
    assert "bars.close" in info["lineage"]["silver inputs"]
    assert "leakage_v2" in info["lineage"]["services"]
    gold = pd.read_parquet(home / "gold" / "technicals_lag1", columns=["symbol", "rsi_14_lag1"])
    assert info["coverage"]["rows"] == f"{len(gold):,}"
    assert info["coverage"]["symbols"] == f"{gold.groupby('symbol')['rsi_14_lag1'].count().gt(0).sum()} of {gold['symbol'].nunique()} have values"

    text = run(["features", "describe", "ta_momentum:ta_rsi_14"], home)
    assert text.returncode == 0 and "view: ta_momentum" in text.stdout and "coverage:" in text.stdout
    bad = run(["features", "describe", "rsi_15"], home)
    assert bad.returncode == 1 and "unknown feature 'rsi_15'" in (bad.stdout + bad.stderr)
    assert "Traceback" not in bad.stderr


# ----------------------------------------------------------------- lag twins

def _view(name, outputs, entity="symbol", lag_of=None):
    return registry.View(name, "technical", entity, tuple(Output(o, "float64", o) for o in outputs), name, lag_of=lag_of)


def test_lag_frame_on_a_literal_frame():
    t = pd.to_datetime(["2024-01-02 21:15", "2024-01-03 21:15", "2024-01-04 21:15"], utc=True)
    revised = pd.Timestamp("2024-01-10 15:00", tz="UTC")  # the 01-03 value restated a week later
    frame = pd.DataFrame({
        "symbol": ["A", "A", "A", "A", "B"],
        "event_timestamp": [t[0], t[1], t[1], t[2], t[0]],
        "known_timestamp": [t[0], t[1], revised, t[2], t[0]],
        "created_timestamp": [t[2]] * 5,
        "x": [1.0, 2.0, 20.0, 3.0, 5.0],
    })
    out = lag_rows(frame, "symbol").rename(columns={"x": "x_lag1"})
    expected = pd.DataFrame({
        "symbol": ["A", "A", "A"],
        "event_timestamp": [t[1], t[2], t[2]],
        "known_timestamp": [t[1], t[2], revised],
        "created_timestamp": [t[2]] * 3,
        "x_lag1": [1.0, 2.0, 20.0],
    })
    for c in ("event_timestamp", "known_timestamp", "created_timestamp"):
        expected[c] = expected[c].astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(out[expected.columns].reset_index(drop=True), expected, check_dtype=False)


def test_lag_frame_keeps_a_late_known_value_late():
    """A value known after the next session's event becomes visible only when it was known."""
    t = pd.to_datetime(["2024-01-02 21:15", "2024-01-03 21:15"], utc=True)
    late = pd.Timestamp("2024-01-05 12:00", tz="UTC")
    frame = pd.DataFrame({"symbol": ["A", "A"], "event_timestamp": t, "known_timestamp": [late, t[1]],
                          "created_timestamp": [late, late], "x": [1.0, 2.0]})
    out = lag_rows(frame, "symbol").rename(columns={"x": "x_lag1"})
    assert out["known_timestamp"].tolist() == [late]
    assert out["event_timestamp"].tolist() == [t[1]]


def test_lag_views_equal_the_previous_session_through_history(client):
    """Through Feast and the point-in-time store: at each session, the _lag1 value is
    the original's value at the previous session, per symbol and on the market entity."""
    hist = client.history(
        ["AAPL", "SPY"],
        ["technicals:rsi_14", "technicals_lag1:rsi_14_lag1", "bars_daily:close", "bars_daily_lag1:close_lag1",
         "regime_daily:regime_vol_pct", "regime_daily_lag1:regime_vol_pct_lag1"],
        start="2019-01-02", end="2019-12-31",
    )
    assert len(hist) == 2 * 252
    for _, g in hist.groupby("symbol"):
        g = g.sort_values("event_timestamp")
        for col in ("rsi_14", "close", "regime_vol_pct"):
            prev = g[col].shift(1).to_numpy()[1:]
            lagged = g[col + "_lag1"].to_numpy()[1:]
            assert np.isfinite(prev).all()
            np.testing.assert_array_equal(lagged, prev)
    # market-wide values are the same for every symbol at a given time
    wide = hist.pivot(index="event_timestamp", columns="symbol", values="regime_vol_pct")
    np.testing.assert_array_equal(wide["AAPL"].to_numpy(), wide["SPY"].to_numpy())


def test_nightly_built_every_view_and_latest_serves_market_features(warehouse, client):
    from etl.gold.layout import parts

    built = warehouse["nightly"]["gold"]["views"]
    views = registry.views()
    assert set(built) == set(views)  # every view and its _lag1 twin, in one run
    gold = warehouse["settings"].gold
    assert all(parts(warehouse["settings"], v) for v in views)
    assert built["ta_momentum"]["rows"] == len(pd.read_parquet(gold / "technicals", columns=["symbol"]))
    assert warehouse["nightly"]["gold"]["families"]["regime"]["entities"] == 1
    latest = client.latest(["AAPL", "IBM"], ["regime_daily:regime_vol_pct", "ta_momentum:ta_rsi_14"], now="warehouse")
    assert latest["regime_vol_pct"].nunique() == 1 and latest["regime_vol_pct"].notna().all()
    gold = pd.read_parquet(warehouse["settings"].home / "gold" / "regime_daily")
    assert latest["regime_vol_pct"].iloc[0] == pytest.approx(gold.sort_values("event_timestamp")["regime_vol_pct"].iloc[-1])
