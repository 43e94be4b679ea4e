"""Ingest: Lean and CSV adapters, validation, quarantine, idempotency, atomic writes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import BadInputError, UnknownSymbolError
from etl.sources.archive import ingest_csv_folder, ingest_lean
from etl.storage.bars import read_silver_bars, silver_bars_dir


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file below root (what 'nothing changed' means)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def write_csv(folder: Path, symbol: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{symbol}.csv"
    path.write_text(text)
    return path


GOOD = "date,open,high,low,close,volume\n2014-06-05,10,11,9.5,10.5,1000\n2014-06-06,10.5,11.2,10.1,11,1200\n2014-06-09,11,11.5,10.8,11.4,900\n"


def test_lean_prices_are_dollars_and_available_at_close_plus_delay(tmp_home, lean_root):
    report = ingest_lean(tmp_home, lean_root, ["AAPL"])
    assert report.new == 5849 == report.rows_read and report.revised == 0
    bars = read_silver_bars(tmp_home).set_index("session")
    # SOURCE.txt: AAPL close 2014-06-06 = 645.57 and 2014-06-09 = 93.70 (7:1 split visible in raw bars)
    assert bars.loc["2014-06-06", "close"] == pytest.approx(645.57)
    assert bars.loc["2014-06-09", "close"] == pytest.approx(93.70)
    assert bars.loc["2014-06-06", "volume"] == 12116671
    # 16:00 New York (EDT) + 15 minutes = 20:15 UTC
    assert bars.loc["2014-06-06", "event_timestamp"] == pd.Timestamp("2014-06-06 20:15", tz="UTC")
    assert (bars["created_timestamp"] > bars["event_timestamp"]).all()
    assert str(bars["event_timestamp"].dtype) == "datetime64[us, UTC]"


def test_lean_map_file_gives_ticker_as_traded(tmp_home, lean_root):
    ingest_lean(tmp_home, lean_root, ["WM"])
    bars = read_silver_bars(tmp_home).set_index("session")
    # wm.csv map file: WMI until 2009-08-04, then WM (one security, two tickers)
    assert bars.loc[:"2009-08-04", "ticker"].iloc[-1] == "WMI"  # wm.csv itself has no 08-03/04 rows
    assert bars.loc["2009-08-05", "ticker"] == "WM"
    assert bars.loc["2021-03-31", "ticker"] == "WM"


def test_lean_unknown_symbol_is_a_clear_error(tmp_home, lean_root):
    with pytest.raises(UnknownSymbolError, match="NOPE"):
        ingest_lean(tmp_home, lean_root, ["NOPE"])


def test_reingest_is_idempotent_byte_for_byte(tmp_home, lean_root):
    ingest_lean(tmp_home, lean_root, ["SPY", "IBM"])
    before = tree_digest(tmp_home.silver)
    again = ingest_lean(tmp_home, lean_root, ["SPY", "IBM"])
    assert again.new == 0 and again.revised == 0 and again.unchanged == again.rows_read
    assert tree_digest(tmp_home.silver) == before


def test_csv_revision_is_a_new_row_known_from_when_it_was_written(tmp_home, tmp_path):
    folder = tmp_path / "csv"
    write_csv(folder, "ACME", GOOD)
    t1 = pd.Timestamp("2020-01-01", tz="UTC")
    ingest_csv_folder(tmp_home, folder, now=t1)
    write_csv(folder, "ACME", GOOD.replace("2014-06-06,10.5,11.2,10.1,11,1200", "2014-06-06,10.5,11.2,10.1,11.1,1200"))
    t2 = pd.Timestamp("2020-02-01", tz="UTC")
    report = ingest_csv_folder(tmp_home, folder, now=t2)
    assert (report.new, report.revised, report.unchanged) == (0, 1, 2)
    versions = read_silver_bars(tmp_home, versions="all")
    day = versions[versions["session"] == "2014-06-06"].sort_values("created_timestamp")
    assert day["close"].tolist() == [11.0, 11.1]
    # both versions describe the same session; the first was knowable at the close,
    # the revision only from when we received it
    assert (day["event_timestamp"] == pd.Timestamp("2014-06-06 20:15", tz="UTC")).all()
    assert day["known_timestamp"].tolist() == [pd.Timestamp("2014-06-06 20:15", tz="UTC"), t2]
    assert day["created_timestamp"].tolist() == [t1, t2]
    assert read_silver_bars(tmp_home).set_index("session").loc["2014-06-06", "close"] == 11.0


BAD_CASES = {
    "missing_column": ("date,open,high,low,close\n2014-06-05,10,11,9.5,10.5\n", 1, "missing column"),
    "non_numeric_price": (GOOD.replace("10.5,11.2,10.1,11,1200", "10.5,abc,10.1,11,1200"), 3, "non-numeric high 'abc'"),
    "negative_volume": (GOOD.replace("11.4,900", "11.4,-900"), 4, "negative volume -900"),
    "duplicated_date": (GOOD + "2014-06-09,11,11.5,10.8,11.3,950\n", 4, "duplicated date 2014-06-09"),
    "empty_price": (GOOD.replace("10.5,11.2,10.1,11,1200", "10.5,,10.1,11,1200"), 3, "missing high"),
    "not_a_session": (GOOD.replace("2014-06-09", "2014-06-08"), 4, "2014-06-08 is not a XNYS session"),
    "inconsistent_bar": (GOOD.replace("11,11.5,10.8,11.4", "11,10.9,10.8,11.4"), 4, "inconsistent bar"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_csv_names_file_and_row_and_changes_nothing(case, tmp_home, tmp_path):
    good_folder = tmp_path / "good"
    write_csv(good_folder, "GOOD", GOOD)
    ingest_csv_folder(tmp_home, good_folder)
    before = tree_digest(tmp_home.silver)

    text, row, reason = BAD_CASES[case]
    bad_folder = tmp_path / "bad"
    path = write_csv(bad_folder, "BAD", text)
    write_csv(bad_folder, "OTHER", GOOD)  # a good file beside it is not half-written either
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, bad_folder)
    message = str(err.value)
    assert str(path) in message and f"row {row}" in message and reason in message
    assert any(p[0] == str(path) and p[1] == row and reason in p[2] for p in err.value.problems)
    assert tree_digest(tmp_home.silver) == before, "a rejected ingest must not change silver"
    if case != "missing_column":
        quarantined = pd.read_parquet(err.value.quarantine_path)
        hit = quarantined[(quarantined["source_file"] == str(path)) & (quarantined["source_row"] == row)]
        assert len(hit) >= 1 and reason in hit["reason"].iloc[0]
        assert hit["raw"].iloc[0]  # the rejected values are kept as received


def test_duplicated_date_quarantines_every_copy(tmp_home, tmp_path):
    folder = tmp_path / "dup"
    path = write_csv(folder, "DUP", GOOD + "2014-06-09,11,11.5,10.8,11.3,950\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    rows = sorted(p[1] for p in err.value.problems if p[0] == str(path))
    assert rows == [4, 5]


def test_csv_folder_errors(tmp_home, tmp_path):
    with pytest.raises(BadInputError, match="not a folder"):
        ingest_csv_folder(tmp_home, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no <SYMBOL>.csv"):
        ingest_csv_folder(tmp_home, tmp_path / "empty")
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "a b.csv").write_text(GOOD)
    with pytest.raises(BadInputError, match="not a valid symbol"):
        ingest_csv_folder(tmp_home, tmp_path / "weird")
    assert not silver_bars_dir(tmp_home).exists()


# ------------------------------------------------- CSV folders at scale: chunks, files unchanged or grown

def folder_of(path: Path, n: int, days: list[str]) -> Path:
    """``n`` files S000.csv.. with one bar per day (close 10 + i + j/100)."""
    for i in range(n):
        lines = ["date,open,high,low,close,volume"]
        lines += [f"{d},{10 + i},{11 + i + j / 100:.2f},{9 + i},{10 + i + j / 100:.2f},{1000 + j}" for j, d in enumerate(days)]
        write_csv(path, f"S{i:03d}", "\n".join(lines) + "\n")
    return path


def sessions(start: str, end: str) -> list[str]:
    from etl.core import clock

    return [f"{d:%Y-%m-%d}" for d in clock.sessions_in_range(start, end)]


def logical(settings) -> pd.DataFrame:
    """Every stored version, write times dropped: what two ways of ingesting must agree on."""
    return read_silver_bars(settings, versions="all").drop(columns=["created_timestamp"])


def test_a_rerun_reads_no_file_and_changes_nothing(tmp_home, tmp_path):
    folder = folder_of(tmp_path / "csv", 70, sessions("2024-01-02", "2024-01-31"))
    steps = []
    first = ingest_csv_folder(tmp_home, folder, step=lambda *a: steps.append(a))
    assert (first.files, first.new, first.unchanged_files) == (70, 70 * 21, 0)
    # 70 symbols are two chunks (at most 64 each): each validated, then each written
    assert steps == [("validate", 1, 2), ("validate", 2, 2), ("write", 1, 2), ("write", 2, 2)]
    assert not list((tmp_home.home / ".staging").glob("*/*"))   # the staged chunks are gone
    before = tree_digest(tmp_home.silver)
    again = ingest_csv_folder(tmp_home, folder)
    assert (again.unchanged_files, again.rows_read, again.new, again.unchanged) == (70, 0, 0, 70 * 21)
    assert "(70 unchanged since the last ingest, not read)" in again.summary()
    assert tree_digest(tmp_home.silver) == before
    # touching a file (same bytes) does not make it changed
    (folder / "S001.csv").touch()
    assert ingest_csv_folder(tmp_home, folder).unchanged_files == 70


def test_a_grown_file_is_read_from_where_it_ended_and_equals_a_whole_read(tmp_home, tmp_path):
    days = sessions("2024-01-02", "2024-02-29")
    folder = folder_of(tmp_path / "csv", 5, days[:-2])
    ingest_csv_folder(tmp_home, folder, now=pd.Timestamp("2024-03-01", tz="UTC"))
    folder_of(folder, 5, days)   # every file gains two sessions; the old lines are the same bytes
    report = ingest_csv_folder(tmp_home, folder, now=pd.Timestamp("2024-03-02", tz="UTC"))
    assert (report.rows_read, report.new, report.revised, report.unchanged) == (10, 10, 0, 0)
    fresh = load_settings(tmp_path / "fresh")
    ingest_csv_folder(fresh, folder, now=pd.Timestamp("2024-03-02", tz="UTC"))
    pd.testing.assert_frame_equal(logical(tmp_home), logical(fresh))


def test_a_bad_new_line_is_named_with_its_line_in_the_file(tmp_home, tmp_path):
    days = sessions("2024-01-02", "2024-01-31")
    folder = folder_of(tmp_path / "csv", 3, days)
    ingest_csv_folder(tmp_home, folder)
    before = tree_digest(tmp_home.silver)
    path = folder / "S001.csv"
    with open(path, "a") as fh:
        fh.write("2024-02-01,11,12,10,11,-5\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert err.value.problems == [(str(path), len(days) + 2, "negative volume -5")]
    assert tree_digest(tmp_home.silver) == before
    # fixed: the new line is read, and only it
    path.write_text(path.read_text().replace(",-5\n", ",5\n"))
    report = ingest_csv_folder(tmp_home, folder)
    assert (report.rows_read, report.new, report.unchanged_files) == (1, 1, 2)


def test_a_new_line_dated_before_the_end_reads_the_file_whole(tmp_home, tmp_path):
    days = sessions("2024-01-02", "2024-01-31")
    folder = folder_of(tmp_path / "csv", 2, days)
    ingest_csv_folder(tmp_home, folder)
    path = folder / "S000.csv"
    with open(path, "a") as fh:   # a second bar for a session the file already has
        fh.write(f"{days[3]},10,12,9,11,1000\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert sorted(p[1] for p in err.value.problems) == [5, len(days) + 2]   # both copies, as a whole read finds them
    assert all("duplicated date" in p[2] for p in err.value.problems)


def test_an_edited_file_is_read_whole_and_its_changed_bar_is_a_revision(tmp_home, tmp_path):
    days = sessions("2024-01-02", "2024-01-31")
    folder = folder_of(tmp_path / "csv", 3, days)
    ingest_csv_folder(tmp_home, folder, now=pd.Timestamp("2024-02-01", tz="UTC"))
    path = folder / "S002.csv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 2)[0] + ",12.55,1003"   # the close of days[3] restated
    path.write_text("\n".join(lines) + "\n")
    report = ingest_csv_folder(tmp_home, folder, now=pd.Timestamp("2024-02-02", tz="UTC"))
    assert (report.unchanged_files, report.rows_read, report.revised, report.unchanged) == (2, len(days), 1, 3 * len(days) - 1)
    versions = read_silver_bars(tmp_home, ["S002"], versions="all")
    day = versions[versions["session"] == days[3]]
    assert day["close"].tolist() == [12.03, 12.55]
    assert day["known_timestamp"].iloc[1] == pd.Timestamp("2024-02-02", tz="UTC")


def test_one_bad_file_in_the_last_chunk_writes_nothing(tmp_home, tmp_path):
    folder = folder_of(tmp_path / "csv", 70, sessions("2024-01-02", "2024-01-12"))
    from etl.storage.bars import symbol_chunks

    last = symbol_chunks([f"S{i:03d}" for i in range(70)], 64)[-1][-1]
    bad = folder / f"{last}.csv"
    bad.write_text(bad.read_text().replace(",1002\n", ",abc\n"))
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert [(p[0], p[1]) for p in err.value.problems] == [(str(bad), 4)]
    assert not silver_bars_dir(tmp_home).exists() and not (tmp_home.bronze / "csv").exists()
    assert not list((tmp_home.home / ".staging").glob("*/*"))


def test_each_file_keeps_its_own_date_format(tmp_home, tmp_path):
    folder = tmp_path / "csv"
    write_csv(folder, "ISO", GOOD)
    write_csv(folder, "US", GOOD.replace("2014-06-05", "06/05/2014").replace("2014-06-06", "06/06/2014").replace("2014-06-09", "06/09/2014"))
    # every day <= 12: month first or day first? refused until declared (tests/faults/test_input_faults.py)
    (folder / "format.toml").write_text('date_format = "%m/%d/%Y"\n')
    ingest_csv_folder(tmp_home, folder)
    with open(folder / "US.csv", "a") as fh:
        fh.write("06/10/2014,11,12,10,11.5,800\n")
    report = ingest_csv_folder(tmp_home, folder)
    assert (report.rows_read, report.new) == (1, 1)
    bars = read_silver_bars(tmp_home)
    assert bars.groupby("symbol")["session"].apply(list).to_dict() == {
        "ISO": list(pd.to_datetime(["2014-06-05", "2014-06-06", "2014-06-09"])),
        "US": list(pd.to_datetime(["2014-06-05", "2014-06-06", "2014-06-09", "2014-06-10"]))}


def test_a_symbol_with_two_files_is_refused(tmp_home, tmp_path):
    folder = tmp_path / "csv"
    write_csv(folder, "ACME", GOOD)
    ingest_csv_folder(tmp_home, folder)
    before = tree_digest(tmp_home.silver)
    (folder / "acme.csv").write_text("date,open,high,low,close,volume\n2014-06-10,11,12,10,11.5,800\n")
    with pytest.raises(BadInputError) as err:   # never merged: which file holds ACME's bars?
        ingest_csv_folder(tmp_home, folder)
    assert sorted(Path(p[0]).name for p in err.value.problems) == ["ACME.csv", "acme.csv"]
    assert all("ACME.csv and acme.csv" in p[2] for p in err.value.problems)
    assert tree_digest(tmp_home.silver) == before


def test_whitespace_around_values_is_stripped_as_str_strip_does(tmp_home, tmp_path):
    from etl.quality.bars import PY_WHITESPACE

    assert set(PY_WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    folder = tmp_path / "csv"
    write_csv(folder, "PAD", GOOD.replace("11.4,900", "11.4\u3000,900\t").replace("2014-06-05,", "2014-06-05\xa0,"))
    ingest_csv_folder(tmp_home, folder)
    bars = read_silver_bars(tmp_home).set_index("session")
    assert (bars.loc["2014-06-09", "close"], bars.loc["2014-06-09", "volume"]) == (11.4, 900.0)
    assert list(bars.index) == list(pd.to_datetime(["2014-06-05", "2014-06-06", "2014-06-09"]))


CRASH_WRITER = r"""
import sys, numpy as np, pandas as pd, pyarrow as pa
from pathlib import Path
from etl.storage.atomic import atomic_write_table
path = Path(sys.argv[1])
n = 3_000_000
table = pa.table({"a": np.arange(n), "b": np.random.default_rng(0).random(n)})
print("ready", flush=True)
while True:
    atomic_write_table(table, path)
