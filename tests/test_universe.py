"""Survivorship-free universes: Lean's coarse universe (every US equity each
day, delisted and renamed names included) in silver and in the SDK.

The 11 coarse files of SOURCE.txt (2014-03-24 .. 2014-04-07) are ingested
once per module; expectations are read from the raw files themselves.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.core.errors import NotIngestedError
from etl.sources.base import run_ingest
from etl.storage import silver, tables
from sdk import connect

UNIVERSE = "us_equity_coarse"
FEATURES = ["bars_daily:close", "bars_daily:session_date", "technicals:rsi_14", "technicals:sma_20"]


def raw_day(lean_root: Path, day: str) -> pd.DataFrame:
    path = lean_root / "equity_usa_coarse_universe" / f"{pd.Timestamp(day):%Y%m%d}.csv.gz"
    return pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                       names=["sid", "ticker", "close", "volume", "dollar_volume", "has_fundamental_data", "price_factor", "split_factor"])


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def lean_root(shared_lean_root):
    """The coarse universe is not shipped with the project: this module reads the shared Lean folder."""
    return shared_lean_root


@pytest.fixture(scope="module")
def coarse(tmp_path_factory, lean_root):
    settings = load_settings(tmp_path_factory.mktemp("universe") / "home")
    summary = run_ingest(settings, "lean", "coarse_universe", None, "2014-01-01", "2014-12-31", path=str(lean_root))
    return settings, summary


def test_every_row_of_every_day_is_a_member_or_quarantined(coarse, lean_root):
    settings, summary = coarse
    assert not summary.failed and [r.job.symbol for r in summary.results] == ["ALL"]
    members = silver.read(settings, tables.UNIVERSE)
    q = silver.read_quarantine(settings, "universe_membership")
    files = sorted((lean_root / "equity_usa_coarse_universe").glob("*.csv.gz"))
    assert len(files) == 11 and members["date"].nunique() == 11
    for path in files:
        day = pd.Timestamp(path.name[:8])
        lines = len(gzip.decompress(path.read_bytes()).decode().splitlines())
        rejected = int((q["source_file"] == str(path)).sum())
        assert int((members["date"] == day).sum()) == lines - rejected, path.name
    assert summary.rows_fetched == sum(len(gzip.decompress(p.read_bytes()).decode().splitlines()) for p in files)
    # the only rejects: GOOCV listed twice on 2014-04-02, under GOOCV and under GOOG at the old GOOG's
    # price (both copies: we cannot tell which one is right), and an exact repeat of LEDMV's line on 04-07
    assert q[["raw", "reason"]].values.tolist() == [
        ["GOOCV VP83T1ZUHROL,GOOCV,567,122827,69642909,True,1,0.997307",
         "security id 'GOOCV VP83T1ZUHROL' is listed more than once that day with different values; cannot tell which row is right"],
        ["GOOCV VP83T1ZUHROL,GOOG,1135.1,2017979,2290607962,True,1,0.997307",
         "security id 'GOOCV VP83T1ZUHROL' is listed more than once that day with different values; cannot tell which row is right"],
        ["LEDMV VP17OEFNYHK5,LE,29.55,1220920,36078186,True,1,1", "exact copy of line 3757"],
    ]
    assert [Path(f).name for f in q["source_file"]] == ["20140402.csv.gz", "20140402.csv.gz", "20140407.csv.gz"]
    assert q["source_row"].iloc[2] == 3758
    assert members[(members["date"] == "2014-04-07") & (members["sid"] == "LEDMV VP17OEFNYHK5")]["ticker"].tolist() == ["LE"]
    row = members[(members["date"] == "2014-03-24") & (members["sid"] == "AAPL R735QTJ8XC9X")].iloc[0]
    # AAPL R735QTJ8XC9X,AAPL,539.1,11628740,6269053734,True,0.8961764,0.0357143
    assert (row["ticker"], row["symbol"], row["close"], row["volume"], row["dollar_volume"]) == ("AAPL", "AAPL", 539.1, 11628740.0, 6269053734.0)
    assert (bool(row["has_fundamental_data"]), row["price_factor"], row["split_factor"]) == (True, 0.8961764, 0.0357143)


def test_a_later_delisted_name_is_a_member_while_it_traded(coarse, lean_root):
    settings, _ = coarse
    # BRE Properties (merged into Essex, 2014-04-01) is in the files up to 2014-04-01, then gone
    assert "BRE R735QTJ8XC9X" in set(raw_day(lean_root, "2014-03-24")["sid"])
    assert "BRE R735QTJ8XC9X" not in set(raw_day(lean_root, "2014-04-07")["sid"])
    alpha = connect(settings.home)
    u = alpha.universe(UNIVERSE, "2014-03-24", "2014-04-07")
    bre = u[u["symbol"] == "BRE"]
    assert list(bre["date"]) == list(pd.to_datetime(["2014-03-24", "2014-03-25", "2014-03-26", "2014-03-27", "2014-03-28", "2014-03-31", "2014-04-01"]))
    assert set(bre["sid"]) == {"BRE R735QTJ8XC9X"}
    assert list(u.columns) == ["date", "symbol", "ticker", "sid", "event_timestamp"]


def test_renames_map_to_one_warehouse_symbol(coarse):
    settings, _ = coarse
    u = connect(settings.home).universe(UNIVERSE, "2014-03-24", "2014-04-07").set_index(["sid", "date"])
    # today's GOOGL traded as GOOG until 2014-04-02 (googl.csv map file): one security, one symbol
    googl = u.loc["GOOG T1AZ164W5VTX"]
    assert googl.loc["2014-03-24", ["ticker", "symbol"]].tolist() == ["GOOG", "GOOGL"]
    assert googl.loc["2014-04-07", ["ticker", "symbol"]].tolist() == ["GOOGL", "GOOGL"]
    assert set(googl["symbol"]) == {"GOOGL"} and len(googl) == 11
    # today's GOOG (class C) traded as GOOCV when issued (goog.csv): symbol GOOG throughout
    goog = u.loc["GOOCV VP83T1ZUHROL"]
    assert goog.loc["2014-03-27", ["ticker", "symbol"]].tolist() == ["GOOCV", "GOOG"]
    assert goog.loc["2014-04-03", ["ticker", "symbol"]].tolist() == ["GOOG", "GOOG"]
    assert set(goog["symbol"]) == {"GOOG"}
    # Waste Management's security id starts with its 1998 ticker UW (wm.csv): symbol WM
    assert set(u.loc["UW R735QTJ8XC9X", "symbol"]) == {"WM"}
    # a ticker with no map file is its own symbol
    assert set(u.loc["AOL UIC6UGF6IS11", "symbol"]) == {"AOL"}


def test_membership_is_never_visible_before_the_close_plus_delay(coarse):
    settings, _ = coarse
    alpha = connect(settings.home)
    u = alpha.universe(UNIVERSE, "2014-03-24", "2014-04-07")
    closes = pd.Series(clock.session_closes(pd.DatetimeIndex(u["date"])), index=u.index)
    assert (u["event_timestamp"] == closes + pd.Timedelta(minutes=15)).all()
    assert u.loc[u["date"] == "2014-03-25", "event_timestamp"].iloc[0] == pd.Timestamp("2014-03-25 20:15", tz="UTC")
    # as of one microsecond before 2014-03-25's membership was known, that day is not visible yet
    known = pd.Timestamp("2014-03-25 20:15", tz="UTC")
    before = alpha.universe(UNIVERSE, "2014-03-24", "2014-03-25", as_of=known - pd.Timedelta(microseconds=1))
    at = alpha.universe(UNIVERSE, "2014-03-24", "2014-03-25", as_of=known)
    assert set(before["date"]) == {pd.Timestamp("2014-03-24")}
    assert (at["date"] == "2014-03-25").sum() == (u["date"] == "2014-03-25").sum() > 7000
    assert (before["event_timestamp"] < known).all()


def test_unknown_universe_says_how_to_ingest(coarse, tmp_home):
    settings, _ = coarse
    with pytest.raises(NotIngestedError, match=r"alpha ingest lean --dataset coarse_universe"):
        connect(settings.home).universe("sp500", "2014-03-24", "2014-04-07")
    with pytest.raises(NotIngestedError, match=r"no universe 'us_equity_coarse'.*it has: none"):
        connect(tmp_home.home).universe(UNIVERSE, "2014-03-24", "2014-04-07")


def test_reingest_is_byte_identical(coarse, lean_root):
    settings, _ = coarse
    before = tree_digest(settings.silver)
    again = run_ingest(settings, "lean", "coarse_universe", None, "2014-03-24", "2014-04-07", path=str(lean_root))
    assert again.rows_written == 0 and again.results[0].unchanged == again.rows_fetched - 3
    assert tree_digest(settings.silver) == before


@pytest.fixture(scope="module")
def featured(coarse, lean_root):
    """The same warehouse with Lean daily bars, gold features and the Feast registry
    of a few symbols (real ingest, build_gold and feast apply; like conftest's
    redis_warehouse, without an online store)."""
    from etl.jobs import compute_factors
    from etl.serving import feast_store
    from etl.sources.archive import ingest_lean

    settings, _ = coarse
    ingest_lean(settings, lean_root, ["AAPL", "IBM", "GOOGL"])
    compute_factors(settings)
    feast_store.apply(settings)
    return connect(settings.home)


def same(a, b) -> bool:
    return (pd.isna(a) and pd.isna(b)) or a == b


def test_history_over_a_universe_matches_plain_history(featured, lean_root):
    alpha = featured
    got = alpha.history(universe=UNIVERSE, features=FEATURES, start="2014-03-25", end="2014-03-25")
    members = alpha.universe(UNIVERSE, "2014-03-25", "2014-03-25")
    assert len(got) == len(members) == len(raw_day(lean_root, "2014-03-25")) == 7068
    assert (got["event_timestamp"] == pd.Timestamp("2014-03-25 20:15", tz="UTC")).all()
    assert list(got.columns[:4]) == ["symbol", "event_timestamp", "ticker", "sid"]
    plain = alpha.history(["AAPL", "IBM", "GOOGL"], FEATURES, start="2014-03-25", end="2014-03-25").set_index("symbol")
    rows = got.set_index("symbol")
    for symbol in ["AAPL", "IBM", "GOOGL"]:
        assert rows.loc[symbol, "event_timestamp"] == plain.loc[symbol, "event_timestamp"]
        for f in FEATURES:
            name = f.split(":")[1]
            assert same(rows.loc[symbol, name], plain.loc[symbol, name]), (symbol, name)
    # equity_usa_daily/aapl.csv 20140325: close 5449900 deci-cents
    assert rows.loc["AAPL", "close"] == 544.99 and not np.isnan(rows.loc["AAPL", "rsi_14"])
    # the old GOOG ticker counts for GOOGL, whose Lean daily bars start 2014-04-03: no value yet
    assert rows.loc["GOOGL", "ticker"] == "GOOG" and np.isnan(rows.loc["GOOGL", "close"])
    # survivorship-free: members without features in this warehouse are there, values missing
    assert rows.loc["BRE", "ticker"] == "BRE" and np.isnan(rows.loc["BRE", "close"])


def test_history_over_a_universe_follows_the_rename(featured):
    got = featured.history(universe=UNIVERSE, features=FEATURES, start="2014-04-04", end="2014-04-07")
    googl = got[got["symbol"] == "GOOGL"].set_index("event_timestamp")
    plain = featured.history(["GOOGL"], FEATURES, start="2014-04-04", end="2014-04-07").set_index("event_timestamp")
    assert list(googl["ticker"]) == ["GOOGL", "GOOGL"] and list(googl.index) == list(plain.index)
    assert list(googl["close"]) == list(plain["close"]) == [545.25, 540.63]   # coarse close of GOOGL on 04-04 and 04-07
    # one entity row per member: 7084 lines on 04-04; 7102 on 04-07, one of them an exact repeat of LEDMV's
    assert got.groupby("event_timestamp").size().tolist() == [7084, 7101]


def test_history_needs_entities_or_a_universe(featured):
    from etl.core.errors import AlphaError, EmptyInputError

    with pytest.raises(EmptyInputError, match="universe="):
        featured.history(features=FEATURES, start="2014-04-04", end="2014-04-07")
    with pytest.raises(AlphaError, match="not both"):
        featured.history(["AAPL"], FEATURES, universe=UNIVERSE, start="2014-04-04", end="2014-04-07")
    with pytest.raises(EmptyInputError, match="no members"):
        featured.history(universe=UNIVERSE, features=FEATURES, start="2015-01-05", end="2015-01-06")
