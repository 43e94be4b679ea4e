"""Orchestration: the nightly and backfill Prefect flows for real.

The vendor is Polygon's daily-aggregates endpoint served over local HTTP from
recorded responses (tests/polygon_daily.py); the online store is our own
password-protected redis-server; the deployed test starts ``prefect server``
on a fresh PostgreSQL database and ``alpha serve``, as docker-compose does.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from etl.core.errors import OnlineStoreError
from tests.polygon_daily import API_KEY, PolygonDaily, recorded_bars, session_of, write_config
from tests.servers import RedisServer, postgres_database, prefect_server

REPO = Path(__file__).resolve().parents[1]
ALPHA = str(Path(sys.executable).with_name("alpha"))
REDIS_PASSWORD = "orchestration-s3cret"


def close_on(symbol: str, day: str) -> float:
    return next(b["c"] for b in recorded_bars()[symbol] if session_of(b) == day)


def file_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


def redis_dump(url: str) -> dict:
    import redis

    client = redis.Redis.from_url(url)
    out = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        out[key] = client.hgetall(key) if kind == b"hash" else client.get(key) if kind == b"string" else kind
    return out


@pytest.fixture(scope="module")
def redis_pw(tmp_path_factory):
    srv = RedisServer(tmp_path_factory.mktemp("orch_redis"), "--requirepass", REDIS_PASSWORD)
    srv.start({"port": srv.port, "password": REDIS_PASSWORD})
    yield srv, f"redis://:{REDIS_PASSWORD}@127.0.0.1:{srv.port}/0"
    srv.stop()


@pytest.fixture
def polygon(monkeypatch):
    with PolygonDaily() as poly:
        monkeypatch.setenv("ALPHA_POLYGON_BASE_URL", poly.url)
        monkeypatch.setenv("POLYGON_API_KEY", API_KEY)
        yield poly


def _in_process(home: Path):
    from etl.core.config import load_settings
    from flows.prefect_env import configure_prefect

    settings = load_settings(home)
    configure_prefect(settings)
    return settings


# --------------------------------------------------------------------- schedule


def test_nightly_schedule_follows_the_exchange_close_and_the_slowest_source(tmp_path):
    from etl.core.config import load_settings
    from etl.core.errors import ConfigError
    from etl.core.schedule import last_complete_session, nightly_cron, resolve_session

    write_config(tmp_path, None, extra="delay_minutes = 40")
    settings = load_settings(tmp_path)
    # 16:00 close + 40 min (the slowest source) + 30 min margin, New York time
    assert nightly_cron(settings) == ("10 17 * * 1-5", "America/New_York")
    ts = pd.Timestamp
    # 2026-11-27, the day after Thanksgiving, closes at 13:00 New York (18:00 UTC)
    assert last_complete_session(settings, ts("2026-11-27 18:39Z")) == ts("2026-11-25")
    assert last_complete_session(settings, ts("2026-11-27 18:40Z")) == ts("2026-11-27")
    # Thanksgiving itself and the weekend close nothing new
    assert last_complete_session(settings, ts("2026-11-26 23:00Z")) == ts("2026-11-25")
    assert last_complete_session(settings, ts("2026-11-29 12:00Z")) == ts("2026-11-27")
    # a session asked for must be one, and complete
    assert resolve_session(settings, "2026-11-27", ts("2026-11-27 18:40Z")) == ts("2026-11-27")
    with pytest.raises(ConfigError, match="2026-11-26 is not a XNYS session; the last one before is 2026-11-25"):
        resolve_session(settings, "2026-11-26", ts("2026-12-01 12:00Z"))
    with pytest.raises(ConfigError, match="2026-11-27 is not complete yet"):
        resolve_session(settings, "2026-11-27", ts("2026-11-27 18:39Z"))


def test_a_broken_ingest_table_is_refused_before_any_work(tmp_path, polygon):
    from etl.core.config import load_settings
    from etl.core.errors import ConfigError
    from flows.nightly import nightly

    (tmp_path / "config.toml").write_text('[[ingest]]\nsource = "polygon"\n')
    with pytest.raises(ConfigError, match="needs source and dataset"):
        load_settings(tmp_path)
    (tmp_path / "config.toml").write_text('[[ingest]]\nsource = "polygon"\ndataset = "dayly"\nsymbols = ["AAPL"]\n')
    _in_process(tmp_path)
    with pytest.raises(ConfigError, match="polygon has no dataset 'dayly'; it has: daily, minute"):
        nightly(str(tmp_path), session="2014-07-29")
    assert polygon.arrivals == [] and not (tmp_path / "silver").exists()


# --------------------------------------------------------------------- nightly twice, then the next session


def test_nightly_twice_for_a_session_changes_nothing_and_the_next_session_adds_only_its_rows(tmp_path, polygon, redis_pw):
    from etl.gold.layout import gold_path
    from etl.storage.bars import read_silver_bars
    from flows.nightly import nightly
    from sdk import Alpha

    _, url = redis_pw
    home = tmp_path / "home"
    write_config(home, url)
    settings = _in_process(home)
    days = sorted({session_of(b) for b in recorded_bars()["SPY"]})
    first, second = "2014-07-29", "2014-07-30"

    r1 = nightly(str(home), session=first)
    assert r1["failures"] == [] and r1["session"] == first
    n_first = sum(1 for d in days if d <= first)
    assert r1["ingest"][0]["rows_written"] == 2 * n_first
    assert r1["gold"]["symbols"] == 2 and "skipped" not in r1["gold"] and r1["apply"].get("applied")
    assert (settings.reports / "nightly" / f"{first}.json").exists()
    client = Alpha(settings=settings)
    latest = client.latest(["AAPL", "SPY"], ["bars_daily:close"], now="warehouse").set_index("symbol")
    assert latest.loc["AAPL", "close"] == pytest.approx(close_on("AAPL", first))
    assert latest.loc["SPY", "close"] == pytest.approx(close_on("SPY", first))

    silver_before, gold_before = file_digests(settings.silver), file_digests(settings.gold)
    online_before = redis_dump(url)
    requests_before = len(polygon.arrivals)

    r2 = nightly(str(home), session=first)
    assert len(polygon.arrivals) == requests_before, "the rerun called the vendor again"
    assert r2["ingest"][0].get("cached") or r2["ingest"][0]["rows_written"] == 0
    assert "skipped" in r2["gold"] and "skipped" in r2["apply"]
    assert file_digests(settings.silver) == silver_before and file_digests(settings.gold) == gold_before
    assert r2["online"]["report"]["entities_written"] == 0 if "report" in r2["online"] else True
    assert redis_dump(url) == online_before

    gold_bars_before = pd.read_parquet(gold_path(settings, "bars_daily"))
    r3 = nightly(str(home), session=second)
    new_requests = polygon.arrivals[requests_before:]
    assert sorted(t for _, t in new_requests) == ["AAPL", "SPY"], "the next session pulls one request per symbol"
    assert r3["ingest"][0]["rows_written"] == 2 and "skipped" not in r3["gold"] and "skipped" in r3["apply"]
    silver = read_silver_bars(settings, versions="all")
    assert len(silver) == 2 * (n_first + 1)
    gold_after = pd.read_parquet(gold_path(settings, "bars_daily"))
    old = gold_after[gold_after["event_timestamp"] <= gold_bars_before["event_timestamp"].max()]
    key = ["symbol", "event_timestamp", "created_timestamp"]
    pd.testing.assert_frame_equal(old.sort_values(key).reset_index(drop=True),
                                  gold_bars_before.sort_values(key).reset_index(drop=True))
    new = gold_after[gold_after["event_timestamp"] > gold_bars_before["event_timestamp"].max()]
    assert sorted(new["symbol"]) == ["AAPL", "SPY"]
    latest = client.latest(["AAPL", "SPY"], ["bars_daily:close"], now="warehouse").set_index("symbol")
    assert latest.loc["AAPL", "close"] == pytest.approx(close_on("AAPL", second))
    # available only from the close plus the bar delay, never the session's midnight
    assert (latest["close__ts"] == pd.Timestamp(f"{second} 20:15", tz="UTC")).all()


def test_nightly_reports_a_refused_symbol_and_still_closes_the_session_for_the_others(tmp_path, polygon):
    from etl.gold.layout import gold_path
    from flows.nightly import nightly, summary_markdown

    polygon.aliases["DENIED"] = "SPY"
    polygon.statuses["DENIED"] = [403] * 10
    home = tmp_path / "home"
    write_config(home, None, symbols=("AAPL", "SPY", "DENIED"))
    settings = _in_process(home)

    result = nightly(str(home), session="2014-07-29")

    assert [f["symbols"] for f in result["failures"]] == [["DENIED"]]
    assert polygon.requests_for("DENIED") == 1, "a 403 is not retried"
    assert result["gold"]["symbols"] == 2 and "skipped" not in result["gold"]
    assert set(pd.read_parquet(gold_path(settings, "bars_daily"))["symbol"]) == {"AAPL", "SPY"}
    md = summary_markdown(result)
    assert "**1 failure(s)**" in md and "| ingest polygon.daily | DENIED |" in md and "403" in md
    saved = json.loads((settings.reports / "nightly" / "2014-07-29.json").read_text())
    assert saved["failures"][0]["symbols"] == ["DENIED"]


def test_strict_health_holds_the_online_push_back_but_keeps_gold(tmp_path, polygon):
    from etl.gold.layout import gold_path
    from flows.nightly import nightly

    home = tmp_path / "home"
    # Polygon's raw bars carry AAPL's 7:1 split of 2014-06-09; without Polygon's splits (actions = false)
    # there is no split record: a health error
    write_config(home, None, extra="actions = false")
    cfg = home / "config.toml"
    cfg.write_text("nightly_strict_health = true\n" + cfg.read_text())
    settings = _in_process(home)

    held = nightly(str(home), session="2014-07-29")
    assert held["online"]["skipped"].startswith("held back: health thresholds breached")
    assert [f["step"] for f in held["failures"]] == ["health"] and "split" in json.dumps(held["failures"])
    assert gold_path(settings, "bars_daily").exists()
    from sdk import Alpha

    def online_close():
        return Alpha(settings=settings).latest(["SPY"], ["bars_daily:close"], now="warehouse")["close"].iloc[0]

    with pytest.raises(OnlineStoreError, match="holds nothing"):   # nothing reached the online store
        online_close()

    cfg.write_text(cfg.read_text().replace("nightly_strict_health = true", "nightly_strict_health = false"))
    pushed = nightly(str(home), session="2014-07-29")
    assert "skipped" in pushed["gold"] and "skipped" not in pushed["online"] and pushed["failures"] == []
    assert online_close() == pytest.approx(close_on("SPY", "2014-07-29"))


def test_materialize_is_retried_when_redis_is_down_and_succeeds_once_it_is_back(tmp_path, polygon):
    """Redis refuses the first materialize (a listener that hangs up on every connection),
    then a real redis-server takes the port: the task's retry writes the values."""
    import socket
    import threading

    from flows.nightly import nightly
    from sdk import Alpha

    home = tmp_path / "home"
    srv = RedisServer(tmp_path / "redis")
    write_config(home, srv.url)
    settings = _in_process(home)
    applied = settings.feast_dir / "applied.json"
    dead = socket.socket()
    dead.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    dead.bind(("127.0.0.1", srv.port))
    dead.listen(16)
    refused_after_apply = []

    def hang_up_then_hand_over():
        while True:
            conn, _ = dead.accept()
            conn.close()
            if applied.exists():          # a materialize attempt, not feast apply's own look
                refused_after_apply.append(time.time())
                dead.close()
                srv.start()
                return

    threading.Thread(target=hang_up_then_hand_over, daemon=True).start()
    try:
        result = nightly(str(home), session="2014-07-29")
        assert refused_after_apply, "materialize never met the dead Redis"
        assert result["failures"] == [] and "report" in result["online"]
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.sorting import TaskRunSort

        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[result["flow_run"]])),
                                         sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50)
        attempts = {t.name.rsplit("-", 1)[0]: t.run_count for t in runs if not t.name.startswith("ingest")}
        assert attempts == {"health-report": 1, "compute-factors": 1, "feast-apply": 1, "materialize": 2}
        close = Alpha(settings=settings).latest(["SPY"], ["bars_daily:close"], now="warehouse")["close"].iloc[0]
        assert close == pytest.approx(close_on("SPY", "2014-07-29"))
    finally:
        srv.stop()


