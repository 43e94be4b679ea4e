"""Macro and regime factors (market-wide entity ``market = "US"``) on real data.

Macro: real ALFRED vintages of PAYEMS and CPIAUCSL through the real FRED
adapter (recorded responses replayed by a local server, PAYEMS released at
08:30 New York, CPIAUCSL at the end of its vintage day), and real FRBNY
nowcast vintages (/work/shared/data/frbny-nowcast-macro-vintages) written to
silver by this test. FRBNY vintage dates have no time of day, so a vintage's
rows get ``event_timestamp`` = the END of the vintage day (next midnight in
New York): late, never early. Expected values are computed here from the raw
rows / the wide vintage snapshots by plain as-of queries, not by the module.

Regime: SPY Lean daily bars through the real Lean ingest; expected values
from the raw Lean CSV and factor file read here with pandas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import percentileofscore

from etl.core import clock
from etl.core.config import load_settings
from etl.core.errors import AlphaError, FactorInputError
from etl.factors import macro, regime
from etl.factors.macro import compute_macro
from etl.factors.regime import compute_regime, slice_metrics
from etl.sources.archive import ingest_lean
from etl.sources.base import run_ingest
from etl.storage import silver
from etl.storage.actions import read_corporate_actions
from etl.storage.bars import read_silver_bars
from etl.storage.tables import MACRO
from tests.conftest import LEAN, SHARED
from tests.vendor_server import ReplayServer

NOW = pd.Timestamp("2026-11-22 12:00", tz="UTC")
NY = "America/New_York"
DAY = pd.Timedelta(days=1)
FRBNY = SHARED / "frbny-nowcast-macro-vintages" / "vintages_wide.csv.gz"
FRBNY_SERIES = ["PAYEMS", "UNRATE", "INDPRO", "HOUST", "GDPC1", "GACDFSA066MSFRBPHI"]
SESSIONS = clock.sessions_in_range("2016-06-27", "2017-02-10")
SUFFIXES = macro.SUFFIXES
VALUE_SUFFIXES = ("level", "chg", "surprise", "revision")


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def fred_obs(tmp_path_factory):
    """PAYEMS and CPIAUCSL vintages 2016-06-29..2017-01-31 through the FRED adapter."""
    with pytest.MonkeyPatch.context() as mp, ReplayServer(api_key="test-key") as server:
        mp.setenv("FRED_API_KEY", "test-key")
        server.add_fixtures("fred")
        home = tmp_path_factory.mktemp("fred_home")
        (home / "config.toml").write_text(
            f'[vendors.fred]\nbase_url = "{server.url}"\nrate = 1000\npage_limit = 20\n\n'
            '[vendors.fred.release_times]\nPAYEMS = "08:30"\n'
        )
        settings = load_settings(home)
        summary = run_ingest(settings, "fred", "observations", ["PAYEMS", "CPIAUCSL"], "2016-06-29", "2017-01-31", now=NOW)
        assert not summary.failed and summary.rows_written == 56
        return silver.read(settings, MACRO)


@pytest.fixture(scope="module")
def wide(shared_data) -> pd.DataFrame:
    return pd.read_csv(FRBNY, parse_dates=["vintage_date", "Date"], usecols=["vintage_date", "Date", *FRBNY_SERIES])


def frbny_rows(wide: pd.DataFrame, series: list[str]) -> pd.DataFrame:
    """macro_observations rows from the wide vintages: a row whenever a period's
    value first appears or changes (as ALFRED stores vintages)."""
    rows = []
    for s in series:
        piv = wide.pivot(index="vintage_date", columns="Date", values=s)
        last: dict = {}
        vintages = list(piv.index)
        for k, v in enumerate(vintages):
            for period, value in piv.loc[v].dropna().items():
                if last.get(period) != value:
                    last[period] = value
                    rows.append({"series_id": s, "period": period, "value": float(value), "missing": False,
                                 "realtime_start": v.strftime("%Y-%m-%d"), "vintage_index": k})
    frame = pd.DataFrame(rows)
    # realtime_end: the day before the next vintage that changed the value, else the last vintage
    frame = frame.sort_values(["series_id", "period", "realtime_start"]).reset_index(drop=True)
    nxt = frame.groupby(["series_id", "period"])["realtime_start"].shift(-1)
    end = (pd.to_datetime(nxt) - DAY).dt.strftime("%Y-%m-%d")
    frame["realtime_end"] = end.where(nxt.notna(), vintages[-1].strftime("%Y-%m-%d"))
    frame["source"] = "frbny"
    day_end = (pd.to_datetime(frame["realtime_start"]) + DAY).dt.tz_localize(NY).dt.tz_convert("UTC")
    frame["event_timestamp"] = day_end.astype("datetime64[us, UTC]")
    frame["period"] = frame["period"].astype("datetime64[ns]")
    return frame.drop(columns=["vintage_index"])


@pytest.fixture(scope="module")
def frbny_obs(tmp_path_factory, wide):
    settings = load_settings(tmp_path_factory.mktemp("frbny_home"))
    stats = silver.append(settings, MACRO, frbny_rows(wide, FRBNY_SERIES), NOW)
    assert stats.new == 2220 and stats.files == len(FRBNY_SERIES)
    return silver.read(settings, MACRO)


@pytest.fixture(scope="module")
def spy(tmp_path_factory):
    settings = load_settings(tmp_path_factory.mktemp("spy_home"))
    ingest_lean(settings, LEAN, ["SPY"], now=NOW)
    bars = read_silver_bars(settings, ["SPY"])
    actions = read_corporate_actions(settings)
    out = compute_regime(bars, actions)
    return {"bars": bars, "actions": actions, "out": out, "sessions": pd.DatetimeIndex(bars["session"])}


@pytest.fixture(scope="module")
def spy_tr() -> pd.Series:
    """SPY total-return closes from the raw Lean files, read here: close (deci-cents)
    times the factors of the FIRST factor row dated on or after the session."""
    raw = pd.read_csv(LEAN / "equity_usa_daily" / "spy.csv", header=None, names=["d", "o", "h", "l", "c", "v"])
    raw["session"] = pd.to_datetime(raw["d"].str[:8], format="%Y%m%d")
    fac = pd.read_csv(LEAN / "equity_usa_factor_files" / "spy.csv", header=None, names=["fd", "pf", "sf", "ref"])
    fac["fd"] = pd.to_datetime(fac["fd"].astype(str), format="%Y%m%d")
    m = pd.merge_asof(raw.sort_values("session"), fac.sort_values("fd"), left_on="session", right_on="fd", direction="forward")
    return pd.Series((m["c"] / 10_000.0 * m["sf"] * m["pf"]).to_numpy(), index=pd.DatetimeIndex(m["session"]), name="tr")


# ------------------------------------------------------------------ independent macro expectations

def as_of(obs: pd.DataFrame, series: str, t: pd.Timestamp) -> dict:
    """{period: value} known at ``t``: per period the row with the latest release <= t."""
    rows = obs[(obs["series_id"] == series) & (obs["event_timestamp"] <= t)]
    rows = rows.sort_values("event_timestamp", kind="stable").drop_duplicates("period", keep="last")
    return {pd.Timestamp(p): (math.nan if m else float(v)) for p, v, m in zip(rows["period"], rows["value"], rows["missing"], strict=True)}


def expected_from_rows(obs: pd.DataFrame, series: str, t: pd.Timestamp) -> dict:
    s = macro.SERIES_BY_ID[series]
    step = pd.DateOffset(months=s.step)
    known = as_of(obs, series, t)
    if not known:
        return dict.fromkeys(SUFFIXES, math.nan)
    p = max(known)
    level, prev = known[p], known.get(p - step, math.nan)
    rows = obs[obs["series_id"] == series]
    first_at = rows.loc[rows["period"] == p, "event_timestamp"].min()
    first_value = float(rows.loc[(rows["period"] == p) & (rows["event_timestamp"] == first_at), "value"].iloc[0])
    before = as_of(obs, series, first_at - pd.Timedelta(microseconds=1))
    x1, x4 = before.get(p - step, math.nan), before.get(p - 4 * step, math.nan)
    prev_rows = rows[rows["period"] == p - step].sort_values("event_timestamp")
    return {
        "level": level,
        "chg": transform(level, prev, s),
        "surprise": transform(first_value, forecast(x1, x4, s), s),
        "revision": prev - float(prev_rows["value"].iloc[0]) if len(prev_rows) else math.nan,
        "age_days": (t - first_at) / DAY,
    }


def transform(x: float, prev: float, s) -> float:
    if s.transformation in ("chg", "lin"):
        return x - prev
    if s.transformation == "pch":
        return 100.0 * (x / prev - 1.0)
    return 100.0 * ((x / prev) ** 4 - 1.0)      # pca, quarterly


def forecast(x1: float, x4: float, s) -> float:
    if s.transformation in ("chg", "lin"):
        return x1 + (x1 - x4) / 3.0
    return x1 * (x1 / x4) ** (1.0 / 3.0)


def session_time(session: str, delay_minutes: int = 15) -> pd.Timestamp:
    return clock.availability_times(pd.DatetimeIndex([session]), delay_minutes)[0]


def row_at(out: pd.DataFrame, session: str) -> pd.Series:
    hit = out[out["event_timestamp"] == session_time(session)]
    assert len(hit) == 1
    return hit.iloc[0]


# ------------------------------------------------------------------ macro: declarations and shape

def test_declarations_match_the_computed_columns(fred_obs, spy):
    out = compute_macro(fred_obs, SESSIONS)
    assert list(out.columns) == ["market", "event_timestamp", "known_timestamp", *macro.OUTPUTS]
    assert len(macro.FACTORS) == 29 and len(macro.OUTPUTS) == 29 * 5 == len(set(macro.OUTPUTS))
    assert {f.view for f in macro.FACTORS} == {"macro_daily"} and {f.family for f in macro.FACTORS} == {"macro"}
    assert {f.entity for f in macro.FACTORS + regime.FACTORS} == {"market"}
    assert all(o.dtype == "float64" for f in macro.FACTORS for o in f.outputs)
    assert (out[list(macro.OUTPUTS)].dtypes == "float64").all()
    assert (out["market"] == "US").all() and len(out) == len(SESSIONS)
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert out["event_timestamp"].tolist() == list(clock.availability_times(SESSIONS, 15))
    assert (out["known_timestamp"] == out["event_timestamp"]).all()
    # series not in the input are missing, never 0
    assert out[[c for c in macro.OUTPUTS if not c.startswith(("macro_payems_", "macro_cpiaucsl_"))]].isna().all().all()

    r = spy["out"]
    assert list(r.columns) == ["market", "event_timestamp", "known_timestamp", *regime.OUTPUTS]
    declared = {o.name: o.dtype for f in regime.FACTORS for o in f.outputs}
    assert declared == {"regime_vol": "int64", "regime_vol_pct": "float64", "regime_trend": "int64",
                        "regime_trend_strength": "float64", "regime_drawdown": "float64"}
    assert str(r["regime_vol"].dtype) == "Int64" and str(r["regime_trend"].dtype) == "Int64"
    assert {f.view for f in regime.FACTORS} == {"regime_daily"} and {f.family for f in regime.FACTORS} == {"regime"}


# ------------------------------------------------------------------ macro: exact values

def test_payems_values_switch_exactly_at_the_0830_release(fred_obs):
    out = compute_macro(fred_obs, SESSIONS)
    before, after = row_at(out, "2016-07-07"), row_at(out, "2016-07-08")
    # 2016-07-07: May's print of the 2016-06-29 vintage; April as then known (143856)
    assert before["macro_payems_level"] == 143_894.0 and before["macro_payems_chg"] == 143_894.0 - 143_856.0
    assert before["macro_payems_revision"] == 0.0
    assert math.isnan(before["macro_payems_surprise"])        # May was first stored in the first vintage requested
    # 2016-07-08 08:30 New York (12:30 UTC): June 144175; May revised 143894 -> 143888 (and April 143856 -> 143877)
    assert after["macro_payems_level"] == 144_175.0
    assert after["macro_payems_chg"] == 144_175.0 - 143_888.0 == 287.0
    assert after["macro_payems_revision"] == 143_888.0 - 143_894.0
    # forecast before the release: May 143894 + (May - Feb 143547) / 3
    assert after["macro_payems_surprise"] == pytest.approx(144_175.0 - (143_894.0 + (143_894.0 - 143_547.0) / 3), abs=1e-9)
    assert after["macro_payems_age_days"] == pytest.approx((20 * 60 + 15 - (12 * 60 + 30)) / 1440, abs=1e-12)   # 12:30 -> 20:15 UTC
    aug = row_at(out, "2016-08-05")
    assert aug["macro_payems_level"] == 144_448.0 and aug["macro_payems_chg"] == 144_448.0 - 144_193.0
    assert aug["macro_payems_revision"] == 144_193.0 - 144_175.0
    assert aug["macro_payems_surprise"] == pytest.approx(144_448.0 - (144_175.0 + (144_175.0 - 143_733.0) / 3), abs=1e-9)

    # the exact boundary: session 2016-07-07's time is close (20:00 UTC) + delay; the release is 16 h 30 min later
    day = pd.DatetimeIndex(["2016-07-07"])
    one_us_early = compute_macro(fred_obs, day, delay_minutes=16 * 60 + 29)
    on_time = compute_macro(fred_obs, day, delay_minutes=16 * 60 + 30)
    assert on_time["event_timestamp"].iloc[0] == pd.Timestamp("2016-07-08 12:30", tz="UTC")
    assert one_us_early["macro_payems_level"].iloc[0] == 143_894.0 and on_time["macro_payems_level"].iloc[0] == 144_175.0


def test_cpi_percent_changes_and_a_release_that_also_revises(fred_obs):
    out = compute_macro(fred_obs, SESSIONS)
    # June CPI: realtime_start 2016-07-15, no release time configured -> known from 2016-07-16 04:00 UTC: session 07-18
    fri, mon = row_at(out, "2016-07-15"), row_at(out, "2016-07-18")
    assert fri["macro_cpiaucsl_level"] == 239.41 and fri["macro_cpiaucsl_chg"] == pytest.approx(100 * (239.41 / 238.89 - 1), abs=1e-12)
    assert mon["macro_cpiaucsl_level"] == 239.927 and mon["macro_cpiaucsl_chg"] == pytest.approx(100 * (239.927 / 239.41 - 1), abs=1e-12)
    f = 239.41 * (239.41 / 237.707) ** (1 / 3)               # May x geometric growth Feb -> May, known before
    assert mon["macro_cpiaucsl_surprise"] == pytest.approx(100 * (239.927 / f - 1), abs=1e-12)
    assert mon["macro_cpiaucsl_age_days"] == pytest.approx((mon["event_timestamp"] - pd.Timestamp("2016-07-16 04:00", tz="UTC")) / DAY)
    # 2016-10-18 vintage: September first printed while May..August were revised (seasonal factors)
    oct19 = row_at(out, "2016-10-19")
    assert oct19["macro_cpiaucsl_level"] == 241.002
    assert oct19["macro_cpiaucsl_chg"] == pytest.approx(100 * (241.002 / 240.301 - 1), abs=1e-12)   # vs August as revised
    assert oct19["macro_cpiaucsl_revision"] == pytest.approx(240.301 - 240.305, abs=1e-12)
    f = 240.305 * (240.305 / 239.41) ** (1 / 3)              # unrevised August and May: known just before
    assert oct19["macro_cpiaucsl_surprise"] == pytest.approx(100 * (241.002 / f - 1), abs=1e-12)


@pytest.mark.parametrize("series", ["PAYEMS", "CPIAUCSL"])
def test_fred_every_session_matches_as_of_queries_on_the_rows(fred_obs, series):
    out = compute_macro(fred_obs, SESSIONS)
    defined = dict.fromkeys(SUFFIXES, 0)
    for _, row in out.iterrows():
        exp = expected_from_rows(fred_obs, series, row["event_timestamp"])
        for suffix in SUFFIXES:
            got = row[macro.column(series, suffix)]
            assert (math.isnan(got) and math.isnan(exp[suffix])) or got == pytest.approx(exp[suffix], rel=1e-12, abs=1e-9), (row["event_timestamp"], suffix)
            defined[suffix] += not math.isnan(got)
    # nothing is known before the first vintage, 2016-06-29: PAYEMS from its 08:30 release, CPI from the day's end
    assert defined["level"] == len(SESSIONS) - {"PAYEMS": 2, "CPIAUCSL": 3}[series]
    assert min(defined.values()) > 100


def test_frbny_panel_matches_the_wide_vintage_snapshots(frbny_obs, wide):
    """Expected values straight from the wide snapshots: the latest vintage whose day
    ended by the session's time, its latest period, the first vintage showing it..."""
    out = compute_macro(frbny_obs, SESSIONS)
    vintages = pd.DatetimeIndex(sorted(wide["vintage_date"].unique()))
    vint_end = (vintages + DAY).tz_localize(NY).tz_convert("UTC")
    snaps = {v: g.set_index("Date") for v, g in wide.groupby("vintage_date")}
    checked = 0
    for _, row in out.iterrows():
        t = row["event_timestamp"]
        k = int(np.searchsorted(vint_end, t, side="right")) - 1
        for sid in FRBNY_SERIES:
            s = macro.SERIES_BY_ID[sid]
            got = {x: row[macro.column(sid, x)] for x in SUFFIXES}
            if k < 0:
                assert all(math.isnan(v) for v in got.values())
                continue
            snap = snaps[vintages[k]][sid].dropna()
            p = snap.index.max()
            prev = p - pd.DateOffset(months=s.step)
            shown = [j for j in range(len(vintages)) if not math.isnan(snaps[vintages[j]][sid].get(p, math.nan))]
            j1 = shown[0]
            prev_shown = [j for j in range(len(vintages)) if not math.isnan(snaps[vintages[j]][sid].get(prev, math.nan))]
            exp = {
                "level": snap[p],
                "chg": transform(snap[p], snap.get(prev, math.nan), s),
                "revision": snap.get(prev, math.nan) - snaps[vintages[prev_shown[0]]][sid][prev],
                "age_days": (t - vint_end[j1]) / DAY,
                "surprise": math.nan,
            }
            if j1 > 0:
                b = snaps[vintages[j1 - 1]][sid]
                f = forecast(b.get(prev, math.nan), b.get(p - pd.DateOffset(months=4 * s.step), math.nan), s)
                exp["surprise"] = transform(snaps[vintages[j1]][sid][p], f, s)
            for x in SUFFIXES:
                assert (math.isnan(got[x]) and math.isnan(exp[x])) or got[x] == pytest.approx(exp[x], rel=1e-12, abs=1e-9), (t, sid, x)
            checked += 1
    assert checked > 6 * 140
    # PAYEMS 2016-06 first appears in the 2016-07-08 vintage (known at its day's end: session 2016-07-11)
    assert row_at(out, "2016-07-08")["macro_payems_level"] == 143_894.0
    assert row_at(out, "2016-07-11")["macro_payems_level"] == 144_175.0
    # quarterly real GDP: the Q2 2016 advance estimate is in the 2016-07-29 vintage (known from session 2016-08-01)
    gdp = row_at(out, "2016-08-01")
    # until then the latest quarter is Q1, first seen in the first vintage (2016-06-29, known 06-30 04:00 UTC)
    assert row_at(out, "2016-07-29")["macro_gdpc1_age_days"] == (session_time("2016-07-29") - pd.Timestamp("2016-06-30 04:00", tz="UTC")) / DAY
    assert gdp["macro_gdpc1_age_days"] == (session_time("2016-08-01") - pd.Timestamp("2016-07-30 04:00", tz="UTC")) / DAY
    assert not math.isnan(gdp["macro_gdpc1_surprise"]) and not math.isnan(gdp["macro_gdpc1_chg"])


