"""Fundamental factors from SEC EDGAR XBRL facts, one row per session.

Pure: frames in, frames out (one symbol's facts, daily bars and corporate
actions). The point-in-time rule, the concepts and their tags, the TTM rule
and every output are in docs/factors.md (Fundamentals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.core.errors import FactorInputError
from etl.factors.core import cumulative_factors
from etl.factors.spec import Factor, Output

VIEW = "fundamentals_daily"
FAMILY = "fundamentals"
DAY_US = 86_400 * 10**6
USD, USD_PER_SHARE, SHARES = "USD", "USD/shares", "shares"

#: period classes by length in days (end - start + 1): 13/14-week quarters,
#: 26/27-week halves, 39/40-week nine months, 52/53-week years
QUARTER, HALF, NINE, YEAR = (80, 100), (175, 196), (266, 287), (350, 380)
YOY_DAYS = (358, 374)
YOY_TARGET = 364
YTD_LENGTH_SLACK = 7


@dataclass(frozen=True)
class Concept:
    name: str
    tags: tuple[tuple[str, str], ...]   # (taxonomy, tag), first = preferred at a tie
    unit: str
    duration: bool


def _gaap(*tags: str) -> tuple[tuple[str, str], ...]:
    return tuple(("us-gaap", t) for t in tags)


REVENUE = Concept("revenue", _gaap(
    "RevenueFromContractWithCustomerExcludingAssessedTax", "Revenues", "SalesRevenueNet",
    "RevenueFromContractWithCustomerIncludingAssessedTax", "SalesRevenueGoodsNet"), USD, True)
NET_INCOME = Concept("net_income", _gaap("NetIncomeLoss", "ProfitLoss"), USD, True)
GROSS_PROFIT = Concept("gross_profit", _gaap("GrossProfit"), USD, True)
OPERATING_INCOME = Concept("operating_income", _gaap("OperatingIncomeLoss"), USD, True)
EPS_DILUTED = Concept("eps_diluted", _gaap("EarningsPerShareDiluted", "EarningsPerShareBasicAndDiluted"), USD_PER_SHARE, True)
EQUITY = Concept("equity", _gaap("StockholdersEquity", "StockholdersEquityIncludingPortionAttributableToNoncontrollingInterest"), USD, False)
SHARES_OUT = Concept("shares", (("dei", "EntityCommonStockSharesOutstanding"), ("us-gaap", "CommonStockSharesOutstanding")), SHARES, False)
CASH = Concept("cash", _gaap("CashAndCashEquivalentsAtCarryingValue", "Cash"), USD, False)
LT_DEBT = Concept("lt_debt", _gaap("LongTermDebt"), USD, False)
LT_DEBT_NONCURRENT = Concept("lt_debt_noncurrent", _gaap("LongTermDebtNoncurrent"), USD, False)
LT_DEBT_CURRENT = Concept("lt_debt_current", _gaap("LongTermDebtCurrent"), USD, False)
ST_DEBT = Concept("st_debt", _gaap("ShortTermBorrowings", "CommercialPaper", "OtherShortTermBorrowings"), USD, False)
CONCEPTS: tuple[Concept, ...] = (REVENUE, NET_INCOME, GROSS_PROFIT, OPERATING_INCOME, EPS_DILUTED, EQUITY, SHARES_OUT,
                                 CASH, LT_DEBT, LT_DEBT_NONCURRENT, LT_DEBT_CURRENT, ST_DEBT)
DEBT_CONCEPTS = ("lt_debt", "lt_debt_noncurrent", "lt_debt_current", "st_debt")

_FACT_INPUTS = ("fundamentals_facts.value", "fundamentals_facts.period_start", "fundamentals_facts.period_end",
                "fundamentals_facts.event_timestamp")
_AVAILABILITY = "session close + bar delay; uses every fact whose filing was available (event_timestamp) by then"


def _tags(*concepts: Concept) -> str:
    return ", ".join(f"{tax}:{tag}" for c in concepts for tax, tag in c.tags)


FACTORS: tuple[Factor, ...] = (
    Factor(
        name="fund_ttm",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("rev_ttm", "float64", "trailing-twelve-month revenue (USD) from the filings known at the session"),
            Output("ni_ttm", "float64", "trailing-twelve-month net income (USD) from the filings known at the session"),
            Output("eps_ttm_diluted", "float64", "trailing-twelve-month diluted EPS (USD) in the session's share scale"),
        ),
        inputs=_FACT_INPUTS + ("fundamentals_facts.filed", "corporate_actions.split_factor"),
        warmup=0,
        availability=_AVAILABILITY,
        description="TTM revenue, earnings and diluted EPS: the 10-K year, else YTD + last year - last YTD, else four quarters.",
        params=(("tags", _tags(REVENUE, NET_INCOME, EPS_DILUTED)),),
    ),
    Factor(
        name="fund_margins",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("gross_margin_ttm", "float64", "TTM gross profit / TTM revenue (same fiscal period end)"),
            Output("op_margin_ttm", "float64", "TTM operating income / TTM revenue (same fiscal period end)"),
            Output("net_margin_ttm", "float64", "TTM net income / TTM revenue (same fiscal period end)"),
        ),
        inputs=_FACT_INPUTS,
        warmup=0,
        availability=_AVAILABILITY,
        description="Trailing-twelve-month gross, operating and net margins.",
        params=(("tags", _tags(REVENUE, GROSS_PROFIT, OPERATING_INCOME, NET_INCOME)),),
    ),
    Factor(
        name="fund_growth",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("rev_growth_yoy", "float64", "TTM revenue over the TTM revenue one fiscal year earlier (both as known now), minus 1"),
        ),
        inputs=_FACT_INPUTS,
        warmup=0,
        availability=_AVAILABILITY,
        description="Year-over-year growth of trailing-twelve-month revenue, restatements of the earlier year included.",
        params=(("tags", _tags(REVENUE)), ("yoy_days", YOY_DAYS)),
    ),
    Factor(
        name="fund_balance",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("book_value", "float64", "stockholders' equity (USD) at the latest balance-sheet date known"),
            Output("shares_out", "float64", "latest shares outstanding known (cover page), in the session's share scale"),
        ),
        inputs=_FACT_INPUTS + ("corporate_actions.split_factor",),
        warmup=0,
        availability=_AVAILABILITY,
        description="Book value and split-consistent shares outstanding as last reported.",
        params=(("tags", _tags(EQUITY, SHARES_OUT)),),
    ),
    Factor(
        name="fund_valuation",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("market_cap", "float64", "session close as traded x shares_out (USD)"),
            Output("pe_ttm", "float64", "market_cap / ni_ttm (NaN when ni_ttm <= 0)"),
            Output("pb", "float64", "market_cap / book_value (NaN when book_value <= 0)"),
            Output("ev_sales", "float64", "(market_cap + debt - cash at the latest balance sheet) / rev_ttm"),
        ),
        inputs=_FACT_INPUTS + ("bars_daily.close", "corporate_actions.split_factor"),
        warmup=0,
        availability=_AVAILABILITY,
        description="Valuation ratios from the price known at the session and the filings known then.",
        params=(("tags", _tags(CASH, LT_DEBT, LT_DEBT_NONCURRENT, LT_DEBT_CURRENT, ST_DEBT)),),
    ),
    Factor(
        name="fund_staleness",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("fund_age_days", "float64", "days from the availability of the latest filing used to the session's availability"),
        ),
        inputs=("fundamentals_facts.event_timestamp",),
        warmup=0,
        availability=_AVAILABILITY,
        description="How stale the session's fundamentals are.",
    ),
)
OUTPUTS: tuple[str, ...] = tuple(o.name for f in FACTORS for o in f.outputs)
FACT_COLUMNS = ("taxonomy", "tag", "unit", "period_start", "period_end", "value", "accn", "filed", "event_timestamp")


# ------------------------------------------------------------------ split scale

def split_factor_on(dates, factor_rows: pd.DataFrame | None) -> np.ndarray:
    """Cumulative split factor in force ON each (calendar) date: that of the first
    factor row whose ex-date is after the date (a split counts from its ex-date on);
    1 after the last row. Works for dates that are not sessions (a weekend share
    count between the last pre-split session and the ex-date is pre-split)."""
    days = pd.DatetimeIndex(dates).normalize()
    if factor_rows is None or factor_rows.empty:
        return np.ones(len(days))
    f = factor_rows.dropna(subset=["ex_date"]).sort_values("ex_date")
    ex = pd.DatetimeIndex(f["ex_date"]).normalize().values.astype("datetime64[D]")
    idx = np.searchsorted(ex, days.values.astype("datetime64[D]"), side="right")
    return np.append(f["split_factor"].to_numpy(float), 1.0)[idx]


# ------------------------------------------------------------------ TTM

def _kind(length: int) -> str | None:
    for name, (lo, hi) in (("Q", QUARTER), ("H", HALF), ("N", NINE), ("A", YEAR)):
        if lo <= length <= hi:
            return name
    return None


Period = tuple[int, int]          # (start day, end day) as day numbers since 1970
Known = tuple[float, int]         # (value, event time in us)


def _ttm(periods: dict[Period, Known], end: int) -> tuple[float, int | None]:
    """TTM ending at ``end`` from the latest known value of each period, with the
    latest event time among the values used; (nan, None) when it cannot be built."""
    ending = [(p, k) for p, k in periods.items() if p[1] == end and _kind(p[1] - p[0] + 1)]
    for p, (v, ts) in ending:                                   # 1. the fiscal year itself
        if _kind(p[1] - p[0] + 1) == "A":
            return v, ts
    for (s, _e), (v, ts) in sorted(ending, key=lambda pk: pk[0][0]):   # 2. YTD + FY - YTD a year earlier
        length = end - s + 1
        fys = [(p, k) for p, k in periods.items() if p[1] == s - 1 and _kind(p[1] - p[0] + 1) == "A"]
        for (fs, _fe), (fv, fts) in fys:
            prior = [(p, k) for p, k in periods.items()
                     if p[0] == fs and p[1] < s and abs((p[1] - p[0] + 1) - length) <= YTD_LENGTH_SLACK
                     and _kind(p[1] - p[0] + 1) == _kind(length)]
            if prior:
                (_, (pv, pts)) = max(prior, key=lambda pk: pk[0][1])
                return v + fv - pv, max(ts, fts, pts)
    quarters = _quarters(periods)                                # 3. four consecutive quarters
    total, latest, e = 0.0, None, end
    for _ in range(4):
        if e not in quarters:
            return math.nan, None
        s, v, ts = quarters[e]
        total += v
        latest = ts if latest is None else max(latest, ts)
        e = s - 1
    return total, latest


def _quarters(periods: dict[Period, Known]) -> dict[int, tuple[int, float, int]]:
    """end -> (start, value, event time): 3-month facts, else differences of two
    year-to-date facts with the same start (nine months - six months, year - nine months)."""
    out: dict[int, tuple[int, float, int]] = {}
    by_start: dict[int, list[tuple[int, float, int]]] = {}
    for (s, e), (v, ts) in periods.items():
        kind = _kind(e - s + 1)
        if kind == "Q" and (e not in out or ts > out[e][2]):
            out[e] = (s, v, ts)
        if kind:
            by_start.setdefault(s, []).append((e, v, ts))
    derived: dict[int, tuple[int, float, int]] = {}
    for spans in by_start.values():
        spans.sort()
        for (e1, v1, t1), (e2, v2, t2) in zip(spans, spans[1:], strict=False):
            if QUARTER[0] <= e2 - e1 <= QUARTER[1] and e2 not in out:
                derived[e2] = (e1 + 1, v2 - v1, max(t1, t2))
    return {**derived, **out}


def _latest_end(periods: dict[Period, Known]) -> int | None:
    ends = [e for (s, e) in periods if _kind(e - s + 1)]
    return max(ends) if ends else None


def _prior_end(periods: dict[Period, Known], end: int) -> int | None:
    """The known period end one fiscal year before ``end`` (358..374 days, nearest 364)."""
    ends = {e for (s, e) in periods if _kind(e - s + 1)}
    cands = [e for e in ends if YOY_DAYS[0] <= end - e <= YOY_DAYS[1]]
    return min(cands, key=lambda e: (abs(end - e - YOY_TARGET), -e)) if cands else None


# ------------------------------------------------------------------ state as of each filing time

@dataclass
class _State:
    """What the known facts say (nan = unknown); per-share values in the final
    split scale (s = 1), to be rescaled to each session's scale."""

    rev: float = math.nan
    rev_end: int | None = None
    rev_prev: float = math.nan
    ni: float = math.nan
    ni_end: int | None = None
    gp: float = math.nan
    gp_end: int | None = None
    op: float = math.nan
    op_end: int | None = None
    eps: float = math.nan
    book: float = math.nan
    shares: float = math.nan
    debt: float = math.nan
    cash: float = math.nan
    used: int | None = None     # latest event time among the facts used


