"""History on the Spark engine answers exactly what the local engine answers.

Both engines run in the same process on the same files: the local one (numpy,
``etl.core.pit``) and Spark (``sdk.pit.spark_join``, local[2]) through the same Feast
``get_historical_features`` and ``alpha.history``; the frames must be equal, dtypes and all.
The generated panel has what breaks joins: revisions (same event, later created time), exact
ties across two part files and within one, rows created before and after their event,
duplicate and shuffled entity rows, keys with no rows, TTL gaps; and a brute-force reference
(``tests.test_pit_engine.reference``) says what the answer must be.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_pit_engine import reference

BASE = pd.Timestamp("2024-01-01", tz="UTC")
TTL_S = 6
KEYS = ["A", "B", "C", "D"]


def _seconds(values) -> pa.Array:
    return pa.array([BASE + pd.Timedelta(seconds=int(v)) for v in values], pa.timestamp("us", "UTC"))


def _panel(rng: np.random.Generator, n: int) -> list[tuple[str, int, int]]:
    """(key, event s, created s) rows: revisions, ties, late and early writes; D has none."""
    keys = rng.choice(KEYS[:3], n)
    events = rng.integers(0, 40, n)
    created = events + rng.integers(-3, 12, n)
    rows = list(zip(keys.tolist(), events.tolist(), created.tolist(), strict=True))
    # exact ties: a row repeated (same key, event and created) later in the source
    rows += [rows[i] for i in rng.choice(len(rows), n // 5, replace=False)]
    return rows


def _write(folder, rows) -> None:
    """Two part files in name order (the second holds the later half: ties across files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    half = len(rows) // 2
    for name, lo, hi in (("part-0.parquet", 0, half), ("part-1.parquet", half, len(rows))):
        chunk = rows[lo:hi]
        pq.write_table(pa.table({
            "key": pa.array([k for k, _, _ in chunk], pa.string()),
            "ts": _seconds([e for _, e, _ in chunk]),
            "created": _seconds([c for _, _, c in chunk]),
            "f": pa.array(np.arange(lo, hi, dtype=np.float64)),          # the row's position: says which row won
            "g": pa.array(np.arange(lo, hi, dtype=np.float32) / 7, pa.float32()),
            "s": pa.array([f"row{i}" for i in range(lo, hi)], pa.string()),
            "n": pa.array(np.arange(lo, hi, dtype=np.int64)),
        }), folder / name)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, spark):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Float64, Int64, String

    root = tmp_path_factory.mktemp("spark_repo")
    (root / "config.toml").write_text('[spark]\nui = false\n')
    (root / "feature_store.yaml").write_text(textwrap.dedent(f"""\
        project: spark_repo
        provider: local
        registry: {root}/registry.db
        offline_store:
          type: sdk.pit.store.AlphaOfflineStore
          home: {root}
        online_store:
          type: sqlite
          path: {root}/online.db
        entity_key_serialization_version: 3
        coerce_tz_aware: false
        """))
    key = Entity(name="key", join_keys=["key"], value_type=ValueType.STRING)
    src = FileSource(name="src", path="src", timestamp_field="ts", created_timestamp_column="created")
    view = FeatureView(name="v", entities=[key], ttl=timedelta(seconds=TTL_S), source=src,
                       schema=[Field(name="f", dtype=Float64), Field(name="g", dtype=Float32),
                               Field(name="s", dtype=String), Field(name="n", dtype=Int64)])
    _write(root / "src", [("A", 0, 0)])
    store = FeatureStore(repo_path=str(root))
    store.apply([key, src, view])
    return store, root