# ------------------------------------------------------------------ macro: leakage and point in time

def shifted_one_session(obs: pd.DataFrame, calendar: str = "XNYS") -> pd.DataFrame:
    """Each row known one session later: at the availability of the session after
    the first session whose availability reaches its release."""
    sessions = clock.sessions_in_range("2016-01-01", "2017-06-30", calendar)
    avail = clock.availability_times(sessions, 15, calendar)
    idx = np.searchsorted(avail.asi8, obs["event_timestamp"].astype("datetime64[us, UTC]").astype("int64").to_numpy(), side="left")
    out = obs.copy()
    out["event_timestamp"] = pd.Series(avail[idx + 1], index=obs.index).astype("datetime64[us, UTC]")
    return out


def test_macro_leakage_shifted_inputs_move_outputs_exactly_one_session(fred_obs, frbny_obs):
    obs = pd.concat([fred_obs, frbny_obs[frbny_obs["series_id"] != "PAYEMS"]], ignore_index=True)
    base = compute_macro(obs, SESSIONS)
    late = compute_macro(shifted_one_session(obs), SESSIONS)
    cols = [macro.column(s, x) for s in obs["series_id"].unique() for x in VALUE_SUFFIXES]
    a, b = base[cols].iloc[:-1].to_numpy(), late[cols].iloc[1:].to_numpy()
    assert np.array_equal(a, b, equal_nan=True)                     # value at t+1 late == value at t before
    assert not np.array_equal(base[cols].to_numpy(), late[cols].to_numpy(), equal_nan=True)
    # the age names the release: one session later in the shifted run
    t = base["event_timestamp"].astype("int64").to_numpy()
    t_late = late["event_timestamp"].astype("int64").to_numpy()
    avail = clock.availability_times(clock.sessions_in_range("2016-01-01", "2017-06-30"), 15).asi8
    for s in obs["series_id"].unique():
        age, age_late = base[macro.column(s, "age_days")].to_numpy(), late[macro.column(s, "age_days")].to_numpy()
        ok = ~np.isnan(age[:-1])
        release = t[:-1][ok] - np.round(age[:-1][ok] * 86_400e6).astype("int64")
        release_late = t_late[1:][ok] - np.round(age_late[1:][ok] * 86_400e6).astype("int64")
        assert np.array_equal(release_late, avail[np.searchsorted(avail, release, side="left") + 1]), s
        assert ok.sum() > 100