def _use(state: _State, ts: int | None) -> None:
    if ts is not None:
        state.used = ts if state.used is None else max(state.used, ts)


def _duration(state: _State, periods: dict[Period, Known], attr: str) -> None:
    end = _latest_end(periods)
    if end is None:
        return
    value, ts = _ttm(periods, end)
    if not math.isnan(value):
        setattr(state, attr, value)
        setattr(state, attr + "_end", end)
        _use(state, ts)


def _instant(instants: dict[int, Known], on: int | None = None) -> tuple[float, int | None]:
    if not instants:
        return math.nan, None
    day = max(instants) if on is None else on
    if day not in instants:
        return math.nan, None
    return instants[day]


def _state(known: dict[str, dict], debt_seen: bool) -> _State:
    st = _State()
    _duration(st, known["revenue"], "rev")
    _duration(st, known["net_income"], "ni")
    _duration(st, known["gross_profit"], "gp")
    _duration(st, known["operating_income"], "op")
    eps_periods = known["eps_diluted"]
    end = _latest_end(eps_periods)
    if end is not None:
        st.eps, ts = _ttm(eps_periods, end)
        _use(st, ts)
    if st.rev_end is not None:
        prev = _prior_end(known["revenue"], st.rev_end)
        if prev is not None:
            st.rev_prev, ts = _ttm(known["revenue"], prev)
            if not math.isnan(st.rev_prev):
                _use(st, ts)
    st.book, ts = _instant(known["equity"])
    _use(st, ts)
    st.shares, ts = _instant(known["shares"])
    _use(st, ts)
    cash, ts = _instant(known["cash"])
    if not math.isnan(cash):
        st.cash = cash
        _use(st, ts)
        day = max(known["cash"])
        parts: list[Known] = []
        lt, lt_ts = _instant(known["lt_debt"], day)
        if not math.isnan(lt):
            parts.append((lt, lt_ts))
        else:
            for name in ("lt_debt_noncurrent", "lt_debt_current"):
                v, t = _instant(known[name], day)
                if not math.isnan(v):
                    parts.append((v, t))
        v, t = _instant(known["st_debt"], day)
        if not math.isnan(v):
            parts.append((v, t))
        if parts:
            st.debt = math.fsum(v for v, _ in parts)
            for _, t in parts:
                _use(st, t)
        elif not debt_seen:
            st.debt = 0.0       # a filer that never tagged debt has none on its balance sheet
    return st


