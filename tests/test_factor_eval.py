"""research.factor_eval: exact values on literal frames, and alphalens-reloaded (with a brute-force scipy loop)
as the independent reference on a real cross-section (84 stocknet stocks, 2016, 20-session momentum)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from etl.core.errors import ArgumentError, MissingColumnError
from research.factor_eval import (
    FactorReport,
    by_regime,
    factor_autocorrelation,
    factor_quantiles,
    factor_report,
    factor_turnover,
    ic_decay,
    ic_summary,
    information_coefficient,
    quantile_returns,
    quantile_spread,
)

T1, T2, T3, T4 = (pd.Timestamp(f"2021-01-0{d} 21:15", tz="UTC") for d in (4, 5, 6, 7))


def _frames(rows: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(time, symbol, value, fwd_ret_1, fwd_ret_5) rows -> the factor and forward long frames."""
    frame = pd.DataFrame(rows, columns=["decision_time", "symbol", "value", "fwd_ret_1", "fwd_ret_5"])
    return frame[["symbol", "decision_time", "value"]], frame[["symbol", "decision_time", "fwd_ret_1", "fwd_ret_5"]]


FACTOR, FORWARD = _frames([
    # T1: ranks of fwd_ret_1 1, 3, 2, 4 against values 1..4: Spearman 1 - 6 * 2 / (4 * 15) = 0.8.
    #     fwd_ret_5 of D is missing: horizon 5 over A, B, C only, ranks 3, 1, 2: Spearman -0.5
    (T1, "A", 1.0, 0.01, 0.05), (T1, "B", 2.0, 0.03, -0.01), (T1, "C", 3.0, 0.02, 0.02), (T1, "D", 4.0, 0.04, np.nan),
    # T2: values fall as fwd_ret_1 rises, both linear: -1 for Pearson and Spearman; fwd_ret_5 flat: no IC
    (T2, "A", 4.0, 0.01, 0.01), (T2, "B", 3.0, 0.02, 0.01), (T2, "C", 2.0, 0.03, 0.01), (T2, "D", 1.0, 0.04, 0.01),
    # T3: two names only: no IC
    (T3, "A", 1.0, 0.01, 0.02), (T3, "B", 2.0, 0.02, 0.03),
])


# ---------------------------------------------------------------- IC

def test_rank_and_pearson_ic_per_decision_time():
    ic = information_coefficient(FACTOR, FORWARD, [1, 5], method="spearman")
    assert list(ic.index) == [T1, T2, T3] and list(ic.columns) == [1, 5]
    assert ic.loc[T1, 1] == pytest.approx(0.8, rel=1e-14)
    assert ic.loc[T1, 5] == pytest.approx(-0.5, rel=1e-14)
    assert ic.loc[T2, 1] == pytest.approx(-1.0, rel=1e-14)
    assert math.isnan(ic.loc[T2, 5]) and math.isnan(ic.loc[T3, 1]) and math.isnan(ic.loc[T3, 5])
    pearson = information_coefficient(FACTOR, FORWARD, [1], method="pearson")
    expected = np.corrcoef([1.0, 2.0, 3.0, 4.0], [0.01, 0.03, 0.02, 0.04])[0, 1]
    assert pearson.loc[T1, 1] == pytest.approx(expected, rel=1e-12)
    assert pearson.loc[T2, 1] == pytest.approx(-1.0, rel=1e-12)


def test_ties_take_their_average_rank():
    factor, forward = _frames([(T1, s, v, f, 0.0) for s, v, f in
                               [("A", 1.0, 0.01), ("B", 1.0, 0.02), ("C", 2.0, 0.03), ("D", 3.0, 0.02)]])
    # value ranks 1.5, 1.5, 3, 4; forward ranks 1, 2.5, 4, 2.5: Pearson of the ranks
    expected = np.corrcoef([1.5, 1.5, 3, 4], [1, 2.5, 4, 2.5])[0, 1]
    assert information_coefficient(factor, forward, [1]).loc[T1, 1] == pytest.approx(expected, rel=1e-12)


def test_ic_summary_and_decay():
    ic = pd.DataFrame({1: [0.1, 0.3, -0.1, np.nan]}, index=[T1, T2, T3, T4])
    ic.columns.name = "horizon"
    s = ic_summary(ic)
    assert list(s.columns) == ["mean", "std", "ir", "t_stat", "hit", "n"]
    row = s.loc[1]
    assert row["mean"] == pytest.approx(0.1, rel=1e-13)
    assert row["std"] == pytest.approx(0.2, rel=1e-13)          # sqrt((0 + 0.04 + 0.04) / 2)
    assert row["ir"] == pytest.approx(0.5, rel=1e-12)
    assert row["t_stat"] == pytest.approx(0.5 * math.sqrt(3), rel=1e-12)
    assert row["hit"] == pytest.approx(2 / 3, rel=1e-14)
    assert row["n"] == 3.0
    decay = ic_decay(FACTOR, FORWARD, [1, 5])
    assert decay.loc[1] == pytest.approx((0.8 - 1.0) / 2, rel=1e-13) and decay.loc[5] == pytest.approx(-0.5)