def test_macro_point_in_time_truncated_input_gives_the_same_row(fred_obs, frbny_obs):
    obs = pd.concat([fred_obs, frbny_obs[frbny_obs["series_id"] != "PAYEMS"]], ignore_index=True)
    full = compute_macro(obs, SESSIONS)
    assert (full["known_timestamp"] >= full["event_timestamp"]).all()
    last_release = obs["event_timestamp"].max()
    for k in range(2, len(SESSIONS), 9):
        t = full["event_timestamp"].iloc[k]
        if t >= last_release:
            break
        known = obs[obs["event_timestamp"] <= t]
        assert len(known) < len(obs)                                # later rows exist, and are left out
        alone = compute_macro(known, SESSIONS[k:k + 1])
        assert np.array_equal(alone[list(macro.OUTPUTS)].to_numpy(), full[list(macro.OUTPUTS)].iloc[[k]].to_numpy(), equal_nan=True)
        # the newest release each series' row rests on is no later than the row's event time
        for s in obs["series_id"].unique():
            age = full[macro.column(s, "age_days")].iloc[k]
            if not math.isnan(age):
                release = t - pd.Timedelta(microseconds=round(age * 86_400e6))
                assert release <= t and release in set(obs.loc[obs["series_id"] == s, "event_timestamp"])


