"""AlphaOfflineStore through Feast's own API, as a drop-in for the file store."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from tests.test_pit_engine import entity_rows, reference, source_rows

BASE = pd.Timestamp("2024-01-01", tz="UTC")
TTL_S = 6


def _yaml(root, offline: str = "type: sdk.pit.store.AlphaOfflineStore") -> None:
    (root / "feature_store.yaml").write_text(textwrap.dedent(f"""\
        project: plain_repo
        provider: local
        registry: {root}/registry.db
        offline_store:
          {offline}
        online_store:
          type: sqlite
          path: {root}/online.db
        entity_key_serialization_version: 3
        coerce_tz_aware: false
        """))


@pytest.fixture(scope="module")
def plain_repo(tmp_path_factory):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    root = tmp_path_factory.mktemp("plain_repo")
    _yaml(root)
    key = Entity(name="key", join_keys=["key"], value_type=ValueType.STRING)
    src = FileSource(name="src", path=str(root / "src.parquet"), timestamp_field="ts", created_timestamp_column="created")
    view = FeatureView(
        name="v", entities=[key], ttl=timedelta(seconds=TTL_S), source=src,
        schema=[Field(name="f", dtype=Float64), Field(name="s", dtype=String)],
    )
    _write_source(root / "src.parquet", [("A", 0, 0)])
    store = FeatureStore(repo_path=str(root))
    store.apply([key, src, view])
    return store, root


def _write_source(path, rows):
    pq.write_table(
        pa.table({
            "key": pa.array([k for k, _, _ in rows], pa.string()),
            "ts": pa.array([BASE + pd.Timedelta(seconds=e) for _, e, _ in rows], pa.timestamp("us", "UTC")),
            "created": pa.array([BASE + pd.Timedelta(seconds=c) for _, _, c in rows], pa.timestamp("us", "UTC")),
            "f": pa.array([float(i) for i in range(len(rows))], pa.float64()),
            "s": pa.array([f"row{i}" for i in range(len(rows))], pa.string()),
        }),
        path,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(source_rows, entity_rows)
def test_feast_api_equals_brute_force(plain_repo, raw_source, entities):
    store, root = plain_repo
    source = [(k, e, e + d) for k, e, d in raw_source]
    _write_source(root / "src.parquet", source)
    entity_df = pd.DataFrame({
        "key": [k for k, _ in entities],
        "event_timestamp": [BASE + pd.Timedelta(seconds=t) for _, t in entities],
        "tag": np.arange(len(entities)),
    })
    got = store.get_historical_features(entity_df=entity_df, features=["v:f", "v:s"]).to_df()
    want = reference(entities, source, TTL_S, True, None)
    assert got["tag"].tolist() == list(range(len(entities)))  # one row per entity row, in order
    assert got["key"].tolist() == entity_df["key"].tolist()
    expected_f = [float(i) if i >= 0 else np.nan for i in want]
    np.testing.assert_array_equal(got["f"].to_numpy(dtype=float), np.array(expected_f))
    assert [s if isinstance(s, str) else None for s in got["s"]] == [f"row{i}" if i >= 0 else None for i in want]


def test_naive_entity_times_are_rejected(plain_repo):
    from sdk import NaiveTimestampError

    store, _ = plain_repo
    entity_df = pd.DataFrame({"key": ["A"], "event_timestamp": [pd.Timestamp("2024-01-01")]})
    with pytest.raises(NaiveTimestampError, match="tz_localize"):
        store.get_historical_features(entity_df=entity_df, features=["v:f"]).to_df()


def test_drop_in_over_a_hive_folder_answers_like_alpha_history(warehouse, client, tmp_path):
    """A plain Feast repo over a hive-partitioned copy of the gold table gets the same answers."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    from etl.gold.layout import gold_path

    gold = pd.read_parquet(gold_path(warehouse["settings"], "technicals"))
    gold["year"] = gold["event_timestamp"].dt.year
    folder = tmp_path / "technicals"
    pq.write_to_dataset(pa.Table.from_pandas(gold, preserve_index=False), folder, partition_cols=["year"])
    _yaml(tmp_path)
    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    src = FileSource(name="tech", path=str(folder), timestamp_field="event_timestamp", created_timestamp_column="known_timestamp")
    view = FeatureView(
        name="technicals", entities=[symbol], ttl=timedelta(days=10), source=src,
        schema=[Field(name=c, dtype=Float64) for c in ("rsi_14", "sma_20", "atr_14")],
    )
    store = FeatureStore(repo_path=str(tmp_path))
    store.apply([symbol, src, view])
    entity = client.entity_frame(["AAPL", "SPY", "UW"], "2014-05-01", "2014-07-31")
    entity = pd.concat([entity, entity.iloc[::7]]).sample(frac=1.0, random_state=1)  # shuffled, with duplicates
    refs = ["technicals:rsi_14", "technicals:sma_20", "technicals:atr_14"]
    plain = store.get_historical_features(entity_df=entity, features=refs).to_df()
    ours = client.history(entity, refs)
    for col in ("rsi_14", "sma_20", "atr_14"):
        np.testing.assert_array_equal(plain[col].to_numpy(), ours[col].to_numpy())
    assert plain["symbol"].tolist() == entity["symbol"].tolist()
    assert ours.loc[ours["symbol"] == "AAPL", "sma_20"].notna().all()