def _prepare(facts: pd.DataFrame, factor_rows: pd.DataFrame | None) -> pd.DataFrame:
    """The facts of every concept, one row each: concept, priority, start/end day
    numbers, value (per-share values in the final split scale), event time (us)."""
    frames = []
    for concept in CONCEPTS:
        for prio, (tax, tag) in enumerate(concept.tags):
            sel = facts[(facts["taxonomy"] == tax) & (facts["tag"] == tag) & (facts["unit"] == concept.unit)]
            if concept.duration:
                sel = sel[sel["period_start"].astype(str) != ""]
            else:
                sel = sel[sel["period_start"].astype(str) == ""]
            if sel.empty:
                continue
            frames.append(pd.DataFrame({
                "concept": concept.name,
                "prio": prio,
                "start": sel["period_start"].astype(str).to_numpy(),
                "end": sel["period_end"].astype(str).to_numpy(),
                "value": sel["value"].to_numpy(float),
                "filed": pd.to_datetime(sel["filed"]).to_numpy(),
                "accn": sel["accn"].astype(str).to_numpy(),
                "ts": sel["event_timestamp"].astype("datetime64[us, UTC]").astype("int64").to_numpy(),
            }))
    if not frames:
        return pd.DataFrame(columns=["concept", "prio", "start", "end", "value", "accn", "ts"])
    f = pd.concat(frames, ignore_index=True)
    end = pd.to_datetime(f["end"], format="%Y-%m-%d", errors="coerce")
    start = pd.to_datetime(f["start"].where(f["start"] != ""), format="%Y-%m-%d", errors="coerce")
    f = f[end.notna() & (start.notna() | (f["start"] == ""))].copy()
    f["end"] = (end[f.index].values.astype("datetime64[D]").astype("int64"))
    f["start"] = np.where(start[f.index].notna(), start[f.index].values.astype("datetime64[D]").astype("int64"), -1)
    # per-share values: in the share units of the filed date -> final scale (s = 1)
    eps = f["concept"] == EPS_DILUTED.name
    if eps.any():
        f.loc[eps, "value"] = f.loc[eps, "value"] * split_factor_on(f.loc[eps, "filed"], factor_rows)
    # share counts: in the units of their as-of date -> final scale
    shares = f["concept"] == SHARES_OUT.name
    if shares.any():
        as_of = pd.to_datetime(f.loc[shares, "end"].astype("int64"), unit="D")
        f.loc[shares, "value"] = f.loc[shares, "value"] / split_factor_on(as_of, factor_rows)
    # later wins: event time, then the chain's earlier tag, then the larger accession
    f["neg_prio"] = -f["prio"]
    return f.sort_values(["ts", "neg_prio", "accn"], kind="stable").drop(columns=["neg_prio", "filed"]).reset_index(drop=True)


