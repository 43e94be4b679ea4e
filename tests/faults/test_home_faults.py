"""Fault catalogue, area "home": a home is self-contained, relocatable, and corruption in it is
found and repaired (docs/reliability.md).

Each test breaks a private ``cp -a`` copy of the session warehouse (``home_copy``) the way the
report (issue 16) describes, then asserts the clear error and the repair, and that nothing is
lost: the answers after the repair equal those before the damage, bit for bit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from etl.core.errors import AlphaError, GoldDamagedError

SYMBOLS = ["AAPL", "IBM", "SPY"]
FEATURES = ["technicals:ret_1d", "technicals:rsi_14", "ta_momentum:ta_adx_14", "bars_daily:close"]


def _history(home) -> pd.DataFrame:
    from sdk import connect

    return connect(home).history(SYMBOLS, FEATURES, start="2014-01-02", end="2014-12-31")


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _part(home: Path, view: str) -> Path:
    return sorted(p for p in (home / "gold" / view).glob("r*.parquet") if "schema" not in p.name)[0]


@pytest.fixture(scope="module")
def baseline(warehouse):
    """The session warehouse's answers (never mutated: every test breaks its own copy)."""
    out = _history(warehouse["settings"].home)
    assert out["rsi_14"].notna().sum() > 500 and out["close"].notna().sum() > 700
    return out


def _home_files_naming(home: Path, other: Path) -> list[str]:
    """Files of ``home`` (gold, feast) whose bytes contain the path of ``other``."""
    needle = str(other).encode()
    return [str(p.relative_to(home)) for sub in ("gold", "feast") for p in (home / sub).rglob("*")
            if p.is_file() and needle in p.read_bytes()]


def test_copied_home_reads_its_own_files(warehouse, home_copy, baseline):
    """Fault: "a copied home reads the original's files (the registry stores absolute source
    paths); truncating a file in one home breaks queries in the other". Now the registry names
    gold/<view> relative to the home: the copy answers from its own files, and damage in the
    copy affects the copy only."""
    original = warehouse["settings"].home
    assert _home_files_naming(home_copy.home, original) == []   # no path of the original in the copy
    assert _home_files_naming(original, original) == []        # nor of itself: nothing to re-bind
    pd.testing.assert_frame_equal(_history(home_copy.home), baseline, check_exact=True)

    part = _part(home_copy.home, "technicals")
    _truncate(part)
    with pytest.raises(GoldDamagedError) as err:
        _history(home_copy.home)
    assert str(part) in str(err.value) and "alpha nightly" in str(err.value)
    pd.testing.assert_frame_equal(_history(original), baseline, check_exact=True)   # the original is untouched


def test_moved_home_answers_after_the_original_is_deleted(home_copy, baseline, tmp_path):
    """A home moved elsewhere (and the place it was built in gone) answers as before."""
    moved = tmp_path / "elsewhere" / "moved-home"
    moved.parent.mkdir()
    shutil.move(str(home_copy.home), moved)
    assert not home_copy.home.exists()
    pd.testing.assert_frame_equal(_history(moved), baseline, check_exact=True)
    from etl.core.config import load_settings
    from etl.gold.integrity import gold_problems, registry_problems

    settings = load_settings(moved)
    assert gold_problems(settings) == [] and registry_problems(settings) == []


def test_registry_of_an_older_version_with_absolute_paths_is_rebound_and_reported(warehouse, home_copy, baseline):
    """A home copied from one whose registry still names absolute paths (written by an older
    version): the store re-binds each warehouse source to the copy's own gold/<view>, doctor
    reports the absolute paths, and `alpha apply` registers them relative again."""
    from etl.gold.integrity import registry_problems
    from etl.serving import feast_store
    from feature_repo.definitions import build_definitions

    original = warehouse["settings"].home
    defs = build_definitions(home_copy.home)
    for name, source in defs.sources.items():      # what the older version registered
        source.file_options.uri = str(original / "gold" / name)
    for view in defs.views.values():
        view.batch_source.file_options.uri = str(original / "gold" / view.name)
    with feast_store.quiet_feast():
        feast_store.feature_store(home_copy).apply(defs.objects())
    assert _home_files_naming(home_copy.home, original) == ["feast/registry.db"]
    problems = registry_problems(home_copy)
    assert problems and all("outside this home" in p and "alpha apply" in p for p in problems)

    pd.testing.assert_frame_equal(_history(home_copy.home), baseline, check_exact=True)
    _truncate(_part(home_copy.home, "technicals"))   # the copy's file, not the original's, is read
    with pytest.raises(GoldDamagedError):
        _history(home_copy.home)

    feast_store.apply(home_copy)                      # what `alpha apply` (and a nightly) runs
    assert registry_problems(home_copy) == []
    assert _home_files_naming(home_copy.home, original) == []


def test_truncated_gold_part_is_a_clear_error_and_the_nightly_rebuilds_it_bit_for_bit(home_copy, baseline):
    """Fault: "truncate a gold Parquet file: queries fail with a raw polars ComputeError, and
    `alpha nightly` says nothing changed and leaves it broken". Now the query names the file
    and the command; doctor lists it; the nightly's factor step finds it (size + footer) and
    rebuilds the family from silver: the answers equal those before, bit for bit."""
    from etl.gold.integrity import gold_problems
    from etl.jobs import compute_factors

    part = _part(home_copy.home, "technicals")
    _truncate(part)
    with pytest.raises(GoldDamagedError) as err:
        _history(home_copy.home)
    assert isinstance(err.value, AlphaError) and str(part) in str(err.value) and "alpha nightly" in str(err.value)
    problems = gold_problems(home_copy)
    assert len(problems) == 1 and str(part.relative_to(home_copy.home)) in problems[0] and "truncated" in problems[0]

    out = compute_factors(home_copy)
    assert "skipped" not in out and list(out["repaired"]) == ["core"]
    assert gold_problems(home_copy) == []
    pd.testing.assert_frame_equal(_history(home_copy.home), baseline, check_exact=True)
    again = compute_factors(home_copy)              # repaired once: the next night has nothing to do
    assert "repaired" not in again and again.get("skipped")


