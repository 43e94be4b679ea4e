"""The TA-Lib grid (family ``technical``): declarations, values against the
StockCharts worked examples, point-in-time price scale on AAPL's 7:1 split,
warm-up (incremental == full), leakage and missing values.

Real data only: the shared Lean bars (AAPL, SPY, IBM through the real ingest)
and the StockCharts ChartSchool spreadsheets in
``/work/shared/data/ta-stockcharts-indicators``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import talib

from etl.core import clock
from etl.factors import technical as T
from etl.factors.spec import FAMILIES
from etl.sources.archive import ingest_lean
from etl.storage.actions import read_corporate_actions
from etl.storage.bars import read_silver_bars

from .conftest import SHARED, needs_shared_data

STOCKCHARTS = SHARED / "ta-stockcharts-indicators"
SYMBOLS = ["AAPL", "SPY", "IBM"]


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def lean(tmp_path_factory, lean_root):
    from etl.core.config import load_settings

    settings = load_settings(tmp_path_factory.mktemp("technical"))
    ingest_lean(settings, lean_root, SYMBOLS)
    bars = read_silver_bars(settings)
    actions = read_corporate_actions(settings)
    per = {}
    for sym in SYMBOLS:
        b = bars[bars["symbol"] == sym].sort_values("session").reset_index(drop=True)
        per[sym] = (b, actions[actions["symbol"] == sym].reset_index(drop=True))
    return per


@pytest.fixture(scope="module")
def aapl(lean):
    bars, actions = lean["AAPL"]
    full = T.compute_technical(bars, actions)
    return bars, actions, full


def _close(a, b, scale=None) -> np.ndarray:
    """float32-equal, or within 1e-6 relative, or within 1e-6 of the output's scale
    (for oscillators crossing zero); NaN only where the other is NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
        ok = (a.astype(np.float32) == b.astype(np.float32)) | (d <= 1e-6 * np.maximum(np.abs(a), np.abs(b)))
        if scale is not None:
            ok |= d <= 1e-6 * scale
    return np.where(nan_a | nan_b, nan_a & nan_b, ok)


def _known_at(actions: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """The factor file as it could have been published at session t: only actions
    with ex-date <= t, rescaled so that t's own split factor is 1."""
    known = actions[actions["ex_date"] <= t].copy()
    full = actions.sort_values("factor_date")
    idx = np.searchsorted(full["factor_date"].values, np.datetime64(t), side="left")
    split_t = full["split_factor"].to_numpy()[idx] if idx < len(full) else 1.0
    known["split_factor"] /= split_t
    return known


def _split_known_at(sessions: pd.Series, known: pd.DataFrame) -> np.ndarray:
    """Lean rule written out again: the first factor row on or after the session."""
    f = known.sort_values("factor_date")
    dates, values = f["factor_date"].to_numpy(), f["split_factor"].to_numpy()
    out = np.ones(len(sessions))
    for i, d in enumerate(sessions.to_numpy()):
        later = np.flatnonzero(dates >= d)
        out[i] = values[later[0]] if len(later) else 1.0
    return out


# ------------------------------------------------------------------ declarations

def test_the_grid_declares_more_than_1000_uniquely_named_float32_outputs():
    names = T.output_names()
    assert len(names) >= 1000
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"ta_[a-z0-9_]+", n) for n in names)
    assert {"ta_rsi_14", "ta_bbands_20_2_upperband", "ta_macd_12_26_9_macdsignal", "ta_obv_chg_5", "ta_cdldoji", "ta_sar_0p02_0p2"} <= set(names)
    views = {f.view for f in T.FACTORS}
    assert views == {"ta_overlap", "ta_momentum", "ta_volatility", "ta_volume", "ta_cycle", "ta_pattern", "ta_price", "ta_statistic"}
    for f in T.FACTORS:
        assert f.family == "technical" and f.family in FAMILIES
        assert all(o.dtype == "float32" and o.description for o in f.outputs)
        assert f.inputs and all(i.startswith(("bars_daily.", "corporate_actions.")) for i in f.inputs)
        assert f.availability and f.description
        call = T.CALLS[f.name]
        assert call.lookback <= f.warmup <= T.WARMUP_CAP
        assert f.output_names == list(call.outputs)