def _states(prepared: pd.DataFrame) -> tuple[np.ndarray, list[_State]]:
    """The state after each distinct event time (sorted)."""
    known: dict[str, dict] = {c.name: {} for c in CONCEPTS}
    times, states = [], []
    debt_seen = False
    for ts, group in prepared.groupby("ts", sort=True):
        for r in group.itertuples(index=False):
            key = (int(r.start), int(r.end)) if r.start >= 0 else int(r.end)
            known[r.concept][key] = (float(r.value), int(r.ts))
            debt_seen = debt_seen or r.concept in DEBT_CONCEPTS
        times.append(int(ts))
        states.append(_state(known, debt_seen))
    return np.asarray(times, dtype="int64"), states


# ------------------------------------------------------------------ compute

def _check(facts: pd.DataFrame, bars: pd.DataFrame, factor_rows: pd.DataFrame | None) -> None:
    missing = [c for c in FACT_COLUMNS if c not in facts.columns]
    if missing:
        raise FactorInputError(f"fundamentals: facts lack the column(s) {missing}; pass fundamentals_facts rows (etl.vendors.edgar)")
    need = ["session", "close", "event_timestamp"]
    missing = [c for c in need if c not in bars.columns]
    if missing:
        raise FactorInputError(f"fundamentals: bars lack the column(s) {missing}; pass one symbol's silver daily bars")
    for name, frame in (("facts", facts), ("bars", bars)):
        ts = frame["event_timestamp"]
        if not isinstance(ts.dtype, pd.DatetimeTZDtype):
            raise FactorInputError(f"fundamentals: {name}.event_timestamp must be tz-aware UTC, got {ts.dtype}")
        if ts.isna().any():
            raise FactorInputError(f"fundamentals: {name}.event_timestamp is missing in {int(ts.isna().sum())} row(s)")
        if "symbol" in frame.columns and frame["symbol"].nunique() > 1:
            raise FactorInputError(f"fundamentals: {name} hold several symbols {sorted(frame['symbol'].unique())[:5]}; pass one symbol")
    if "symbol" in facts.columns and "symbol" in bars.columns and len(facts) and len(bars) \
            and facts["symbol"].iloc[0] != bars["symbol"].iloc[0]:
        raise FactorInputError(f"fundamentals: facts are for {facts['symbol'].iloc[0]} but bars for {bars['symbol'].iloc[0]}")
    sessions = pd.DatetimeIndex(bars["session"])
    if not sessions.is_monotonic_increasing or sessions.has_duplicates:
        raise FactorInputError("fundamentals: bars must be one symbol's bars sorted by session, each session once")
    if factor_rows is not None and len(factor_rows):
        missing = [c for c in ("factor_date", "ex_date", "split_factor") if c not in factor_rows.columns]
        if missing:
            raise FactorInputError(f"fundamentals: factor_rows lack the column(s) {missing}; pass corporate_actions rows")
        if "symbol" in factor_rows.columns and factor_rows["symbol"].nunique() > 1:
            raise FactorInputError("fundamentals: factor_rows hold several symbols; pass the symbol's own corporate actions")


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({"symbol": pd.Series(dtype=object),
                          "event_timestamp": pd.Series(dtype="datetime64[us, UTC]"),
                          "known_timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    for name in OUTPUTS:
        frame[name] = pd.Series(dtype="float64")
    return frame


def compute_fundamentals(facts: pd.DataFrame, bars: pd.DataFrame, factor_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every fundamentals output for ONE symbol, one row per session of ``bars``
    from the first session at or after the first fact's availability (see the
    module docstring for each output's rule)."""
    _check(facts, bars, factor_rows)
    symbol = str(bars["symbol"].iloc[0]) if "symbol" in bars.columns and len(bars) else (
        str(facts["symbol"].iloc[0]) if "symbol" in facts.columns and len(facts) else None)
    if facts.empty or bars.empty:
        return _empty()
    avail = bars["event_timestamp"].astype("datetime64[us, UTC]")
    avail_us = avail.astype("int64").to_numpy()
    first_fact = int(facts["event_timestamp"].astype("datetime64[us, UTC]").astype("int64").min())
    keep = avail_us >= first_fact
    if not keep.any():
        return _empty()
    avail, avail_us = avail[keep].reset_index(drop=True), avail_us[keep]
    close = bars["close"].to_numpy(float)[keep]
    split_t, _ = cumulative_factors(pd.DatetimeIndex(bars["session"])[keep], factor_rows)

    times, states = _states(_prepare(facts, factor_rows))
    idx = np.searchsorted(times, avail_us, side="right") - 1
    n = len(avail_us)

    def col(attr: str) -> np.ndarray:
        values = np.array([getattr(s, attr) for s in states] + [math.nan], dtype=float)
        return values[np.where(idx >= 0, idx, len(states))]

    def end(attr: str) -> np.ndarray:
        values = np.array([-1 if getattr(s, attr) is None else getattr(s, attr) for s in states] + [-1], dtype="int64")
        return values[np.where(idx >= 0, idx, len(states))]

    rev, ni, gp, op = col("rev"), col("ni"), col("gp"), col("op")
    rev_end, ni_end, gp_end, op_end = end("rev_end"), end("ni_end"), end("gp_end"), end("op_end")
    book, debt, cash = col("book"), col("debt"), col("cash")
    shares = col("shares") * split_t
    eps = col("eps") / split_t
    used = end("used")
    market_cap = close * shares

    def ratio(num: np.ndarray, den: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
        good = (den > 0) & np.isfinite(num) & np.isfinite(den)
        if ok is not None:
            good &= ok
        out = np.full(n, math.nan)
        out[good] = num[good] / den[good]
        return out

    def same_end(e: np.ndarray) -> np.ndarray:
        return (e == rev_end) & (rev_end >= 0)

    growth = ratio(rev, col("rev_prev")) - 1.0
    out = pd.DataFrame({
        "symbol": pd.Series([symbol] * n, dtype=object),
        "event_timestamp": avail,
        "known_timestamp": avail,
        "rev_ttm": rev,
        "ni_ttm": ni,
        "eps_ttm_diluted": eps,
        "gross_margin_ttm": ratio(gp, rev, same_end(gp_end)),
        "op_margin_ttm": ratio(op, rev, same_end(op_end)),
        "net_margin_ttm": ratio(ni, rev, same_end(ni_end)),
        "rev_growth_yoy": growth,
        "book_value": book,
        "shares_out": shares,
        "market_cap": market_cap,
        "pe_ttm": ratio(market_cap, ni),
        "pb": ratio(market_cap, book),
        "ev_sales": ratio(market_cap + debt - cash, rev),
        "fund_age_days": np.where(used >= 0, (avail_us - used) / DAY_US, math.nan),
    })
    return out
