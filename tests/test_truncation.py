"""Truncation invariance: a warehouse built from the history cut at a date D answers, for every
session up to D, exactly what the warehouse built from the whole history answers.

Both homes get the same real inputs (the shipped data: Lean daily bars with their corporate
actions for AAPL, IBM and SPY, AAPL's Lean option chains of June 2014, the stocknet tweets of
AAPL in 2014); the cut home's silver keeps only the rows knowable by D's close (+ delay).
The corporate-action (factor) rows are kept whole in both: they set the price scale, and the
point-in-time arithmetic makes a later split change nothing before it (docs/factors.md).
Families with inputs here: bars, core technicals, the TA-Lib grid, options, news, regime.
Fundamentals and macro inputs come from vendor APIs (tests/test_fundamentals_factors.py,
tests/test_macro_regime_factors.py prove their point-in-time rules on recorded responses).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.jobs import compute_factors
from etl.sources.base import run_ingest

D = pd.Timestamp("2014-06-10")
SYMBOLS = ["AAPL", "IBM", "SPY"]


def _cut_silver(src, dst, until) -> int:
    """Every silver file, rows knowable by ``until`` only (event and known time), same layout."""
    kept = 0
    for path in src.silver.rglob("*.parquet"):
        if path.name.startswith("."):
            continue
        out = dst.silver / path.relative_to(src.silver)
        out.parent.mkdir(parents=True, exist_ok=True)
        table = pq.read_table(path)
        cols = set(table.column_names)
        if "event_timestamp" not in cols or path.parent.name == "corporate_actions":
            shutil.copy2(path, out)
            continue
        frame = table.to_pandas()
        keep = frame["event_timestamp"] <= until
        if "known_timestamp" in cols:
            keep &= frame["known_timestamp"] <= until
        kept += int(keep.sum())
        pq.write_table(pq.read_table(path).filter(pa_mask(keep.to_numpy())), out)
    return kept


def pa_mask(values):
    import pyarrow as pa

    return pa.array(values)


@pytest.fixture(scope="module")
def cut(tmp_path_factory, lean_root):
    from tests.conftest import STOCKNET

    root = tmp_path_factory.mktemp("cut")
    full = load_settings(root / "full")
    now = pd.Timestamp("2020-01-01", tz="UTC")
    assert not run_ingest(full, "lean", "daily", SYMBOLS, "1998-01-01", "2021-12-31", path=str(lean_root), now=now).failed
    assert not run_ingest(full, "lean", "option_chains", ["AAPL"], "2014-06-02", "2014-06-16", path=str(lean_root), now=now).failed
    assert not run_ingest(full, "stocknet", "tweets", ["AAPL"], "2014-01-01", "2014-12-31", path=str(STOCKNET), now=now).failed
    until = clock.availability_times(pd.DatetimeIndex([D]), full.bar_delay_minutes)[0]
    part = load_settings(root / "part")
    assert _cut_silver(full, part, until) > 1000
    compute_factors(full)
    compute_factors(part)
    return {"full": full, "part": part, "until": until}


def _latest(settings, view, until) -> pd.DataFrame:
    frame = pd.read_parquet(settings.gold / view)
    entity = "market" if "market" in frame.columns else "symbol"
    frame = frame[frame["event_timestamp"] <= until].sort_values(["event_timestamp", "known_timestamp"], kind="stable")
    frame = frame.drop_duplicates([entity, "event_timestamp"], keep="last")
    return frame.drop(columns=["created_timestamp"]).set_index([entity, "event_timestamp"]).sort_index()


GREEKS = ("delta", "gamma", "vega", "theta")
GREEK_RTOL = 1e-9


def test_every_value_up_to_the_cut_is_the_whole_historys(cut):
    from etl.factors import registry

    with_values = []
    for view in registry.views():
        a, b = _latest(cut["part"], view, cut["until"]), _latest(cut["full"], view, cut["until"])
        assert a.index.equals(b.index), (view, len(a), len(b))
        assert (a["known_timestamp"] == b["known_timestamp"]).all(), view
        for col in a.columns.drop("known_timestamp"):
            x, y = a[col], b[col]
            if x.dtype.kind == "f":
                xv, yv = x.to_numpy(float), y.to_numpy(float)
                # bit for bit, except the options greeks: finite differences of prices at an
                # implied vol solved iteratively, seen to differ in the 12th digit between two
                # builds (2026-12-02, AAPL's 30-day theta on 2014-06-10: 6e-12 relative; not
                # root-caused, see the closing note of issue 17)
                rtol = GREEK_RTOL if view == "options_daily" and any(g in col for g in GREEKS) else 0.0
                same = (xv == yv) | (np.isnan(xv) & np.isnan(yv)) | (np.abs(xv - yv) <= rtol * np.abs(yv))
                differ = ~same
                assert not differ.any(), (view, col, a.index[differ][:3].tolist(), xv[differ][:3], yv[differ][:3])
            else:
                assert (x.astype(str) == y.astype(str)).all(), (view, col)
        if len(a) and a.drop(columns="known_timestamp").notna().any().any():
            with_values.append(view)
    for view in ("bars_daily", "technicals", "ta_momentum", "options_daily", "news_daily", "regime_daily", "news_daily_lag1"):
        assert view in with_values, f"{view} has no values up to {D.date()}: the test would prove nothing for it"