# --------------------------------------------------------------------- backfill


def test_backfill_paces_every_worker_under_one_vendor_limit_reports_4xx_and_retries_only_io(tmp_path, polygon, monkeypatch):
    from etl.storage.bars import read_silver_bars
    from flows.backfill import WORKERS, backfill

    assert WORKERS >= 2
    tickers = [f"T{i}" for i in range(8)]
    polygon.aliases.update({t: "SPY" for t in tickers + ["FLAKY", "DENIED"]})
    polygon.statuses["FLAKY"] = [503]          # down once: retried by the task (the client itself is told not to retry)
    polygon.statuses["DENIED"] = [403] * 10    # refused: never retried
    rate = 4.0
    home = tmp_path / "home"
    write_config(home, None, symbols=tickers + ["FLAKY", "DENIED"],
                 extra=f"\n[vendors.polygon]\nrate = {rate}\nburst = 1\nmax_retries = 0\n")
    monkeypatch.setenv("ALPHA_TASK_RETRY_BACKOFF_SECONDS", "0.2")
    settings = _in_process(home)

    result = backfill(str(home), "polygon", "2014-05-01", "2014-07-31", chunk_size=1, dataset="daily")

    assert result["failed_symbols"] == ["DENIED"]
    assert "403" in json.dumps(result["failures"])
    assert polygon.requests_for("DENIED") == 1, "a 4xx must not be retried"
    assert polygon.requests_for("FLAKY") == 2, "a 503 past the client's retries is retried once by the task"
    stored = read_silver_bars(settings, versions="all")
    assert sorted(stored["symbol"].unique()) == sorted(tickers + ["FLAKY"])
    # every worker took its slot from one Prefect rate limit: no 1-second window saw more than rate + burst requests
    times = sorted(t for t, _ in polygon.arrivals)
    assert len(times) == len(tickers) + 3
    for i in range(len(times)):
        in_window = sum(1 for t in times[i:] if t - times[i] < 1.0)
        assert in_window <= rate + 1, f"{in_window} requests within 1 s at a rate limit of {rate}/s"


