"""The silver store and the watermarks: append-only parts, idempotency,
compaction that changes no query result, quarantine, SQLite and PostgreSQL
watermarks. Real files, a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import BadInputError, BadSymbolError
from etl.sources.archive import ingest_lean
from etl.sources.base import check_symbols
from etl.storage import silver
from etl.storage.tables import BARS_DAILY, MACRO
from etl.storage.watermarks import WatermarkStore, open_watermarks

NOW = pd.Timestamp("2026-11-22 12:00", tz="UTC")


def tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def macro_rows(values: list[float], vintage: str) -> pd.DataFrame:
    """A few real PAYEMS observations (FRBNY vintages) in the macro table's shape."""
    periods = pd.to_datetime(["2016-03-01", "2016-04-01", "2016-05-01"][: len(values)])
    return pd.DataFrame(
        {
            "series_id": "PAYEMS",
            "period": periods,
            "value": values,
            "realtime_start": vintage,
            "event_timestamp": pd.Timestamp(vintage, tz="America/New_York") + pd.Timedelta(hours=8, minutes=30),
        }
    )


def test_append_is_idempotent_and_versions_are_new_rows(tmp_path):
    settings = load_settings(tmp_path / "home")
    first = macro_rows([143_616.0, 143_856.0, 143_894.0], "2016-06-29")
    s1 = silver.append(settings, MACRO, first, NOW)
    assert (s1.new, s1.unchanged, s1.files) == (3, 0, 1)
    before = tree_digest(settings.silver)

    s2 = silver.append(settings, MACRO, first, NOW + pd.Timedelta(hours=1))
    assert (s2.new, s2.unchanged, s2.files) == (0, 3, 0)
    assert tree_digest(settings.silver) == before  # byte-identical

    revised = macro_rows([143_616.0, 143_877.0], "2016-07-29")  # PAYEMS 2016-04 revised in the next vintage
    s3 = silver.append(settings, MACRO, revised, NOW + pd.Timedelta(days=1))
    assert s3.new == 2
    table = silver.read(settings, MACRO)
    april = table[table["period"] == "2016-04-01"]
    assert april["value"].tolist() == [143_856.0, 143_877.0]
    assert april["realtime_start"].tolist() == ["2016-06-29", "2016-07-29"]
    assert (table["created_timestamp"].dt.tz is not None) and str(table["event_timestamp"].dtype) == "datetime64[us, UTC]"


def test_compaction_changes_no_query_result_and_survives_a_half_done_run(tmp_path):
    settings = load_settings(tmp_path / "home")
    for i, vintage in enumerate(["2016-06-29", "2016-07-08", "2016-07-29"]):
        silver.append(settings, MACRO, macro_rows([143_600.0 + i, 143_856.0 + i], vintage), NOW + pd.Timedelta(days=i))
    pdir = MACRO.path(settings) / "series_id=PAYEMS"
    assert len(list(pdir.glob("*.parquet"))) == 3
    before = silver.read(settings, MACRO)

    # a compaction killed after writing the merged file but before deleting the parts
    # leaves every row twice on disk: readers must still give the same answer
    shutil.copy(next(pdir.glob("*.parquet")), pdir / "part-copy-of-a-part.parquet")
    pd.testing.assert_frame_equal(silver.read(settings, MACRO), before)

    out = silver.compact(settings, MACRO)
    assert out == {"table": "macro_observations", "partitions": 1, "files_removed": 4}
    assert len(list(pdir.glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(silver.read(settings, MACRO), before)
    # compacting again is a no-op, and appending the same rows still adds nothing
    assert silver.compact(settings, MACRO)["partitions"] == 0
    assert silver.append(settings, MACRO, macro_rows([143_600.0, 143_856.0], "2016-06-29"), NOW).new == 0


def test_daily_bars_compact_without_changing_reads(tmp_path, lean_root):
    settings = load_settings(tmp_path / "home")
    ingest_lean(settings, lean_root, ["AAPL"])
    ingest_lean(settings, lean_root, ["SPY"])
    from etl.storage.bars import read_silver_bars

    before = read_silver_bars(settings, versions="all")
    assert len(list((settings.silver / "bars_daily" / "year=2014").glob("*.parquet"))) == 2
    silver.compact(settings, BARS_DAILY)
    assert len(list((settings.silver / "bars_daily" / "year=2014").glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(read_silver_bars(settings, versions="all"), before)


def test_partition_values_must_be_path_safe(tmp_path):
    settings = load_settings(tmp_path / "home")
    rows = macro_rows([1.0], "2016-06-29").assign(series_id="../../etc")
    with pytest.raises(BadInputError, match="not path-safe"):
        silver.append(settings, MACRO, rows, NOW)
    assert not (settings.home.parent / "etc").exists()


@pytest.mark.parametrize("bad", ["../../etc", "", "AAPL/MSFT", ".hidden", "A" * 30, "a b"])
def test_bad_symbols_are_refused(bad):
    with pytest.raises(BadSymbolError, match="not valid symbol"):
        check_symbols([bad])


def test_check_symbols_normalises():
    assert check_symbols(["aapl", "BRK.B", "AAPL", "BF-B"]) == ["AAPL", "BRK.B", "BF-B"]


def test_quarantine_same_input_same_file(tmp_path):
    settings = load_settings(tmp_path / "home")
    rejects = pd.DataFrame({"source": ["fred"], "source_file": ["u"], "source_row": [3], "symbol": ["PAYEMS"], "raw": ['{"value":"x"}'], "reason": ["non-numeric value 'x'"]})
    p1 = silver.quarantine(settings, "macro_observations", rejects, "batch-1", NOW)
    p2 = silver.quarantine(settings, "macro_observations", rejects, "batch-1", NOW + pd.Timedelta(hours=1))
    assert p1 == p2
    q = silver.read_quarantine(settings)
    assert len(q) == 1 and q["reason"].iloc[0] == "non-numeric value 'x'" and q["table"].iloc[0] == "macro_observations"


def _exercise(store: WatermarkStore) -> None:
    assert store.get("polygon", "daily", "AAPL") is None
    store.advance("polygon", "daily", "AAPL", "2014-06-06", rows=25)
    store.advance("polygon", "daily", "AAPL", "2014-06-09", rows=1)
    store.advance("polygon", "daily", "AAPL", "2014-06-02", rows=0)  # never moves back
    store.advance("polygon", "daily", "SPY", "2014-06-09", rows=3)
    assert store.get("polygon", "daily", "AAPL") == "2014-06-09"
    frame = store.all()
    assert frame[["symbol", "high_water", "rows"]].values.tolist() == [["AAPL", "2014-06-09", 26], ["SPY", "2014-06-09", 3]]


def test_watermarks_sqlite_default(tmp_path):
    settings = load_settings(tmp_path / "home")
    store = open_watermarks(settings)
    try:
        _exercise(store)
        assert store.url.endswith("state/state.db")
    finally:
        store.dispose()



def test_watermarks_postgresql(tmp_path, postgres_url):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.toml").write_text(f'state_url = "{postgres_url}"\n')
    settings = load_settings(tmp_path / "home")
    store = open_watermarks(settings)
    try:
        _exercise(store)
        assert store.url.startswith("postgresql")
    finally:
        store.dispose()
    assert not (tmp_path / "home" / "state").exists()