def test_macro_input_errors_are_alpha_errors(fred_obs):
    naive = fred_obs.assign(event_timestamp=fred_obs["event_timestamp"].dt.tz_localize(None))
    with pytest.raises(FactorInputError, match="tz-aware"):
        compute_macro(naive, SESSIONS)
    with pytest.raises(FactorInputError, match="lack column"):
        compute_macro(fred_obs.drop(columns=["period"]), SESSIONS)
    with pytest.raises(FactorInputError, match="not XNYS sessions"):
        compute_macro(fred_obs, pd.DatetimeIndex(["2016-07-04"]))
    assert issubclass(FactorInputError, AlphaError)
    # FRED "." rows are NaN, never 0
    dot = fred_obs.copy()
    last = dot["period"] == dot["period"].max()
    dot.loc[last & (dot["series_id"] == "PAYEMS"), ["value", "missing"]] = [np.nan, True]
    out = compute_macro(dot, pd.DatetimeIndex(["2017-01-30"]))
    assert math.isnan(out["macro_payems_level"].iloc[0]) and math.isnan(out["macro_payems_chg"].iloc[0])
    assert out["macro_payems_revision"].iloc[0] == 145_147.0 - 145_128.0


# ------------------------------------------------------------------ regime: exact values

def test_regime_matches_plain_pandas_on_the_raw_lean_files(spy, spy_tr):
    out, sessions = spy["out"], spy["sessions"]
    assert spy_tr.index.equals(sessions.astype("datetime64[ns]")) and len(sessions) > 5_800
    tr = spy_tr
    strength = tr / tr.rolling(200).mean() - 1.0
    np.testing.assert_allclose(out["regime_trend_strength"].to_numpy(), strength.to_numpy(), rtol=1e-12, atol=0, equal_nan=True)
    trend = out["regime_trend"]
    assert trend.isna().sum() == 199 == regime.FACTORS[1].warmup
    assert (trend.iloc[199:].to_numpy(dtype=int) == np.where(strength.iloc[199:] > 0, 1, -1)).all()

    rv = np.log(tr).diff().rolling(21).std() * np.sqrt(252)
    pct = out["regime_vol_pct"].to_numpy()
    assert np.isnan(pct[:272]).all() and not np.isnan(pct[272:]).any() and regime.FACTORS[0].warmup == 272
    expected = [percentileofscore(rv.iloc[i - 251:i + 1], rv.iloc[i], kind="weak") / 100 for i in range(272, len(rv))]
    np.testing.assert_allclose(pct[272:], expected, rtol=0, atol=1e-12)
    vol = out["regime_vol"]
    assert vol.isna().sum() == 272
    exp_vol = np.where(np.asarray(expected) <= 0.2, 0, np.where(np.asarray(expected) > 0.8, 2, 1))
    assert (vol.iloc[272:].to_numpy(dtype=int) == exp_vol).all()
    assert set(np.unique(exp_vol)) == {0, 1, 2}

    dd = tr / tr.cummax() - 1.0
    np.testing.assert_allclose(out["regime_drawdown"].to_numpy(), dd.to_numpy(), rtol=1e-12, atol=1e-15)
    assert (out["event_timestamp"] == spy["bars"]["event_timestamp"].to_numpy()).all()
    assert (out["known_timestamp"] >= out["event_timestamp"]).all()