# ---------------------------------------------------------------- quantiles

def test_quantiles_by_rank_with_ties_broken_by_symbol():
    symbols = list("ABCDEFGHIJ")
    values = [0.3, -1.0, 2.5, 0.0, 1.1, 7.0, -3.0, 0.2, 0.9, 4.0]
    rows = [{"symbol": s, "decision_time": T1, "value": v} for s, v in zip(symbols, values, strict=True)]
    rows += [{"symbol": s, "decision_time": T2, "value": 1.0} for s in "EDCBA"]          # five ties
    rows += [{"symbol": s, "decision_time": T3, "value": float(i)} for i, s in enumerate("ABC")]  # < 5 names
    rows += [{"symbol": "K", "decision_time": T1, "value": np.nan}]                        # no value: no quantile
    q = factor_quantiles(pd.DataFrame(rows), 5)
    at1 = q[q["decision_time"] == T1].set_index("symbol")["quantile"]
    expected = pd.Series(pd.qcut(values, 5, labels=False) + 1, index=symbols)
    assert at1.sort_index().tolist() == expected.sort_index().tolist()
    assert q["quantile"].dtype == np.int64
    at2 = q[q["decision_time"] == T2].set_index("symbol")["quantile"]
    assert at2.to_dict() == {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}
    assert set(q["decision_time"]) == {T1, T2}


def test_quantile_returns_weigh_every_decision_time_the_same():
    factor, forward = _frames([
        # T1, two quantiles of two: q1 {A, B} mean 0.02, q2 {C, D} mean 0.03
        (T1, "A", 1.0, 0.01, 0.0), (T1, "B", 2.0, 0.03, 0.0), (T1, "C", 3.0, 0.02, 0.0), (T1, "D", 4.0, 0.04, 0.0),
        # T2, two quantiles of three: q1 {F, E, D} mean 0.01, q2 {C, B, A} mean 0.01
        (T2, "A", 6.0, 0.00, 0.0), (T2, "B", 5.0, 0.01, 0.0), (T2, "C", 4.0, 0.02, 0.0),
        (T2, "D", 3.0, -0.01, 0.0), (T2, "E", 2.0, 0.00, 0.0), (T2, "F", 1.0, 0.04, 0.0),
    ])
    table = quantile_returns(factor, forward, [1], quantiles=2)
    assert list(table.index) == [1, 2]
    assert table.loc[1, 1] == pytest.approx((0.02 + 0.01) / 2, rel=1e-13)  # not the pooled 0.014
    assert table.loc[2, 1] == pytest.approx((0.03 + 0.01) / 2, rel=1e-13)
    spread = quantile_spread(factor, forward, [1], quantiles=2)
    assert spread[1].tolist() == pytest.approx([0.01, 0.0], abs=1e-15)


def test_top_quantile_turnover():
    factor = pd.DataFrame({
        "symbol": list("ABCD") * 3,
        "decision_time": [T1] * 4 + [T2] * 4 + [T3] * 4,
        "value": [1, 2, 3, 4, 1, 4, 2, 3, 1, 4, 2, 3],
    }).astype({"value": "float64"})
    turnover = factor_turnover(factor, quantiles=2)
    # top halves {C, D}, then {B, D} (B new: 1 of 2), then {B, D} again
    assert math.isnan(turnover.iloc[0])
    assert turnover.iloc[1:].tolist() == [0.5, 0.0]


def test_rank_autocorrelation_over_common_symbols():
    factor = pd.DataFrame({
        "symbol": list("ABCD") * 2 + list("ABCDE"),
        "decision_time": [T1] * 4 + [T2] * 4 + [T3] * 5,
        "value": [1, 2, 3, 4, 10, 20, 30, 40, 4, 3, 2, 1, 99],
    }).astype({"value": "float64"})
    ac = factor_autocorrelation(factor, lag=1)
    assert math.isnan(ac.loc[T1])
    assert ac.loc[T2] == pytest.approx(1.0, rel=1e-14)
    assert ac.loc[T3] == pytest.approx(-1.0, rel=1e-14)  # E has no value at T2: left out
    assert factor_autocorrelation(factor, lag=2).loc[T3] == pytest.approx(-1.0, rel=1e-14)


# ---------------------------------------------------------------- regimes and the report

