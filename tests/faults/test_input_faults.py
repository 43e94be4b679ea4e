"""Issue 16, inputs: bad input never gets in. Each case reproduces the reported fault on a real
ingest (the library and, for some, the `alpha` CLI in a subprocess), asserts the clear error
naming file, line and reason (or the repair), that silver is exactly as it was, and that a
rerun after fixing the input lands it once (a further rerun changes nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from etl.core import clock
from etl.core.errors import BadInputError, ConfigError
from etl.sources.archive import ingest_csv_folder, ingest_lean
from etl.storage.bars import read_silver_bars
from tests.test_ingest import GOOD, tree_digest, write_csv

REPO = Path(__file__).resolve().parents[2]
ALPHA = str(Path(sys.executable).with_name("alpha"))
HEADER = "date,open,high,low,close,volume\n"
NY = "America/New_York"


def alpha(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_API", "POLYGON_"))}
    env["ALPHA_HOME"] = str(home)
    return subprocess.run([ALPHA, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def refused_by_cli(out: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1, no traceback, every needle in the message."""
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text, text
    for n in needles:
        assert n in text, (n, text)


def stored(settings) -> pd.DataFrame:
    return read_silver_bars(settings, versions="all", sources="all")


def home_with_good_bars(tmp_home, tmp_path) -> dict[str, str]:
    """A home holding GOOD's bars (another folder): what must survive every refused ingest."""
    ingest_csv_folder(tmp_home, write_csv(tmp_path / "good", "GOOD", GOOD).parent)
    return tree_digest(tmp_home.silver)


def next_session_after_today() -> pd.Timestamp:
    today = pd.Timestamp.now(tz=NY).tz_localize(None).normalize()
    return clock.next_session([today])[0]


# ------------------------------------------------------------------ 1. bars in the future