def test_every_function_of_the_daily_groups_is_in_the_grid_or_excluded_with_a_reason():
    groups = talib.get_function_groups()
    funcs = {c.func for c in T.CALLS.values()}
    for group in T.GROUP_VIEWS:
        for func in groups[group]:
            assert func in funcs or func in T.EXCLUDED_FUNCTIONS, func
    for group in T.EXCLUDED_GROUPS:
        assert not funcs & set(groups[group])
    # the grid's parameters: the timeperiod grid where one is taken, every output of multi-output functions
    assert [T.CALLS[f"ta_rsi_{p}"].lookback for p in (5, 10, 14, 20, 30, 50, 100)] == [5, 10, 14, 20, 30, 50, 100]
    assert {f"ta_bbands_20_{d}_{o}" for d in (1, 2, 3) for o in ("upperband", "middleband", "lowerband")} <= set(T.OUTPUT_NAMES)
    # left out because they would need more history than the cap, and said so
    assert "ta_rsi_200" in T.DROPPED and T.DROPPED["ta_rsi_200"] > T.WARMUP_CAP


def test_warmup_is_talibs_lookback_plus_a_convergence_margin_for_smoothed_functions():
    f = {x.name: x for x in T.FACTORS}
    assert f["ta_sma_20"].warmup == 19  # finite window: the lookback
    assert f["ta_cdldoji"].warmup == T.CALLS["ta_cdldoji"].lookback
    assert f["ta_ema_20"].warmup == 19 + 189  # EMA: lookback + 18 time constants (p+1)/2 = 10.5
    assert f["ta_rsi_14"].warmup == 14 + 16 * 14  # Wilder: lookback + 16 time constants (p)
    assert f["ta_obv_chg_5"].warmup == 5  # changes of a cumulative level need only their span


# ------------------------------------------------------------------ StockCharts