def test_backfill_rerun_comes_from_the_cache_and_refresh_asks_the_vendor_again(tmp_path, polygon):
    from flows.backfill import backfill

    home = tmp_path / "home"
    write_config(home, None)
    _in_process(home)
    first = backfill(str(home), "polygon", "2014-05-01", "2014-07-31", chunk_size=1, resume=False, dataset="daily")
    assert first["rows_written"] == len(_silver_values(home)) > 0
    calls = len(polygon.arrivals)
    silver = _silver_values(home)

    again = backfill(str(home), "polygon", "2014-05-01", "2014-07-31", chunk_size=1, resume=False, dataset="daily")
    assert len(polygon.arrivals) == calls, "an identical pull that succeeded must come from the cache"
    assert again["rows_written"] == first["rows_written"]        # the cached reports

    fresh = backfill(str(home), "polygon", "2014-05-01", "2014-07-31", chunk_size=1, resume=False, refresh=True,
                     dataset="daily")
    assert sorted(t for _, t in polygon.arrivals[calls:]) == ["AAPL", "SPY"]
    assert fresh["rows_written"] == 0                              # same values: the idempotent append stores nothing
    pd.testing.assert_frame_equal(_silver_values(home), silver)


def test_a_backfill_of_daily_bars_brings_their_splits_and_dividends_along(tmp_path, polygon):
    from etl.core.config import load_settings
    from etl.storage.actions import read_all_versions
    from flows.backfill import backfill

    home = tmp_path / "home"
    write_config(home, None)
    _in_process(home)
    result = backfill(str(home), "polygon", "2014-05-01", "2014-07-31", chunk_size=2, resume=False)
    assert result["datasets"] == ["splits", "dividends", "daily"] and not result["failures"]
    acts = read_all_versions(load_settings(home))
    aapl = acts[acts["symbol"] == "AAPL"].set_index("ex_date")
    assert aapl.loc[pd.Timestamp("2014-06-09"), "split_ratio"] == 7.0
    assert aapl.loc[pd.Timestamp("2014-05-08"), "cash_dividend"] == 3.29
    # known from the ex-date's open / the declaration: nothing was published before they came
    assert (aapl["known_timestamp"] <= aapl["event_timestamp"]).all()


