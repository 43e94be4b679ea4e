"""One underlying's chains, contract by contract: the price used, the strike scale after a
split, stale (copied) chains, and every contract's implied volatility and model delta."""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core.errors import FactorInputError
from etl.factors.options.carry import _asof, _events, _normal_rates, _prepare_bars, _utc_naive, dividend_yield
from etl.factors.options.pricing import implied_vol, model_delta

SPLIT_MIN_RATIO = 1.2        # smaller split factors (GOOG's 0.997) do not move strikes
SPLIT_LIFE_DAYS = 1100       # a listed contract expires within ~3 years: older splits cannot leave twins


def _old_scale_rows(chain: pd.DataFrame, splits: pd.DataFrame) -> np.ndarray:
    """Rows still in a pre-split strike scale. For a split of ratio R with ex-date e on
    or before the chain date, a contract that could have been listed before e
    (expiry within SPLIT_LIFE_DAYS after e) is in the old scale when the same date,
    expiry and right also list its adjusted twin at K / R (to the cent) and K is
    farther from the spot than K / R (so a genuine new strike like 70 beside a
    genuine 10 is kept)."""
    drop = np.zeros(len(chain), bool)
    if splits.empty or chain.empty:
        return drop
    date, expiry, right = chain["date"].to_numpy(), chain["expiry"].to_numpy(), chain["right"].to_numpy()
    strike, spot = chain["strike"].to_numpy(float), chain["spot"].to_numpy(float)
    cents = np.round(strike * 100).astype(np.int64)
    have = set(zip(date, expiry, right, cents, strict=True))
    life = np.timedelta64(SPLIT_LIFE_DAYS, "D")
    for ev in splits.itertuples():
        e = np.datetime64(pd.Timestamp(ev.ex_date), "us")
        R = float(ev.split_ratio)
        applies = (date >= e) & (expiry >= e) & (expiry <= e + life)
        if not applies.any():
            continue
        j = np.flatnonzero(applies)
        twin = np.round(strike[j] / R * 100).astype(np.int64)
        found = np.array([(d, x, r, t) in have for d, x, r, t in zip(date[j], expiry[j], right[j], twin, strict=True)], bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            farther = np.abs(np.log(strike[j] / spot[j])) > np.abs(np.log(strike[j] / R / spot[j]))
        drop[j] |= found & (twin != cents[j]) & farther
    return drop


# ------------------------------------------------------------------ per contract


_CHAIN_FIELDS = ["expiry", "strike", "right", "open", "high", "low", "close", "bid", "ask", "volume", "open_interest"]


def _stale_chains(q: pd.DataFrame, dates: pd.DatetimeIndex) -> np.ndarray:
    """True for a chain whose every contract row (prices, volume, open interest)
    repeats the previous chain date's: a vendor copy, not that day's market
    (Lean's GOOG 20151231.csv repeats 20151230.csv). Unknowable for the first date."""
    cols = [c for c in _CHAIN_FIELDS if c in q]
    rows = pd.util.hash_pandas_object(q[cols], index=False).to_numpy()
    sig = pd.Series(rows).groupby(q["date"].to_numpy()).agg(lambda h: (tuple(sorted(h)))).reindex(dates)
    stale = np.zeros(len(dates), bool)
    for i in range(1, len(dates)):
        stale[i] = sig.iloc[i] == sig.iloc[i - 1]
    return stale


def chain_ivs(quotes: pd.DataFrame, bars: pd.DataFrame | None, rates: pd.DataFrame | None,
              factor_rows: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-contract prices, implied vols and model deltas, and the per-date inputs.

    Returns ``(contracts, days)``. ``contracts``: the quote rows with ``days``
    (calendar days to expiry), ``T``, ``spot``, ``rate``, ``q``, ``price``,
    ``price_source`` ("mid", "close" or ""), ``in_scale``, ``iv``, ``delta``,
    ``vendor_iv`` (the vendor's column, NaN below 1e-4: its floor of 1e-7
    means "not solved"). ``days``: one row per chain date with ``spot``,
    ``spot_from_chain``, ``rate``, ``q`` and ``known`` (UTC, naive), the
    latest availability of every input the date uses."""
    need = {"date", "expiry", "strike", "right", "close", "event_timestamp"}
    missing = need - set(quotes.columns)
    if missing:
        raise FactorInputError(f"options: option quotes miss columns {sorted(missing)}")
    if "underlying" in quotes and quotes["underlying"].nunique() > 1:
        raise FactorInputError(f"options: compute one underlying at a time, got {sorted(quotes['underlying'].unique())}")
    q = quotes.copy()
    q["date"] = pd.to_datetime(q["date"]).dt.normalize()
    q["expiry"] = pd.to_datetime(q["expiry"]).dt.normalize()
    q["right"] = q["right"].astype(str).str.upper()
    q["_known"] = _utc_naive(q["event_timestamp"])
    for c in ("bid", "ask", "close", "volume", "open_interest", "implied_volatility", "underlying_close"):
        q[c] = pd.to_numeric(q[c], errors="coerce").astype(float) if c in q else np.nan
    q = q.sort_values(["date", "expiry", "strike", "right", "_known"], kind="stable")
    q = q.drop_duplicates(["date", "expiry", "strike", "right"], keep="first").reset_index(drop=True)

    dates = pd.DatetimeIndex(sorted(q["date"].unique()))
    chain_known = q.groupby("date")["_known"].max().reindex(dates).to_numpy()
    stale_day = _stale_chains(q, dates)

    b = _prepare_bars(bars)
    bar_pos = pd.Index(b["session"]).get_indexer(dates)
    has_bar = bar_pos >= 0
    under = q.groupby("date")["underlying_close"].first().reindex(dates).to_numpy(float)
    spot = np.where(has_bar, b["close"].to_numpy(float)[np.maximum(bar_pos, 0)] if len(b) else np.nan, under)
    bar_known = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    if len(b):
        cum_known = np.maximum.accumulate(b["known"].to_numpy().astype("datetime64[us]"))
        upto = np.searchsorted(b["session"].to_numpy(), dates.values, side="right") - 1
        bar_known = np.where(upto >= 0, cum_known[np.maximum(upto, 0)], np.datetime64("NaT"))

    r = _normal_rates(rates)
    rate, rate_known = _asof(dates, r, "date", "rate", "known")
    dy, div_known = dividend_yield(dates, factor_rows)

    ev = _events(factor_rows)
    splits = ev[np.abs(np.log(ev["split_ratio"].astype(float))) > np.log(SPLIT_MIN_RATIO)] if len(ev) else ev
    split_known = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    for ev_row in splits.itertuples():
        used = dates.values >= np.datetime64(ev_row.ex_date)
        split_known = np.where(used, np.fmax(split_known, np.datetime64(ev_row.known, "us")), split_known)

    known = chain_known.astype("datetime64[us]")
    for extra in (bar_known, rate_known, div_known, split_known):
        known = np.fmax(known, extra)
    days = pd.DataFrame({"date": dates, "spot": spot, "spot_from_chain": ~has_bar, "rate": rate, "q": dy,
                         "stale": stale_day, "known": known})

    d_idx = pd.Index(dates).get_indexer(q["date"])
    q["spot"] = spot[d_idx]
    q["rate"] = rate[d_idx]
    q["q"] = dy[d_idx]
    q["days"] = (q["expiry"] - q["date"]).dt.days.astype(float)
    q["T"] = q["days"] / 365.0
    bid, ask, close = q["bid"].to_numpy(), q["ask"].to_numpy(), q["close"].to_numpy()
    mid_ok = (bid > 0) & (ask > 0) & (ask >= bid)
    trade_ok = ~mid_ok & (close > 0)
    q["price"] = np.where(mid_ok, 0.5 * (bid + ask), np.where(trade_ok, close, np.nan))
    q["price_source"] = np.where(mid_ok, "mid", np.where(trade_ok, "close", ""))
    q["in_scale"] = ~_old_scale_rows(q, splits) & (q["T"] > 0)
    q["stale"] = stale_day[d_idx]
    is_call = (q["right"] == "C").to_numpy()
    solve = q["in_scale"].to_numpy() & ~q["stale"].to_numpy() & np.isfinite(q["price"].to_numpy())
    iv = np.full(len(q), np.nan)
    j = np.flatnonzero(solve)
    if j.size:
        iv[j] = implied_vol(q["price"].to_numpy()[j], q["spot"].to_numpy()[j], q["strike"].to_numpy(float)[j],
                            q["T"].to_numpy()[j], q["rate"].to_numpy()[j], q["q"].to_numpy()[j], is_call[j])
    q["iv"] = iv
    delta = np.full(len(q), np.nan)
    j = np.flatnonzero(np.isfinite(iv))
    if j.size:
        delta[j] = model_delta(q["spot"].to_numpy()[j], q["strike"].to_numpy(float)[j], q["T"].to_numpy()[j],
                               q["rate"].to_numpy()[j], q["q"].to_numpy()[j], iv[j], is_call[j])
    q["delta"] = delta
    vend = q["implied_volatility"].to_numpy(float)
    q["vendor_iv"] = np.where(vend >= 1e-4, vend, np.nan)
    return q.drop(columns=["_known"]), days
