"""research.metrics: exact values on literal returns, empyrical-reloaded and scipy on SPY's real daily
returns (1993-2018) as independent references, and the worked example of the Deflated Sharpe paper."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from etl.core.errors import AlphaError, ArgumentError
from research.metrics import (
    METRICS,
    bootstrap_ci,
    deflated_sharpe,
    expected_max_sharpe,
    performance,
    probabilistic_sharpe,
    sliced,
)

DAYS = pd.date_range("2021-01-04", periods=5, freq="B", tz="UTC")
#: five literal sessions: a gain, a loss, a gain, a flat day, a loss
R = pd.Series([0.01, -0.02, 0.03, 0.0, -0.01], index=DAYS)


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@pytest.fixture(scope="module")
def spy(shared_data) -> pd.Series:
    """SPY daily total returns 1993-02-01..2018-04-27 (zipline-reloaded's benchmark file)."""
    frame = pd.read_csv(shared_data / "zipline-test-resources" / "SPY_benchmark_returns.csv", index_col=0,
                        parse_dates=True)
    return frame["return"]


# ---------------------------------------------------------------- literal returns

def test_performance_on_five_literal_sessions():
    p = performance(R)
    assert list(p) == list(METRICS)
    assert all(type(v) is float for v in p.values())
    wealth = 1.01 * 0.98 * 1.03 * 1.0 * 0.99
    mean = 0.01 / 5
    std = math.sqrt(sum((x - mean) ** 2 for x in R) / 4)
    m2 = sum((x - mean) ** 2 for x in R) / 5
    assert p["sessions"] == 5.0
    assert p["total_return"] == pytest.approx(wealth - 1, rel=1e-13)
    assert p["ann_return"] == pytest.approx(wealth ** (252 / 5) - 1, rel=1e-12)
    assert p["ann_vol"] == pytest.approx(std * math.sqrt(252), rel=1e-13)
    assert p["sharpe"] == pytest.approx(mean / std * math.sqrt(252), rel=1e-12)
    # downside deviation over all five sessions: sqrt((0.02**2 + 0.01**2) / 5)
    assert p["sortino"] == pytest.approx(mean * 252 / (math.sqrt((0.0004 + 0.0001) / 5) * math.sqrt(252)), rel=1e-12)
    # wealth 1.01, 0.9898, 1.019494, 1.019494, 1.00929906: the deepest fall is day 2's, 0.9898 / 1.01 - 1
    assert p["max_drawdown"] == pytest.approx(-0.02, rel=1e-12)
    assert p["calmar"] == pytest.approx((wealth ** (252 / 5) - 1) / 0.02, rel=1e-12)
    # two gains among the four sessions that moved (the flat day is neither)
    assert p["hit_rate"] == 0.5
    assert p["skew"] == pytest.approx(sum((x - mean) ** 3 for x in R) / 5 / m2**1.5, rel=1e-12)
    assert p["kurtosis"] == pytest.approx(sum((x - mean) ** 4 for x in R) / 5 / m2**2, rel=1e-12)
    assert math.isnan(p["turnover"]) and math.isnan(p["exposure"])


def test_a_loss_on_the_first_session_is_a_drawdown_and_no_drawdown_has_no_calmar():
    assert performance(pd.Series([-0.1, 0.05], index=DAYS[:2]))["max_drawdown"] == pytest.approx(-0.1, rel=1e-14)
    up = performance(pd.Series([0.01, 0.02, 0.01], index=DAYS[:3]))
    assert up["max_drawdown"] == 0.0
    assert math.isnan(up["calmar"])
    assert up["sortino"] == math.inf  # no losing session: empyrical's convention


def test_flat_returns_have_no_sharpe_hit_rate_or_moments():
    p = performance(pd.Series(0.0, index=DAYS))
    assert p["total_return"] == 0.0 and p["max_drawdown"] == 0.0
    for key in ("sharpe", "sortino", "hit_rate", "skew", "kurtosis", "calmar"):
        assert math.isnan(p[key]), key
    one = performance(pd.Series([0.01], index=DAYS[:1]))
    assert one["total_return"] == pytest.approx(0.01) and math.isnan(one["sharpe"]) and math.isnan(one["ann_vol"])


def test_leading_nans_are_dropped_and_a_later_nan_is_refused():
    warm = pd.concat([pd.Series([np.nan, np.nan], index=DAYS[:2] - pd.Timedelta(days=7)), R])
    assert performance(warm) == performance(R)
    gap = R.copy()
    gap.iloc[2] = np.nan
    with pytest.raises(ArgumentError, match=r"returns has 1 NaN return.*2021-01-06.*not a zero return"):
        performance(gap)
    with pytest.raises(ArgumentError, match="no return"):
        performance(pd.Series([np.nan, np.nan], index=DAYS[:2]))


@pytest.mark.parametrize(("returns", "message"), [
    ([0.01, 0.02], "returns must be a pandas Series"),
    (pd.Series(["a", "b"], index=DAYS[:2]), "returns must hold numbers"),
    (pd.Series([0.01, 0.02], index=[DAYS[0], DAYS[0]]), "returns has two returns for session"),
    (pd.Series([0.01, 0.02], index=[DAYS[1], DAYS[0]]), "returns must be sorted"),
    (pd.Series([0.01, np.inf], index=DAYS[:2]), "infinite"),
])
def test_bad_returns_are_refused_naming_the_argument(returns, message):
    with pytest.raises(ArgumentError, match=message):
        performance(returns)


def test_bad_annual_is_refused():
    with pytest.raises(ArgumentError, match="annual must be an integer >= 1"):
        performance(R, annual=True)
    with pytest.raises(AlphaError, match="annual"):
        performance(R, annual=0)


def test_turnover_and_exposure_from_target_weights():
    # NaN: no target for the symbol at that time (not listed), i.e. no position
    weights = pd.DataFrame({"A": [0.5, 1.0, np.nan, 0.0, 0.0], "B": [0.5, 0.0, -0.5, -0.5, 0.0]}, index=DAYS)
    p = performance(R, weights=weights)
    # one-way turnover per session: (0.5 + 0.5) / 2, (1 + 0.5) / 2, (0 + 0) / 2, (0 + 0.5) / 2; the first row has none
    assert p["turnover"] == pytest.approx((0.5 + 0.75 + 0.0 + 0.25) / 4, rel=1e-14)
    assert p["exposure"] == pytest.approx((1.0 + 1.0 + 0.5 + 0.5 + 0.0) / 5, rel=1e-14)
    # returns over the last three sessions: turnover still compares with the row before in the weights
    tail = performance(R.iloc[2:], weights=weights)
    assert tail["turnover"] == pytest.approx((0.75 + 0.0 + 0.25) / 3, rel=1e-14)
    with pytest.raises(ArgumentError, match=r"weights have no row for 1 session.*2021-01-08"):
        performance(R, weights=weights.iloc[:4])
    with pytest.raises(ArgumentError, match="weights must be a pandas DataFrame"):
        performance(R, weights=weights["A"])


def test_sliced_gives_each_label_the_metrics_of_its_sessions():
    weights = pd.DataFrame({"A": [0.5, 1.0, 1.0, 0.0, 0.0]}, index=DAYS)
    labels = pd.Series(["storm", "calm", "storm", "calm", "calm"], index=DAYS, name="regime")
    table = sliced(R, labels, weights=weights)
    assert list(table.index) == ["calm", "storm"] and table.index.name == "regime"
    assert list(table.columns) == list(METRICS)
    calm = performance(R[labels == "calm"])
    for key in ("sessions", "total_return", "sharpe", "max_drawdown", "hit_rate"):
        assert table.loc["calm", key] == pytest.approx(calm[key], rel=1e-14, nan_ok=True), key
    # storm sessions 1 and 3: turnover |1 - 0.5| / 2 at session 2 only (session 1 is the frame's first row)
    assert table.loc["storm", "turnover"] == 0.0  # session 3: |1 - 1| / 2; session 1 has no predecessor
    assert table.loc["calm", "turnover"] == pytest.approx((0.25 + 0.5 + 0.0) / 3, rel=1e-14)
    assert table.loc["storm", "exposure"] == pytest.approx(0.75, rel=1e-14)


def test_sliced_refuses_sessions_without_a_label():
    labels = pd.Series(["a", "b", None, "a", "b"], index=DAYS)
    with pytest.raises(ArgumentError, match=r"labels are NaN at 1 session.*2021-01-06.*'unknown'"):
        sliced(R, labels)
    with pytest.raises(ArgumentError, match="labels have no label for 2 session"):
        sliced(R, labels.iloc[:3].fillna("a"))


# ---------------------------------------------------------------- bootstrap

def test_bootstrap_with_endless_blocks_only_rotates_so_the_sharpe_never_changes():
    """A block longer than the sample is never cut: each resample is a circular shift of the
    returns, whose Sharpe (a mean over a std) is the original's: the interval is one point."""
    sr = performance(R)["sharpe"]
    low, high = bootstrap_ci(R, "sharpe", n_resamples=200, block=10**12)
    assert low == pytest.approx(sr, rel=1e-12) and high == pytest.approx(sr, rel=1e-12)


def test_bootstrap_is_deterministic_by_seed():
    returns = pd.Series(np.linspace(-0.02, 0.025, 60) * np.cos(np.arange(60)), index=pd.RangeIndex(60))
    a = bootstrap_ci(returns, "sharpe", n_resamples=300, block=5, seed=7)
    assert a == bootstrap_ci(returns, "sharpe", n_resamples=300, block=5, seed=7)
    assert a != bootstrap_ci(returns, "sharpe", n_resamples=300, block=5, seed=8)
    assert a[0] < a[1]
    narrow = bootstrap_ci(returns, "sharpe", n_resamples=300, block=5, seed=7, level=0.5)
    assert a[0] < narrow[0] < narrow[1] < a[1]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"statistic": "turnover"}, "statistic must be one of"),
    ({"level": 1.0}, "level must be a number strictly between 0 and 1"),
    ({"block": 0}, "block must be an integer >= 1"),
    ({"n_resamples": 2.5}, "n_resamples must be an integer"),
])
def test_bootstrap_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        bootstrap_ci(R, **kwargs)