def test_csv_bars_dated_tomorrow_or_next_year_are_refused(tmp_home, tmp_path):
    """Reported: bars dated tomorrow or in 2027 went into silver and gold. Now: refused, named, quarantined."""
    before = home_with_good_bars(tmp_home, tmp_path)
    tomorrow = next_session_after_today()
    next_year = clock.next_session([pd.Timestamp(f"{tomorrow.year + 1}-03-01")])[0]
    folder = tmp_path / "csv"
    path = write_csv(folder, "ACME", GOOD + f"{tomorrow:%Y-%m-%d},11,12,10,11.5,800\n{next_year:%Y-%m-%d},11,12,10,11.5,800\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert [(p[0], p[1]) for p in err.value.problems] == [(str(path), 5), (str(path), 6)]
    assert all("is in the future: the last completed XNYS session is" in p[2] for p in err.value.problems)
    assert f"session {tomorrow:%Y-%m-%d} is in the future" in str(err.value)
    assert tree_digest(tmp_home.silver) == before
    q = pd.read_parquet(err.value.quarantine_path)
    assert sorted(q["source_row"]) == [5, 6] and q["reason"].str.contains("in the future").all()
    # fixed: the file without its future lines lands once
    path.write_text(GOOD)
    assert ingest_csv_folder(tmp_home, folder).new == 3
    again = tree_digest(tmp_home.silver)
    assert ingest_csv_folder(tmp_home, folder).new == 0 and tree_digest(tmp_home.silver) == again


@pytest.mark.slow
def test_cli_refuses_a_bar_of_tomorrow_without_a_traceback(tmp_path):
    home = tmp_path / "home"
    tomorrow = next_session_after_today()
    folder = tmp_path / "csv"
    write_csv(folder, "ACME", GOOD + f"{tomorrow:%Y-%m-%d},11,12,10,11.5,800\n")
    out = alpha(["ingest", "csv", "--path", str(folder)], home)
    refused_by_cli(out, "ACME.csv, row 5", "in the future")
    assert not (home / "silver" / "bars_daily").exists()


def test_lean_bar_in_the_future_is_refused(tmp_home, tmp_path, lean_root):
    """The same check on Lean's daily files (all or nothing: the whole archive is refused)."""
    root = tmp_path / "lean"
    (root / "equity_usa_daily").mkdir(parents=True)
    lines = (lean_root / "equity_usa_daily" / "spy.csv").read_text().splitlines()[-30:]
    tomorrow = next_session_after_today()
    last = lines[-1].split(",")
    lines.append(f"{tomorrow:%Y%m%d} 00:00," + ",".join(last[1:]))
    path = root / "equity_usa_daily" / "spy.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError) as err:
        ingest_lean(tmp_home, root)
    assert err.value.problems == [(str(path), 31, err.value.problems[0][2])]
    assert f"session {tomorrow:%Y-%m-%d} is in the future" in err.value.problems[0][2]
    assert not (tmp_home.silver / "bars_daily").exists()


def test_polygon_bar_before_its_close_plus_delay_is_quarantined_and_the_watermark_stops_before_it(tmp_path, monkeypatch):
    """Polygon (row by row): a bar of a session that closed but is not yet available (close +
    bar delay after now) is quarantined with its reason, the others are written, and the
    watermark stays at the last completed session, so the next run fetches it again."""
    from etl.core.config import load_settings
    from etl.sources.base import run_ingest
    from etl.storage.watermarks import open_watermarks
    from tests.polygon_daily import API_KEY, PolygonDaily

    delay = 60 * 24 * 30   # a bar is available 30 days after its close: a recent session is not yet
    closed = clock.last_completed_session(0, "XNYS")
    with PolygonDaily() as poly:
        recent = dict(poly.bars["SPY"][-1])
        recent["t"] = int(pd.Timestamp(closed).tz_localize(NY).tz_convert("UTC").value // 10**6)
        poly.bars["SPY"] = [*poly.bars["SPY"], recent]
        monkeypatch.setenv("POLYGON_API_KEY", API_KEY)
        home = tmp_path / "home"
        home.mkdir()
        (home / "config.toml").write_text(f'bar_delay_minutes = {delay}\n[vendors.polygon]\nbase_url = "{poly.url}"\nrate = 100\n')
        settings = load_settings(home)
        summary = run_ingest(settings, "polygon", "daily", ["SPY"], "2014-05-01", f"{closed:%Y-%m-%d}")
    assert not summary.failed and summary.rows_quarantined == 1, summary.text()
    q = pd.read_parquet(summary.results[0].quarantine_path)
    assert q["reason"].str.contains(f"session {closed:%Y-%m-%d} is in the future").all()
    bars = stored(settings)
    assert len(bars) == 64 and bars["session"].max() == pd.Timestamp("2014-07-31")
    marks = open_watermarks(settings)
    try:
        mark = marks.get("polygon", "daily", "SPY")
    finally:
        marks.dispose()
    assert mark[:10] == f"{clock.last_completed_session(delay, 'XNYS'):%Y-%m-%d}" < f"{closed:%Y-%m-%d}"


# ------------------------------------------------------------------ 2. ambiguous dates

DMY = HEADER + "02/06/2014,10,11,9.5,10.5,1000\n03/06/2014,10.5,11.2,10.1,11,1200\n04/06/2014,11,11.5,10.8,11.4,900\n"


def test_day_first_dates_with_every_day_at_most_12_are_refused_until_declared(tmp_home, tmp_path):
    """Reported: DD/MM/YYYY read as US dates when every day is <= 12 (wrong sessions, exit 0)."""
    before = home_with_good_bars(tmp_home, tmp_path)
    folder = tmp_path / "csv"
    path = write_csv(folder, "EURO", DMY)
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    (file, row, reason), = err.value.problems
    assert (file, row) == (str(path), 2)
    assert "ambiguous dates: '02/06/2014' is 2014-02-06 month first (%m/%d/%Y) or 2014-06-02 day first (%d/%m/%Y)" in reason
    assert f'date_format = "%d/%m/%Y" (day first) or "%m/%d/%Y" (month first) in {folder / "format.toml"}' in reason
    assert tree_digest(tmp_home.silver) == before
    # declared in the folder: read day first
    (folder / "format.toml").write_text('date_format = "%d/%m/%Y"\n')
    assert ingest_csv_folder(tmp_home, folder).new == 3
    sessions = read_silver_bars(tmp_home, ["EURO"])["session"]
    assert list(sessions) == list(pd.to_datetime(["2014-06-02", "2014-06-03", "2014-06-04"]))
    again = tree_digest(tmp_home.silver)
    assert ingest_csv_folder(tmp_home, folder).new == 0 and tree_digest(tmp_home.silver) == again


@pytest.mark.slow
def test_cli_refuses_ambiguous_dates_and_says_how_to_declare(tmp_path):
    folder = tmp_path / "csv"
    write_csv(folder, "EURO", DMY)
    out = alpha(["ingest", "csv", "--path", str(folder)], tmp_path / "home")
    refused_by_cli(out, "EURO.csv, row 2", "ambiguous dates", "format.toml")
    # declared on the command line, the same file lands day first
    out = alpha(["ingest", "csv", "--path", str(folder), "--date-format", "%d/%m/%Y"], tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    from etl.core.config import load_settings

    sessions = read_silver_bars(load_settings(tmp_path / "home"))["session"]
    assert list(sessions) == list(pd.to_datetime(["2014-06-02", "2014-06-03", "2014-06-04"]))


def test_a_day_above_12_proves_the_order_for_the_whole_file(tmp_home, tmp_path):
    """Documented choice: a file whose dates read only one way (a day above 12) is read that way,
    every line of it; a declared format applies to the dates that are not year-first; a wrong
    declaration is refused before anything is read."""
    folder = tmp_path / "csv"
    write_csv(folder, "EURO", DMY + "13/06/2014,11,11.5,10.8,11.4,900\n")   # 13 can only be a day
    write_csv(folder, "ISO", GOOD)                                          # ISO: nothing to declare
    ingest_csv_folder(tmp_home, folder)
    bars = read_silver_bars(tmp_home)
    assert list(bars.loc[bars["symbol"] == "EURO", "session"]) == list(pd.to_datetime(
        ["2014-06-02", "2014-06-03", "2014-06-04", "2014-06-13"]))
    with pytest.raises(ConfigError, match="date_format must be a strftime format"):
        ingest_csv_folder(tmp_home, folder, date_format="DD/MM/YYYY")


# ------------------------------------------------------------------ 3. repeated headers


@pytest.mark.parametrize("header", ["date,open,high,low,close,close,volume", "date,open,high,low,close,Close,volume"])
def test_a_column_named_twice_is_refused(header, tmp_home, tmp_path):
    """Reported: close,close silently kept one column; close,Close gave a traceback."""
    before = home_with_good_bars(tmp_home, tmp_path)
    folder = tmp_path / "csv"
    twin = header.split(",")[5]
    path = write_csv(folder, "TWIN", header + "\n2014-06-05,10,11,9.5,10.5,99,1000\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    (file, row, reason), = err.value.problems
    assert (file, row) == (str(path), 1)
    assert f"the header names a column more than once ('close' as 'close', '{twin}')" in reason
    assert tree_digest(tmp_home.silver) == before


@pytest.mark.slow
def test_cli_refuses_close_and_Close_without_a_traceback(tmp_path):
    folder = tmp_path / "csv"
    write_csv(folder, "TWIN", "date,open,high,low,close,Close,volume\n2014-06-05,10,11,9.5,10.5,99,1000\n")
    refused_by_cli(alpha(["ingest", "csv", "--path", str(folder)], tmp_path / "home"),
                   "TWIN.csv, row 1", "'close' as 'close', 'Close'")


# ------------------------------------------------------------------ 4. implausible prices

JUMPY = HEADER + "2014-06-05,95,96,94,95.5,1000\n2014-06-06,95.5,96,95,95.64,1200\n"


def test_1e300_after_95_64_is_refused(tmp_home, tmp_path):
    """Reported: a close of 1e300 after 95.64 was accepted with only a health warning."""
    before = home_with_good_bars(tmp_home, tmp_path)
    folder = tmp_path / "csv"
    path = write_csv(folder, "HUGE", JUMPY + "2014-06-09,95,1e300,94,1e300,900\n2014-06-10,95,97,94,96,900\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert [(p[0], p[1]) for p in err.value.problems] == [(str(path), 4)]   # the spike only, not the bar after it
    assert "implausible high 1e+300: a price is between 1e-06 and 1e+08" in err.value.problems[0][2]
    assert tree_digest(tmp_home.silver) == before


def test_an_unexplained_jump_is_refused_against_the_stored_close_and_a_split_explains_one(tmp_home, tmp_path):
    """The previous close may be in silver (an incremental ingest appends one session); a
    corporate action between the two sessions (the folder's actions.csv) explains a jump."""
    folder = tmp_path / "csv"
    path = write_csv(folder, "JUMP", JUMPY)
    ingest_csv_folder(tmp_home, folder)
    before = tree_digest(tmp_home.silver)
    with open(path, "a") as fh:   # 30 times the stored 95.64, the file's only new line
        fh.write("2014-06-09,2869,2870,2860,2869.2,900\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    (file, row, reason), = err.value.problems
    assert (file, row) == (str(path), 4)
    assert reason == ("implausible close 2869.2 on 2014-06-09: 30 times above the previous close 95.64 on 2014-06-06, "
                      "no corporate action between them (max_price_jump = 20)")
    assert tree_digest(tmp_home.silver) == before
    q = pd.read_parquet(err.value.quarantine_path)
    assert q["reason"].tolist() == [reason]
    # a 1:30 reverse split on 2014-06-09 explains it: the bar lands
    (folder / "actions.csv").write_text("symbol,ex_date,split_ratio,cash_dividend\nJUMP,2014-06-09,0.0333333333,\n")
    report = ingest_csv_folder(tmp_home, folder)
    assert report.new == 2   # the bar and the action
    assert read_silver_bars(tmp_home, ["JUMP"]).set_index("session").loc["2014-06-09", "close"] == 2869.2
    again = tree_digest(tmp_home.silver)
    assert ingest_csv_folder(tmp_home, folder).new == 0 and tree_digest(tmp_home.silver) == again


def test_max_price_jump_is_the_limit(tmp_home, tmp_path):
    """max_price_jump (config.toml) sets the limit, either direction: a fall to 1/30 passes at 50."""
    folder = tmp_path / "csv"
    write_csv(folder, "FALL", JUMPY + "2014-06-09,3.2,3.3,3.1,3.188,900\n")
    with pytest.raises(BadInputError, match="30 times below the previous close 95.64"):
        ingest_csv_folder(tmp_home, folder)
    assert ingest_csv_folder(replace(tmp_home, max_price_jump=50.0), folder).new == 3


@pytest.mark.slow
def test_real_splits_pass(tmp_home, lean_root):
    """AAPL's 7:1 split on 2014-06-09 in Lean's raw bars (645.57 -> 93.70) and every shipped
    Lean file (WM resumes at 28.58 ten months after 0.16) are not implausible."""
    report = ingest_lean(tmp_home, lean_root)
    assert report.new == report.rows_read > 50_000
    aapl = read_silver_bars(tmp_home, ["AAPL"]).set_index("session")["close"]
    assert aapl.loc["2014-06-06"] == pytest.approx(645.57) and aapl.loc["2014-06-09"] == pytest.approx(93.70)


# ------------------------------------------------------------------ 5. case-colliding file names


@pytest.mark.slow
def test_msft_and_MSFT_are_refused_naming_both(tmp_home, tmp_path):
    """Reported: msft.csv and MSFT.csv were silently merged."""
    before = home_with_good_bars(tmp_home, tmp_path)
    folder = tmp_path / "csv"
    write_csv(folder, "MSFT", GOOD)
    write_csv(folder, "msft", HEADER + "2014-06-10,11,12,10,11.5,800\n")
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert sorted(Path(p[0]).name for p in err.value.problems) == ["MSFT.csv", "msft.csv"]
    assert all("MSFT.csv and msft.csv are both the bars of MSFT" in p[2] for p in err.value.problems)
    assert tree_digest(tmp_home.silver) == before
    out = alpha(["ingest", "csv", "--path", str(folder)], tmp_path / "cli-home")
    refused_by_cli(out, "MSFT.csv and msft.csv are both the bars of MSFT")
    # fixed (one file): lands once
    (folder / "msft.csv").unlink()
    assert ingest_csv_folder(tmp_home, folder).new == 3


# ------------------------------------------------------------------ 6. symbolic links


@pytest.mark.slow
def test_a_symlink_out_of_the_folder_is_refused_one_inside_is_read(tmp_home, tmp_path):
    """Reported: a symlink in a CSV folder pointing outside it was followed."""
    before = home_with_good_bars(tmp_home, tmp_path)
    outside = write_csv(tmp_path / "elsewhere", "SECRET", GOOD)
    folder = tmp_path / "csv"
    write_csv(folder, "ACME", GOOD)
    (folder / "LEAK.csv").symlink_to(outside)
    (folder / "sub").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(BadInputError) as err:
        ingest_csv_folder(tmp_home, folder)
    assert sorted(Path(p[0]).name for p in err.value.problems) == ["LEAK.csv", "sub"]
    assert all(f"outside the folder {folder.resolve()}: refused" in p[2] for p in err.value.problems)
    assert tree_digest(tmp_home.silver) == before
    refused_by_cli(alpha(["ingest", "csv", "--path", str(folder)], tmp_path / "cli-home"), "LEAK.csv", "outside the folder")
    # links that stay inside the folder are read
    (folder / "LEAK.csv").unlink()
    (folder / "sub").unlink()
    (folder / "ALIAS.csv").symlink_to(folder / "ACME.csv")
    report = ingest_csv_folder(tmp_home, folder)
    assert report.new == 6 and report.symbols == ["ACME", "ALIAS"]
    assert set(stored(tmp_home)["symbol"]) == {"GOOD", "ACME", "ALIAS"}
