"""`alpha ingest`, `alpha watermarks` and `alpha compact` as a user runs them:
subprocesses against recorded Polygon responses served over local HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.storage import silver
from etl.storage.tables import NEWS
from tests.vendor_server import ReplayServer

REPO = Path(__file__).resolve().parents[1]
ALPHA = str(Path(sys.executable).with_name("alpha"))
KEY = "test-key-5f3a9c"


@pytest.fixture(scope="module")
def server():
    with ReplayServer(api_key=KEY) as srv:
        srv.add_fixtures("polygon")
        yield srv


def alpha(args, home: Path, server: ReplayServer, key: str | None = KEY):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API", "POLYGON_"))}
    env.update({"ALPHA_HOME": str(home), "ALPHA_POLYGON_BASE_URL": server.url})
    if key:
        env["POLYGON_API_KEY"] = key
    return subprocess.run([ALPHA, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


DAILY = ["ingest", "polygon", "AAPL,SPY", "--start", "2014-05-01", "--end", "2014-07-31"]


def test_ingest_summary_incremental_and_watermarks(tmp_path, server):
    home = tmp_path / "home"
    out = alpha([*DAILY, "--parallel", "2"], home, server)
    assert out.returncode == 0, out.stdout + out.stderr
    # 64 sessions each, from the real Lean bars; nothing quarantined
    assert "polygon.daily: 2/2 jobs ok; rows fetched 128, written 128, unchanged 0, quarantined 0" in out.stdout
    assert KEY not in out.stdout + out.stderr

    n = len(server.requests)
    again = alpha([*DAILY, "--incremental"], home, server)
    assert again.returncode == 0, again.stderr
    assert "(2 already up to date)" in again.stdout and "written 0" in again.stdout
    assert len(server.requests) == n  # the watermark covered the range: no request

    marks = alpha(["watermarks"], home, server)
    assert marks.returncode == 0
    rows = [line.split() for line in marks.stdout.splitlines() if line.startswith("polygon")]
    assert [(r[2], r[3]) for r in rows] == [("AAPL", "2014-07-31"), ("SPY", "2014-07-31")]


def test_one_failing_symbol_fails_the_command_but_not_the_others(tmp_path, server):
    home = tmp_path / "home"
    out = alpha(["ingest", "polygon", "AAPL,NOSUCH", "--start", "2014-05-01", "--end", "2014-07-31"], home, server)
    assert out.returncode == 1
    assert "1/2 jobs ok" in out.stdout
    assert "FAILED polygon.daily NOSUCH" in out.stdout and "HTTP 404" in out.stdout
    assert "1 of 2 job(s) failed" in out.stderr and "Traceback" not in out.stderr
    from etl.storage.bars import read_silver_bars

    assert read_silver_bars(load_settings(home))["symbol"].unique().tolist() == ["AAPL"]


def test_path_symbol_is_refused_before_any_request(tmp_path, server):
    n = len(server.requests)
    out = alpha(["ingest", "polygon", "../../etc", "--start", "2014-05-01", "--end", "2014-07-31"], tmp_path / "home", server)
    assert out.returncode == 1
    assert "not valid symbol(s): ['../../etc']" in out.stderr and "Traceback" not in out.stderr
    assert len(server.requests) == n
    assert not (tmp_path / "etc").exists()


def test_missing_key_is_a_clear_error(tmp_path, server):
    out = alpha(DAILY, tmp_path / "home", server, key=None)
    assert out.returncode == 1
    assert "set POLYGON_API_KEY in the environment or in a .env file" in out.stderr


def test_wrong_key_is_not_retried_and_not_printed(tmp_path, server):
    n = len(server.requests)
    out = alpha(["ingest", "polygon", "AAPL", "--start", "2014-05-01", "--end", "2014-07-31"], tmp_path / "home", server, key="wrong-key-123")
    assert out.returncode == 1
    assert "HTTP 401" in out.stdout and "not retried" in out.stdout
    assert "wrong-key-123" not in out.stdout + out.stderr
    assert len(server.requests) == n + 1


def test_key_from_dotenv_in_home(tmp_path, server):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".env").write_text(f"POLYGON_API_KEY={KEY}\n")
    out = alpha(["ingest", "polygon", "AAPL", "--dataset", "news", "--start", "2014-06-06", "--end", "2014-06-08"], home, server, key=None)
    assert out.returncode == 0, out.stdout + out.stderr
    news = silver.read(load_settings(home), NEWS)
    assert len(news) > 0 and (news["event_timestamp"] == news["published_at"]).all()


def test_compact_keeps_query_results(tmp_path, server):
    from etl.storage.bars import bucket_dir, read_silver_bars, symbol_bucket

    home = tmp_path / "home"
    # AAPL from Polygon, then GOOG (AAPL's bucket) from a CSV folder: two part files in one bucket
    assert alpha(["ingest", "polygon", "AAPL", "--start", "2014-05-01", "--end", "2014-07-31"], home, server).returncode == 0
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "GOOG.csv").write_text("date,open,high,low,close,volume\n2014-06-05,10,11,9.5,10.5,1000\n")
    assert alpha(["ingest", "csv", "--path", str(tmp_path / "csv")], home, server).returncode == 0
    settings = load_settings(home)
    before = read_silver_bars(settings, versions="all")
    assert symbol_bucket("AAPL") == symbol_bucket("GOOG")
    bucket = bucket_dir(settings, symbol_bucket("AAPL"))
    assert len(list(bucket.glob("*.parquet"))) == 2 and len(before) == 65
    out = alpha(["compact"], home, server)
    assert out.returncode == 0, out.stderr
    assert "bars_daily: 1 partition(s) merged, 2 file(s) removed" in out.stdout
    pd.testing.assert_frame_equal(read_silver_bars(settings, versions="all"), before)


def test_ingest_csv_shows_each_pass_and_skips_unchanged_files(tmp_path, server):
    from etl.core import clock

    folder = tmp_path / "csv"
    folder.mkdir()
    days = clock.sessions_in_range("2024-01-02", "2024-01-12")
    for i in range(70):   # 70 symbols: two chunks
        rows = "".join(f"{d:%Y-%m-%d},10,11,9,10.5,{100 + i}\n" for d in days)
        (folder / f"S{i:03d}.csv").write_text("date,open,high,low,close,volume\n" + rows)
    home = tmp_path / "home"
    out = alpha(["ingest", "csv", "--path", str(folder)], home, server)
    assert out.returncode == 0, out.stderr
    assert "validate: 2/2 chunks" in out.stdout and "write: 2/2 chunks" in out.stdout
    assert f"csv: 70 files, {70 * len(days)} rows read, 70 symbols; silver: {70 * len(days)} new, 0 revised, 0 unchanged" in out.stdout
    again = alpha(["ingest", "csv", "--path", str(folder)], home, server)
    assert again.returncode == 0, again.stderr
    assert (f"csv: 70 files (70 unchanged since the last ingest, not read), 0 rows read, 70 symbols; "
            f"silver: 0 new, 0 revised, {70 * len(days)} unchanged") in again.stdout