# ---------------------------------------------------------------- PSR, DSR

def test_probabilistic_sharpe_is_the_formula_on_a_literal_example():
    # per-period SR 0.1 over 100 observations, skew -0.5, kurtosis 5, against a benchmark of 0.02
    z = (0.1 - 0.02) * math.sqrt(99) / math.sqrt(1 - (-0.5) * 0.1 + (5 - 1) / 4 * 0.1**2)
    assert probabilistic_sharpe(0.1, 100, -0.5, 5.0, 0.02) == pytest.approx(_phi(z), rel=1e-14)
    assert probabilistic_sharpe(0.0, 50, 0.0, 3.0) == 0.5
    with pytest.raises(ArgumentError, match="is not positive.*annualised"):
        probabilistic_sharpe(2.5, 100, 3.0, 3.0)
    with pytest.raises(ArgumentError, match="n_obs must be an integer >= 2"):
        probabilistic_sharpe(0.1, 1, 0.0, 3.0)


def test_deflated_sharpe_reproduces_the_papers_worked_example():
    """Bailey and Lopez de Prado (2014), "The Deflated Sharpe Ratio", numerical example: an annualised SR
    of 2.5 over T = 1250 daily observations, the best of N = 100 trials whose annualised SRs have variance
    1/2, returns with skewness -3 and kurtosis 10. The paper (250 sessions a year) gets the per-period
    SR 2.5 / sqrt(250) = 0.1581, the expected maximum of 100 skill-less trials SR0 = 0.1132 and DSR = 0.9004
    (< 0.95: not a discovery at 95%). Here the same numbers from the formulas, to the paper's digits."""
    sr = 2.5 / math.sqrt(250)
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    dsr = probabilistic_sharpe(sr, 1250, -3.0, 10.0, sr0)
    assert round(sr, 4) == 0.1581
    assert round(sr0, 4) == 0.1132
    assert round(dsr, 4) == 0.9004
    # the exact values, from the formulas: the normal quantiles as literals (scipy.stats.norm.ppf), checked
    # here by the CDF from math.erf, and the CDF from math.erf
    q1, q2 = 2.3263478740408408, 2.6802104449668875
    assert _phi(q1) == pytest.approx(1 - 1 / 100, rel=1e-15)
    assert _phi(q2) == pytest.approx(1 - 1 / (100 * math.e), rel=1e-15)
    gamma = 0.5772156649015329
    assert sr0 == pytest.approx(math.sqrt(0.5 / 250) * ((1 - gamma) * q1 + gamma * q2), rel=1e-13)
    expected = _phi((sr - sr0) * math.sqrt(1249) / math.sqrt(1 + 3 * sr + 9 / 4 * sr**2))
    assert dsr == pytest.approx(expected, rel=1e-13)


