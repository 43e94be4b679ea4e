"""The silver store and the watermarks: append-only parts, idempotency,
compaction that changes no query result, quarantine, SQLite and PostgreSQL
watermarks. Real files, a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import BadInputError, BadSymbolError, NotIngestedError
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
    ingest_lean(settings, lean_root, ["GOOG"])   # GOOG shares AAPL's bucket
    from etl.storage.bars import bucket_dir, read_silver_bars, symbol_bucket

    assert symbol_bucket("AAPL") == symbol_bucket("GOOG")
    bucket = bucket_dir(settings, symbol_bucket("AAPL"))
    before = read_silver_bars(settings, versions="all")
    assert len(list(bucket.glob("*.parquet"))) == 2
    silver.compact(settings, BARS_DAILY)
    assert len(list(bucket.glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(read_silver_bars(settings, versions="all"), before)


# ------------------------------------------------------- the daily-bar layout

def sessions(start: str, end: str) -> list[str]:
    from etl.core import clock

    return [f"{d:%Y-%m-%d}" for d in clock.sessions_in_range(start, end)]


def bars(symbols: list[str], days: list[str], close: float = 10.0) -> pd.DataFrame:
    """Validated-bar rows (what an adapter hands to write_silver_bars)."""
    rows = [(s, pd.Timestamp(d)) for s in symbols for d in days]
    return pd.DataFrame({"symbol": [r[0] for r in rows], "session": [r[1] for r in rows], "open": close,
                         "high": close + 1, "low": close - 1, "close": close, "volume": 1000.0})


def test_bars_live_in_their_symbols_bucket_and_reads_push_down(tmp_path):
    from etl.storage.bars import bar_files, bucket_dir, read_silver_bars, symbol_bucket, write_silver_bars

    settings = load_settings(tmp_path / "home")
    symbols = ["AAPL", "SPY", "IBM", "GOOG", "BRK.B"]
    days = ["2024-01-02", "2024-01-03", "2024-01-04", "2025-01-02"]
    stats = write_silver_bars(settings, bars(symbols, days), source="test", now=NOW)
    assert stats == {"new": 20, "revised": 0, "unchanged": 0}
    folders = sorted(p.name for p in (settings.silver / "bars_daily").iterdir())
    assert folders == sorted({f"bucket={symbol_bucket(s):02d}" for s in symbols})  # no year folders
    assert len(folders) == 4   # AAPL and GOOG share a bucket
    part = next(bucket_dir(settings, symbol_bucket("AAPL")).glob("*.parquet"))
    assert sorted(set(pd.read_parquet(part)["symbol"])) == ["AAPL", "GOOG"]   # the symbol is a column of the file
    # a read of some symbols opens their buckets only, and returns only them
    assert bar_files(settings, ["SPY"]) == list(bucket_dir(settings, symbol_bucket("SPY")).glob("*.parquet"))
    got = read_silver_bars(settings, ["GOOG", "SPY"], start="2024-01-03", end="2024-12-31")
    assert got[["symbol", "session"]].values.tolist() == [
        ["GOOG", pd.Timestamp("2024-01-03")], ["GOOG", pd.Timestamp("2024-01-04")],
        ["SPY", pd.Timestamp("2024-01-03")], ["SPY", pd.Timestamp("2024-01-04")]]
    assert list(got.columns) == ["symbol", "session", "ticker", "open", "high", "low", "close", "volume", "source",
                                 "event_timestamp", "known_timestamp", "created_timestamp"]
    with pytest.raises(NotIngestedError, match="NOPE"):
        read_silver_bars(settings, ["NOPE"])


def test_row_groups_let_a_reader_skip_other_symbols(tmp_path):
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from etl.storage.bars import bar_files, symbol_bucket, write_silver_bars

    settings = load_settings(tmp_path / "home")
    symbols = [s for s in (f"S{i:04d}" for i in range(3000)) if symbol_bucket(s) == 0][:40]   # one bucket
    write_silver_bars(settings, bars(symbols, sessions("2023-01-03", "2023-12-29")), "test", NOW)
    [big] = bar_files(settings)
    meta, size = pq.read_metadata(big), BARS_DAILY.row_group_size
    assert meta.num_rows == 40 * 250 and meta.num_row_groups == -(-meta.num_rows // size) > 1
    one = pd.read_parquet(big, columns=["symbol"])["symbol"].iloc[0]
    fragment = next(ds.dataset([str(big)], format="parquet").get_fragments())
    assert len(fragment.split_by_row_group(filter=ds.field("symbol") == one)) < meta.num_row_groups


def test_a_night_writes_one_small_part_per_bucket_and_merges_small_parts(tmp_path):
    from etl.storage.bars import MERGE_AT, bucket_dir, read_silver_bars, symbol_bucket, write_silver_bars

    settings = load_settings(tmp_path / "home")
    symbols = ["AAPL", "GOOG"]   # one bucket
    history = sessions("2023-01-03", "2023-12-29")
    write_silver_bars(settings, bars(symbols, history), "test", NOW)
    bucket = bucket_dir(settings, symbol_bucket("AAPL"))
    base = next(bucket.glob("*.parquet"))
    nights = sessions("2024-01-02", "2024-01-16")
    counts = []
    for k, day in enumerate(nights):
        stats = write_silver_bars(settings, bars(symbols, [day]), "test", NOW + pd.Timedelta(days=k))
        assert stats == {"new": 2, "revised": 0, "unchanged": 0}
        counts.append(len(list(bucket.glob("*.parquet"))))
        assert base.exists()   # the big part is never rewritten by a night
    # parts grow by one a night until MERGE_AT, when the small ones become one
    assert max(counts) == MERGE_AT - 1 and counts[MERGE_AT - 2] == 2
    got = read_silver_bars(settings, versions="all")
    assert len(got) == 2 * (len(history) + len(nights)) and not got.duplicated(["symbol", "session"]).any()
    # the same night again adds nothing
    assert write_silver_bars(settings, bars(symbols, nights), "test", NOW + pd.Timedelta(days=30))["unchanged"] == 20


def test_a_second_source_history_is_not_rewritten_by_the_nights(tmp_path):
    """Two sources' histories in one bucket are two large parts: a night merges only small ones."""
    from etl.storage.bars import MERGE_AT, bucket_dir, read_silver_bars, symbol_bucket, write_silver_bars

    settings = load_settings(tmp_path / "home")
    symbols = ["AAPL", "GOOG"]   # one bucket
    history = sessions("2023-01-03", "2023-12-29")
    write_silver_bars(settings, bars(symbols, history), "vendor_a", NOW)
    write_silver_bars(settings, bars(symbols, history), "vendor_b", NOW + pd.Timedelta(hours=1))
    bucket = bucket_dir(settings, symbol_bucket("AAPL"))
    bigs = sorted(bucket.glob("*.parquet"))
    assert len(bigs) == 2
    nights = sessions("2024-01-02", "2024-01-16")
    for k, day in enumerate(nights):
        for j, source in enumerate(("vendor_a", "vendor_b")):
            write_silver_bars(settings, bars(symbols, [day]), source, NOW + pd.Timedelta(days=k + 1, minutes=j))
            assert all(p.exists() for p in bigs)   # neither history is rewritten by a night
            assert len(list(bucket.glob("*.parquet"))) <= MERGE_AT
    got = read_silver_bars(settings, versions="all", sources="all")
    assert len(got) == 2 * 2 * (len(history) + len(nights))