def test_rank_ic_by_regime():
    regimes = pd.Series(["calm", "storm", "calm"], index=[T1, T2, T3], name="regime_vol")
    table = by_regime(FACTOR, FORWARD, [1, 5], regimes)
    assert table.index.names == ["regime_vol", "horizon"]
    assert table.index.tolist() == [("calm", 1), ("calm", 5), ("storm", 1), ("storm", 5)]
    assert table.loc[("calm", 1), "mean"] == pytest.approx(0.8) and table.loc[("calm", 1), "n"] == 1.0
    assert table.loc[("storm", 1), "mean"] == pytest.approx(-1.0) and table.loc[("storm", 5), "n"] == 0.0
    with pytest.raises(ArgumentError, match=r"regimes have no label for 1 decision time.*2021-01-06"):
        by_regime(FACTOR, FORWARD, [1], regimes.iloc[:2])


def test_factor_report_flattens_to_plain_floats():
    regimes = pd.Series(["calm", "storm", "calm"], index=[T1, T2, T3])
    report = factor_report(FACTOR, FORWARD, [1, 5], quantiles=2, regimes=regimes)
    assert isinstance(report, FactorReport) and report.horizons == (1, 5)
    d = report.to_dict()
    assert all(type(v) is float for v in d.values())
    assert d["ic_mean_h1"] == pytest.approx(-0.1) and d["ic_n_h5"] == 1.0
    # T1 halves: q1 {A, B}, q2 {C, D}; T2: q1 {D, C}, q2 {B, A}; T3 has two names: one per half
    assert d["q1_h1"] == pytest.approx((0.02 + 0.035 + 0.01) / 3, rel=1e-13)
    assert d["spread_h1"] == pytest.approx((0.01 - 0.02 + 0.01) / 3, abs=1e-15)
    assert d["regime[storm].ic_mean_h1"] == pytest.approx(-1.0)
    assert {"turnover", "autocorrelation", "q2_h5", "ic_t_stat_h5"} <= set(d)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: information_coefficient(FACTOR.drop(columns="value"), FORWARD, [1]), MissingColumnError,
     r"factor lacks column\(s\) \['value'\]"),
    (lambda: information_coefficient(FACTOR, FORWARD, [20]), MissingColumnError,
     r"forward lacks column\(s\) \['fwd_ret_20'\]"),
    (lambda: information_coefficient(pd.concat([FACTOR, FACTOR.iloc[:1]]), FORWARD, [1]), ArgumentError,
     r"factor has 1 repeated \(symbol, decision_time\) row\(s\), the first \(A, 2021-01-04"),
    (lambda: information_coefficient(FACTOR, FORWARD, []), ArgumentError, "horizons must be non-empty"),
    (lambda: information_coefficient(FACTOR, FORWARD, [True]), ArgumentError, "each of horizons must be an integer"),
    (lambda: information_coefficient(FACTOR, FORWARD, [1], method="kendall"), ArgumentError,
     "method must be 'spearman' or 'pearson'"),
    (lambda: information_coefficient(FACTOR.assign(value="x"), FORWARD, [1]), ArgumentError,
     r"factor\['value'\] must hold numbers"),
    (lambda: information_coefficient(FACTOR.assign(decision_time=FACTOR["decision_time"].dt.tz_localize(None)),
                                     FORWARD, [1]), ArgumentError, "must share a time zone"),
    (lambda: information_coefficient(FACTOR, FORWARD.assign(symbol=FORWARD["symbol"] + "x"), [1]), ArgumentError,
     r"factor and forward share no \(symbol, decision_time\) row"),
    (lambda: factor_quantiles(FACTOR, 1), ArgumentError, "quantiles must be an integer >= 2"),
    (lambda: factor_autocorrelation(FACTOR, 0), ArgumentError, "lag must be an integer >= 1"),
    (lambda: ic_summary(FACTOR), ArgumentError, "ic must be a DataFrame of ICs"),
])
def test_bad_inputs_are_refused_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------- real data, alphalens as the reference

@pytest.fixture(scope="module")
def prices(shared_data) -> pd.DataFrame:
    """Adjusted closes (dates x tickers, UTC) of the 84 stocknet stocks with a close on every session of 2016."""
    raw = pd.read_csv(shared_data / "stocknet-tweets-prices" / "prices_raw.csv.gz", parse_dates=["Date"])
    raw = raw[(raw["Date"] >= "2016-01-01") & (raw["Date"] < "2017-01-01")]
    wide = raw.pivot(index="Date", columns="ticker", values="Adj Close").dropna(axis=1)
    wide.index = wide.index.tz_localize("UTC")
    return wide


def _long(wide: pd.DataFrame, name: str) -> pd.DataFrame:
    out = wide.stack().rename(name).reset_index()
    return out.rename(columns={out.columns[0]: "decision_time", out.columns[1]: "symbol"})