def test_materialize_pulls_the_latest_row_per_key(plain_repo):
    store, root = plain_repo
    rows = [("A", 1, 1), ("A", 3, 3), ("A", 3, 4), ("B", 2, 2)]
    _write_source(root / "src.parquet", rows)
    store.materialize(start_date=BASE.to_pydatetime(), end_date=(BASE + pd.Timedelta(seconds=100)).to_pydatetime())
    got = store.get_online_features(features=["v:f", "v:s"], entity_rows=[{"key": "A"}, {"key": "B"}]).to_dict()
    assert got["f"] == [2.0, 3.0] and got["s"] == ["row2", "row3"]


def test_nanosecond_and_naive_source_timestamps_are_read(tmp_path):
    """Feast's duckdb store cannot materialize from ns UTC Parquet; ours reads ns and
    naive (taken as UTC, like Feast's file store) source columns alike."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    _yaml(tmp_path)
    ts = [BASE + pd.Timedelta(seconds=s) for s in (1, 2)]
    pq.write_table(pa.table({
        "key": ["A", "A"],
        "ts": pa.array(ts, pa.timestamp("ns", "UTC")),
        "created": pa.array([t.tz_localize(None) for t in ts], pa.timestamp("ns")),
        "f": [1.0, 2.0],
    }), tmp_path / "ns.parquet")
    key = Entity(name="key", join_keys=["key"], value_type=ValueType.STRING)
    src = FileSource(name="ns", path=str(tmp_path / "ns.parquet"), timestamp_field="ts", created_timestamp_column="created")
    view = FeatureView(name="nsv", entities=[key], ttl=timedelta(seconds=60), source=src, schema=[Field(name="f", dtype=Float64)])
    store = FeatureStore(repo_path=str(tmp_path))
    store.apply([key, src, view])
    got = store.get_historical_features(
        entity_df=pd.DataFrame({"key": ["A", "A"], "event_timestamp": [ts[0], ts[1] - pd.Timedelta(microseconds=1)]}),
        features=["nsv:f"],
    ).to_df()
    assert got["f"].tolist() == [1.0, 1.0]
    store.materialize(start_date=BASE.to_pydatetime(), end_date=(BASE + pd.Timedelta(seconds=10)).to_pydatetime())
    assert store.get_online_features(features=["nsv:f"], entity_rows=[{"key": "A"}]).to_dict()["f"] == [2.0]