"""


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.9])
def test_kill_mid_write_leaves_old_or_new_file_never_partial(tmp_path, delay):
    import time

    import pyarrow.parquet as pq

    target = tmp_path / "t.parquet"
    pq.write_table(__import__("pyarrow").table({"a": [1], "b": [0.5]}), target)
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(target)], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    proc.kill()
    proc.wait()
    table = pq.read_table(target)  # must be a complete file: the original one row or the full new table
    assert table.num_rows in (1, 3_000_000)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "t.parquet"]
    # a killed writer can leave a .tmp- file (never the target); readers ignore that prefix
    assert all(name.startswith(".tmp-") for name in leftovers)
    from etl.storage.atomic import remove_stale_temp_files

    assert remove_stale_temp_files(tmp_path) == len(leftovers)


def test_recovery_keeps_a_temp_file_whose_writer_is_alive_and_removes_a_dead_ones(tmp_path):
    """A backfill's chunk starting recovery must not delete the file another chunk (or a
    nightly run in another process) is writing at that moment."""
    import subprocess
    import sys

    from etl.storage.atomic import TMP_PREFIX, remove_stale_temp_files, temp_prefix

    ours = tmp_path / f"{temp_prefix()}in-flight.parquet"
    ours.write_bytes(b"x")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        theirs = tmp_path / f"{TMP_PREFIX}{sleeper.pid}-in-flight.parquet"
        crashed = tmp_path / f"{TMP_PREFIX}{dead.pid}-left.parquet"
        legacy = tmp_path / f"{TMP_PREFIX}abc.parquet"
        for p in (theirs, crashed, legacy):
            p.write_bytes(b"x")
        assert remove_stale_temp_files(tmp_path) == 2
        assert ours.exists() and theirs.exists() and not crashed.exists() and not legacy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