def test_one_trial_has_no_selection():
    assert expected_max_sharpe(1, 0.3) == 0.0
    out = deflated_sharpe(R, [0.5])
    assert out["sr0"] == 0.0 and math.isnan(out["var_trials"]) and out["n_trials"] == 1.0
    assert out["dsr"] == pytest.approx(probabilistic_sharpe(out["sr"], 5, out["skew"], out["kurtosis"]), rel=1e-14)
    with pytest.raises(ArgumentError, match="trial_sharpes must hold at least one"):
        deflated_sharpe(R, [])
    with pytest.raises(ArgumentError, match="var_trials must be >= 0"):
        expected_max_sharpe(10, -1.0)


# ---------------------------------------------------------------- real returns, independent references

def test_performance_equals_empyrical_on_spy(spy):
    """empyrical-reloaded (Quantopian's metrics) as the independent reference, on 6,357 real sessions."""
    import empyrical as ep
    from scipy import stats

    p = performance(spy)
    assert p["sessions"] == 6357.0
    reference = {
        "sharpe": ep.sharpe_ratio(spy),
        "sortino": ep.sortino_ratio(spy),
        "calmar": ep.calmar_ratio(spy),
        "max_drawdown": ep.max_drawdown(spy),
        "ann_return": ep.annual_return(spy),
        "ann_vol": ep.annual_volatility(spy),
        "total_return": ep.cum_returns_final(spy),
        "skew": stats.skew(spy),
        "kurtosis": stats.kurtosis(spy, fisher=False),
    }
    for key, value in reference.items():
        assert p[key] == pytest.approx(float(value), rel=1e-10, abs=1e-10), key
    # the figures themselves (SPY 1993-02-01..2018-04-27)
    assert round(p["max_drawdown"], 4) == -0.5533 and round(p["ann_return"], 4) == 0.0798
    # monthly returns with annual=12
    monthly = (1 + spy).groupby([spy.index.year, spy.index.month]).prod() - 1
    pm = performance(monthly, annual=12)
    assert pm["sharpe"] == pytest.approx(ep.sharpe_ratio(monthly, period="monthly"), rel=1e-10)
    assert pm["sortino"] == pytest.approx(ep.sortino_ratio(monthly, period="monthly"), rel=1e-10)
    assert pm["ann_return"] == pytest.approx(ep.annual_return(monthly, period="monthly"), rel=1e-10)