def test_missing_gold_part_is_a_clear_error_and_is_rebuilt(home_copy, baseline):
    """A deleted part no longer silently drops its rows from the answers: the query names it,
    and the nightly rebuilds the family."""
    from etl.gold.integrity import gold_problems
    from etl.jobs import compute_factors

    part = _part(home_copy.home, "ta_momentum")
    part.unlink()
    with pytest.raises(GoldDamagedError, match="is missing"):
        _history(home_copy.home)
    assert any("is missing" in p and "alpha nightly" in p for p in gold_problems(home_copy))
    out = compute_factors(home_copy)
    assert len(out["repaired"]) == 1 and part.name in next(iter(out["repaired"].values()))
    pd.testing.assert_frame_equal(_history(home_copy.home), baseline, check_exact=True)
    assert gold_problems(home_copy) == []


def test_changed_bytes_foreign_files_and_leftovers_are_found(home_copy, baseline):
    """Bytes changed in place (same size, footer intact) are found by the deep check's
    checksums; a Parquet file no run wrote (which queries would read as more rows) and the hidden
    files of a crashed build are reported, and the nightly replaces the foreign file."""
    from etl.gold.integrity import gold_problems
    from etl.jobs import compute_factors

    part = _part(home_copy.home, "bars_daily")
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0x01
    part.write_bytes(bytes(data))
    assert gold_problems(home_copy) == []
    deep = gold_problems(home_copy, deep=True)
    assert len(deep) == 1 and "checksum" in deep[0] and part.name in deep[0] and "--family bars --force" in deep[0]

    foreign = home_copy.gold / "technicals" / "r000099-mine.parquet"
    shutil.copy(_part(home_copy.home, "technicals"), foreign)
    leftover = home_copy.gold / "technicals" / ".r000099-core-c00000.parquet"
    leftover.write_bytes(b"half")
    problems = gold_problems(home_copy)
    assert any(foreign.name in p and "no committed run" in p for p in problems)
    assert any("hidden part file" in p for p in problems)

    out = compute_factors(home_copy)
    assert list(out["repaired"]) == ["core"] and not foreign.exists() and not leftover.exists()
    from etl.gold.builder import build

    build(home_copy, families=["bars"], force=True)   # what doctor --deep says to run for the changed bytes
    assert gold_problems(home_copy, deep=True) == []
    pd.testing.assert_frame_equal(_history(home_copy.home), baseline, check_exact=True)


def test_damaged_run_record_is_reported_and_the_nightly_rebuilds_gold(home_copy, baseline):
    """A truncated gold/_runs.json (the build record) is a clear error for queries and doctor;
    the nightly keeps it aside and rebuilds every family from silver, with nothing lost."""
    from etl.gold.integrity import gold_problems
    from etl.jobs import compute_factors

    record = home_copy.gold / "_runs.json"
    last = json.loads(record.read_text())["last_run"]
    _truncate(record)
    with pytest.raises(GoldDamagedError, match="_runs.json"):
        _history(home_copy.home)
    assert any("_runs.json" in p and "alpha nightly" in p for p in gold_problems(home_copy))
    out = compute_factors(home_copy)
    assert out["run"] > last and "rebuilt" in out["recovered"]
    assert (home_copy.gold / "_runs.json.damaged").exists()
    assert gold_problems(home_copy) == []
    pd.testing.assert_frame_equal(_history(home_copy.home), baseline, check_exact=True)


def test_registry_problems(home_copy):
    """The registry check: a missing or unreadable registry with gold built names `alpha apply`."""
    from etl.gold.integrity import registry_problems

    assert registry_problems(home_copy) == []
    registry = home_copy.registry_path
    registry.write_bytes(b"\x00garbage" * 10)
    assert any("unreadable" in p and "alpha apply" in p for p in registry_problems(home_copy))
    registry.unlink()
    assert any("no Feast registry" in p and "alpha apply" in p for p in registry_problems(home_copy))


@pytest.mark.slow   # ~1.1 s: the factor registry's first import
def test_compaction_keeps_the_part_records_true(tmp_home):
    """``alpha features compact`` replaces its inputs by the merged part in the record, in the
    same write: the checks find nothing afterwards, and the merged part's rows are the inputs'."""
    import pyarrow as pa

    from etl.gold import layout
    from etl.gold.builder import write_part
    from etl.gold.integrity import find_damage

    view = "technicals"
    table = pa.table({"symbol": ["AAPL", "SPY"], "x": [1.0, 2.0]})
    runs = {"last_run": 3, "families": {}, "pending": None, layout.PARTS: {view: {}}}
    for run in (1, 2, 3):
        path = layout.view_dir(tmp_home, view) / layout.part_name(run, "core", 0)
        write_part(table, path)
        runs[layout.PARTS][view][path.name] = layout.describe_part(path)
    layout.write_runs(tmp_home, runs)
    assert find_damage(tmp_home, deep=True) == []
    assert layout.compact(tmp_home, view, min_parts=2)["written"] == 1
    recorded = layout.read_runs(tmp_home)[layout.PARTS][view]
    assert list(recorded) == [p.name for p in layout.parts(tmp_home, view)] and len(recorded) == 1
    assert next(iter(recorded.values()))["rows"] == 6
    assert find_damage(tmp_home, deep=True) == []