def _both(store, entity_df, **options):
    from sdk.pit.store import pit_options

    out = {}
    for engine in ("local", "spark"):
        with pit_options(engine=engine, **options):
            out[engine] = store.get_historical_features(entity_df=entity_df, features=["v:f", "v:g", "v:s", "v:n"]).to_df()
    return out["local"], out["spark"]


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_panel_equals_the_local_engine_and_the_reference(repo, seed):
    store, root = repo
    rng = np.random.default_rng(seed)
    rows = _panel(rng, 160)
    _write(root / "src", rows)
    # every key (D has no rows) at every second, then duplicates, shuffled: one answer per row, in order
    times = [(k, t) for k in KEYS for t in range(0, 56)]
    times += [times[i] for i in rng.choice(len(times), 40)]
    order = rng.permutation(len(times))
    entities = [times[i] for i in order]
    entity_df = pd.DataFrame({"key": [k for k, _ in entities],
                              "event_timestamp": [BASE + pd.Timedelta(seconds=t) for _, t in entities],
                              "tag": np.arange(len(entities))}, index=pd.RangeIndex(len(entities)) * 3)
    for options, (bitemporal, as_of) in (({}, (True, None)),
                                         ({"bitemporal": False}, (False, None)),
                                         ({"as_of": BASE + pd.Timedelta(seconds=20)}, (True, 20))):
        local, spark = _both(store, entity_df, **options)
        pd.testing.assert_frame_equal(spark, local, check_exact=True)
        want = reference(entities, rows, TTL_S, bitemporal, as_of)
        np.testing.assert_array_equal(spark["f"].to_numpy(dtype=float), np.array([float(i) if i >= 0 else np.nan for i in want]))
        assert spark["tag"].tolist() == list(range(len(entities)))
        hits = sum(i >= 0 for i in want)
        assert 0 < hits < len(want)           # the panel has both values and TTL gaps / unknown keys
    assert spark["s"].dtype == object and spark["n"].dtype == object      # missing rows: objects with None, as local


def test_ties_go_to_the_later_file_then_the_later_row_on_both_engines(repo):
    store, root = repo
    # one (key, event, created) written four times: twice in each file; the last row of part-1 wins
    _write(root / "src", [("A", 5, 5), ("A", 5, 5), ("A", 5, 5), ("A", 5, 5)])
    entity_df = pd.DataFrame({"key": ["A", "A"], "event_timestamp": [BASE + pd.Timedelta(seconds=5), BASE + pd.Timedelta(seconds=12)]})
    local, spark = _both(store, entity_df)
    pd.testing.assert_frame_equal(spark, local, check_exact=True)
    assert spark["f"].tolist()[0] == 3.0 and np.isnan(spark["f"].tolist()[1])   # the last row; then out of TTL
    assert spark["n"].dtype == object and spark["n"].tolist() == [3, None]


def test_warehouse_history_on_spark_equals_local(warehouse, client, spark):
    """The demo warehouse (built by the real nightly): symbols, market views and services,
    shuffled entity rows with duplicates, a fixed knowledge time."""
    feats = ["technicals:rsi_14", "technicals:sma_20", "bars_daily:close", "core:ret_1d", "regime:vix_level"]
    views = client.features()
    feats = [f for f in feats if f.split(":")[1] in views.get(f.split(":")[0], [])]
    assert len(feats) >= 3, views.keys()
    entity = client.entity_frame(["AAPL", "SPY", "IBM", "UW"], "2014-01-01", "2015-06-30")
    entity = pd.concat([entity, entity.iloc[::11]]).sample(frac=1.0, random_state=3)
    local = client.history(entity, feats, engine="local")
    spark = client.history(entity, feats, engine="spark")
    pd.testing.assert_frame_equal(spark, local, check_exact=True)
    assert local[feats[0].split(":")[1]].notna().mean() > 0.5
    as_of = pd.Timestamp("2015-01-05", tz="UTC")
    pd.testing.assert_frame_equal(client.history(entity, feats, as_of=as_of, engine="spark"),
                                  client.history(entity, feats, as_of=as_of, engine="local"), check_exact=True)


def test_a_home_on_the_spark_engine_reads_through_spark(tmp_path):
    """``engine = "spark"`` in config.toml puts the engine in Feast's config (no per-call option)."""
    from etl.core.config import load_settings
    from etl.serving.feast_store import repo_config

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('engine = "spark"\n')
    settings = load_settings(home)
    assert settings.engine == "spark"
    assert repo_config(settings).offline_store.engine == "spark"


def test_an_unknown_engine_is_refused(tmp_path):
    from etl.core.config import load_settings
    from etl.core.errors import ConfigError
    from sdk.pit.store import pit_options

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('engine = "dask"\n')
    with pytest.raises(ConfigError, match=r"engine must be one of \['local', 'spark'\]"):
        load_settings(home)
    (home / "config.toml").write_text('[spark]\nmaster = "local[2]"\nmemory = "2g"\n')
    with pytest.raises(ConfigError, match=r"\[spark\] has unknown key\(s\) \['memory'\]"):
        load_settings(home)
    from etl.core.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="engine must be 'local' or 'spark'"), pit_options(engine="ray"):
        pass
