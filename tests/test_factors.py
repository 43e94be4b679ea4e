"""Factors are point-in-time: corporate actions only from when they were known,
price-level features in the scale traded that day, no jumps on split days.

Proved on AAPL's 7:1 split (ex-date 2014-06-09) in the shared Lean data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.factors import FACTORS, compute_factors, feature_columns
from etl.sources.archive import ingest_lean
from etl.storage.actions import read_corporate_actions
from etl.storage.bars import read_silver_bars


@pytest.fixture(scope="module")
def aapl(tmp_path_factory, lean_root):
    from etl.core.config import load_settings

    settings = load_settings(tmp_path_factory.mktemp("aapl"))
    ingest_lean(settings, lean_root, ["AAPL"])
    bars = read_silver_bars(settings).sort_values("session").reset_index(drop=True)
    actions = read_corporate_actions(settings)
    feats = compute_factors(bars, actions)
    return bars, actions, pd.concat([bars, feats], axis=1).set_index("session")


def test_split_is_a_known_corporate_action_from_its_ex_date(aapl):
    _, actions, _ = aapl
    row = actions[actions["ex_date"] == "2014-06-09"].iloc[0]
    assert row["factor_date"] == pd.Timestamp("2014-06-06")
    assert row["event_timestamp"] == pd.Timestamp("2014-06-09 13:30", tz="UTC")  # the ex-date's open


def test_sma_and_atr_are_in_the_price_scale_traded_that_day(aapl):
    bars, _, f = aapl
    closes = bars.set_index("session")["close"]
    # on 2014-06-06 (before the split) a trader saw ~$645 prices: a plain mean of raw closes
    window = closes.loc[:"2014-06-06"].iloc[-20:]
    assert f.loc["2014-06-06", "sma_20"] == pytest.approx(window.mean(), rel=1e-12)
    # on 2014-06-09 the 19 earlier closes are rescaled by the split known that day (1/7)
    window = closes.loc[:"2014-06-09"].iloc[-20:]
    rescaled = np.where(window.index < "2014-06-09", window / 7.0, window)
    assert f.loc["2014-06-09", "sma_20"] == pytest.approx(rescaled.mean(), rel=1e-6)
    assert 85 < f.loc["2014-06-09", "sma_20"] < 95 and 600 < f.loc["2014-06-06", "sma_20"] < 650
    assert f.loc["2014-06-06", "atr_14"] > 5 and f.loc["2014-06-09", "atr_14"] < 2  # dollars of each day's scale
    assert f.loc["2014-06-09", "atr_14"] == pytest.approx(f.loc["2014-06-06", "atr_14"] / 7, rel=0.1)


def test_scale_free_features_do_not_jump_on_the_split_day(aapl):
    bars, _, f = aapl
    raw_return = f.loc["2014-06-09", "close"] / f.loc["2014-06-06", "close"] - 1
    assert raw_return < -0.8  # the raw series falls 85%...
    # ...the return is +1.6% (to 1e-4: Lean's factor rows carry 7-digit dividend factors)
    assert f.loc["2014-06-09", "ret_1d"] == pytest.approx(93.70 / (645.57 / 7) - 1, rel=1e-4)
    assert abs(f.loc["2014-06-09", "rsi_14"] - f.loc["2014-06-06", "rsi_14"]) < 5
    assert abs(f.loc["2014-06-09", "bb_pctb_20"] - f.loc["2014-06-06", "bb_pctb_20"]) < 0.2
    assert f.loc["2014-06-09", "rv_21d"] < 0.3
    # a naive computation on raw prices would see a crash: RSI near 0
    naive = compute_factors(bars.loc[bars["session"] <= "2014-06-09"].reset_index(drop=True), None)
    assert naive["rsi_14"].iloc[-1] < 20


def _known_at(actions: pd.DataFrame, t: pd.Timestamp, settings_delay: int = 15) -> pd.DataFrame:
    """The factor file as it could have been published at session t: only actions
    with ex-date <= t, rescaled so that t's own factor is 1."""
    known = actions[actions["ex_date"] <= t].copy()
    if known.empty:
        return known
    full = actions.sort_values("factor_date")
    idx = np.searchsorted(full["factor_date"].values, np.datetime64(t), side="left")
    split_t = full["split_factor"].to_numpy()[idx] if idx < len(full) else 1.0
    price_t = full["price_factor"].to_numpy()[idx] if idx < len(full) else 1.0
    known["split_factor"] /= split_t
    known["price_factor"] /= price_t
    return known


@pytest.mark.parametrize("day", ["2005-02-25", "2005-02-28", "2014-06-06", "2014-06-09", "2014-06-10", "2020-08-28", "2020-08-31", "2012-08-09"])
def test_a_factor_at_t_only_uses_what_was_known_at_t(aapl, day):
    """Recompute on history truncated at t with only the actions known at t:
    the value for t must equal the one in the full computation."""
    bars, actions, full = aapl
    t = pd.Timestamp(day)
    truncated = bars[bars["session"] <= t].reset_index(drop=True)
    assert truncated["session"].iloc[-1] == t
    alone = compute_factors(truncated, _known_at(actions, t)).iloc[-1]
    for col in feature_columns():
        assert alone[col] == pytest.approx(full.loc[t, col], rel=1e-9, abs=1e-12), col


def test_warmup_is_missing_not_zero(aapl):
    _, _, f = aapl
    first = f.iloc[:40]
    for spec in FACTORS:
        for col in spec.output_names:
            lead = int(first[col].isna().cumprod().sum())
            assert lead >= 1, col
            assert not (first[col].iloc[:lead] == 0).any()


def test_gold_rows_are_available_at_close_plus_delay_and_a_rerun_writes_nothing(warehouse):
    from etl.gold.layout import gold_path, parts
    from etl.jobs import compute_factors

    settings = warehouse["settings"]
    tech = pd.read_parquet(gold_path(settings, "technicals"))
    bars = pd.read_parquet(gold_path(settings, "bars_daily"))
    expected = clock.availability_times(pd.to_datetime(bars["session_date"]), 15)
    assert (bars["event_timestamp"].to_numpy() == expected.to_numpy()).all()
    assert (tech["event_timestamp"].to_numpy() == bars["event_timestamp"].to_numpy()).all()
    before = {p.name: p.read_bytes() for p in parts(settings, "technicals")}
    again = compute_factors(settings)
    assert "skipped" in again and again["rows"] == 0  # nothing changed: nothing computed
    assert {p.name: p.read_bytes() for p in parts(settings, "technicals")} == before  # nor any file touched