def test_regime_known_periods(spy):
    r = spy["out"].set_index(spy["sessions"])
    # high volatility from Lehman's bankruptcy (Monday 2008-09-15) until the trailing year is itself
    # full of crisis days (self-relative percentiles: late December 2008 is "normal" again)
    assert r.loc["2008-09-12", "regime_vol"] == 1 and r.loc["2008-09-15", "regime_vol"] == 2
    crisis = r.loc["2008-09-15":"2008-12-22"]
    assert len(crisis) == 70 and (crisis["regime_vol"] == 2).all() and (crisis["regime_trend"] == -1).all()
    assert crisis["regime_vol_pct"].min() > 0.8 and crisis["regime_drawdown"].max() < -0.18
    assert r.loc["2008-12-23", "regime_vol"] == 1
    # one unbroken down-trend: below the 200-session SMA from 2008-05-20 until 2009-05-29
    assert (r.loc["2008-05-20":"2009-05-28", "regime_trend"] == -1).all()
    assert r.loc["2008-05-19", "regime_trend"] == 1 and r.loc["2009-05-29", "regime_trend"] == 1
    # the 2007-09 bear market bottomed on 2009-03-09 about 55% below the October 2007 peak (total return)
    assert r["regime_drawdown"].idxmin() == pd.Timestamp("2009-03-09")
    assert -0.56 < r["regime_drawdown"].min() < -0.54
    calm = r.loc["2013"]
    assert len(calm) == 252 and (calm["regime_trend"] == 1).all() and (calm["regime_trend_strength"] > 0).all()
    assert (calm["regime_vol"] <= 1).mean() > 0.9 and calm["regime_drawdown"].min() > -0.06
    # 2013's few high-vol sessions are the May-June "taper tantrum"
    high = calm.index[calm["regime_vol"] == 2]
    assert len(high) > 0 and high.min() >= pd.Timestamp("2013-05-01") and high.max() <= pd.Timestamp("2013-07-31")