def _stockcharts(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A StockCharts sheet as one symbol's bars (dates: consecutive XNYS sessions,
    the indicators do not read them) and the sheet itself."""
    sheet = pd.read_csv(STOCKCHARTS / f"{name}.csv")
    close = sheet["Close"] if "Close" in sheet else sheet["Low"]
    close = close.fillna(sheet["Low"]) if "Low" in sheet else close
    sessions = clock.sessions_in_range("2010-01-04", "2013-01-01")[: len(sheet)]
    bars = pd.DataFrame(
        {
            "symbol": "SC",
            "session": sessions,
            "open": sheet.get("Open", close),
            "high": sheet.get("High", close),
            "low": sheet.get("Low", close),
            "close": close,
            "volume": sheet["Volume"].fillna(0.0) if "Volume" in sheet else np.nan,
            "event_timestamp": clock.availability_times(sessions, 15),
        }
    )
    return T.compute_technical(bars), sheet


@pytest.mark.parametrize(
    ("sheet", "feature", "column", "atol", "why"),
    [
        ("cs-cci", "ta_cci_20", "CCI", 1e-4, "sheet rounds the typical price to 4 decimals"),
        ("cs-percentr", "ta_willr_14", "Williams_%R", 1e-5, ""),
        ("cs-mfi", "ta_mfi_14", "MFI", 1e-4, "sheet shows 5 decimals"),
        ("cs-ultosc", "ta_ultosc_7_14_28", "Ult_Osc", 1e-5, ""),
        ("cs-bbands", "ta_bbands_20_2_upperband", "HighBand", 1e-5, "population standard deviation in both"),
        ("cs-bbands", "ta_bbands_20_2_middleband", "MiddleBand", 1e-5, ""),
        ("cs-bbands", "ta_bbands_20_2_lowerband", "LowBand", 1e-5, ""),
        ("cs-kama", "ta_kama_10", "KAMA", 1e-5, "KAMA(10, 2, 30)"),
        ("cs-soo", "ta_stochf_14_3_fastk", "SO", 1e-5, "%K 14"),
        ("cs-soo", "ta_stochf_14_3_fastd", "SO_SIG", 1e-5, "%D = 3-day SMA of %K"),
        ("cs-vortex", "ta_vortex_14_plusvi", "+VI14", 1e-5, ""),
        ("cs-vortex", "ta_vortex_14_minusvi", "-VI14", 1e-5, ""),
    ],
)
@needs_shared_data
def test_grid_values_equal_the_stockcharts_worked_examples(sheet, feature, column, atol, why):
    ours, sc = _stockcharts(sheet)
    expected = sc[column].to_numpy(dtype=float)
    lookback = next(c.lookback for c in T.CALLS.values() if feature in c.outputs)
    rows = np.flatnonzero(np.isfinite(expected))
    rows = rows[rows >= lookback]  # the sheets sometimes seed one row earlier (KAMA = close, %K before %D exists)
    got = ours[feature].to_numpy(dtype=float)
    assert len(rows) >= 2 and np.isfinite(got[rows]).all(), f"{feature}: no value where StockCharts has one"
    np.testing.assert_allclose(got[rows], expected[rows], rtol=1e-6, atol=atol, err_msg=why)


@pytest.mark.parametrize(("feature", "column"), [("ta_adx_14", "ADX"), ("ta_plus_di_14", "+DI14"), ("ta_minus_di_14", "-DI14"), ("ta_dx_14", "DX")])
@needs_shared_data
def test_wilder_directional_indicators_equal_stockcharts_once_the_seed_has_faded(feature, column):
    """StockCharts seeds its Wilder sums one bar differently from TA-Lib: the two
    agree once the seed has decayed (the last 100 of 505 rows)."""
    ours, sc = _stockcharts("cs-adx")
    np.testing.assert_allclose(ours[feature].to_numpy(float)[-100:], sc[column].to_numpy(float)[-100:], rtol=1e-6, atol=1e-5)
    # ATR(14) is the sheet's Wilder-smoothed true range sum over 14
    np.testing.assert_allclose(ours["ta_atr_14"].to_numpy(float)[-100:], sc["TR14"].to_numpy(float)[-100:] / 14, rtol=1e-6)


@needs_shared_data
def test_parabolic_sar_equals_stockcharts_from_the_first_reversal():
    """The sheet starts in a downtrend, TA-Lib picks the first direction from the
    first two bars' directional movement; from the first reversal (row 8) they agree."""
    ours, sc = _stockcharts("cs-psar")
    expected = sc["psar_up"].fillna(sc["psar_down"]).to_numpy(float)
    np.testing.assert_allclose(ours["ta_sar_0p02_0p2"].to_numpy(float)[8:], expected[8:], rtol=1e-6)


@pytest.mark.parametrize("n", [1, 5, 10, 20])
@needs_shared_data
def test_obv_and_ad_changes_equal_the_stockcharts_lines(n):
    ours, sc = _stockcharts("cs-obv")
    expected = sc["OBV"].diff(n).to_numpy(float)
    rows = np.flatnonzero(np.isfinite(expected))
    np.testing.assert_array_equal(ours[f"ta_obv_chg_{n}"].to_numpy(float)[rows], expected[rows])
    ours, sc = _stockcharts("cs-accum")
    expected = sc["ADLine"].diff(n).to_numpy(float)
    rows = np.flatnonzero(np.isfinite(expected))
    np.testing.assert_allclose(ours[f"ta_ad_chg_{n}"].to_numpy(float)[rows], expected[rows], rtol=1e-6, atol=2e-4)  # 4-decimal sheet


@needs_shared_data
def test_rsi_equals_wilders_definition_written_out():
    """StockCharts' RSI: the first average gain/loss is the simple mean of the first
    14 changes, then Wilder smoothing. (The sheet's own RSI column seeds an
    exponential average at the first row -- a different definition -- so the
    reference here is the documented formula in plain numpy on the sheet's closes.)"""
    ours, sc = _stockcharts("cs-rsi")
    close = sc["Close"].to_numpy(float)
    change = np.diff(close)
    gain, loss = np.clip(change, 0, None), np.clip(-change, 0, None)
    expected = np.full(len(close), np.nan)
    g, lo = gain[:14].mean(), loss[:14].mean()
    expected[14] = 100 - 100 / (1 + g / lo)
    for i in range(15, len(close)):
        g = (g * 13 + gain[i - 1]) / 14
        lo = (lo * 13 + loss[i - 1]) / 14
        expected[i] = 100 - 100 / (1 + g / lo)
    np.testing.assert_allclose(ours["ta_rsi_14"].to_numpy(float)[14:], expected[14:], rtol=1e-6)
    assert ours["ta_rsi_14"].iloc[14] == pytest.approx(70.53, abs=0.005)  # the ChartSchool table's first RSI
    assert ours["ta_rsi_14"].iloc[:14].isna().all()


