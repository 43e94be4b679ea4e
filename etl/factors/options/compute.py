"""The options family's compute: one underlying's chains, bars, rates and corporate actions
in, one row per chain date out (pure: frames in, frames out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR
from etl.factors.core import cumulative_factors
from etl.factors.options.carry import _prepare_bars
from etl.factors.options.chains import chain_ivs
from etl.factors.options.family import MIN_CONTRACTS, OUTPUTS, output_columns
from etl.factors.options.pricing import greeks
from etl.factors.options.realised import rv_close_to_close, rv_parkinson, rv_yang_zhang
from etl.factors.options.surface import (
    RANK_MIN_PERIODS,
    RANK_WINDOW,
    constant_maturity,
    iv_rank_percentile,
    term_structure,
)


def _empty_output() -> pd.DataFrame:
    frame = pd.DataFrame({"symbol": pd.Series(dtype=object),
                          "event_timestamp": pd.Series(dtype="datetime64[us, UTC]"),
                          "known_timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    for o in OUTPUTS:
        frame[o.name] = pd.Series(dtype=o.dtype)
    return frame


def compute_options(quotes: pd.DataFrame, bars: pd.DataFrame, rates: pd.DataFrame, factor_rows: pd.DataFrame | None = None,
                    *, rank_window: int = RANK_WINDOW, rank_min_periods: int = RANK_MIN_PERIODS,
                    min_contracts: int = MIN_CONTRACTS, calendar: str = DEFAULT_CALENDAR) -> pd.DataFrame:
    """Every options output for ONE underlying, one row per chain date.

    ``quotes``: silver ``option_quotes`` rows; ``bars``: the underlying's daily
    bars (``session``, ``open``..``close``, ``event_timestamp``; may be empty);
    ``rates``: ``date``, ``rate`` (decimal) and optionally ``event_timestamp``;
    ``factor_rows``: the underlying's ``corporate_actions`` rows or None.
    Every definition: docs/factors.md (Options)."""
    if quotes is None or len(quotes) == 0:
        return _empty_output()
    contracts, days = chain_ivs(quotes, bars, rates, factor_rows)
    dates = pd.DatetimeIndex(days["date"])
    n = len(dates)
    symbol = str(quotes["underlying"].iloc[0]) if "underlying" in quotes else ""

    # per-date counts and flow
    usable = np.isfinite(contracts["iv"].to_numpy())
    d_idx = pd.Index(dates).get_indexer(contracts["date"])
    n_contracts = np.bincount(d_idx[usable], minlength=n).astype(np.int64)
    closes = np.bincount(d_idx[usable & (contracts["price_source"] == "close").to_numpy()], minlength=n)
    close_share = np.where(n_contracts > 0, closes / np.maximum(n_contracts, 1), np.nan)
    live = contracts[contracts["in_scale"] & ~contracts["stale"]]
    flow = live.assign(put=live["right"] == "P").groupby(["date", "put"])[["volume", "open_interest"]].sum(min_count=1)

    def ratio(col: str) -> np.ndarray:
        if flow.empty:
            return np.full(n, np.nan)
        t = flow[col].unstack("put").reindex(dates)
        puts = t[True].to_numpy(float) if True in t else np.full(n, np.nan)
        calls = t[False].to_numpy(float) if False in t else np.full(n, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(calls > 0, puts / calls, np.nan)

    # term structure
    ts = term_structure(contracts, "iv")
    vts = term_structure(contracts, "vendor_iv")
    out = {name: np.full(n, np.nan) for name in output_columns()}
    thin_side = np.ones(n, bool)
    for i, d in enumerate(dates):
        g = ts[ts["date"] == d]
        if len(g):
            dd = g["days"].to_numpy()
            out["iv_atm_30d"][i] = constant_maturity(dd, g["atm_iv"].to_numpy(), 30)
            out["iv_atm_60d"][i] = constant_maturity(dd, g["atm_iv"].to_numpy(), 60)
            p25 = constant_maturity(dd, g["put25_iv"].to_numpy(), 30)
            c25 = constant_maturity(dd, g["call25_iv"].to_numpy(), 30)
            out["iv_skew_25d"][i] = p25 - c25
            ok = np.isfinite(g["atm_iv"].to_numpy())
            thin_side[i] = not ((dd[ok] <= 30).any() and (dd[ok] >= 30).any())
        vg = vts[vts["date"] == d]
        if len(vg):
            out["iv_vendor_atm_30d"][i] = constant_maturity(vg["days"].to_numpy(), vg["atm_iv"].to_numpy(), 30)
    out["iv_term_slope"] = out["iv_atm_60d"] - out["iv_atm_30d"]

    # greeks of the synthetic 30-day ATM call
    T30 = 30.0 / 365.0
    S, r, q = days["spot"].to_numpy(float), days["rate"].to_numpy(float), days["q"].to_numpy(float)
    sig = out["iv_atm_30d"]
    ok = np.isfinite(sig) & np.isfinite(S) & np.isfinite(r)
    if ok.any():
        fwd = S[ok] * np.exp((r[ok] - q[ok]) * T30)
        gk = greeks(S[ok], fwd, T30, r[ok], q[ok], sig[ok], True)
        for name in ("delta", "gamma", "vega", "theta"):
            out[f"atm_call_{name}_30d"][ok] = gk[name]

    # realised volatility from the adjusted bars, read at each chain date
    b = _prepare_bars(bars)
    if len(b):
        split, price = cumulative_factors(b["session"], factor_rows)
        adj = {c: b[c].to_numpy(float) * split * price for c in ("open", "high", "low", "close")}
        rv = {"rv_cc_21": rv_close_to_close(adj["close"]), "rv_parkinson_21": rv_parkinson(adj["high"], adj["low"]),
              "rv_yz_21": rv_yang_zhang(adj["open"], adj["high"], adj["low"], adj["close"])}
        pos = pd.Index(b["session"]).get_indexer(dates)
        for name, values in rv.items():
            out[name] = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
    out["iv_rv_spread"] = out["iv_atm_30d"] - out["rv_cc_21"]

    rank, pct = iv_rank_percentile(dates, out["iv_atm_30d"], window=rank_window, min_periods=rank_min_periods, calendar=calendar)
    out["iv_rank_252"], out["iv_pct_252"] = rank, pct
    out["pc_volume_ratio"] = ratio("volume")
    out["pc_oi_ratio"] = ratio("open_interest")

    known = pd.Series(days["known"].to_numpy()).cummax()          # IV rank uses every earlier row
    event = clock.from_epoch_us(known.to_numpy().astype("datetime64[us]").view(np.int64))
    frame = pd.DataFrame({"symbol": [symbol] * n, "event_timestamp": event, "known_timestamp": event})
    for o in OUTPUTS:
        if o.name == "n_contracts":
            frame[o.name] = n_contracts
        elif o.name == "chain_thin":
            frame[o.name] = (n_contracts < min_contracts) | thin_side | days["stale"].to_numpy(bool)
        elif o.name == "chain_stale":
            frame[o.name] = days["stale"].to_numpy(bool)
        elif o.name == "spot_from_chain":
            frame[o.name] = days["spot_from_chain"].to_numpy(bool)
        elif o.name == "close_price_share":
            frame[o.name] = close_share.astype(float)
        else:
            frame[o.name] = out[o.name].astype(float)
    return frame
