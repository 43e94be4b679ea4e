"""``alpha factor-report``'s numbers on the session warehouse, checked by hand: the rank IC of a
decision time is Spearman's correlation of the feature with the compounded ret_1d of the next
h sessions, as known at each session; the page renders with its plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from research.factor_report import evaluate_feature, write_factor_report

SYMBOLS = ["AAPL", "IBM", "SPY", "GOOGL"]


def test_rank_ic_equals_spearman_on_the_history_by_hand(client, tmp_path):
    report, factor = evaluate_feature(client, "technicals:rsi_14", "2015-01-02", "2015-12-31", symbols=SYMBOLS,
                                      horizons=[1, 5], quantiles=2)
    hist = client.history(SYMBOLS, ["technicals:rsi_14", "technicals:ret_1d"], start="2015-01-02", end="2016-01-31")
    wide_ret = hist.pivot(index="event_timestamp", columns="symbol", values="ret_1d").sort_index()
    wide_rsi = hist.pivot(index="event_timestamp", columns="symbol", values="rsi_14").sort_index()
    checked = 0
    for t in wide_rsi.index[wide_rsi.index < pd.Timestamp("2016-01-01", tz="UTC")][::37]:
        i = wide_ret.index.get_loc(t)
        fwd5 = (1 + wide_ret.iloc[i + 1:i + 6]).prod() - 1
        rho = spearmanr(wide_rsi.loc[t], fwd5).statistic
        assert report.ic.loc[t, 5] == np.float64(rho) or abs(report.ic.loc[t, 5] - rho) < 1e-12
        checked += 1
    assert checked >= 6
    assert set(factor["symbol"]) == set(SYMBOLS)
    assert report.by_regime is not None and {"low vol", "normal vol", "high vol"} >= set(report.by_regime.index.get_level_values(0))
    path = write_factor_report(tmp_path, "technicals:rsi_14", report, {"start": "2015-01-02"})
    html = path.read_text()
    assert html.count("<img") == 3 and "Rank IC by horizon" in html
    assert (tmp_path / "factor_report.json").is_file()
