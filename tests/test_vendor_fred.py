"""The FRED/ALFRED adapter against recorded series/observations responses (real
PAYEMS and CPIAUCSL vintages, two pages each; see
tests/fixtures/vendors/make_fred.py) replayed by a local HTTP server, through
the real pipeline into a real store."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import ConfigError, VendorPayloadError
from etl.sources.base import Job, run_ingest
from etl.sources.vendors.fred import FredSource
from etl.storage import silver
from etl.storage.bronze import read_fetch_log
from etl.storage.tables import MACRO
from etl.storage.watermarks import open_watermarks
from tests.vendor_server import FIXTURES, ReplayServer, Reply

NOW = pd.Timestamp("2026-11-22 12:00", tz="UTC")
START, END = "2016-06-29", "2017-01-31"      # the recorded real-time period
ROUTES = json.loads((FIXTURES / "fred" / "routes.json").read_text())
PAGE_LIMIT = int(ROUTES[0]["query"]["limit"])
PATH = "/fred/series/observations"


def tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("FRED_API_KEY", "test-key")
    with ReplayServer(api_key="test-key") as s:
        s.add_fixtures("fred")
        yield s


def fred_home(tmp_path, server, release_times: str = 'PAYEMS = "08:30"'):
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[vendors.fred]\nbase_url = "{server.url}"\nrate = 1000\npage_limit = {PAGE_LIMIT}\n\n'
        f"[vendors.fred.release_times]\n{release_times}\n"
    )
    return load_settings(home)


def ingest(settings, series: list[str], **kw):
    return run_ingest(settings, "fred", "observations", series, START, END, now=NOW, **kw)


def page_query(series: str, offset: int) -> dict:
    return {"series_id": series, "realtime_start": START, "realtime_end": END, "observation_start": "1776-07-04",
            "file_type": "json", "limit": str(PAGE_LIMIT), "offset": str(offset)}


def test_payems_vintages_two_pages_exact_values(tmp_path, server):
    settings = fred_home(tmp_path, server)
    [res] = ingest(settings, ["PAYEMS"]).results
    assert res.error is None and res.rows_fetched == 33 and res.written == {"macro_observations": 33}
    assert [q["offset"] for p, q in server.requests if p == PATH] == ["0", str(PAGE_LIMIT)]   # both pages read
    obs = silver.read(settings, MACRO)
    april = obs[obs["period"] == pd.Timestamp("2016-04-01")].sort_values("realtime_start")
    # 143856 as of the first vintage (2016-06-29), revised to 143877 by the 2016-07-08 release
    assert april[["value", "realtime_start", "realtime_end"]].values.tolist() == [
        [143_856.0, "2016-06-29", "2016-07-07"], [143_877.0, "2016-07-08", "2017-01-31"]
    ]
    # released at 08:30 New York (EDT = UTC-4)
    assert april["event_timestamp"].tolist() == [pd.Timestamp("2016-06-29 12:30", tz="UTC"), pd.Timestamp("2016-07-08 12:30", tz="UTC")]
    june = obs[obs["period"] == pd.Timestamp("2016-06-01")].sort_values("realtime_start")
    assert june[["value", "realtime_start"]].values.tolist() == [[144_175.0, "2016-07-08"], [144_193.0, "2016-08-05"], [144_172.0, "2016-09-02"]]
    assert (obs["source"] == "fred").all() and not obs["missing"].any()
    assert str(obs["event_timestamp"].dtype) == "datetime64[us, UTC]" and str(obs["period"].dtype).startswith("datetime64")
    assert open_watermarks(settings).get("fred", "observations", "PAYEMS") == "2017-01-27"


def test_as_of_a_time_the_latest_known_row_gives_the_value_known_then(tmp_path, server):
    settings = fred_home(tmp_path, server)
    ingest(settings, ["PAYEMS"])
    obs = silver.read(settings, MACRO)

    def known_at(period: str, t: str):
        rows = obs[(obs["period"] == pd.Timestamp(period)) & (obs["event_timestamp"] <= pd.Timestamp(t, tz="UTC"))]
        return rows.sort_values("event_timestamp")["value"].iloc[-1] if len(rows) else None

    assert known_at("2016-04-01", "2016-07-07 23:00") == 143_856.0
    assert known_at("2016-04-01", "2016-07-08 12:29") == 143_856.0      # one minute before the 08:30 release
    assert known_at("2016-04-01", "2016-07-08 12:30") == 143_877.0
    assert known_at("2016-04-01", "2016-07-15 00:00") == 143_877.0
    assert known_at("2016-04-01", "2016-08-01 00:00") == 143_877.0
    assert known_at("2016-06-01", "2016-07-08 12:29") is None           # not released yet
    assert known_at("2016-06-01", "2016-07-08 12:30") == 144_175.0


def test_no_row_is_known_before_its_realtime_start_and_unknown_release_times_wait_for_the_day_end(tmp_path, server):
    settings = fred_home(tmp_path, server)
    summary = ingest(settings, ["PAYEMS", "CPIAUCSL"])
    assert not summary.failed and summary.rows_written == 33 + 23
    obs = silver.read(settings, MACRO)
    day_start = pd.to_datetime(obs["realtime_start"]).dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    assert (obs["event_timestamp"] >= day_start).all()
    cpi = obs[obs["series_id"] == "CPIAUCSL"]
    # no release time configured for CPIAUCSL: the end of the realtime_start day in New York
    day_end = (pd.to_datetime(cpi["realtime_start"]) + pd.Timedelta(days=1)).dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    assert (cpi["event_timestamp"] == day_end).all()
    june = cpi[cpi["period"] == pd.Timestamp("2016-06-01")].sort_values("realtime_start")
    assert june[["value", "realtime_start", "event_timestamp"]].values.tolist() == [
        [239.927, "2016-07-15", pd.Timestamp("2016-07-16 04:00", tz="UTC")],
        [239.907, "2016-10-18", pd.Timestamp("2016-10-19 04:00", tz="UTC")],
    ]


def test_dot_values_are_kept_as_missing_rows_and_bad_values_are_quarantined(tmp_path, server):
    body = json.loads((FIXTURES / "fred" / "observations_PAYEMS_0.json").read_text())
    body["observations"][0]["value"] = "."        # FRED's "no value" marker
    body["observations"][1]["value"] = "n/a"
    del body["observations"][2]["date"]
    server.add(PATH, Reply(200, json.dumps(body).encode()), query=page_query("PAYEMS", 0))
    settings = fred_home(tmp_path, server)
    [res] = ingest(settings, ["PAYEMS"]).results
    assert res.error is None and res.written == {"macro_observations": 31} and res.quarantined == 2
    obs = silver.read(settings, MACRO)
    row = obs[obs["period"] == pd.Timestamp("2015-06-01")]
    assert len(row) == 1 and bool(row["missing"].iloc[0]) and pd.isna(row["value"].iloc[0])
    assert row["realtime_start"].iloc[0] == "2016-06-29"
    assert obs.loc[obs["period"] != pd.Timestamp("2015-06-01"), "missing"].eq(False).all()
    q = silver.read_quarantine(settings, "macro_observations").sort_values("source_row")
    assert q[["source_row", "reason"]].values.tolist() == [[1, "non-numeric value 'n/a'"], [2, "missing 'date'"]]
    assert json.loads(q["raw"].iloc[0]) == body["observations"][1]
    assert (q["symbol"] == "PAYEMS").all() and (q["source"] == "fred").all()
    assert "api_key=***" in q["source_file"].iloc[0] and "test-key" not in q["source_file"].iloc[0]


def test_same_ingest_twice_is_byte_identical(tmp_path, server):
    settings = fred_home(tmp_path, server)
    first = ingest(settings, ["PAYEMS", "CPIAUCSL"])
    before = tree_digest(settings.silver)
    again = ingest(settings, ["PAYEMS", "CPIAUCSL"])
    assert first.rows_written == 56 and again.rows_written == 0 and sum(r.unchanged for r in again.results) == 56
    assert tree_digest(settings.silver) == before


def test_a_later_clipped_window_does_not_repeat_values_silver_already_has(tmp_path, server):
    """FRED clips real-time periods to the request: asked from 2016-08-01, the values known
    since 2016-06-29 come back starting 2016-08-01. Those add nothing; real revisions do."""
    settings = fred_home(tmp_path, server)
    ingest(settings, ["PAYEMS"])
    recorded = [json.loads((FIXTURES / "fred" / r["file"]).read_text())["observations"] for r in ROUTES if r["query"]["series_id"] == "PAYEMS"]
    clipped = []
    for o in [o for page in recorded for o in page]:
        if o["realtime_end"] >= "2016-08-01":
            clipped.append({**o, "realtime_start": max(o["realtime_start"], "2016-08-01")})
    body = {"realtime_start": "2016-08-01", "realtime_end": END, "count": len(clipped), "offset": 0, "limit": PAGE_LIMIT,
            "observations": clipped[:PAGE_LIMIT]}
    server.add(PATH, Reply(200, json.dumps(body).encode()), query={**page_query("PAYEMS", 0), "realtime_start": "2016-08-01"})
    body2 = {**body, "offset": PAGE_LIMIT, "observations": clipped[PAGE_LIMIT:]}
    server.add(PATH, Reply(200, json.dumps(body2).encode()), query={**page_query("PAYEMS", PAGE_LIMIT), "realtime_start": "2016-08-01"})
    before = tree_digest(settings.silver)
    [res] = run_ingest(settings, "fred", "observations", ["PAYEMS"], "2016-08-01", END, now=NOW).results
    assert res.error is None and res.rows_fetched == len(clipped) == 31
    # 13 rows clipped to 2016-08-01 repeat values stored from earlier vintages: left out;
    # the 18 rows of vintages from 2016-08-05 on are stored already, identical
    assert res.written == {"macro_observations": 0} and res.unchanged == 18
    assert tree_digest(settings.silver) == before
    # a store that has never seen PAYEMS keeps the clipped rows: known from 2016-08-01, late but never early
    fresh = fred_home(tmp_path / "fresh", server)
    [res] = run_ingest(fresh, "fred", "observations", ["PAYEMS"], "2016-08-01", END, now=NOW).results
    assert res.written == {"macro_observations": 31}
    stored = silver.read(fresh, MACRO)
    april = stored[stored["period"] == pd.Timestamp("2016-04-01")]
    assert april[["value", "realtime_start"]].values.tolist() == [[143_877.0, "2016-08-01"]]


def test_missing_api_key_is_a_clear_config_error(tmp_path, server, monkeypatch):
    monkeypatch.delenv("FRED_API_KEY")
    monkeypatch.setattr("etl.core.config.PROJECT_ROOT", tmp_path)   # a developer's own .env must not supply a key
    settings = fred_home(tmp_path, server)
    (settings.home / ".env").write_text("FRED_API_KEY=\n")    # an empty entry counts as missing
    with pytest.raises(ConfigError, match="fred needs an API key: set FRED_API_KEY in the environment or in a .env file"):
        ingest(settings, ["PAYEMS"])
    assert not server.requests


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        ((FIXTURES / "fred" / "observations_PAYEMS_0.json").read_bytes()[:700], "application/json", "not valid JSON"),
        (b"<html><body>Service Unavailable</body></html>", "text/html", "HTML page"),
        (b'{"count": 33, "offset": 0}', "application/json", "no 'observations' list"),
    ],
    ids=["truncated", "html-200", "no-envelope"],
)
def test_bad_payload_raises_and_is_kept_in_bronze(tmp_path, server, body, ctype, message):
    server.add(PATH, Reply(200, body, ctype), query=page_query("PAYEMS", PAGE_LIMIT))   # the second page is bad
    settings = fred_home(tmp_path, server)
    source = FredSource(settings)
    try:
        with pytest.raises(VendorPayloadError, match=message):
            source.fetch_parse(Job("fred", "observations", "PAYEMS", pd.Timestamp(START), pd.Timestamp(END)))
    finally:
        source.close()
    assert hashlib.sha256(body).hexdigest() in set(read_fetch_log(settings, "fred")["sha256"])
    summary = ingest(settings, ["PAYEMS", "CPIAUCSL"])
    assert [r.job.symbol for r in summary.failed] == ["PAYEMS"] and message in summary.failed[0].error
    assert set(silver.read(settings, MACRO)["series_id"]) == {"CPIAUCSL"}    # nothing of the half-read series


def test_bad_release_time_is_a_config_error(tmp_path, server):
    with pytest.raises(ConfigError, match='release time of PAYEMS must be "HH:MM"'):
        FredSource(fred_home(tmp_path, server, release_times='PAYEMS = "8.30am"'))
