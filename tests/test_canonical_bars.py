"""One canonical daily bar when several sources deliver it (etl/storage/canonical.py).

Fast tests: the canonical stream against a brute-force reference on random histories, the
writer's per-source revisions, the priority record and the disagreement check. Integration:
Lean and Polygon bars of AAPL and SPY (Polygon served over local HTTP from the recorded
responses, one close changed) through ingest, the factor build and the health report."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.storage.bars import read_silver_bars, version_summary, write_silver_bars
from etl.storage.canonical import (
    NO_TIME,
    Epoch,
    canonical_versions,
    history_path,
    priority_history,
    record_priority,
    source_order,
)

UTC = "UTC"
T1, T2, T3, T4 = (pd.Timestamp(d, tz=UTC) for d in ("2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"))
KEY_COLS = ["symbol", "session", "source", "close", "known_timestamp", "created_timestamp"]


def bars(closes: dict[str, float], symbol: str = "ACME", payload: str = "") -> pd.DataFrame:
    """Validated bars (what an adapter hands to write_silver_bars)."""
    days = sorted(closes)
    c = np.array([closes[d] for d in days])
    return pd.DataFrame({"symbol": symbol, "session": pd.to_datetime(days), "open": c, "high": c + 1, "low": c - 1,
                         "close": c, "volume": 1000.0, "payload": payload})


def configure(settings, priority: list[str]):
    text = "[source_priority]\nbars_daily = [" + ", ".join(f'"{s}"' for s in priority) + "]\n"
    (settings.home / "config.toml").write_text(text)
    return load_settings(settings.home)


def stream(settings, **kw) -> list[tuple]:
    got = read_silver_bars(settings, versions="all", **kw)
    return [(r.session.strftime("%Y-%m-%d"), r.source, r.close, r.known_timestamp, r.created_timestamp) for r in got.itertuples()]


def avail(day: str) -> pd.Timestamp:
    return clock.availability_times(pd.DatetimeIndex([day]), 15)[0]


# ------------------------------------------------------------------ the rule, on random histories


def reference(rows: pd.DataFrame, history: list[Epoch]) -> list[tuple]:
    """The canonical stream by its definition (etl/storage/canonical.py), one session and one
    event at a time: each write time and each priority change in time order."""
    sinces = [e.since_us for e in history if e.since_us != NO_TIME]
    out = []
    for (sym, ses), g in rows.groupby(["symbol", "session"], sort=True):
        names = sorted(set(g["source"]))
        recs = list(g.itertuples(index=False))

        def rank(source, t, names=names):
            epoch = [e for e in history if e.since_us <= t][-1]
            return source_order(names, epoch.priority).index(source)

        cur = None
        for t in sorted({r.c for r in recs} | set(sinces)):
            if t in sinces:
                avail_ = [r for r in recs if r.c < t]
                if avail_:
                    best = min({r.source for r in avail_}, key=lambda s: rank(s, t))
                    if best != cur:
                        r = max((r for r in avail_ if r.source == best), key=lambda r: (r.k, r.c))
                        out.append((sym, ses, r.source, r.close, max(r.k, t), t))
                    cur = best
            for r in sorted((r for r in recs if r.c == t), key=lambda r: rank(r.source, t)):
                if cur is None or r.source == cur:
                    out.append((sym, ses, r.source, r.close, r.k, r.c))
                    cur = r.source
                elif rank(r.source, t) < rank(cur, t):
                    out.append((sym, ses, r.source, r.close, max(r.k, r.c), r.c))
                    cur = r.source
    return sorted(out)


@pytest.mark.parametrize("seed", range(60))
def test_the_stream_is_its_definition_on_random_histories(seed):
    rng = np.random.default_rng(seed)
    sources = ["lean", "polygon", "csv:a", "csv:b", "zeta"][: rng.integers(2, 6)]
    n = int(rng.integers(5, 60))
    created = rng.integers(1, 40, n) * 1_000_000        # ties between sources and with priority changes included
    rows = pd.DataFrame({
        "symbol": rng.choice(["A", "B"], n), "session": pd.to_datetime("2014-06-02") + pd.to_timedelta(rng.integers(0, 4, n), "D"),
        "source": rng.choice(sources, n), "close": rng.integers(1, 1000, n).astype(float),
        "c": created, "k": np.where(rng.random(n) < 0.6, 0, created - rng.integers(0, 3, n) * 1_000_000),
    })
    rows = rows.drop_duplicates(["symbol", "session", "source", "c"])   # a writer adds one version per source at a time
    rows["known_timestamp"] = clock.from_epoch_us(rows["k"])
    rows["created_timestamp"] = clock.from_epoch_us(rows["c"])
    rows = rows.sort_values(["symbol", "session", "known_timestamp", "created_timestamp"], kind="stable").reset_index(drop=True)
    history = [Epoch(NO_TIME, tuple(rng.permutation(sources[:3])))]
    for since in sorted(rng.choice(np.arange(1, 40), size=rng.integers(0, 3), replace=False)):
        history.append(Epoch(int(since) * 1_000_000, tuple(rng.permutation(sources))))
    got = canonical_versions(rows, history)
    mine = sorted((r.symbol, r.session, r.source, r.close, clock.instant_us(r.known_timestamp, "k"),
                   clock.instant_us(r.created_timestamp, "c")) for r in got.itertuples())
    assert mine == reference(rows, history)
    # sorted as every read is
    assert got[["symbol", "session", "known_timestamp", "created_timestamp"]].equals(
        got[["symbol", "session", "known_timestamp", "created_timestamp"]].sort_values(
            ["symbol", "session", "known_timestamp", "created_timestamp"], kind="stable"))


def test_source_order_puts_a_csv_folder_in_the_csv_place():
    assert source_order(["zeta", "csv:prices", "polygon", "lean", "alpha"], ("lean", "polygon", "csv")) == [
        "lean", "polygon", "csv:prices", "alpha", "zeta"]
    assert source_order(["csv:b", "csv:a", "csv"], ("csv",)) == ["csv", "csv:a", "csv:b"]


# ------------------------------------------------------------------ the writer and the readers


def test_another_source_is_never_a_revision_and_a_correction_of_the_same_source_is(tmp_path):
    settings = load_settings(tmp_path / "home")
    days = {"2014-06-05": 10.0, "2014-06-06": 11.0}
    assert write_silver_bars(settings, bars(days, payload="a" * 64), "lean", T1) == {"new": 2, "revised": 0, "unchanged": 0}
    # Polygon's bars of the same sessions, one different: its own first prints, not Lean's revisions
    other = write_silver_bars(settings, bars({**days, "2014-06-06": 11.5}, payload="b" * 64), "polygon", T2)
    assert other == {"new": 2, "revised": 0, "unchanged": 0}
    canon = [(d, s, c, k, w) for d, s, c, k, w in stream(settings)]
    assert canon == [("2014-06-05", "lean", 10.0, avail("2014-06-05"), T1), ("2014-06-06", "lean", 11.0, avail("2014-06-06"), T1)]
    every = read_silver_bars(settings, versions="all", sources="all", payload=True)
    assert sorted(zip(every["source"], every["close"], every["payload"], strict=True)) == [
        ("lean", 10.0, "a" * 64), ("lean", 11.0, "a" * 64), ("polygon", 10.0, "b" * 64), ("polygon", 11.5, "b" * 64)]
    # a Lean correction is a revision, known when received; Polygon's bar never shows
    fix = write_silver_bars(settings, bars({"2014-06-06": 11.2}, payload="c" * 64), "lean", T3)
    assert fix == {"new": 0, "revised": 1, "unchanged": 0}
    assert stream(settings)[1:] == [("2014-06-06", "lean", 11.0, avail("2014-06-06"), T1), ("2014-06-06", "lean", 11.2, T3, T3)]
    assert read_silver_bars(settings).set_index("session").loc["2014-06-06", "close"] == 11.0   # first version
    # the same rows again change nothing
    assert write_silver_bars(settings, bars({**days, "2014-06-06": 11.5}), "polygon", T4) == {"new": 0, "revised": 0, "unchanged": 2}


def test_a_better_source_arriving_later_takes_over_from_when_it_was_written(tmp_path):
    settings = load_settings(tmp_path / "home")
    write_silver_bars(settings, bars({"2014-06-05": 10.0, "2014-06-06": 11.5}), "polygon", T1)
    write_silver_bars(settings, bars({"2014-06-06": 11.0, "2014-06-09": 12.0}), "lean", T2)
    assert stream(settings) == [
        ("2014-06-05", "polygon", 10.0, avail("2014-06-05"), T1),
        ("2014-06-06", "polygon", 11.5, avail("2014-06-06"), T1),
        ("2014-06-06", "lean", 11.0, T2, T2),                       # not back-dated: a backtest saw 11.5 until T2
        ("2014-06-09", "lean", 12.0, avail("2014-06-09"), T2),
    ]
    summary = version_summary(settings).set_index("symbol")
    assert summary.loc["ACME", "n"] == 4 and summary.loc["ACME", "created_us"] == clock.instant_us(T2, "t")


def test_a_priority_change_is_a_version_of_exactly_the_sessions_whose_source_changes(tmp_path):
    settings = load_settings(tmp_path / "home")
    write_silver_bars(settings, bars({"2014-06-05": 10.0, "2014-06-06": 11.0}), "lean", T1)
    assert not history_path(settings).exists()          # one source: no choice to record
    write_silver_bars(settings, bars({"2014-06-06": 11.5, "2014-06-09": 12.0}), "polygon", T1)
    assert [(e.since_us, e.priority) for e in priority_history(settings)] == [(NO_TIME, ("lean", "polygon", "csv"))]
    before = stream(settings)
    flipped = configure(settings, ["polygon", "lean"])
    assert stream(flipped) == before                     # the change is in force once recorded
    assert record_priority(flipped, T3) and not record_priority(flipped, T4)
    # 06-06 (both sources) switches at T3; 06-05 (Lean only) and 06-09 (Polygon only) do not
    assert stream(flipped) == [*before[:2], ("2014-06-06", "polygon", 11.5, T3, T3), *before[2:]]
    assert version_summary(flipped).set_index("symbol").loc["ACME", "created_us"] == clock.instant_us(T3, "t")
    # and back: Lean's bar again, from then
    back = configure(settings, ["lean", "polygon"])
    record_priority(back, T4)
    assert stream(back)[3] == ("2014-06-06", "lean", 11.0, T4, T4)
    assert json.loads(history_path(back).read_text())["history"][1:] == [
        {"since": T3.isoformat(), "priority": ["polygon", "lean"]}, {"since": T4.isoformat(), "priority": ["lean", "polygon"]}]


def test_an_unreadable_priority_record_is_a_clear_error(tmp_path):
    from etl.core.errors import BadInputError

    settings = load_settings(tmp_path / "home")
    write_silver_bars(settings, bars({"2014-06-05": 10.0}), "lean", T1)
    history_path(settings).write_text("{not json")
    with pytest.raises(BadInputError, match="_canonical.json"):
        read_silver_bars(settings)


def test_disagreements_name_both_sources_and_values_and_volume_has_a_looser_rule(tmp_path):
    from etl.quality.health import check_sources, source_disagreements

    settings = load_settings(tmp_path / "home")
    lean = bars({"2014-06-05": 100.0, "2014-06-06": 100.0, "2014-06-09": 100.0})
    write_silver_bars(settings, lean, "lean", T1)
    poly = bars({"2014-06-05": 100.4, "2014-06-06": 101.0, "2014-06-09": 100.0})   # 0.4 % (within), 1 %, 0
    poly.loc[2, "volume"] = 1000.0 * 1.04                                          # 4 % volume: within 10 x 0.5 %
    poly.loc[0, "volume"] = 1000.0 * 1.2                                           # 20 %: beyond
    write_silver_bars(settings, poly, "polygon", T2)
    every = read_silver_bars(settings, versions="all", sources="all")
    found = source_disagreements(every, read_silver_bars(settings, versions="all"), settings.source_tolerance)
    d5, d6 = pd.Timestamp("2014-06-05"), pd.Timestamp("2014-06-06")
    assert found[["session", "field", "canonical_source", "canonical_value", "other_source", "other_value"]].values.tolist() == [
        [d5, "volume", "lean", 1000.0, "polygon", 1200.0],
        [d6, "open", "lean", 100.0, "polygon", 101.0],
        [d6, "high", "lean", 101.0, "polygon", 102.0],
        [d6, "low", "lean", 99.0, "polygon", 100.0],
        [d6, "close", "lean", 100.0, "polygon", 101.0],
    ]
    assert found["rel_diff"].tolist() == pytest.approx([0.2, 0.01, 1 / 101, 1 / 99, 0.01])
    assert found["tolerance"].tolist() == pytest.approx([0.05, 0.005, 0.005, 0.005, 0.005])
    findings = check_sources(found)
    assert findings[["check", "date", "severity"]].values.tolist() == [
        ["source_disagreement", d5, "warning"], ["source_disagreement", d6, "warning"]]
    assert findings["value"].tolist() == pytest.approx([0.2, 1 / 99]) and findings["threshold"].tolist() == [0.005, 0.005]
    assert "close lean 100 vs polygon 101 (1.00%)" in findings["detail"].iloc[1]
    assert "volume lean 1000 vs polygon 1200 (20.00%)" in findings["detail"].iloc[0]


# ------------------------------------------------------------------ Lean and Polygon, end to end

KEY = "test-key"
SYMBOLS = ["AAPL", "SPY"]
DISAGREE = "2014-06-12"            # Polygon's AAPL close of this session is served 2 % off Lean's
PAGE1 = "/v2/aggs/ticker/AAPL/range/1/day/2014-05-01/2014-07-31"


def polygon_page_with_a_disagreement() -> tuple[bytes, float, float]:
    """The recorded first AAPL page (raw Lean bars) with one close moved 2 %: (body, Lean's close, served close)."""
    from tests.vendor_server import FIXTURES

    page = json.loads((FIXTURES / "polygon" / "aggs_day_AAPL_p1.json").read_text())
    [bar] = [r for r in page["results"] if pd.Timestamp(r["t"], unit="ms", tz=UTC).tz_convert("America/New_York")
             .strftime("%Y-%m-%d") == DISAGREE]
    lean_close = bar["c"]
    bar["c"] = round(lean_close * 1.02, 2)
    bar["h"] = max(bar["h"], bar["c"])
    return json.dumps(page).encode(), lean_close, bar["c"]


def write_config(home, url: str | None = None, priority: list[str] | None = None):
    home.mkdir(parents=True, exist_ok=True)
    text = f'[vendors.polygon]\nbase_url = "{url}"\nrate = 100\nbackoff = 0.01\n' if url else ""
    if priority:
        text += "[source_priority]\nbars_daily = [" + ", ".join(f'"{s}"' for s in priority) + "]\n"
    (home / "config.toml").write_text(text)
    return load_settings(home)


def gold(settings) -> dict[str, pd.DataFrame]:
    """Every view's rows, with the run that wrote them."""
    from etl.gold.layout import part_run, parts

    out = {}
    for view in sorted(p.name for p in settings.gold.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        frames = [pd.read_parquet(p).assign(run=part_run(p)) for p in parts(settings, view)]
        out[view] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def values(frame: pd.DataFrame) -> pd.DataFrame:
    """A view's rows without write times, in a fixed order."""
    f = frame.drop(columns=["created_timestamp", "run"])
    return f.sort_values(list(f.columns[:3]), kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def two_homes(tmp_path_factory, lean_root):
    """A Lean-only home and one with Lean then Polygon bars of AAPL and SPY, each built."""
    from etl.gold.builder import build
    from etl.quality.health import run_health
    from etl.sources.base import run_ingest
    from etl.sources.lean.daily import ingest_lean
    from tests.vendor_server import ReplayServer, Reply

    root = tmp_path_factory.mktemp("canonical")
    body, lean_close, served = polygon_page_with_a_disagreement()
    with ReplayServer(api_key=KEY) as srv, pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLYGON_API_KEY", KEY)
        srv.add_fixtures("polygon")
        srv.add(PAGE1, Reply(200, body))
        lean_only, both = load_settings(root / "lean"), write_config(root / "both", srv.url)
        for s in (lean_only, both):
            ingest_lean(s, lean_root, SYMBOLS, now=T1)
            build(s)
        polygon = run_ingest(both, "polygon", "daily", SYMBOLS, "2014-05-01", "2014-07-31", now=T2)
        assert not polygon.failed and polygon.rows_fetched == 128, polygon.text()
        rebuilt = build(both)
        report = run_health(both)
    return {"lean": lean_only, "both": both, "url": srv.url, "rebuilt": rebuilt, "report": report,
            "lean_close": lean_close, "served": served}


@pytest.mark.integration   # a local HTTP server, ingests and factor builds
def test_the_canonical_bar_follows_the_priority_and_every_row_names_its_payload(two_homes, lean_root):
    from etl.storage.bronze import sha256_of

    both = two_homes["both"]
    canon = read_silver_bars(both, ["AAPL"], payload=True).set_index("session")
    every = read_silver_bars(both, ["AAPL"], versions="all", sources="all", payload=True)
    day = every[every["session"] == DISAGREE].set_index("source")
    assert day.loc["lean", "close"] == two_homes["lean_close"] and day.loc["polygon", "close"] == two_homes["served"]
    assert canon.loc[DISAGREE, "close"] == two_homes["lean_close"] and set(canon["source"]) == {"lean"}
    # lineage: a Lean row names its daily file's digest; a Polygon row the page it came from, kept in bronze
    assert set(canon["payload"]) == {sha256_of(lean_root / "equity_usa_daily" / "aapl.csv")}
    polygon = every[every["source"] == "polygon"]
    assert polygon["payload"].nunique() == 2      # AAPL came in two pages
    for sha in polygon["payload"].unique():
        obj = both.bronze / "polygon" / "objects" / sha[:2] / sha
        assert sha256_of(obj) == sha
    assert day.loc["polygon", "payload"] == hashlib.sha256(polygon_page_with_a_disagreement()[0]).hexdigest()


@pytest.mark.integration   # a local HTTP server, ingests and factor builds
def test_the_disagreement_is_in_the_health_report_with_both_values_and_sources(two_homes):
    report = two_homes["report"]
    doc = json.loads(report.paths["json"].read_text())
    found = [f for f in doc["findings"] if f["check"] == "source_disagreement"]
    lean_close, served = two_homes["lean_close"], two_homes["served"]
    assert [(f["symbol"], f["date"], f["severity"]) for f in found] == [("AAPL", DISAGREE, "warning")]
    assert f"close lean {lean_close:.6g} vs polygon {served:.6g}" in found[0]["detail"]
    assert found[0]["value"] == pytest.approx(served / lean_close - 1)
    listed = doc["summary"]["source_disagreements"]
    assert listed["bars"] == 1 and [(r["symbol"], r["session"], r["field"], r["canonical_source"], r["canonical_value"],
                                     r["other_source"], r["other_value"]) for r in listed["listed"]] == [
        ("AAPL", DISAGREE, "close", "lean", lean_close, "polygon", served)]
    page = report.paths["html"].read_text()
    section = page[page.index("<h2>Source disagreements"):]
    assert (f"<td>AAPL</td><td>{DISAGREE}</td><td>close</td><td>lean</td><td>{lean_close:.6g}</td><td>polygon</td>"
            f"<td>{served:.6g}</td>") in section
    assert not report.failed       # a warning: the canonical bar is in use


@pytest.mark.integration   # a local HTTP server, ingests and factor builds
def test_polygon_bars_change_no_feature(two_homes):
    rebuilt = two_homes["rebuilt"]
    assert not rebuilt.changed
    lean, both = gold(two_homes["lean"]), gold(two_homes["both"])
    assert sorted(lean) == sorted(both) and sum(len(f) for f in lean.values()) > 0
    for view, frame in lean.items():
        pd.testing.assert_frame_equal(values(both[view]), values(frame), obj=view)


@pytest.mark.integration   # a local HTTP server, ingests and factor builds
def test_swapping_the_priority_restates_exactly_the_rows_whose_window_holds_the_disagreement(two_homes):
    from etl.gold.builder import build

    both = two_homes["both"]
    before = gold(both)
    flipped = write_config(both.home, two_homes["url"], ["polygon", "lean", "csv"])
    t0 = clock.utc_now()
    report = build(flipped)
    after = gold(flipped)
    event = avail(DISAGREE)
    new = {v: f[f["run"] == report.run] for v, f in after.items() if report.run is not None and (f["run"] == report.run).any()}
    assert "bars_daily" in new and "technicals" in new
    for view, rows in new.items():
        entity = rows.columns[0]
        assert set(rows[entity]) == {"AAPL"}, view                    # SPY's Polygon bars equal Lean's
        assert rows["event_timestamp"].min() >= (event if not view.endswith("_lag1") else avail("2014-06-13")), view
        assert (rows["known_timestamp"] >= t0).all(), view           # known from the change, history untouched
        assert len(after[view]) - len(before[view]) == len(rows)
    assert new["bars_daily"][["event_timestamp", "close"]].values.tolist() == [[event, two_homes["served"]]]
    # a 20-session mean moves exactly on the 20 sessions whose window holds the bar (elsewhere, rows restated for
    # the longer-memory outputs of the view carry it within the rounding of TA-Lib's running sum)
    sessions = clock.sessions_in_range(DISAGREE, "2014-12-31")[:20]
    sma = new["technicals"].loc[new["technicals"]["sma_20"].notna()]
    old = before["technicals"].set_index(["symbol", "event_timestamp"])["sma_20"]
    changed = [t for t, v in zip(sma["event_timestamp"], sma["sma_20"], strict=True) if abs(v - old[("AAPL", t)]) > 1e-9 * abs(v)]
    assert changed == list(clock.availability_times(sessions, 15))
    assert sma.set_index("event_timestamp").loc[event, "sma_20"] - old[("AAPL", event)] == pytest.approx(
        (two_homes["served"] - two_homes["lean_close"]) / 20, rel=1e-4)
    # and back: Lean's bar again, known from the second change
    back = write_config(both.home, two_homes["url"], ["lean", "polygon", "csv"])
    again = build(back)
    last = gold(back)["bars_daily"]
    restated = last[last["run"] == again.run]
    assert restated[["symbol", "event_timestamp", "close"]].values.tolist() == [["AAPL", event, two_homes["lean_close"]]]


@pytest.mark.integration   # a local HTTP server, ingests and factor builds
def test_a_correction_of_the_same_vendor_is_a_revision_known_when_received(tmp_path, monkeypatch):
    from etl.sources.base import run_ingest
    from tests.vendor_server import ReplayServer, Reply

    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    with ReplayServer(api_key=KEY) as srv:
        srv.add_fixtures("polygon")
        settings = write_config(tmp_path / "home", srv.url)
        run_ingest(settings, "polygon", "daily", ["AAPL"], "2014-05-01", "2014-07-31", now=T1)
        body, original, corrected = polygon_page_with_a_disagreement()
        srv.add(PAGE1, Reply(200, body))                   # Polygon restates one close
        run_ingest(settings, "polygon", "daily", ["AAPL"], "2014-05-01", "2014-07-31", now=T2)
    versions = read_silver_bars(settings, ["AAPL"], versions="all", payload=True)
    day = versions[versions["session"] == DISAGREE]
    assert day[["source", "close", "known_timestamp", "created_timestamp"]].values.tolist() == [
        ["polygon", original, avail(DISAGREE), T1], ["polygon", corrected, T2, T2]]
    assert day["payload"].iloc[1] == hashlib.sha256(body).hexdigest() != day["payload"].iloc[0]
    assert len(versions) == 65 and not history_path(settings).exists()