# ------------------------------------------------------------------ point in time

SPLIT_DAYS = ["2014-06-05", "2014-06-06", "2014-06-09", "2014-06-10", "2014-06-16", "2005-02-28", "2020-08-31"]


@pytest.mark.parametrize("day", SPLIT_DAYS)
def test_every_output_at_t_equals_a_recomputation_from_what_was_known_at_t(aapl, day):
    """History truncated at t, factor rows known at t (rescaled to t): the whole
    grid's row for t equals the full computation's."""
    bars, actions, full = aapl
    t = pd.Timestamp(day)
    truncated = bars[bars["session"] <= t].reset_index(drop=True)
    alone = T.compute_technical(truncated, _known_at(actions, t)).iloc[-1]
    row = full.iloc[len(truncated) - 1]
    assert row["event_timestamp"] == alone["event_timestamp"]
    names = T.output_names()
    a, b = alone[names].to_numpy(float), row[names].to_numpy(float)
    scale = np.nanmax(np.abs(full[names].iloc[max(0, len(truncated) - 252): len(truncated)].to_numpy(float)), axis=0, initial=0.0)
    ok = _close(a, b, scale)
    assert ok.all(), [n for n, good in zip(names, ok, strict=True) if not good][:10]


@pytest.mark.parametrize("day", ["2014-06-06", "2014-06-09", "2014-06-10"])
def test_values_are_in_the_scale_a_trader_saw_that_day(aapl, day):
    """Independent of our code path: TA-Lib directly on the truncated history,
    prices rescaled by the split factors known at t (volumes inversely), and a
    plain mean for the SMA."""
    bars, actions, full = aapl
    t = pd.Timestamp(day)
    hist = bars[bars["session"] <= t].reset_index(drop=True)
    s = _split_known_at(hist["session"], _known_at(actions, t))
    o, h, lo, c = (hist[k].to_numpy(float) * s for k in ("open", "high", "low", "close"))
    v = hist["volume"].to_numpy(float) / s
    row = full.iloc[len(hist) - 1]
    assert row["ta_sma_20"] == pytest.approx(c[-20:].mean(), rel=1e-6)
    expected = {
        "ta_rsi_14": talib.RSI(c, 14)[-1],
        "ta_atr_14": talib.ATR(h, lo, c, 14)[-1],
        "ta_bbands_20_2_upperband": talib.BBANDS(c, 20, 2.0, 2.0, 0)[0][-1],
        "ta_mfi_14": talib.MFI(h, lo, c, v, 14)[-1],
        "ta_obv_chg_5": talib.OBV(c, v)[-1] - talib.OBV(c, v)[-6],
        "ta_macd_12_26_9_macdhist": talib.MACD(c, 12, 26, 9)[2][-1],
        "ta_stoch_14_3_3_0_slowk": talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)[0][-1],
        "ta_sar_0p02_0p2": talib.SAR(h, lo, 0.02, 0.2)[-1],
        "ta_kama_30": talib.KAMA(c, 30)[-1],
        "ta_cdlengulfing": float(talib.CDLENGULFING(o, h, lo, c)[-1]),
        "ta_linearreg_slope_50": talib.LINEARREG_SLOPE(c, 50)[-1],
        "ta_vwma_20": talib.VWMA(c, v, 20)[-1],
    }
    for name, value in expected.items():
        assert _close(row[name], value, scale=abs(value) + 1e-3), (name, row[name], value)
    # on the split day the split is applied: prices ~ $90, not ~ $640
    if day != "2014-06-06":
        assert 80 < row["ta_sma_20"] < 100 and row["ta_atr_14"] < 3
    else:
        assert 580 < row["ta_sma_20"] < 660 and row["ta_atr_14"] > 5