def test_pulls_reaching_into_the_last_days_get_no_cache_key_older_ones_one_of_their_inputs():
    from flows.tasks import _pull_key

    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    params = {"home": "h", "source": "polygon", "dataset": "daily", "symbols": ["AAPL"], "start": None, "resume": True}
    assert _pull_key(None, {**params, "end": f"{today - pd.Timedelta(days=1):%Y-%m-%d}"}) is None
    assert _pull_key(None, {**params, "end": "2014-07-31"}).startswith("pull-")
    assert _pull_key(None, {**params, "end": "2014-07-31", "label": "x"}) == _pull_key(None, {**params, "end": "2014-07-31"})


def _silver_values(home: Path) -> pd.DataFrame:
    from etl.core.config import load_settings
    from etl.storage.bars import read_silver_bars

    frame = read_silver_bars(load_settings(home), versions="all").drop(columns=["created_timestamp"])
    return frame.sort_values(["symbol", "session"]).reset_index(drop=True)


def test_backfill_killed_mid_run_and_restarted_equals_an_uninterrupted_one(tmp_path, polygon):
    from flows.backfill import backfill

    clean = tmp_path / "clean"
    write_config(clean, None)
    _in_process(clean)
    backfill(str(clean), "polygon", "2014-05-01", "2014-07-31", chunk_size=1)

    home = tmp_path / "killed"
    write_config(home, None)
    env = {**os.environ, "ALPHA_HOME": str(home), "ALPHA_BACKFILL_WORKERS": "1", "PREFECT_HOME": str(home / "prefect")}
    for var in ("PREFECT_API_URL", "PREFECT_LOCAL_STORAGE_PATH"):
        env.pop(var, None)
    cmd = [ALPHA, "run", "backfill", "polygon", "--start", "2014-05-01", "--end", "2014-07-31", "--chunk-size", "1"]
    polygon.delays["SPY"] = 120.0               # the second chunk hangs in the vendor call: kill it there
    spy_before = polygon.requests_for("SPY")     # the uninterrupted run's
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:   # a file, not a pipe nobody reads while the process runs
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while polygon.requests_for("SPY") == spy_before:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.time() < deadline, "the backfill never reached its second chunk"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert sorted(_silver_values(home)["symbol"].unique()) == ["AAPL"]   # the first chunk was committed, the second not

    polygon.delays.clear()
    aapl_before = polygon.requests_for("AAPL")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert polygon.requests_for("AAPL") == aapl_before, "the finished chunk was fetched again"
    pd.testing.assert_frame_equal(_silver_values(home), _silver_values(clean))


