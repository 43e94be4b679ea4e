"""The pure rule of corporate actions: which version of an action is in force, and the
cumulative factors they imply (one price scale for every family).

Storage (``etl.storage.actions``) keeps the versions; the factor builder hands a family the
versions known at the step it computes; this module turns them into factor rows. No I/O.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core import clock

FACTOR_COLUMNS = ["symbol", "factor_date", "ex_date", "price_factor", "split_factor", "reference_price", "event_timestamp"]


def priority_rank(sources: pd.Series, priority: tuple[str, ...]) -> np.ndarray:
    """Each source's place (0 first): the order of ``priority``; a source ``family:detail``
    (``csv:prices``) not listed itself takes its family's place; the rest after, by name (the
    same order as the canonical bars', ``etl.storage.canonical.source_order``)."""
    place = {s: i for i, s in enumerate(priority)}
    names = sorted(set(sources.astype(str)), key=lambda n: (place.get(n, place.get(n.split(":", 1)[0], len(priority))), n))
    order = {s: i for i, s in enumerate(names)}
    return sources.astype(str).map(order).to_numpy(int)


def resolve(actions: pd.DataFrame | None, priority: tuple[str, ...] = (), known_before=None) -> pd.DataFrame | None:
    """One version per ``(symbol, ex_date)``: the first source in ``priority`` (or the
    ``rank`` column the builder attaches), its newest version known before ``known_before``
    (all versions if None). Actions that no longer split or pay anything are dropped.
    (numpy throughout: the builder calls it at every step of every symbol)"""
    if actions is None or len(actions) == 0:
        return None
    a = actions
    if known_before is not None:
        a = a[clock.epoch_us(a["known_timestamp"]) < clock.instant_us(pd.Timestamp(known_before), "known before")]
    if a.empty:
        return None
    rank = a["rank"].to_numpy(int) if "rank" in a else priority_rank(a["source"], priority)
    sym = pd.factorize(a["symbol"].to_numpy(), sort=True)[0]
    ex = a["ex_date"].to_numpy().astype("datetime64[us]").astype(np.int64)
    order = np.lexsort((clock.epoch_us(a["created_timestamp"]), clock.epoch_us(a["known_timestamp"]), -rank, ex, sym))
    key_sym, key_ex = sym[order], ex[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (key_sym[1:] != key_sym[:-1]) | (key_ex[1:] != key_ex[:-1])
    pick = order[last]
    f = a["dividend_factor"].to_numpy(float)[pick]
    live = (a["split_ratio"].to_numpy(float)[pick] != 1.0) | (a["cash_dividend"].to_numpy(float)[pick] > 0) | (~np.isnan(f) & (f != 1.0))
    return a.iloc[pick[live]].reset_index(drop=True)


def factor_rows(actions: pd.DataFrame | None, bars: pd.DataFrame | None = None, calendar: str = "XNYS") -> pd.DataFrame | None:
    """Resolved actions (:func:`resolve`, sorted by symbol and ex-date) as cumulative factor
    rows, the form every price scale is computed from
    (:func:`etl.factors.core.cumulative_factors`): ``factor_date`` (the session before the
    ex-date), ``split_factor`` and ``price_factor`` (what raw prices up to that date are
    multiplied by), ``reference_price``, ``event_timestamp`` (the ex-date's open). After the
    last row both factors are 1.

    A cash dividend's factor is ``1 - cash / close`` with the raw close of the last bar of
    ``bars`` (the symbol's) before the ex-date; one whose ex-date precedes every bar does not
    matter to them (factor 1)."""
    if actions is None or len(actions) == 0:
        return None
    symbols = actions["symbol"].astype(str).to_numpy()
    ex = actions["ex_date"].to_numpy().astype("datetime64[us]")
    order = np.lexsort((ex.astype(np.int64), symbols))
    symbols, ex = symbols[order], ex[order]
    ratio = actions["split_ratio"].to_numpy(float)[order]
    dfac = actions["dividend_factor"].to_numpy(float)[order]
    ref = actions["reference_price"].to_numpy(float)[order].copy()
    cash = actions["cash_dividend"].to_numpy(float)[order]
    need = np.isnan(ref) & (cash > 0) & np.isnan(dfac)
    if need.any() and bars is not None and len(bars):
        bsym = bars["symbol"].astype(str).to_numpy() if "symbol" in bars else None
        for symbol in np.unique(symbols[need]):
            b = slice(None) if bsym is None else bsym == symbol
            sess = bars["session"].to_numpy().astype("datetime64[us]")[b]
            close = bars["close"].to_numpy(float)[b]
            o = np.argsort(sess, kind="stable")
            sess, close = sess[o], close[o]
            mine = need & (symbols == symbol)
            i = np.searchsorted(sess, ex[mine], side="left") - 1
            ref[mine] = np.where(i >= 0, close[np.clip(i, 0, None)], np.nan) if len(close) else np.nan
    computed = np.where(cash > 0, 1.0 - cash / np.where(np.isnan(ref), np.inf, ref), 1.0)
    computed = np.where(np.isfinite(computed) & (computed > 0) & (computed < 1), computed, 1.0)
    dfac = np.where(np.isnan(dfac), computed, dfac)
    # cumulative per symbol from its last action back: prices up to each ex-date's eve
    split_cum = np.empty(len(ratio))
    price_cum = np.empty(len(ratio))
    bounds = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        split_cum[lo:hi] = np.cumprod((1.0 / ratio[lo:hi])[::-1])[::-1]
        price_cum[lo:hi] = np.cumprod(dfac[lo:hi][::-1])[::-1]
    if "event_timestamp" in actions:
        event = pd.DatetimeIndex(pd.to_datetime(actions["event_timestamp"], utc=True)).take(order)
    else:
        event = clock.session_opens(pd.DatetimeIndex(ex), calendar)
    frame = pd.DataFrame({"symbol": symbols, "factor_date": clock.previous_session(pd.DatetimeIndex(ex), calendar).astype("datetime64[us]"),
                          "ex_date": ex, "price_factor": price_cum, "split_factor": split_cum, "reference_price": ref,
                          "event_timestamp": event.astype("datetime64[us, UTC]")})
    return frame[FACTOR_COLUMNS]