def test_incremental_from_max_warmup_sessions_equals_the_full_history(lean):
    """The last 5 sessions computed from only MAX_WARMUP sessions of history equal
    the whole-history computation; also right after a split (regime windows)."""
    for sym, end in (("AAPL", None), ("AAPL", "2014-06-13"), ("SPY", None), ("IBM", None)):
        bars, actions = lean[sym]
        if end is not None:
            bars = bars[bars["session"] <= end].reset_index(drop=True)
        full = T.compute_technical(bars, actions)
        start = bars["session"].iloc[-5]
        window = bars.iloc[-(T.MAX_WARMUP + 5):]
        inc = T.compute_technical(window, actions, start_session=start)
        assert len(inc) == 5 and (inc["event_timestamp"].to_numpy() == full["event_timestamp"].iloc[-5:].to_numpy()).all()
        names = T.output_names()
        a, b = inc[names].to_numpy(float), full[names].iloc[-5:].to_numpy(float)
        scale = np.nanmax(np.abs(full[names].iloc[-252:].to_numpy(float)), axis=0, initial=0.0)
        ok = _close(a, b, scale)
        bad = sorted({names[j] for j in np.argwhere(~ok)[:, 1]})
        assert not bad, (sym, end, bad[:10])
        assert np.isfinite(b).mean() > 0.99  # the comparison is not vacuous


def test_outputs_are_never_knowable_before_their_inputs(aapl):
    """Each row's event time is >= the event time of every bar it could use (bars
    up to its session) and of every factor row in force (ex-date <= its session)."""
    bars, actions, full = aapl
    bar_times = bars["event_timestamp"].astype("datetime64[us, UTC]").cummax().to_numpy()
    assert (full["event_timestamp"].to_numpy() >= bar_times).all()
    assert (full["known_timestamp"].to_numpy() >= full["event_timestamp"].to_numpy()).all()
    sessions = bars["session"].to_numpy()
    for _, action in actions.iterrows():
        used_from = np.searchsorted(sessions, np.datetime64(action["ex_date"]), side="left")
        assert (full["event_timestamp"].to_numpy()[used_from:] >= action["event_timestamp"]).all()
    assert full["event_timestamp"].dtype == "datetime64[us, UTC]"


def test_shifting_every_input_one_session_later_moves_every_output_one_session_later(aapl):
    """Leakage: when each bar becomes available one session later (and so the split
    factors, known at the ex-date's open, come before it), the as-of value at
    every time is the original value of one session earlier: nothing changes earlier."""
    bars, actions, full = aapl
    shifted = bars.copy()
    later = clock.availability_times(clock.next_session(bars["session"]), 15)
    shifted["event_timestamp"] = later
    shifted["known_timestamp"] = later
    out = T.compute_technical(shifted, actions)
    names = T.output_names()
    np.testing.assert_array_equal(out["event_timestamp"].to_numpy()[:-1], full["event_timestamp"].to_numpy()[1:])
    # as of each original event time E(t), the shifted run shows the values of t-1
    probe = pd.DataFrame({"at": full["event_timestamp"]})
    seen = pd.merge_asof(probe, out[["event_timestamp", *names]], left_on="at", right_on="event_timestamp", direction="backward")
    np.testing.assert_array_equal(seen[names].to_numpy()[1:], full[names].to_numpy()[:-1])
    assert seen[names].iloc[0].isna().all()  # nothing known at the first bar's original time


@pytest.mark.parametrize("day", ["2004-03-15", "2014-06-06", "2019-01-02"])
def test_no_output_looks_ahead(aapl, day):
    """Replacing every bar after t with other prices changes no output up to t
    (bit for bit): no function reads a later bar (e.g. Williams fractals are
    reported when confirmed, not on the fractal bar)."""
    bars, actions, full = aapl
    cut = int(np.searchsorted(bars["session"].to_numpy(), np.datetime64(day), side="right"))
    other = bars.copy()
    rng = np.random.default_rng(7)
    k = rng.uniform(0.7, 1.3, len(bars) - cut)
    for c in ("open", "high", "low", "close"):
        other.loc[cut:, c] = other.loc[cut:, c].to_numpy() * k
    other.loc[cut:, "volume"] = other.loc[cut:, "volume"].to_numpy()[::-1]
    out = T.compute_technical(other, actions)
    names = T.output_names()
    a, b = out[names].iloc[:cut].to_numpy(), full[names].iloc[:cut].to_numpy()
    assert np.array_equal(a, b, equal_nan=True)
    assert not np.array_equal(out[names].iloc[cut:].to_numpy(), full[names].iloc[cut:].to_numpy(), equal_nan=True)