@pytest.fixture(scope="module")
def momentum(prices):
    """20-session momentum and the 1- and 5-session forward returns, as long frames built here."""
    factor = _long(prices / prices.shift(20) - 1, "value")
    forward = _long(prices.shift(-1) / prices - 1, "fwd_ret_1").merge(
        _long(prices.shift(-5) / prices - 1, "fwd_ret_5"), on=["decision_time", "symbol"], how="outer")
    return factor[["symbol", "decision_time", "value"]], forward[["symbol", "decision_time", "fwd_ret_1", "fwd_ret_5"]]


@pytest.mark.slow  # importing alphalens (statsmodels, seaborn, IPython) takes about 10 s
def test_rank_ic_quantiles_and_stability_equal_alphalens(prices, momentum):
    import alphalens as al

    series = momentum[0].set_index(["decision_time", "symbol"])["value"].dropna()
    series.index.names = ["date", "asset"]
    clean = al.utils.get_clean_factor_and_forward_returns(series, prices, quantiles=5, periods=(1, 5), max_loss=1.0)
    assert clean.index.get_level_values("asset").nunique() == 84 and len(clean) == 19068
    # alphalens' forward returns are the ones built here, on the rows it keeps (both horizons present)
    flat = clean.reset_index().rename(columns={"date": "decision_time", "asset": "symbol", "factor": "value",
                                               "1D": "fwd_ret_1", "5D": "fwd_ret_5"})
    mine = flat[["decision_time", "symbol"]].merge(momentum[1], on=["decision_time", "symbol"], how="left")
    assert np.abs(mine[["fwd_ret_1", "fwd_ret_5"]].to_numpy() - flat[["fwd_ret_1", "fwd_ret_5"]].to_numpy()).max() \
        < 1e-12
    factor = flat[["symbol", "decision_time", "value"]]
    forward = flat[["symbol", "decision_time", "fwd_ret_1", "fwd_ret_5"]]

    ic = information_coefficient(factor, forward, [1, 5])
    reference = al.performance.factor_information_coefficient(clean)
    assert np.abs(ic.to_numpy() - reference.to_numpy()).max() < 1e-12

    quantiles = factor_quantiles(factor, 5).set_index(["decision_time", "symbol"])["quantile"]
    theirs = clean["factor_quantile"]
    assert (quantiles.reindex(pd.MultiIndex.from_arrays([theirs.index.get_level_values(0),
                                                         theirs.index.get_level_values(1)])).to_numpy()
            == theirs.to_numpy()).all()

    table = quantile_returns(factor, forward, [1, 5])
    by_date, _ = al.performance.mean_return_by_quantile(clean, by_date=True, demeaned=False)
    assert np.abs(table.to_numpy() - by_date.groupby(level="factor_quantile").mean().to_numpy()).max() < 1e-12

    turnover = factor_turnover(factor, 5)
    their_turnover = al.performance.quantile_turnover(clean["factor_quantile"], 5, 1)
    assert np.abs(turnover.to_numpy()[1:] - their_turnover.to_numpy()[1:]).max() < 1e-12

    ac = factor_autocorrelation(factor, 1)
    their_ac = al.performance.factor_rank_autocorrelation(clean, 1)
    assert np.abs(ac.to_numpy()[1:] - their_ac.to_numpy()[1:]).max() < 1e-12

    # the figures: 2016 momentum reverted (negative rank IC at both horizons)
    summary = ic_summary(ic)
    assert summary.loc[1, "n"] == 227.0
    assert round(summary.loc[1, "mean"], 4) == -0.0372 and round(summary.loc[5, "mean"], 4) == -0.0768


def test_ic_equals_a_brute_force_scipy_loop(momentum):
    """Every decision time of 2016 (with momentum and a forward return), against scipy one time at a time."""
    from scipy import stats

    factor, forward = momentum
    data = factor.merge(forward, on=["symbol", "decision_time"]).dropna()
    ic = information_coefficient(factor, forward, [1, 5], method="spearman")
    pearson = information_coefficient(factor, forward, [5], method="pearson")[5]
    checked = 0
    for time, group in data.groupby("decision_time"):
        for h in (1, 5):
            expected = stats.spearmanr(group["value"], group[f"fwd_ret_{h}"])[0]
            assert ic.loc[time, h] == pytest.approx(expected, abs=1e-12)
        assert pearson.loc[time] == pytest.approx(stats.pearsonr(group["value"], group["fwd_ret_5"])[0], abs=1e-12)
        checked += 1
    assert checked == 227
    # horizon 1 also has the 4 last sessions, where the 5-session return is not known yet
    assert ic[1].notna().sum() == 231 and ic[5].notna().sum() == 227
