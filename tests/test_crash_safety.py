"""Crash safety: kill the ingest process at random points, rerun, and the store
equals a clean run's store, with no partial files.

The ingest runs in a subprocess, making the calls `alpha ingest` makes: Polygon
daily bars, news and an option chain replayed by a local HTTP server, then the
Lean daily bars with factor and map files of every shared symbol. It is killed with SIGKILL after a random delay drawn
over the length of a clean run, 20 times; after each kill the store must be
readable, and after the rerun it must hold exactly the clean run's rows.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl.core.config import load_settings
from etl.storage.atomic import TMP_PREFIX
from tests.vendor_server import ReplayServer

REPO = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("ALPHA_CRASH_RUNS", "20"))


@pytest.fixture(scope="module")
def polygon():
    if not (REPO / "tests" / "fixtures" / "vendors" / "polygon" / "routes.json").exists():
        pytest.fail("polygon fixtures missing")
    with ReplayServer(api_key="test-key") as server:
        server.add_fixtures("polygon")
        yield server


#: the job, in one process (the same calls `alpha ingest` makes; one interpreter start
#: instead of four keeps 21 runs inside the CI budget)
SCRIPT = """
import sys
from etl.core.config import load_settings
from etl.sources.archive import ingest_lean
from etl.sources.base import run_ingest

settings = load_settings()
for dataset, symbols, start, end, parallel in [
    ("daily", ["AAPL", "SPY"], "2014-05-01", "2014-07-31", 2),
    ("news", ["AAPL"], "2014-06-06", "2014-06-08", 1),
    ("option_chain", ["AAPL"], "2014-06-09", "2014-06-09", 1),
]:
    summary = run_ingest(settings, "polygon", dataset, symbols, start, end, parallel=parallel)
    if summary.failed:
        sys.exit(summary.text())
print(ingest_lean(settings, sys.argv[1]).summary())
"""


def start(home: Path, lean_root: Path, server: ReplayServer) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API"))}
    env.update({"ALPHA_HOME": str(home), "POLYGON_API_KEY": "test-key", "ALPHA_POLYGON_BASE_URL": server.url})
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(lean_root)], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(home: Path) -> dict[str, pd.DataFrame]:
    """The store's logical content: every silver table and the quarantine (rows
    sorted, write times dropped), bronze objects by hash, watermarks."""
    out: dict[str, pd.DataFrame] = {}
    silver = home / "silver"
    for table in sorted(p for p in silver.iterdir() if p.is_dir()) if silver.exists() else []:
        files = sorted(f for f in table.rglob("*.parquet") if not f.name.startswith(TMP_PREFIX))
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).drop(columns=["created_timestamp"])
        frame = frame.drop_duplicates()
        out[f"silver/{table.name}"] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    objects = sorted(str(p.relative_to(home)) for p in (home / "bronze").rglob("*") if p.is_file() and "/fetches/" not in str(p) and not p.name.startswith(TMP_PREFIX) and p.suffix != ".parquet")
    out["bronze/objects"] = pd.DataFrame({"path": objects})
    manifest = home / "bronze" / "lean" / "manifest.parquet"
    if manifest.exists():
        out["bronze/lean manifest"] = pd.read_parquet(manifest)[["relpath", "sha256", "bytes"]].sort_values("relpath").reset_index(drop=True)
    from etl.storage.watermarks import open_watermarks

    store = open_watermarks(load_settings(home))
    out["watermarks"] = store.all()[["source", "dataset", "symbol", "high_water"]]
    store.dispose()
    return out


def assert_valid(home: Path) -> None:
    """Every Parquet file a reader would open is whole."""
    for f in home.rglob("*.parquet"):
        if not f.name.startswith(TMP_PREFIX):
            pq.read_metadata(f)


@pytest.mark.slow
def test_killed_ingest_reruns_to_the_clean_store(tmp_path, lean_root, polygon):
    clean_home = tmp_path / "clean"
    t0 = time.perf_counter()
    proc = start(clean_home, lean_root, polygon)
    out, err = proc.communicate(timeout=300)
    clean_seconds = time.perf_counter() - t0
    assert proc.returncode == 0, out + err
    clean = snapshot(clean_home)
    assert len(clean["silver/bars_daily"]) > 70_000
    assert {"silver/news_items", "silver/option_quotes"} <= set(clean) and len(clean["watermarks"]) == 4

    rng = random.Random(20261122)
    kills = []
    for i in range(KILLS):
        home = tmp_path / f"run{i:02d}"
        delay = rng.uniform(0.2, clean_seconds * 0.95)
        proc = start(home, lean_root, polygon)
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        kills.append((round(delay, 2), "finished first" if finished else "killed"))
        if finished:  # a clean run takes less than the first one measured (load varies): aim earlier from now on
            clean_seconds = min(clean_seconds, delay)
        if home.exists():
            assert_valid(home)  # whatever the kill left is readable
        rerun = start(home, lean_root, polygon)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, f"rerun {i} after a kill at {delay:.2f} s failed:\n{out}\n{err}"
        leftovers = [str(p) for p in home.rglob(f"{TMP_PREFIX}*")]
        assert not leftovers, f"partial files after the rerun of run {i}: {leftovers}"
        got = snapshot(home)
        assert sorted(got) == sorted(clean), f"run {i}: tables {sorted(got)} != {sorted(clean)}"
        for name, frame in clean.items():
            pd.testing.assert_frame_equal(got[name], frame, obj=f"run {i} (killed at {delay:.2f} s): {name}")
    print(f"clean run {clean_seconds:.1f} s; kills: {kills}")
    assert sum(1 for _, state in kills if state == "killed") >= KILLS * 3 // 4