# --------------------------------------------------------------------- deployed: prefect server on PostgreSQL + alpha serve


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """``prefect server start`` on a fresh PostgreSQL database, as docker-compose runs it."""
    with postgres_database("alpha_prefect") as url:
        try:
            # the scheduler looks for due schedules every 5 s instead of 60 (the cron test waits for it)
            with prefect_server(tmp_path_factory.mktemp("prefect_server"), url,
                                env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}) as api:
                yield api
        except RuntimeError as exc:
            pytest.fail(str(exc))


def _api(api: str, path: str, body: dict | None = None):
    import httpx

    return httpx.post(f"{api}{path}", json=body or {}, timeout=30).json()


def test_served_deployments_run_the_nightly_through_the_prefect_api_and_on_their_schedule(tmp_path, prefect_api, polygon, redis_pw):
    api = prefect_api
    _, url = redis_pw
    home = tmp_path / "served"
    write_config(home, url)
    env = {**os.environ, "PREFECT_API_URL": api, "ALPHA_HOME": str(home)}
    serve = _serve(env, tmp_path / "serve.log")
    try:
        deadline = time.time() + 120
        while len(deps := _api(api, "/deployments/filter")) < 2:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, "alpha serve registered no deployments"
            time.sleep(0.5)
        by_name = {d["name"]: d for d in deps}
        assert set(by_name) == {"nightly", "backfill"}
        schedule = by_name["nightly"]["schedules"][0]["schedule"]
        assert (schedule["cron"], schedule["timezone"]) == ("45 16 * * 1-5", "America/New_York")
        limits = {x["name"]: x for x in _api(api, "/v2/concurrency_limits/filter")}
        assert limits["vendor-polygon"]["slot_decay_per_second"] == 5.0

        out = subprocess.run([ALPHA, "run", "nightly", "--session", "2014-07-29"], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "session 2014-07-29: polygon.daily +" in out.stdout
        assert "Completed  ingest polygon.daily to 2014-07-29" in out.stdout   # progress: each task as it ends

        runs = _api(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [by_name["nightly"]["id"]]}}})
        scheduled = [r for r in runs if r["state"]["type"] == "SCHEDULED"]
        runs = [r for r in runs if r["state"]["type"] != "SCHEDULED"]
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
        assert runs[0]["parameters"]["session"] == "2014-07-29"
        # the server scheduled the next nightly runs at 16:45 New York on weekdays
        assert scheduled
        for r in scheduled:
            when = pd.Timestamp(r["expected_start_time"]).tz_convert("America/New_York")
            assert (when.hour, when.minute) == (16, 45) and when.dayofweek < 5
        tasks = _api(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [runs[0]["id"]]}}})
        names = {t["name"].split(" ")[0].rsplit("-", 1)[0] if t["name"].startswith("ingest") else t["name"].rsplit("-", 1)[0]: t["state"]["type"] for t in tasks}
        assert names == {"ingest": "COMPLETED", "health-report": "COMPLETED", "compute-factors": "COMPLETED",
                         "feast-apply": "COMPLETED", "materialize": "COMPLETED"}
        arts = _api(api, "/artifacts/filter", {"artifacts": {"key": {"any_": ["nightly-summary"]}}})
        assert len(arts) == 1 and arts[0]["flow_run_id"] == runs[0]["id"]
        assert "# Nightly 2014-07-29" in arts[0]["data"] and "polygon.daily" in arts[0]["data"]

        from etl.core.config import load_settings
        from sdk import Alpha

        latest = Alpha(settings=load_settings(home)).latest(["AAPL", "SPY"], ["bars_daily:close"], now="warehouse").set_index("symbol")
        assert latest.loc["SPY", "close"] == pytest.approx(close_on("SPY", "2014-07-29"))
    finally:
        _stop(serve)

    # the schedule itself: served again on a cron that fires every minute, the server
    # creates the run and the worker runs it, closing the last complete session by the wall clock
    from etl.core.schedule import last_complete_session

    env = {**env, "ALPHA_NIGHTLY_CRON": "* * * * *", "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    serve = _serve(env, tmp_path / "serve.log")
    try:
        deadline = time.time() + 240
        while True:
            runs = _api(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [by_name["nightly"]["id"]]}}})
            done = [r for r in runs if r["auto_scheduled"] and r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED")]
            if done:
                break
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, f"no scheduled run finished: {[(r['name'], r['state']['type']) for r in runs]}"
            time.sleep(2)
        assert done[0]["state"]["type"] == "COMPLETED", done[0]["state"]
        session = last_complete_session(load_settings(home), pd.Timestamp(done[0]["start_time"]))
        report = json.loads((home / "reports" / "nightly" / f"{session:%Y-%m-%d}.json").read_text())
        assert report["failures"] == [] and report["ingest"][0]["rows_written"] == 4   # 2014-07-30 and -31, both symbols
    finally:
        _stop(serve)


def _serve(env: dict, log: Path) -> subprocess.Popen:
    """``alpha serve`` writing to ``log`` (a pipe nobody reads would fill up and block it)."""
    with open(log, "ab") as out:
        return subprocess.Popen([ALPHA, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