# ------------------------------------------------------------------ regime: leakage and point in time

def test_regime_leakage_shifted_bars_move_outputs_exactly_one_session(spy):
    bars, actions = spy["bars"], spy["actions"]
    late_sessions = clock.next_session(pd.DatetimeIndex(bars["session"]))
    avail = clock.availability_times(late_sessions, 15)
    late_bars = bars.assign(session=late_sessions.astype("datetime64[us]"), event_timestamp=avail, known_timestamp=avail)
    late_actions = actions.assign(factor_date=clock.next_session(pd.DatetimeIndex(actions["factor_date"])).astype("datetime64[us]"))
    base, late = spy["out"], compute_regime(late_bars, late_actions)
    assert (late["event_timestamp"].iloc[:-1].to_numpy() == base["event_timestamp"].iloc[1:].to_numpy()).all()
    for c in regime.OUTPUTS:
        a, b = base[c].iloc[:-1].to_numpy(dtype=float, na_value=np.nan), late[c].iloc[:-1].to_numpy(dtype=float, na_value=np.nan)
        assert np.array_equal(a, b, equal_nan=True), c      # late row k (session k+1) == base row k (session k)
        assert not np.array_equal(base[c].iloc[1:].to_numpy(dtype=float, na_value=np.nan), b, equal_nan=True), c


