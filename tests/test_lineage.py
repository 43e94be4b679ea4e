"""Lineage of one feature value: gold row -> silver bars -> bronze file (etl/gold/lineage.py).

A home with Lean bars of AAPL and SPY and Polygon bars of 2014-05..07 served over local HTTP
(one AAPL close 2 % off Lean's), Polygon first in ``[source_priority]``: Polygon's bars take
over when they arrive, so the 2014-06-12 values have two gold rows (Lean's, then Polygon's)
and both chains can be traced."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from etl.core import clock
from etl.core.errors import ArgumentError, NotIngestedError
from etl.gold.lineage import lineage_text, trace_lineage
from etl.storage.bronze import sha256_of
from tests.test_canonical_bars import (
    DISAGREE,
    KEY,
    PAGE1,
    SYMBOLS,
    T1,
    T2,
    avail,
    polygon_page_with_a_disagreement,
    write_config,
)

pytestmark = pytest.mark.integration   # a local HTTP server, ingests and a factor build

FEATURE = "technicals:sma_20"


@pytest.fixture(scope="module")
def home(tmp_path_factory, lean_root):
    from etl.gold.builder import build
    from etl.sources.base import run_ingest
    from etl.sources.lean.daily import ingest_lean
    from tests.vendor_server import ReplayServer, Reply

    body, lean_close, served = polygon_page_with_a_disagreement()
    with ReplayServer(api_key=KEY) as srv, pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLYGON_API_KEY", KEY)
        srv.add_fixtures("polygon")
        srv.add(PAGE1, Reply(200, body))
        settings = write_config(tmp_path_factory.mktemp("lineage") / "home", srv.url, ["polygon", "lean", "csv"])
        ingest_lean(settings, lean_root, SYMBOLS, now=T1)
        summary = run_ingest(settings, "polygon", "daily", SYMBOLS, "2014-05-01", "2014-07-31", now=T2)
        assert not summary.failed, summary.text()
    build(settings, families=["bars", "core"])
    return {"settings": settings, "lean_close": lean_close, "served": served, "page": hashlib.sha256(body).hexdigest()}


def gold_values(settings, view: str, feature: str, symbol: str, event) -> list[tuple]:
    """The view's rows of one symbol and event, read straight from its part files."""
    frame = pd.concat([pd.read_parquet(p) for p in sorted((settings.gold / view).glob("r*.parquet"))])
    rows = frame[(frame["symbol"] == symbol) & (frame["event_timestamp"] == event)].sort_values("known_timestamp")
    return list(zip(rows["known_timestamp"], rows[feature], strict=True))


def assert_bronze_ends_the_chain(settings, doc: dict) -> None:
    assert doc["bronze"], doc
    for f in doc["bronze"]:
        path = settings.home / f["path"]
        assert path.name.startswith(f["sha256"]) and sha256_of(path) == f["sha256"] == f["sha256_recomputed"], f
        assert f["status"] == "ok: sha256 matches its name"


def test_a_value_traces_to_the_polygon_page_it_was_computed_from(home):
    settings = home["settings"]
    doc = trace_lineage(settings, FEATURE, "AAPL", DISAGREE)
    event = avail(DISAGREE)
    # gold: Lean's value first, Polygon's from when its bars arrived; the newest is in force
    stored = gold_values(settings, "technicals", "sma_20", "AAPL", event)
    assert [(pd.Timestamp(r["known_timestamp"]), r["sma_20"]) for r in doc["gold"]["rows"]] == stored
    assert len(stored) == 2 and stored[1][0] == T2
    assert doc["gold"]["in_force"] == doc["gold"]["rows"][-1]
    assert all((settings.home / r["part"]).is_file() for r in doc["gold"]["rows"])
    # silver: the session's bar and the 19 before it (sma_20's warm-up), all Polygon's canonical versions
    s = doc["silver"]
    assert (s["warmup"], s["bars"], s["earlier_bars"]) == (19, 20, 19)
    window = [pd.Timestamp(b["session"]) for b in s["window"]]
    assert window == list(clock.sessions_in_range("2014-05-01", DISAGREE)[-20:])
    assert {b["source"] for b in s["window"]} == {"polygon"}
    assert (s["session_bar"]["close"], s["session_bar"]["payload"]) == (home["served"], home["page"])
    assert pd.Timestamp(s["session_bar"]["known_timestamp"]) == T2
    assert [(o["source"], o["close"]) for o in s["other_sources"]] == [("lean", home["lean_close"])]
    # the mean of the window's closes, in the price scale of the session (the 7:1 split of 2014-06-09 is in the window)
    split = [a for a in doc["corporate_actions"] if a["ex_date"] == "2014-06-09"]
    assert len(split) == 1 and split[0]["split_ratio"] == pytest.approx(7.0, rel=1e-5)
    scaled = [b["close"] / (split[0]["split_ratio"] if b["session"] < "2014-06-09" else 1.0) for b in s["window"]]
    assert doc["gold"]["in_force"]["sma_20"] == pytest.approx(sum(scaled) / 20, rel=1e-6)
    # bronze: the page the bars came from (and the Lean factor file of the split), each checked
    assert_bronze_ends_the_chain(settings, doc)
    pages = [f for f in doc["bronze"] if f["of"] == "bars"]
    assert [f["source"] for f in pages] == ["polygon"] and home["page"] in {f["sha256"] for f in pages}
    assert pages[0]["path"].startswith(f"bronze/polygon/objects/{pages[0]['sha256'][:2]}/")