def test_a_copy_left_by_an_interrupted_merge_changes_no_read(tmp_path):
    from etl.storage.bars import bucket_dir, read_silver_bars, symbol_bucket, write_silver_bars

    settings = load_settings(tmp_path / "home")
    write_silver_bars(settings, bars(["AAPL", "SPY"], ["2024-01-02", "2024-01-03"]), "test", NOW)
    before = read_silver_bars(settings, versions="all")
    bucket = bucket_dir(settings, symbol_bucket("AAPL"))
    shutil.copy(next(bucket.glob("*.parquet")), bucket / "part-copy.parquet")
    pd.testing.assert_frame_equal(read_silver_bars(settings, versions="all"), before)


def test_the_year_layout_is_read_and_moved_into_buckets_on_the_next_write(tmp_path):
    from etl.storage.bars import read_silver_bars, write_silver_bars
    from etl.storage.silver import Table, by_year

    settings = load_settings(tmp_path / "home")
    write_silver_bars(settings, bars(["AAPL", "SPY"], ["2023-12-29", "2024-01-02"]), "test", NOW)
    rows = read_silver_bars(settings, versions="all")
    shutil.rmtree(settings.silver / "bars_daily")
    # the layout before buckets: silver/bars_daily/year=YYYY/part-*.parquet
    old = Table("bars_daily", BARS_DAILY.key, ("year",), by_year("session"), timestamp_columns=("known_timestamp",))
    silver.write_rows(settings, old, rows)
    assert sorted(p.name for p in (settings.silver / "bars_daily").iterdir()) == ["year=2023", "year=2024"]
    pd.testing.assert_frame_equal(read_silver_bars(settings, versions="all"), rows)
    pd.testing.assert_frame_equal(read_silver_bars(settings, ["SPY"], versions="all"), rows[rows["symbol"] == "SPY"].reset_index(drop=True))

    stats = write_silver_bars(settings, bars(["AAPL", "SPY"], ["2023-12-29", "2024-01-02", "2024-01-03"]), "test",
                              NOW + pd.Timedelta(days=1))
    assert stats == {"new": 2, "revised": 0, "unchanged": 4}
    assert not list((settings.silver / "bars_daily").glob("year=*"))
    after = read_silver_bars(settings, versions="all")
    moved = after[after["session"] < "2024-01-03"].reset_index(drop=True)
    pd.testing.assert_frame_equal(moved, rows)   # write times and all: the rows are moved, not rewritten


def test_symbol_chunks_pack_whole_buckets():
    from etl.storage.bars import symbol_bucket, symbol_chunks

    symbols = [f"S{i:04d}" for i in range(1000)]
    chunks = symbol_chunks(symbols + ["S0001"], 64)
    assert sorted(s for c in chunks for s in c) == symbols and all(1 <= len(c) <= 64 for c in chunks)
    homes = [{symbol_bucket(s) for s in c} for c in chunks]
    # a bucket lives in one chunk (none has more than 64 symbols here)
    assert sum(len(h) for h in homes) == len(set().union(*homes)) == 64
    assert symbol_chunks(symbols, 1) == [[s] for c in chunks for s in c]


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