def test_regime_point_in_time_only_what_was_known_at_t(spy):
    """Recompute on the bars up to t and the factor rows known at t (as a factor file
    written at t would hold them: divided by the factor in force at t): same row."""
    bars, actions, full = spy["bars"], spy["actions"], spy["out"]
    ex_dates = pd.DatetimeIndex(actions["ex_date"])
    picks = [pd.Timestamp(d) for d in ("1999-03-19", "2008-10-10", "2008-12-19", "2009-03-09", "2013-06-24", "2020-03-20", "2021-03-31")]
    assert sum(p in ex_dates for p in picks) >= 2
    for t in picks:
        k = int(np.flatnonzero(bars["session"] == t)[0])
        t_avail = bars["event_timestamp"].iloc[k]
        known_bars = bars.iloc[: k + 1]
        known_rows = actions[actions["event_timestamp"] <= t_avail].copy()
        in_force = actions[actions["factor_date"] >= t].sort_values("factor_date")
        pf, sf = (in_force["price_factor"].iloc[0], in_force["split_factor"].iloc[0]) if len(in_force) else (1.0, 1.0)
        known_rows["price_factor"] = known_rows["price_factor"] / pf
        known_rows["split_factor"] = known_rows["split_factor"] / sf
        alone = compute_regime(known_bars, known_rows).iloc[-1]
        row = full.iloc[k]
        assert alone["event_timestamp"] == row["event_timestamp"] == t_avail
        assert row["event_timestamp"] >= max(known_bars["event_timestamp"].max(), known_rows["event_timestamp"].max())
        for c in regime.OUTPUTS:
            if pd.isna(row[c]):
                assert pd.isna(alone[c])
            else:
                assert alone[c] == pytest.approx(row[c], rel=1e-10, abs=1e-12), (t, c)