def test_as_of_before_polygon_arrived_the_chain_ends_at_the_lean_file(home, lean_root):
    settings = home["settings"]
    doc = trace_lineage(settings, FEATURE, "AAPL", DISAGREE, as_of=T2 - pd.Timedelta(seconds=1))
    assert pd.Timestamp(doc["gold"]["in_force"]["known_timestamp"]) == avail(DISAGREE)
    s = doc["silver"]
    assert {b["source"] for b in s["window"]} == {"lean"} and s["session_bar"]["close"] == home["lean_close"]
    assert_bronze_ends_the_chain(settings, doc)
    daily = sha256_of(lean_root / "equity_usa_daily" / "aapl.csv")
    bars = [f for f in doc["bronze"] if f["of"] == "bars"]
    assert [(f["source"], f["sha256"], Path(f["path"]).name) for f in bars] == [("lean", daily, f"{daily}-aapl.csv")]


def test_lagged_and_raw_bar_features_trace_to_the_previous_and_the_same_session(home):
    settings = home["settings"]
    lag = trace_lineage(settings, "bars_daily_lag1:close_lag1", "AAPL", "2014-06-13")
    assert lag["silver"]["value_session"] == DISAGREE and lag["silver"]["bars"] == 1
    assert lag["gold"]["in_force"]["close_lag1"] == home["served"] == lag["silver"]["session_bar"]["close"]
    # SPY's Polygon bars equal Lean's: its gold row, computed from Lean's bar when it was knowable, stays in force
    close = trace_lineage(settings, "close", "SPY", "2014-07-01")
    assert close["gold"]["in_force"]["close"] == close["silver"]["session_bar"]["close"] == close["silver"]["other_sources"][0]["close"]
    assert [len(close["gold"]["rows"]), close["silver"]["session_bar"]["source"], close["silver"]["other_sources"][0]["source"]] == [
        1, "lean", "polygon"]
    assert_bronze_ends_the_chain(settings, close)


def test_the_cli_prints_the_chain_and_its_json(home):
    from typer.testing import CliRunner

    from cli.app import app

    settings = home["settings"]
    args = ["features", "describe", FEATURE, "--symbol", "aapl", "--session", DISAGREE, "--home", str(settings.home)]
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == json.loads(json.dumps(trace_lineage(settings, FEATURE, "AAPL", DISAGREE), default=str))
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert lineage_text(trace_lineage(settings, FEATURE, "AAPL", DISAGREE)) + "\n" == text.output
    assert f"{home['page']}" in text.output and "ok: sha256 matches its name" in text.output
    half = CliRunner().invoke(app, ["features", "describe", FEATURE, "--symbol", "AAPL", "--home", str(settings.home)])
    assert half.exit_code == 1 and "--symbol and --session together" in half.output


def test_a_changed_bronze_file_is_reported_not_trusted(home, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(home["settings"].home, copy)
    settings = write_config(copy, None, ["polygon", "lean", "csv"])
    obj = settings.bronze / "polygon" / "objects" / home["page"][:2] / home["page"]
    obj.write_bytes(obj.read_bytes() + b" ")
    doc = trace_lineage(settings, FEATURE, "AAPL", DISAGREE)
    [page] = [f for f in doc["bronze"] if f["sha256"] == home["page"]]
    assert page["status"] == "CORRUPT: sha256 differs from its name" and page["sha256_recomputed"] != home["page"]


def test_what_cannot_be_traced_says_why(home):
    settings = home["settings"]
    with pytest.raises(ArgumentError, match="not a XNYS session"):
        trace_lineage(settings, FEATURE, "AAPL", "2014-06-14")
    with pytest.raises(ArgumentError, match="not computed from one symbol's daily bars"):
        trace_lineage(settings, "regime_daily:" + next(iter(_regime_feature())), "AAPL", DISAGREE)
    with pytest.raises(NotIngestedError, match="gold holds no technicals row of MSFT"):
        trace_lineage(settings, FEATURE, "MSFT", DISAGREE)


def _regime_feature() -> list[str]:
    from etl.factors import registry

    return [f.name for f in registry.features().values() if f.view == "regime_daily"]


def test_a_csv_value_traces_to_the_landed_csv_file(tmp_path):
    from etl.core.config import load_settings
    from etl.gold.builder import build
    from etl.sources.csv_folder import ingest_csv_folder

    folder = tmp_path / "prices"
    folder.mkdir()
    days = clock.sessions_in_range("2014-05-01", "2014-06-13")
    closes = [10.0 + 0.1 * i for i in range(len(days))]
    (folder / "ACME.csv").write_text("date,open,high,low,close,volume\n" + "".join(
        f"{d:%Y-%m-%d},{c},{c + 0.5},{c - 0.5},{c},1000\n" for d, c in zip(days, closes, strict=True)))
    settings = load_settings(tmp_path / "home")
    ingest_csv_folder(settings, folder, now=T1)
    build(settings, families=["bars", "core"])
    doc = trace_lineage(settings, FEATURE, "ACME", "2014-06-13")
    assert doc["gold"]["in_force"]["sma_20"] == pytest.approx(sum(closes[-20:]) / 20)
    assert {b["source"] for b in doc["silver"]["window"]} == {"csv:prices"}
    assert_bronze_ends_the_chain(settings, doc)
    assert [f["sha256"] for f in doc["bronze"]] == [sha256_of(folder / "ACME.csv")]
