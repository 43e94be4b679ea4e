"""The generic builder: a warehouse advanced night by night holds the gold of one full build.

Real prices (the shipped Lean data: AAPL, IBM and SPY, raw) go in as a CSV folder one session
at a time over 30 sessions that include AAPL's 7:1 split of 2014-06-09 (its Lean factor rows
are stored from the start, so the price scale changes inside the 30 sessions), and a vendor
restates one IBM bar half way. After each session the builder runs. A second home receives
the same silver rows (the same versions, known at the same times) at once and is built
once. Every view of both homes must give the same answer, as known before the restatement
and as known now, for every symbol and session.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.core import clock
from etl.core.config import load_settings
from etl.jobs import compute_factors
from etl.sources.csv_folder import ingest_csv_folder
from etl.storage.actions import read_corporate_actions, write_corporate_actions
from etl.storage.bars import read_silver_bars

SYMBOLS = ["AAPL", "IBM", "SPY"]
FIRST, SPLIT = "2013-06-03", "2014-06-09"
N_NIGHTS = 30


def _write_csv(folder, bars: pd.DataFrame, upto) -> None:
    for sym, g in bars[bars["session"] <= upto].groupby("symbol"):
        out = pd.DataFrame({"date": g["session"].dt.strftime("%Y-%m-%d"), "open": g["open"], "high": g["high"],
                            "low": g["low"], "close": g["close"], "volume": g["volume"]})
        out.to_csv(folder / f"{sym}.csv", index=False)


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    from etl.core.config import default_lean_path
    from etl.sources.lean.daily import ingest_lean

    root = tmp_path_factory.mktemp("incr")
    lean = load_settings(root / "lean")
    ingest_lean(lean, default_lean_path(), SYMBOLS, now=pd.Timestamp("2020-01-01", tz="UTC"))
    raw = read_silver_bars(lean)
    raw = raw[raw["session"] >= FIRST].reset_index(drop=True)
    actions = read_corporate_actions(lean)
    sessions = sorted(raw["session"].unique())
    split_i = sessions.index(pd.Timestamp(SPLIT))
    nights = sessions[split_i - 12: split_i - 12 + N_NIGHTS]
    revise_at = nights[15]
    restated = nights[12]

    def restate(frame):
        out = frame.copy()
        hit = (out["symbol"] == "IBM") & (out["session"] == restated)
        out.loc[hit, "close"] = out.loc[hit, "close"] * 1.01
        out.loc[hit, "high"] = np.maximum(out.loc[hit, "high"], out.loc[hit, "close"])
        return out

    def avail(day):
        return clock.availability_times(pd.DatetimeIndex([day]), 15)[0] + pd.Timedelta(hours=1)

    t_rev = avail(revise_at) + pd.Timedelta(minutes=30)
    # night by night
    inc = load_settings(root / "inc")
    folder = root / "csv_inc"
    folder.mkdir()
    write_corporate_actions(inc, actions, pd.Timestamp("2013-01-01", tz="UTC"))
    runs = []
    _write_csv(folder, raw, nights[0] - pd.Timedelta(days=1))
    ingest_csv_folder(inc, folder, now=avail(nights[0]) - pd.Timedelta(days=1))
    runs.append(compute_factors(inc))
    for day in nights:
        _write_csv(folder, raw if day <= revise_at else restate(raw), day)
        ingest_csv_folder(inc, folder, now=avail(day))
        if day == revise_at:
            _write_csv(folder, restate(raw), day)
            ingest_csv_folder(inc, folder, now=t_rev)
        runs.append(compute_factors(inc))
    # all at once: the same versions, known at the same times
    full = load_settings(root / "full")
    folder = root / "csv_full"
    folder.mkdir()
    write_corporate_actions(full, actions, pd.Timestamp("2013-01-01", tz="UTC"))
    _write_csv(folder, raw, nights[-1])
    ingest_csv_folder(full, folder, now=avail(nights[-1]))
    _write_csv(folder, restate(raw), nights[-1])
    ingest_csv_folder(full, folder, now=t_rev)
    full_run = compute_factors(full)
    return {"inc": inc, "full": full, "runs": runs, "full_run": full_run, "t_rev": t_rev, "nights": nights}


def _as_known(settings, view: str, when) -> pd.DataFrame:
    frame = pd.read_parquet(settings.gold / view)
    entity = "market" if "market" in frame.columns else "symbol"
    frame = frame[frame["known_timestamp"] <= when]
    frame = frame.sort_values(["event_timestamp", "known_timestamp"], kind="stable")
    latest = frame.drop_duplicates([entity, "event_timestamp"], keep="last")
    return latest.drop(columns=["created_timestamp"]).set_index([entity, "event_timestamp"]).sort_index()


def test_a_night_computes_only_the_new_session(homes):
    nights = homes["runs"][1:]
    plain = [r for i, r in enumerate(nights) if i != 15]  # the night of the restatement recomputes more
    for r in plain:
        assert r["views"]["ta_momentum"]["rows"] == 3, (nights.index(r), r["views"])   # one row per symbol
        assert r["views"]["bars_daily"]["rows"] == 3
    assert homes["runs"][0]["views"]["bars_daily"]["rows"] > 500  # the first build: the whole history


@pytest.mark.parametrize("when", ["before_restatement", "now"])
def test_incremental_equals_full(homes, when):
    from etl.factors import registry

    k = homes["t_rev"] - pd.Timedelta(seconds=1) if when == "before_restatement" else pd.Timestamp("2100-01-01", tz="UTC")
    checked = 0
    for view in registry.views():
        a, b = _as_known(homes["inc"], view, k), _as_known(homes["full"], view, k)
        assert a.index.equals(b.index), view
        kdiff = a["known_timestamp"] != b["known_timestamp"]
        assert not kdiff.any(), (view, pd.concat([a["known_timestamp"], b["known_timestamp"]], axis=1)[kdiff].head(4).to_string())
        for col in a.columns.drop("known_timestamp"):
            x, y = a[col], b[col]
            if x.dtype.kind == "f":
                xv, yv = x.to_numpy(float), y.to_numpy(float)
                same = (xv == yv) | (np.isnan(xv) & np.isnan(yv))
                # recursive outputs (EMA and Wilder types, adaptive ones) computed from their warm-up
                # window instead of the whole history: within 1e-6 of the value or of the output's
                # scale, the grid's convergence rule (tests/test_technical_grid.py, docs/factors.md)
                d = np.abs(xv - yv)
                scale = np.nanmax(np.abs(yv)) if np.isfinite(yv).any() else 0.0
                close = same | (d <= 1e-6 * np.maximum(np.abs(xv), np.abs(yv))) | (d <= 1e-6 * scale)
                assert close.all(), (view, col, a.index[~close][:3].tolist(), xv[~close][:3], yv[~close][:3])
            else:
                assert (x.astype(str) == y.astype(str)).all(), (view, col)
            checked += len(a)
    assert checked > 100_000
