"""Corporate actions from CSV folders (``actions.csv`` or ``--actions FILE``): the checks of each
line, the all-or-nothing run, files unchanged since they were ingested, the ``payload`` of bars
and actions, and the proof that a CSV folder with its actions gives the Lean path's technicals."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.errors import BadInputError, ConfigError
from etl.gold.builder import build
from etl.sources.base import EVERY_DAY
from etl.sources.csv_actions import read_actions
from etl.sources.csv_folder import CsvFolder, CsvFolderSource, ingest_csv_folder, list_csv_files
from etl.storage.actions import actions_path, read_all_versions
from etl.storage.bars import bar_files, read_silver_bars

REPO = Path(__file__).resolve().parents[1]
HEADER = "symbol,ex_date,split_ratio,cash_dividend,known_at\n"
#: AAA halves at its 2:1 split of 2014-06-09 (a session); BBB has no action
AAA = ("date,open,high,low,close,volume\n2014-06-04,20,21,19,20.5,100\n2014-06-05,20.5,21,20,20.8,100\n"
       "2014-06-06,20.8,21.2,20.6,21,100\n2014-06-09,10.5,10.7,10.4,10.6,200\n2014-06-10,10.6,10.9,10.5,10.8,200\n")
BBB = "date,open,high,low,close,volume\n2014-06-05,5,5.5,4.9,5.2,10\n2014-06-06,5.2,5.4,5.1,5.3,10\n"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file below root (what 'nothing changed' means)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def make_folder(path: Path, actions: str | None = None, **bars: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for symbol, text in (bars or {"AAA": AAA}).items():
        (path / f"{symbol}.csv").write_text(text)
    if actions is not None:
        (path / "actions.csv").write_text(actions)
    return path


def read(tmp_path: Path, text: str, with_bars=("AAA",)):
    path = tmp_path / "actions.csv"
    path.write_bytes(text.encode())
    return path, read_actions(path, path.read_bytes(), "XNYS", lambda symbols: symbols & set(with_bars), payload=sha(path))


# ------------------------------------------------------------------ the lines of an actions file

#: one bad line (line 3, after a good one): the reason it must be named with
BAD_LINES = {
    "unparseable_date": ("AAA,2014-13-45,2,,", "unparseable ex_date '2014-13-45'"),
    "date_with_a_time": ("AAA,2014-06-09 10:00,2,,", "unparseable ex_date '2014-06-09 10:00'"),
    "not_a_session": ("AAA,2014-06-07,2,,", "ex_date is not a XNYS session: '2014-06-07'"),
    "split_zero": ("AAA,2014-06-09,0,,", "split_ratio must be a number > 0 (new shares per old share), got '0'"),
    "split_negative": ("AAA,2014-06-09,-2,,", "split_ratio must be a number > 0"),
    "split_not_a_number": ("AAA,2014-06-09,2:1,,", "split_ratio must be a number > 0 (new shares per old share), got '2:1'"),
    "negative_cash": ("AAA,2014-06-09,,-0.5,", "cash_dividend must be a number >= 0, got '-0.5'"),
    "cash_not_a_number": ("AAA,2014-06-09,,$0.5,", "cash_dividend must be a number >= 0, got '$0.5'"),
    "neither": ("AAA,2014-06-09,1,0,", "neither a split (split_ratio 1) nor a dividend (cash_dividend 0)"),
    "neither_empty": ("AAA,2014-06-09,,,", "neither a split"),
    "no_bars": ("ZZZ,2014-06-09,2,,", "no bars of ZZZ: no ZZZ.csv in the folder and none in silver"),
    "bad_symbol": ("../AAA,2014-06-09,2,,", "symbol '../AAA' is not a valid symbol"),
    "extra_field": ("AAA,2014-06-09,2,,,x", "6 field(s), the header has 5"),
    "short_line": ("AAA,2014-06-09,2", "3 field(s), the header has 5"),
    "known_at_unparseable": ("AAA,2014-06-09,2,,last week", "unparseable known_at 'last week'"),
    "known_at_without_offset": ("AAA,2014-06-09,2,,2014-06-02T16:00:00", "known_at '2014-06-02T16:00:00' has a time but no UTC offset"),
}
GOOD_LINE = "AAA,2014-06-06,,0.25,\n"


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_is_named_with_its_line_and_reason_and_kept_as_read(case, tmp_path):
    line, reason = BAD_LINES[case]
    path, got = read(tmp_path, HEADER + GOOD_LINE + line + "\n")
    assert len(got.problems) == 1
    file, row, why = got.problems[0]
    assert (file, row) == (str(path), 3) and reason in why, why
    assert got.rejects[["source_file", "source_row", "raw", "reason"]].values.tolist() == [[str(path), 3, line, why]]
    assert got.actions[["symbol", "ex_date", "cash_dividend"]].values.tolist() == [["AAA", pd.Timestamp("2014-06-06"), 0.25]]


def test_the_same_action_twice_with_different_values_rejects_every_copy(tmp_path):
    path, got = read(tmp_path, HEADER + "AAA,2014-06-09,2,,\n" + GOOD_LINE + "AAA,2014-06-09,3,,\n")
    assert [(r, "AAA 2014-06-09 is given with different values on lines 2, 4") for r in (2, 4)] == [p[1:] for p in got.problems]
    _, same = read(tmp_path, HEADER + "AAA,2014-06-09,2,,\n" + "AAA,2014-06-09,2.0,,\n")   # the same action twice: one
    assert same.problems == [] and same.actions["split_ratio"].tolist() == [2.0]
    _, other_time = read(tmp_path, HEADER + "AAA,2014-06-09,2,,2014-06-01\n" + "AAA,2014-06-09,2,,\n")
    assert [p[1] for p in other_time.problems] == [2, 3]


@pytest.mark.parametrize(("header", "reason"), [
    ("symbol,ex_date,split_ratio,cash_dividend,note", "unknown column(s) ['note']"),
    ("symbol,ex_date,split_ratio", "missing column(s) ['cash_dividend']"),
    ("symbol,ex_date,split_ratio,cash_dividend,Symbol", "column(s) ['symbol'] appear more than once"),
    ("", "empty file"),
])
def test_a_bad_header_is_a_problem_of_the_file(header, reason, tmp_path):
    path, got = read(tmp_path, header + "\n" if header else "")
    assert len(got.problems) == 1 and got.problems[0][0] == str(path) and reason in got.problems[0][2]
    assert got.problems[0][1] == (1 if header else None)
    assert got.actions.empty


def test_headers_ignore_case_and_empty_values_mean_no_split_or_no_dividend(tmp_path):
    path, got = read(tmp_path, " Symbol ,EX_DATE,Split_Ratio,CASH_DIVIDEND\naaa,2014-06-09,2,\nAAA,2014-06-06,,0.25\n\n")
    assert got.problems == [] and got.rows == 2
    a = got.actions.sort_values("ex_date")
    assert a["split_ratio"].tolist() == [1.0, 2.0] and a["cash_dividend"].tolist() == [0.25, 0.0]
    assert a["symbol"].tolist() == ["AAA", "AAA"] and set(a["source"]) == {"csv"} and set(a["payload"]) == {sha(path)}
    assert a["known_timestamp"].isna().all() and str(a["known_timestamp"].dt.tz) == "UTC"


def test_known_at_a_date_is_the_start_of_that_day_in_new_york_and_a_time_keeps_its_offset(tmp_path):
    _, got = read(tmp_path, HEADER + "AAA,2014-06-09,2,,2014-06-02\nAAA,2014-06-06,,0.25,2014-05-20T16:05:00-04:00\n"
                  "AAA,2014-06-05,,0.1,2014-05-21T12:00:00Z\nAAA,2014-06-04,,0.1,\n")
    assert got.problems == []
    known = got.actions.set_index("ex_date")["known_timestamp"]
    assert known[pd.Timestamp("2014-06-09")] == pd.Timestamp("2014-06-02", tz="America/New_York")
    assert known[pd.Timestamp("2014-06-06")] == pd.Timestamp("2014-05-20 20:05", tz="UTC")
    assert known[pd.Timestamp("2014-06-05")] == pd.Timestamp("2014-05-21 12:00", tz="UTC")
    assert pd.isna(known[pd.Timestamp("2014-06-04")])


# ------------------------------------------------------------------ the folder's run


def test_actions_csv_is_not_a_bar_file(tmp_home, tmp_path):
    folder = make_folder(tmp_path / "f", HEADER + "AAA,2014-06-09,2,,\n")
    assert [p.name for p in list_csv_files(folder)] == ["AAA.csv"]
    ingest_csv_folder(tmp_home, folder)
    assert read_silver_bars(tmp_home)["symbol"].unique().tolist() == ["AAA"]
    assert read_all_versions(tmp_home)[["symbol", "split_ratio"]].values.tolist() == [["AAA", 2.0]]
    only = tmp_path / "only"
    only.mkdir()
    (only / "Actions.CSV").write_text(HEADER)
    with pytest.raises(BadInputError, match="no <SYMBOL>.csv"):
        ingest_csv_folder(tmp_home, only)


def test_a_bad_line_stops_the_run_quarantined_and_nothing_is_written(tmp_home, tmp_path):
    ingest_csv_folder(tmp_home, make_folder(tmp_path / "first"))
    silver_before, bronze_before = tree_digest(tmp_home.silver), tree_digest(tmp_home.bronze)
    folder = make_folder(tmp_path / "f", HEADER + GOOD_LINE + "AAA,2014-06-07,2,,\n", AAA=AAA, BBB=BBB)
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    path = folder / "actions.csv"
    assert f"{path}, row 3: ex_date is not a XNYS session: '2014-06-07'" in str(err.value)
    assert err.value.problems == [(str(path), 3, "ex_date is not a XNYS session: '2014-06-07'")]
    q = pd.read_parquet(err.value.quarantine_path)
    assert Path(err.value.quarantine_path).parent == tmp_home.quarantine / "corporate_actions"
    assert q[["source", "source_file", "source_row", "symbol", "raw"]].values.tolist() == [["csv", str(path), 3, "AAA", "AAA,2014-06-07,2,,"]]
    assert tree_digest(tmp_home.silver) == silver_before, "no bar (BBB) and no action of the bad run is written"
    assert tree_digest(tmp_home.bronze) == bronze_before and not actions_path(tmp_home).exists()

    path.write_text(HEADER + GOOD_LINE + "AAA,2014-06-09,2,,\n")   # fixed: the whole run goes in
    report = ingest_csv_folder(tmp_home, folder)
    assert report.symbols == ["AAA", "BBB"]
    assert sorted(read_silver_bars(tmp_home)["symbol"].unique()) == ["AAA", "BBB"]
    assert len(read_all_versions(tmp_home)) == 2


def test_bad_bars_and_bad_actions_each_go_to_their_quarantine(tmp_home, tmp_path):
    folder = make_folder(tmp_path / "f", HEADER + "AAA,2014-06-09,-2,,\n", AAA=AAA, BBB=BBB.replace("5.3,10", "5.3,-10"))
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert sorted((Path(p[0]).name, p[1]) for p in err.value.problems) == [("BBB.csv", 3), ("actions.csv", 2)]
    assert Path(err.value.quarantine_path) == tmp_home.quarantine
    bars_q = pd.concat(pd.read_parquet(p) for p in (tmp_home.quarantine / "bars_daily").glob("*.parquet"))
    acts_q = pd.concat(pd.read_parquet(p) for p in (tmp_home.quarantine / "corporate_actions").glob("*.parquet"))
    assert bars_q["source_file"].tolist() == [str(folder / "BBB.csv")]
    assert acts_q["source_file"].tolist() == [str(folder / "actions.csv")]
    assert not tmp_home.silver.exists() or tree_digest(tmp_home.silver) == {}


def test_an_actions_file_outside_the_folder_with_known_at(tmp_home, tmp_path):
    folder = make_folder(tmp_path / "f", AAA=AAA, BBB=BBB)
    outside = tmp_path / "elsewhere" / "splits.csv"
    outside.parent.mkdir()
    outside.write_text(HEADER + "AAA,2014-06-09,2,,2014-06-02\nBBB,2014-06-06,,0.05,\n")
    now = pd.Timestamp("2024-01-02", tz="UTC")
    report = ingest_csv_folder(tmp_home, folder, now=now, actions=outside)
    assert report.files == 3
    acts = read_all_versions(tmp_home).set_index("symbol")
    assert acts.loc["AAA", "known_timestamp"] == pd.Timestamp("2014-06-02", tz="America/New_York")   # as stated
    assert acts.loc["BBB", "known_timestamp"] == clock.session_opens(pd.DatetimeIndex(["2014-06-06"]))[0]   # none stated
    assert set(acts["payload"]) == {sha(outside)} and set(acts["created_timestamp"]) == {now}
    landed = tmp_home.bronze / "csv" / "files" / sha(outside)[:2] / f"{sha(outside)}-splits.csv"
    assert landed.read_bytes() == outside.read_bytes()

    with pytest.raises(ConfigError, match="both --actions"):   # and an actions.csv in the folder too: which?
        (folder / "actions.csv").write_text(HEADER)
        ingest_csv_folder(tmp_home, folder, actions=outside)
    with pytest.raises(BadInputError, match="no such file"):
        ingest_csv_folder(tmp_home, folder, actions=tmp_path / "missing.csv")


def test_rerun_unchanged_writes_nothing_and_a_changed_file_is_reread_whole(tmp_home, tmp_path):
    folder = make_folder(tmp_path / "f", HEADER + "AAA,2014-06-09,2,,\n", AAA=AAA, BBB=BBB)
    ingest_csv_folder(tmp_home, folder, now=pd.Timestamp("2024-01-02", tz="UTC"))
    before = tree_digest(tmp_home.silver)
    os.utime(folder / "actions.csv")   # touched, the same bytes: unchanged
    again = ingest_csv_folder(tmp_home, folder, now=pd.Timestamp("2024-01-03", tz="UTC"))
    assert (again.unchanged_files, again.rows_read, again.new, again.revised) == (3, 0, 0, 0)
    assert {k: v for k, v in tree_digest(tmp_home.silver).items() if ".ingested" not in k} == \
        {k: v for k, v in before.items() if ".ingested" not in k}

    build(tmp_home, families=["bars"])   # BBB's features of its ex-date are published
    later = pd.Timestamp("2024-01-04", tz="UTC")
    (folder / "actions.csv").write_text(HEADER + "AAA,2014-06-09,2,,\nBBB,2014-06-06,,0.05,\n")
    changed = ingest_csv_folder(tmp_home, folder, now=later)
    assert (changed.unchanged_files, changed.rows_read, changed.new, changed.revised) == (2, 2, 1, 0)
    assert len(read_all_versions(tmp_home)) == 2
    acts = read_all_versions(tmp_home).set_index("symbol")
    assert acts.loc["AAA", "created_timestamp"] < later   # the first version is not written again
    # features of BBB's ex-date were published before the action came: it is known from when it came
    assert acts.loc["BBB", "known_timestamp"] == later and acts.loc["BBB", "created_timestamp"] == later


def test_actions_of_a_symbol_whose_bars_are_only_in_silver(tmp_home, tmp_path):
    first = pd.Timestamp("2024-01-02", tz="UTC")
    ingest_csv_folder(tmp_home, make_folder(tmp_path / "a", AAA=AAA), now=first)
    build(tmp_home, families=["bars"])   # AAA's features are published
    second = first + pd.Timedelta(days=1)
    folder = make_folder(tmp_path / "b", HEADER + "AAA,2014-06-09,2,,2014-06-02\nBBB,2014-06-06,,0.05,\n", BBB=BBB)
    ingest_csv_folder(tmp_home, folder, now=second)
    acts = read_all_versions(tmp_home).set_index("symbol")
    assert acts.loc["AAA", "known_timestamp"] == second   # late: AAA's 2014-06-09 was published before it came
    assert acts.loc["BBB", "known_timestamp"] == clock.session_opens(pd.DatetimeIndex(["2014-06-06"]))[0]


def test_every_bar_row_carries_the_sha256_of_its_whole_file(tmp_home, tmp_path):
    folder = make_folder(tmp_path / "f", AAA=AAA, BBB=BBB)

    def bars_of_a_run():
        source = CsvFolderSource(tmp_home, CsvFolder(folder))
        return source.fetch_parse(source.jobs("daily", [], *EVERY_DAY)[0]).tables["bars_daily"]

    bars = bars_of_a_run()
    assert bars.groupby("symbol")["payload"].unique().map(list).to_dict() == {s: [sha(folder / f"{s}.csv")] for s in ("AAA", "BBB")}
    ingest_csv_folder(tmp_home, folder)
    stored = pd.concat([pd.read_parquet(p) for p in bar_files(tmp_home)], ignore_index=True)
    if "payload" in stored.columns:   # silver keeps it once the bars writer does
        assert set(stored.loc[stored["symbol"] == "AAA", "payload"]) == {sha(folder / "AAA.csv")}
    with open(folder / "AAA.csv", "a") as fh:   # grown: only the new line is read, the payload is the whole file's
        fh.write("2014-06-11,10.8,11,10.7,10.9,200\n")
    grown = bars_of_a_run()
    assert grown["session"].tolist() == [pd.Timestamp("2014-06-11")]
    assert grown["payload"].tolist() == [sha(folder / "AAA.csv")]


@pytest.mark.integration
def test_the_alpha_command_takes_actions(tmp_path):
    folder = make_folder(tmp_path / "f", AAA=AAA)
    outside = tmp_path / "acts.csv"
    outside.write_text(HEADER + "AAA,2014-06-09,2,,\n")
    alpha = str(Path(sys.executable).with_name("alpha"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API"))}
    home = tmp_path / "home"
    ok = subprocess.run([alpha, "ingest", "csv", "--path", str(folder), "--actions", str(outside), "--home", str(home)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    from etl.core.config import load_settings

    assert read_all_versions(load_settings(home))[["symbol", "split_ratio"]].values.tolist() == [["AAA", 2.0]]
    wrong = subprocess.run([alpha, "ingest", "lean", "--actions", str(outside), "--home", str(home)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert wrong.returncode != 0 and "--actions" in wrong.stdout + wrong.stderr


# ------------------------------------------------------------------ the proof: the same technicals as Lean

SYMBOLS = ["AAPL", "IBM"]
#: the core technicals compared: returns (no unit), prices (dollars), RSI (0-100), MACD (dollars)
RETURNS = ["ret_1d", "ret_5d", "ret_21d", "rv_21d"]
PRICES = ["sma_20", "atr_14"]


def lean_to_csv_folder(lean_root: Path, folder: Path) -> float:
    """The Lean daily files of :data:`SYMBOLS` as a CSV folder (dollars) and their factor files as
    its ``actions.csv``: row i of a factor file applies up to its date, so the action at the next
    session splits ``split_factor[i+1] / split_factor[i]`` (rounded to the true ratio: 2, 7, 4) and
    pays ``reference_price[i] * (1 - price_factor[i] / price_factor[i+1])`` (rounded to the
    cent's hundredth, as dividends are declared). Returns the largest relative rounding of a
    factor in those files: a split factor is 1 / an integer (AAPL's 0.0178571 is 1/56 off by
    2.4e-6); a price factor carries 7 decimals (off by at most 5e-8 absolute)."""
    from etl.sources.lean import formats as lean

    folder.mkdir(parents=True)
    lines, eps = ["symbol,ex_date,split_ratio,cash_dividend"], 0.0
    for s in SYMBOLS:
        raw = lean.read_daily_raw(lean_root / lean.DAILY / f"{s.lower()}.csv")
        out = pd.DataFrame({"date": pd.to_datetime(raw["date"], format=lean.DATE_FORMAT).dt.strftime("%Y-%m-%d")})
        for c in ("open", "high", "low", "close"):
            out[c] = [repr(int(v) / lean.PRICE_DIVISOR) for v in raw[c]]
        out["volume"] = raw["volume"]
        out.to_csv(folder / f"{s}.csv", index=False)
        f = lean.read_factor_file(lean_root / lean.FACTORS / f"{s.lower()}.csv")
        sf, pf, ref = (f[c].to_numpy(float) for c in ("split_factor", "price_factor", "reference_price"))
        eps = max(eps, np.abs(sf * np.round(1 / sf) - 1).max(), (5e-8 / pf).max())
        for i in range(len(f) - 1):
            ratio, cash = round(sf[i + 1] / sf[i]), round(ref[i] * (1 - pf[i] / pf[i + 1]), 4)
            if ratio != 1 or cash != 0:
                lines.append(f"{s},{f['ex_date'][i]:%Y-%m-%d},{ratio if ratio != 1 else ''},{cash if cash else ''}")
    (folder / "actions.csv").write_text("\n".join(lines) + "\n")
    return eps


def newest_gold(settings, view: str = "technicals") -> pd.DataFrame:
    """The newest known version of each (symbol, event) of a view's part files."""
    from etl.gold import layout

    g = pd.concat([pd.read_parquet(p) for p in layout.parts(settings, view)], ignore_index=True)
    g = g.sort_values(["symbol", "event_timestamp", "known_timestamp", "created_timestamp"], kind="stable")
    return g.drop_duplicates(["symbol", "event_timestamp"], keep="last").set_index(["symbol", "event_timestamp"])


@pytest.fixture(scope="module")
def two_homes(tmp_path_factory, lean_root):
    from etl.core.config import load_settings
    from etl.gold.builder import build
    from etl.sources.archive import ingest_lean

    root = tmp_path_factory.mktemp("lean_vs_csv")
    eps = lean_to_csv_folder(lean_root, root / "csv")
    now = pd.Timestamp("2024-01-02", tz="UTC")
    lean_home, csv_home = load_settings(root / "lean_home"), load_settings(root / "csv_home")
    ingest_lean(lean_home, lean_root, SYMBOLS, now=now)
    ingest_csv_folder(csv_home, root / "csv", now=now)
    for home in (lean_home, csv_home):
        build(home, families=["core", "technical"])
    grid = {v: (newest_gold(lean_home, v), newest_gold(csv_home, v)) for v in ("ta_overlap", "ta_volatility", "ta_momentum")}
    return {"lean": newest_gold(lean_home), "csv": newest_gold(csv_home), "eps": eps, "folder": root / "csv", "grid": grid}


@pytest.mark.integration
def test_a_csv_folder_with_its_actions_gives_the_technicals_of_the_lean_path(two_homes):
    lean, csv, eps = two_homes["lean"], two_homes["csv"], two_homes["eps"]
    assert lean.index.equals(csv.index) and sorted(lean.index.unique("symbol")) == SYMBOLS
    tol = 4 * eps   # a value carries a few factors, each off by at most eps
    worst = {}
    for c in [*RETURNS, *PRICES, "rsi_14", "macd"]:
        a, b = lean[c].to_numpy(float), csv[c].to_numpy(float)
        assert (np.isnan(a) == np.isnan(b)).all(), f"{c}: missing on other sessions"
        m = ~np.isnan(a)
        assert m.sum() > 11_000
        if c in RETURNS:   # a return's error is the relative error of a price ratio
            worst[c] = np.abs(a[m] - b[m]).max()
        elif c == "macd":   # a difference of two averages of prices: relative to the price level
            worst[c] = (np.abs(a[m] - b[m]) / lean["sma_20"].to_numpy(float)[m]).max()
        elif c == "rsi_14":
            worst[c] = (np.abs(a[m] - b[m]) / 100).max()
        else:
            worst[c] = (np.abs(a[m] - b[m]) / np.abs(a[m])).max()
    print(f"largest relative differences (tolerance {tol:.2e}):", {k: f"{v:.2e}" for k, v in worst.items()})
    assert max(worst.values()) <= tol, worst


@pytest.mark.integration
def test_the_ta_lib_grid_is_in_the_same_price_scale_whatever_the_source(two_homes):
    """The grid's price-level and momentum views from CSV prices with actions.csv equal the
    Lean path's: one price scale for every family, within the rounding of Lean's factors."""
    # oscillators divide by a spread (CCI by its mean deviation, stochastics by a range) that a
    # quiet market makes small, so the factors' rounding can grow a few hundred times there
    tol = 500 * two_homes["eps"]
    worst_all = {}
    for view, (lean, csv) in two_homes["grid"].items():
        assert lean.index.equals(csv.index), view
        checked = 0
        for c in lean.columns:
            if c in ("known_timestamp", "created_timestamp") or lean[c].dtype.kind != "f":
                continue
            a, b = lean[c].to_numpy(float), csv[c].to_numpy(float)
            assert (np.isnan(a) == np.isnan(b)).all(), f"{view}.{c}: missing on other sessions"
            m = ~np.isnan(a)
            if not m.any():
                continue
            scale = np.median(np.abs(a[m])) or 1.0   # a value near 0 is compared on its column's scale
            worst = (np.abs(a[m] - b[m]) / (np.abs(a[m]) + scale)).max()
            worst_all[f"{view}.{c}"] = worst
            checked += 1
        assert checked >= 20, view
    top = sorted(worst_all.items(), key=lambda kv: -kv[1])[:5]
    print("largest relative differences of the grid:", {k: f"{v:.2e}" for k, v in top},
          "median:", f"{np.median(list(worst_all.values())):.2e}")
    assert top[0][1] <= tol, top


@pytest.mark.integration
def test_around_aapl_2005_split_returns_are_small_and_sma_continuous(two_homes):
    csv = two_homes["csv"].loc["AAPL"]
    day = csv.index[csv.index.normalize() == pd.Timestamp("2005-02-28", tz="UTC")][0]
    before = csv.index[csv.index.get_loc(day) - 1]
    bars = pd.read_csv(two_homes["folder"] / "AAPL.csv", index_col="date")
    raw_return = bars.loc["2005-02-28", "close"] / bars.loc["2005-02-25", "close"] - 1
    assert raw_return < -0.45   # the raw closes halve at the split ...
    assert abs(csv.loc[day, "ret_1d"]) < 0.05   # ... the total return does not
    assert csv.loc[day, "ret_1d"] == pytest.approx(bars.loc["2005-02-28", "close"] * 2 / bars.loc["2005-02-25", "close"] - 1, abs=1e-4)
    # sma_20 is in the price scale traded at each session: halved at the split, else continuous
    assert csv.loc[day, "sma_20"] * 2 == pytest.approx(csv.loc[before, "sma_20"], rel=0.03)
