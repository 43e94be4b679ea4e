"""Universes through time: the symbols a backtest, a replay or the live loop may trade at each
decision time, from what was known then.

**"listed"** (the default). A symbol is a member at decision time ``t`` when a daily bar of it is
known at ``t`` (its first version's known time ``<= t``; an archive bar is known at its
availability time, the session's close + the bar delay) and its newest bar known at ``t`` is
within the daily views' TTL (:data:`TTL`, 10 days) of the *market clock* ``M(t)``: the newest
bar of any symbol known at ``t``. Before its first bar a symbol is not listed yet; once its bars
stop for longer than the TTL (delisted, or halted that long) it is not listed any more, until a
new bar arrives. Written as intervals: each bar ``b`` (event ``e``, known ``k``) keeps its symbol
listed on ``[k, E(e + TTL))``, where ``E(x)`` is the first time the market clock passes ``x``;
a symbol's membership is the union of its bars' intervals (its *listing spells*).

On a warehouse that is up to date, ``M(t) = t`` at every decision time (the decision session's
own bars are known then), so the rule is the point-in-time join's: a symbol is listed exactly when
``bars_daily`` has a value for it at ``t`` within the TTL. The market clock matters when the whole
warehouse is late (a nightly that stopped): every symbol then looks old against the wall clock,
but none has *stopped trading*; the universe stays as it was at the last data (and the live loop's
staleness rule blocks the orders) instead of emptying and liquidating the book.

**A named universe** (``"us_equity_coarse"``, :meth:`sdk.client.Alpha.universe`): the members of
the newest universe date whose membership is known at ``t`` (``event_timestamp <= t``), among the
listed symbols (a member without bars cannot be traded).

**An explicit symbol list** is intersected with the membership: a user's symbols are only traded
while they are members.

The listing spells are computed from the silver daily bars, reading three columns (symbol,
event and known time) one bucket at a time (a bucket holds every version of its symbols' bars,
whatever the source), so memory is bounded by a bucket,
not by the universe or the history; the result (a few spells per symbol and one market-clock
step per session) is cached per process until a bar file changes. The rules are pure functions on
literal frames (:func:`bar_spells`, :func:`market_clock`, :class:`Listing`, :func:`named_members`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import AlphaError, EmptyInputError, NotIngestedError, UnknownSymbolError
from etl.factors.registry import DAILY_TTL

#: the default universe: every symbol listed (trading) at the decision time
LISTED = "listed"
#: the daily views' TTL: a symbol whose newest bar is older than this (against the market clock) is not listed
TTL = pd.Timedelta(DAILY_TTL)
#: an open end: still listed
OPEN_END = np.iinfo(np.int64).max
#: days of universe dates read before the first decision time (the newest date known at it)
NAMED_LOOKBACK_DAYS = 31


class UniverseError(AlphaError):
    """A universe cannot be resolved as asked (an unknown name, no member in the range)."""


# ------------------------------------------------------------------ pure: listing spells
def _merge(symbols, start: np.ndarray, end: np.ndarray, first: np.ndarray, last: np.ndarray) -> pd.DataFrame:
    """Union of intervals per symbol: rows ``[start, end]`` merged when one starts at or before the
    running end of those before it. Returns ``symbol, start_us, end_us, first_event_us,
    last_event_us`` (first/last: the min/max of ``first``/``last`` over the merged rows)."""
    cols = ["symbol", "start_us", "end_us", "first_event_us", "last_event_us"]
    if len(start) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "symbol" else "int64") for c in cols})
    codes, names = pd.factorize(symbols, sort=True)   # a categorical (dictionary-read) column: from its codes
    names = np.asarray(names, dtype=object)
    order = np.lexsort((start, codes))
    codes, start, end, first, last = codes[order], start[order], end[order], first[order], last[order]
    reach = pd.Series(end).groupby(codes).cummax().to_numpy()
    new = np.ones(len(start), dtype=bool)
    new[1:] = (codes[1:] != codes[:-1]) | (start[1:] > reach[:-1])
    heads = np.flatnonzero(new)
    return pd.DataFrame({
        "symbol": names[codes[heads]].astype(str).astype(object),
        "start_us": start[heads],
        "end_us": np.maximum.reduceat(end, heads),
        "first_event_us": np.minimum.reduceat(first, heads),
        "last_event_us": np.maximum.reduceat(last, heads),
    }, columns=cols)


def _bar_times(bars: pd.DataFrame) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    missing = [c for c in ("symbol", "event_timestamp", "known_timestamp") if c not in bars.columns]
    if missing:
        from etl.core.errors import MissingColumnError

        raise MissingColumnError(f"the bars frame lacks column(s) {missing}; it needs symbol, event_timestamp and known_timestamp")
    e = clock.epoch_us(bars["event_timestamp"])
    k = np.maximum(clock.epoch_us(bars["known_timestamp"]), e)  # a bar is never known before its availability time
    return bars["symbol"], e, k


def bar_spells(bars: pd.DataFrame, ttl: pd.Timedelta = TTL) -> pd.DataFrame:
    """The raw listing spells of ``bars`` (one row per bar version: ``symbol``, ``event_timestamp``
    the bar's availability time, ``known_timestamp`` when that version was known; a later version
    adds nothing to its bar's first): per symbol the union of ``[known, event + ttl]``, one row per
    spell (``start_us``, ``end_us`` = the newest
    event + ttl, ``first_event_us``, ``last_event_us``; UTC microseconds). "Raw": the end is
    still in event time; :class:`Listing` maps it through the market clock."""
    sym, e, k = _bar_times(bars)
    return _merge(sym, k, e + int(pd.Timedelta(ttl).value // 1000), e, e)


def market_clock(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The market clock of ``bars`` as steps: sorted known times ``K`` and ``M[j]``, the newest
    event of any bar known at ``K[j]`` (nondecreasing). ``M(t) = M[j]`` for the last ``K[j] <= t``."""
    _, e, k = _bar_times(bars)
    return _clock_steps(k, e)


def _clock_steps(known: np.ndarray, newest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(known) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(known, kind="stable")
    known, newest = known[order], newest[order]
    heads = np.flatnonzero(np.r_[True, known[1:] != known[:-1]])
    return known[heads], np.maximum.accumulate(np.maximum.reduceat(newest, heads))


@dataclass
class Listing:
    """The listing spells of a warehouse (:func:`bar_spells`, per bucket) and its market clock
    (:func:`market_clock`). ``spells`` maps them to decision-time intervals ``[start, end)``."""

    raw: pd.DataFrame                 # bar_spells rows (ends in event time + ttl)
    clock_known_us: np.ndarray        # market clock steps: known times ...
    clock_newest_us: np.ndarray       # ... and the newest event known at each
    ttl: pd.Timedelta = TTL
    key: tuple = field(default=(), repr=False)

    @classmethod
    def from_bars(cls, bars: pd.DataFrame, ttl: pd.Timedelta = TTL) -> Listing:
        """The listing of a literal frame of bars (the pure core, as the tests use it)."""
        return cls(bar_spells(bars, ttl), *market_clock(bars), ttl=pd.Timedelta(ttl))

    def passes(self, x_us: np.ndarray) -> np.ndarray:
        """``E(x)``: the first time the market clock passes ``x`` (the known time of the first
        step whose newest event is after ``x``), :data:`OPEN_END` if it never does."""
        j = np.searchsorted(self.clock_newest_us, x_us, side="right")
        out = np.full(len(j), OPEN_END, dtype=np.int64)
        inside = j < len(self.clock_known_us)
        out[inside] = self.clock_known_us[j[inside]]
        return out

    def clock_at(self, t_us: int) -> int | None:
        """``M(t)``: the newest bar event known at ``t`` (None before any bar)."""
        j = int(np.searchsorted(self.clock_known_us, t_us, side="right")) - 1
        return int(self.clock_newest_us[j]) if j >= 0 else None

    @cached_property
    def spells(self) -> pd.DataFrame:
        """Per symbol, the decision-time intervals ``[start_us, end_us)`` it is listed on (merged)."""
        raw = self.raw
        end = self.passes(raw["end_us"].to_numpy(np.int64))
        out = _merge(raw["symbol"].to_numpy(dtype=object), raw["start_us"].to_numpy(np.int64), end,
                     raw["first_event_us"].to_numpy(np.int64), raw["last_event_us"].to_numpy(np.int64))
        return out[out["start_us"] < out["end_us"]].reset_index(drop=True)

    @property
    def symbols(self) -> list[str]:
        return sorted(set(self.raw["symbol"]))


def listed_members(listing: Listing, decision_times, symbols: Sequence[str]) -> pd.DataFrame:
    """True where ``symbol`` (columns, in the order given) is listed at each decision time (rows,
    tz-aware, as given): some spell has ``start <= t < end``."""
    times = _utc_index(decision_times)
    t_us = clock.epoch_us(times)
    order = np.argsort(t_us, kind="stable")
    sorted_us = t_us[order]
    out = np.zeros((len(times), len(symbols)), dtype=bool)
    col = {s: i for i, s in enumerate(symbols)}
    spells = listing.spells
    spells = spells[spells["symbol"].isin(col)]
    lo = np.searchsorted(sorted_us, spells["start_us"].to_numpy(np.int64), side="left")
    hi = np.searchsorted(sorted_us, spells["end_us"].to_numpy(np.int64), side="left")
    for s, a, b in zip(spells["symbol"], lo, hi, strict=True):
        if b > a:
            out[order[a:b], col[s]] = True
    return pd.DataFrame(out, index=times.rename("decision_time"), columns=pd.Index(list(symbols), name="symbol"))


def not_listed_reasons(listing: Listing, t, symbols: Iterable[str]) -> dict[str, str]:
    """Why each of ``symbols`` is not listed at ``t`` (only those that are not)."""
    t = clock.to_utc(t, "decision_time")
    t_us = clock.instant_us(t, "decision_time")
    spells = listing.spells
    by_symbol = {s: g for s, g in spells.groupby("symbol", sort=False)}
    day = lambda us: clock.from_epoch_us(np.array([us]))[0].strftime("%Y-%m-%d")  # noqa: E731
    out: dict[str, str] = {}
    for sym in symbols:
        g = by_symbol.get(sym)
        if g is None:
            out[sym] = "no daily bars in this warehouse"
            continue
        if ((g["start_us"] <= t_us) & (t_us < g["end_us"])).any():
            continue
        known = g[g["start_us"] <= t_us]
        if known.empty:
            first = g.iloc[0]
            out[sym] = (f"not listed yet: its first bar ({day(first.first_event_us)}) is known from "
                        f"{clock.from_epoch_us(np.array([first.start_us]))[0]:%Y-%m-%d %H:%M}Z")
            continue
        newest = listing.clock_at(t_us)
        out[sym] = (f"last bar {day(int(known['last_event_us'].max()))}, more than the {listing.ttl.days}-day TTL before the "
                    f"newest bar known then ({day(newest) if newest is not None else 'none'}): delisted, or halted that long")
    return out


# ------------------------------------------------------------------ pure: named universes
def named_members(rows: pd.DataFrame, decision_times, symbols: Sequence[str]) -> tuple[pd.DataFrame, list]:
    """Members of a named universe at each decision time: the rows (``date``, ``symbol``,
    ``event_timestamp`` when that membership became known) of the newest ``date`` with a row
    known at ``t``, known at ``t`` themselves. Returns the bool frame (rows: decision times,
    columns: ``symbols``) and, per decision time, the universe date used (None: none known)."""
    times = _utc_index(decision_times)
    t_us = clock.epoch_us(times)
    out = np.zeros((len(times), len(symbols)), dtype=bool)
    used: list = [None] * len(times)
    if len(rows):
        col = {s: i for i, s in enumerate(symbols)}
        rows = rows.sort_values("date", kind="stable")
        dates = pd.DatetimeIndex(rows["date"]).to_numpy()
        ev = clock.epoch_us(rows["event_timestamp"])
        codes = np.array([col.get(s, -1) for s in rows["symbol"].astype(str)], dtype=np.int64)
        udates, starts = np.unique(dates, return_index=True)
        ends = np.r_[starts[1:], len(dates)]
        known_from = np.minimum.reduceat(ev, starts)
        for i, t in enumerate(t_us):
            hits = np.flatnonzero(known_from <= t)
            if len(hits) == 0:
                continue
            d = hits[-1]
            a, b = starts[d], ends[d]
            c = codes[a:b][(ev[a:b] <= t) & (codes[a:b] >= 0)]
            out[i, c] = True
            used[i] = pd.Timestamp(udates[d])
    frame = pd.DataFrame(out, index=times.rename("decision_time"), columns=pd.Index(list(symbols), name="symbol"))
    return frame, used


# ------------------------------------------------------------------ reading the warehouse
_CACHE: dict[str, Listing] = {}


def _file_key(files: list[Path]) -> tuple:
    out = []
    for p in files:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _bar_versions(files: list[Path]) -> pd.DataFrame:
    """Every bar version of ``files``: ``symbol`` (categorical), ``event_timestamp``,
    ``known_timestamp``. No version is dropped: a revision (or another source's row) of a bar is
    known no earlier than its first version, so it adds nothing to the bar's listing interval nor
    to the market clock; the first version is what counts, whichever source wins the canonical
    choice (:mod:`etl.storage.canonical`: a bar's first canonical version is its first row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, columns=["symbol", "event_timestamp", "known_timestamp"], read_dictionary=["symbol"]) for p in files]
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def read_listing(settings, ttl: pd.Timedelta = TTL) -> Listing:
    """The listing of the warehouse at ``settings`` from its silver daily bars, one bucket at a
    time (module doc); cached per process until a bar file changes."""
    from etl.storage.bars import bar_files

    files = bar_files(settings)
    if not files:
        raise NotIngestedError(f"no daily bars in {settings.home}: the 'listed' universe needs them; "
                               "run `alpha ingest lean` or `alpha ingest csv --path FOLDER` first")
    key = (_file_key(files), pd.Timedelta(ttl))
    cached = _CACHE.get(str(settings.home))
    if cached is not None and cached.key == key:
        return cached
    groups: dict[Path, list[Path]] = {}
    for p in files:
        groups.setdefault(p.parent, []).append(p)
    if any(d.name.startswith("year=") for d in groups):  # the layout before buckets: symbols are not apart
        groups = {Path("all"): files}
    spells, known, newest = [], [], []
    for part in groups.values():
        bars = _bar_versions(part)
        if bars.empty:
            continue
        spells.append(bar_spells(bars, ttl))
        k, m = market_clock(bars)
        known.append(k)
        newest.append(m)
    raw = pd.concat(spells, ignore_index=True) if spells else bar_spells(pd.DataFrame(
        {"symbol": [], "event_timestamp": pd.Series(dtype="datetime64[us, UTC]"), "known_timestamp": pd.Series(dtype="datetime64[us, UTC]")}), ttl)
    k, m = _clock_steps(np.concatenate(known) if known else np.empty(0, np.int64),
                        np.concatenate(newest) if newest else np.empty(0, np.int64))
    listing = Listing(raw, k, m, ttl=pd.Timedelta(ttl), key=key)
    _CACHE[str(settings.home)] = listing
    return listing


# ------------------------------------------------------------------ the public face
@dataclass
class UniverseAt:
    """The universe at one decision time: its members (sorted) and why each symbol asked for
    (or in the warehouse) is left out."""

    time: pd.Timestamp
    universe: str | None
    members: list[str]
    left_out: dict[str, str]

    def line(self) -> str:
        """One info line: ``N symbols not in the universe at t`` (and a few of them)."""
        names = sorted(self.left_out)
        shown = ", ".join(f"{s} ({self.left_out[s]})" for s in names[:3]) + (" ..." if len(names) > 3 else "")
        return (f"{len(names)} symbol(s) not in the universe {self.universe or 'all'} at "
                f"{self.time:%Y-%m-%d %H:%M}Z: {shown}")


def _utc_index(times) -> pd.DatetimeIndex:
    if isinstance(times, (pd.Timestamp, str)) or not isinstance(times, Iterable):
        times = [times]
    values = pd.Series(list(times) if not isinstance(times, (pd.Series, pd.DatetimeIndex)) else times)
    if len(values) == 0:
        return pd.DatetimeIndex([], tz="UTC")
    return pd.DatetimeIndex(clock.require_utc(values.reset_index(drop=True), "decision_time"))


def candidates(client, symbols: Sequence[str] | None) -> list[str]:
    """The symbols a universe is taken from: ``symbols`` (each must be in the warehouse; order
    kept, repeats dropped) or every symbol of the warehouse."""
    known = list(client.symbols())
    if symbols is None:
        return sorted(known)
    if isinstance(symbols, str):
        symbols = [symbols]
    asked = list(dict.fromkeys(str(s) for s in symbols))
    if not asked:
        raise EmptyInputError("no symbols given; pass symbols=None for every symbol of the warehouse")
    have = set(known)
    unknown = [s for s in asked if s not in have]
    if unknown:
        raise UnknownSymbolError(f"unknown symbol(s) {unknown[:20]}; this warehouse ({client.home}) has {len(have)}: "
                                 f"{sorted(have)[:30]}")
    return asked


def _named(client, universe: str, times: pd.DatetimeIndex, symbols: list[str]) -> tuple[pd.DataFrame, list]:
    if len(times) == 0:
        return named_members(pd.DataFrame({"date": [], "symbol": [], "event_timestamp": []}), times, symbols)
    tz = clock.get_calendar(client.settings.calendar).tz
    first = times.min().tz_convert(tz).tz_localize(None).normalize() - pd.Timedelta(days=NAMED_LOOKBACK_DAYS)
    last = times.max().tz_convert(tz).tz_localize(None).normalize()
    rows = client.universe(universe, first, last)
    return named_members(rows[["date", "symbol", "event_timestamp"]], times, symbols)


def members(client, decision_times, *, symbols: Sequence[str] | None = None, universe: str | None = LISTED) -> pd.DataFrame:
    """Membership at each decision time: a bool frame (rows: the decision times as given, tz-aware
    UTC; columns: the candidate symbols, :func:`candidates`). ``universe``: ``"listed"`` (module
    doc), a named universe (its members among the listed symbols), or None (no filter: every
    candidate, the behaviour before universes)."""
    times = _utc_index(decision_times)
    cands = candidates(client, symbols)
    if universe is None:
        return pd.DataFrame(True, index=times.rename("decision_time"), columns=pd.Index(cands, name="symbol"))
    out = listed_members(read_listing(client.settings), times, cands)
    if universe != LISTED:
        named, _ = _named(client, universe, times, cands)
        out &= named
    return out


def universe_at(client, t, *, symbols: Sequence[str] | None = None, universe: str | None = LISTED) -> UniverseAt:
    """The members at one decision time ``t`` and a short reason for every candidate left out
    (e.g. ``UW: last bar 1998-07-16, more than the 10-day TTL before the newest bar known then
    (2021-03-31): delisted, or halted that long``)."""
    t = clock.to_utc(t, "decision_time")
    cands = candidates(client, symbols)
    if universe is None:
        return UniverseAt(t, None, sorted(cands), {})
    listing = read_listing(client.settings)
    listed = listed_members(listing, [t], cands).iloc[0]
    left = not_listed_reasons(listing, t, [s for s in cands if not listed[s]])
    if universe != LISTED:
        named, used = _named(client, universe, pd.DatetimeIndex([t]), cands)
        row = named.iloc[0]
        for s in cands:
            if listed[s] and not row[s]:
                left[s] = (f"not a member of {universe!r} on {used[0]:%Y-%m-%d}, the newest date known then" if used[0] is not None
                           else f"no membership of {universe!r} known in the {NAMED_LOOKBACK_DAYS} days before")
    return UniverseAt(t, universe, sorted(s for s in cands if s not in left), left)


def members_at(client, t, *, symbols: Sequence[str] | None = None, universe: str | None = LISTED) -> list[str]:
    """The members (sorted) at decision time ``t``; :func:`universe_at` says why others are left out."""
    return universe_at(client, t, symbols=symbols, universe=universe).members


def member_entities(client, start, end, *, symbols: Sequence[str] | None = None, universe: str | None = LISTED) -> pd.DataFrame:
    """The entity frame of a backtest or a replay: one row (``symbol``, ``event_timestamp``) per
    member per session in [start, end], at the session's availability time, sorted by time then
    symbol (the order of :meth:`sdk.client.Alpha.entity_frame`)."""
    cands = candidates(client, symbols)
    times = pd.DatetimeIndex(client.entity_frame(cands[:1], start, end)["event_timestamp"])
    m = members(client, times, symbols=cands, universe=universe)
    t_idx, s_idx = np.nonzero(m.to_numpy())
    if len(t_idx) == 0:
        raise UniverseError(f"no symbol of {len(cands)} is a member of the universe {universe!r} between {start} and {end}; "
                            "check the dates against the bars (`alpha features list`), or pass universe=None")
    frame = pd.DataFrame({"symbol": np.asarray(m.columns, dtype=object)[s_idx], "event_timestamp": times[t_idx]})
    return frame.sort_values(["event_timestamp", "symbol"], kind="stable").reset_index(drop=True)