# ------------------------------------------------------------------ missing values

def test_missing_is_nan_never_zero(aapl):
    bars, _, full = aapl
    head = full.iloc[:300]
    for f in T.FACTORS:
        call = T.CALLS[f.name]
        for name in f.output_names:
            lead = head[name].iloc[: min(call.lookback, 300)]
            assert lead.isna().all(), name  # TA-Lib's lookback (integer functions return 0 there: we store NaN)
    # candlestick patterns are -100/0/100 after the lookback: a real 0 stays 0
    doji = full["ta_cdldoji"]
    assert set(np.unique(doji.dropna())) <= {-100.0, 0.0, 100.0} and (doji == 0).any() and (doji == 100).any()
    assert not np.isinf(full[T.output_names()].to_numpy()).any()
    # every float output is NaN exactly where TA-Lib's own (unscaled, pre-2000) output is
    early = bars.iloc[:500]
    arrays = {c: early[c].to_numpy(float) for c in T.BAR_COLUMNS}
    ours = T.compute_technical(early)  # no factor rows: one regime, raw prices
    for f in T.FACTORS:
        call = T.CALLS[f.name]
        if call.post:
            continue
        res = getattr(talib, call.func)(*(arrays[c] for c in call.inputs), **dict(call.kwargs))
        res = res if isinstance(res, tuple | list) else [res]
        for name, r in zip(call.outputs, res, strict=True):
            if r.dtype.kind in "iu":
                continue
            with np.errstate(invalid="ignore"):
                expect_nan = ~np.isfinite(r)
            assert np.array_equal(ours[name].isna().to_numpy(), expect_nan), name


def test_an_infinite_ratio_is_missing_not_stored(aapl):
    """A trading halt (AAPL's real bars with 100 sessions of zero volume): relative
    volume after it is a ratio over a zero average. TA-Lib says inf; we store NaN."""
    bars, _, _ = aapl
    halted = bars.iloc[:300].copy()
    halted.loc[100:199, "volume"] = 0.0
    ours = T.compute_technical(halted)
    ref = talib.RVOL(halted["volume"].to_numpy(float), 5)
    assert np.isinf(ref[200]) and np.isnan(ours["ta_rvol_5"].iloc[200])
    assert ours["ta_rvol_5"].iloc[201] == np.float32(ref[201])
    assert not np.isinf(ours[T.output_names()].to_numpy()).any()


def test_rejects_bars_that_are_not_one_symbol_sorted_by_session(lean):
    from etl.core.errors import AlphaError

    bars, actions = lean["AAPL"]
    with pytest.raises(AlphaError, match="sorted by session"):
        T.compute_technical(bars.iloc[::-1], actions)
    both = pd.concat([bars, lean["SPY"][0]], ignore_index=True)
    with pytest.raises(AlphaError, match="ONE symbol"):
        T.compute_technical(both)


# ------------------------------------------------------------------ many symbols

def _rows(frame: pd.DataFrame) -> int:
    return len(frame)


def test_many_symbols_in_two_processes_equal_one_at_a_time(lean):
    pairs = [(lean[s][0].iloc[-400:].reset_index(drop=True), lean[s][1]) for s in SYMBOLS]
    one = pd.concat([T.compute_technical(b, a) for b, a in pairs], ignore_index=True)
    many = pd.concat(list(T.compute_technical_many(iter(pairs), n_jobs=2, chunk_size=1)), ignore_index=True)
    pd.testing.assert_frame_equal(many, one)
    assert list(many["symbol"].unique()) == SYMBOLS
    # a sink runs in the worker; only its result comes back
    assert list(T.compute_technical_many(iter(pairs), n_jobs=2, chunk_size=2, sink=_rows)) == [800, 400]
    inc = pd.concat(list(T.compute_technical_many(iter(pairs), n_jobs=1, start_session=pairs[0][0]["session"].iloc[-1])))
    assert len(inc) == 3