# ------------------------------------------------------------------ slice_metrics

def test_slice_metrics_uses_the_previous_sessions_regime(spy, spy_tr):
    r = spy["out"].set_index(spy["sessions"])
    rets = spy_tr.pct_change().iloc[1:]
    got = slice_metrics(rets, r, "regime_trend")
    # independent: walk the sessions, each return gets the regime of the session before it
    trend = r["regime_trend"]
    buckets: dict[int, list[float]] = {}
    for i in range(1, len(trend)):
        prev = trend.iloc[i - 1]
        if pd.notna(prev):
            buckets.setdefault(int(prev), []).append(float(rets.iloc[i - 1]))
    assert list(got.index) == sorted(buckets) == [-1, 1]
    for value, xs in buckets.items():
        x = np.array(xs)
        wealth, peak, mdd = 1.0, 1.0, 0.0
        for v in x:
            wealth *= 1 + v
            peak = max(peak, wealth)
            mdd = min(mdd, wealth / peak - 1)
        total = np.prod(1 + x) - 1
        m = got.loc[value]
        assert m["sessions"] == len(x)
        assert m["total_return"] == pytest.approx(total, rel=1e-9)
        assert m["ann_return"] == pytest.approx((1 + total) ** (252 / len(x)) - 1, rel=1e-9)
        assert m["ann_vol"] == pytest.approx(x.std(ddof=1) * np.sqrt(252), rel=1e-12)
        assert m["sharpe"] == pytest.approx(x.mean() / x.std(ddof=1) * np.sqrt(252), rel=1e-12)
        assert m["max_drawdown"] == pytest.approx(mdd, rel=1e-9)
        assert m["hit_rate"] == pytest.approx((x > 0).mean(), rel=1e-12)
    assert got["sessions"].sum() == len(rets) - 199          # returns from session 200 on have a known regime
    assert got.loc[1, "sharpe"] > got.loc[-1, "sharpe"]

    # the session the trend turned down still counts for "up": the regime known at its start
    flip = trend[(trend == -1) & (trend.shift(1) == 1)].index
    day = flip[flip >= pd.Timestamp("2008-01-01")][0]
    one = slice_metrics(rets.loc[[day]], r, "regime_trend")
    assert list(one.index) == [1] and one.loc[1, "sessions"] == 1 and one.loc[1, "total_return"] == rets.loc[day]
    # slicing by the same-session value would have differed
    same = rets.groupby(trend.reindex(rets.index)).size()
    assert int(same.loc[1]) != int(got.loc[1, "sessions"])


def test_slice_metrics_input_errors(spy):
    r = spy["out"].set_index(spy["sessions"])
    with pytest.raises(FactorInputError, match="no column 'regime_x'"):
        slice_metrics(pd.Series([0.01], index=pd.DatetimeIndex(["2013-01-02"])), r, "regime_x")
    with pytest.raises(FactorInputError, match="indexed by session date"):
        slice_metrics(pd.Series([0.01]), r, "regime_vol")
    with pytest.raises(FactorInputError, match="two rows for one session"):
        compute_regime(pd.concat([spy["bars"].iloc[:3], spy["bars"].iloc[:1]]))