def test_sliced_by_year_equals_empyrical_per_year(spy):
    import empyrical as ep

    years = pd.Series(spy.index.year, index=spy.index, name="year")
    table = sliced(spy, years)
    assert list(table.index) == list(range(1993, 2019))
    for year in (2000, 2008, 2017):
        part = spy[spy.index.year == year]
        assert table.loc[year, "sharpe"] == pytest.approx(ep.sharpe_ratio(part), rel=1e-10)
        assert table.loc[year, "max_drawdown"] == pytest.approx(ep.max_drawdown(part), rel=1e-10)
        assert table.loc[year, "calmar"] == pytest.approx(ep.calmar_ratio(part), rel=1e-10)
    assert table.loc[2008, "total_return"] == pytest.approx(ep.cum_returns_final(spy.loc["2008"]), rel=1e-10)


def test_bootstrap_interval_of_spy_holds_its_sharpe(spy):
    sr = performance(spy)["sharpe"]
    low, high = bootstrap_ci(spy, "sharpe", n_resamples=400, block=20, seed=0)
    assert low < sr < high
    # about +-2 / sqrt(25 years) around the point for an annualised Sharpe
    assert 0.5 < high - low < 1.2
    dd_low, dd_high = bootstrap_ci(spy, "max_drawdown", n_resamples=400, block=20, seed=0)
    assert dd_low < dd_high < 0.0


def test_deflated_sharpe_of_spy_against_its_trials(spy):
    from scipy import stats

    trials = [0.01, 0.02, 0.035, 0.05]
    out = deflated_sharpe(spy, trials)
    sr = spy.mean() / spy.std(ddof=1)
    assert out["sr"] == pytest.approx(sr, rel=1e-12)
    assert out["skew"] == pytest.approx(stats.skew(spy), rel=1e-10)
    assert out["kurtosis"] == pytest.approx(stats.kurtosis(spy, fisher=False), rel=1e-10)
    assert out["var_trials"] == pytest.approx(np.var(trials, ddof=1), rel=1e-14)
    assert out["sr0"] == pytest.approx(expected_max_sharpe(4, np.var(trials, ddof=1)), rel=1e-14)
    assert out["dsr"] == pytest.approx(
        probabilistic_sharpe(out["sr"], 6357, out["skew"], out["kurtosis"], out["sr0"]), rel=1e-14)
    # more trials of the same spread raise the bar: the DSR falls
    assert deflated_sharpe(spy, trials * 25)["dsr"] < out["dsr"]
