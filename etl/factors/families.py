"""The built-in families as :class:`~etl.factors.spec.Family` declarations: which factors,
which input tables, the warm-up, and one pure compute per family (an entity's frames in,
its rows out). The generic builder (``etl.gold.builder``) reads the declared inputs and
runs these; nothing here does I/O. Users' own factors become families the same way
(:func:`user_family`). docs/factors.md (Adding a factor) walks through it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import DeclarationError
from etl.factors.spec import Factor, Family, Inputs, Output

BARS_VIEW = "bars_daily"
MARKET = "US"
REGIME_PROXY = "SPY"

BAR_OUTPUTS: tuple[Output, ...] = (
    Output("open", "float64", "open, as traded (dollars)"),
    Output("high", "float64", "high, as traded"),
    Output("low", "float64", "low, as traded"),
    Output("close", "float64", "close, as traded"),
    Output("volume", "float64", "shares traded, as reported"),
    Output("ticker", "string", "ticker the symbol traded under that session"),
    Output("session_date", "string", "exchange session date YYYY-MM-DD"),
)


def row_known(bars: pd.DataFrame) -> np.ndarray:
    """A bar-driven row is as new as the newest bar version it could have used (the running
    maximum of the window's known times), never before its own event time."""
    event = clock.epoch_us(bars["event_timestamp"])
    known = np.maximum.accumulate(clock.epoch_us(bars["known_timestamp"]))
    return clock.from_epoch_us(np.maximum(known, event))


def _meta(bars: pd.DataFrame, known=None) -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": bars["symbol"].to_numpy(),
        "event_timestamp": bars["event_timestamp"].to_numpy(),
        "known_timestamp": row_known(bars) if known is None else known,
    })


def _actions(inputs: Inputs) -> pd.DataFrame | None:
    """The corporate actions known at this step as cumulative factor rows (one price scale for
    every family, whatever source the actions came from)."""
    return inputs.factor_rows()


# ------------------------------------------------------------------ bars, core, TA-Lib grid

def _bars_compute(inputs: Inputs) -> pd.DataFrame:
    b = inputs.bars
    # a bar's row depends on that bar alone: known when that version was
    known = clock.from_epoch_us(np.maximum(clock.epoch_us(b["known_timestamp"]), clock.epoch_us(b["event_timestamp"])))
    out = _meta(b, known)
    for c in ("open", "high", "low", "close", "volume"):
        out[c] = b[c].to_numpy(dtype=float)
    out["ticker"] = b["ticker"].astype(str).to_numpy()
    out["session_date"] = pd.DatetimeIndex(b["session"]).strftime("%Y-%m-%d")
    return out


def _core_compute(inputs: Inputs) -> pd.DataFrame:
    from etl.factors.core import compute_factors

    feats = compute_factors(inputs.bars.reset_index(drop=True), _actions(inputs))
    return pd.concat([_meta(inputs.bars), feats.reset_index(drop=True)], axis=1)


def _grid_compute(inputs: Inputs) -> pd.DataFrame:
    from etl.factors.technical import compute_technical

    rows = compute_technical(inputs.bars, _actions(inputs), start_session=inputs.start)
    # known from the newest bar version of the whole window, warm-up included
    known = row_known(inputs.bars)
    rows["known_timestamp"] = known[len(known) - len(rows):]
    return rows


# ------------------------------------------------------------------ whole-history families

def _first_versions(bars: pd.DataFrame | None) -> pd.DataFrame:
    """Families other than the bar-driven ones read each bar's first print."""
    cols = ["symbol", "session", "open", "high", "low", "close", "volume", "event_timestamp", "known_timestamp", "created_timestamp"]
    if bars is None or bars.empty:
        return pd.DataFrame(columns=cols)
    return bars.drop_duplicates("session", keep="first")[cols].reset_index(drop=True)


def _regime_compute(inputs: Inputs) -> pd.DataFrame:
    from etl.factors.regime import compute_regime

    bars = _first_versions(inputs.bars)
    return compute_regime(bars, _actions(inputs))


def _options_compute(inputs: Inputs) -> pd.DataFrame:
    from etl.factors.options import compute_options

    return compute_options(inputs.table("option_quotes"), _first_versions(inputs.bars), inputs.table("rates"), _actions(inputs))


def _news_compute(inputs: Inputs) -> pd.DataFrame:
    from etl.factors.news import compute_news

    items = inputs.table("news")
    bars = _first_versions(inputs.bars)
    span = pd.to_datetime(items["session"])
    if len(bars):
        sessions = pd.DatetimeIndex(bars["session"])
    else:
        sessions = clock.sessions_in_range(span.min(), span.max(), inputs.calendar)
    # outside the span the items cover a count of 0 would be a false zero: those are NaN
    return compute_news(items, sessions, calendar=inputs.calendar, delay_minutes=inputs.delay_minutes,
                        symbol=inputs.entity, coverage_start=span.min(), coverage_end=span.max())


def _fundamentals_compute(inputs: Inputs) -> pd.DataFrame:
    from etl.factors.fundamentals import compute_fundamentals

    bars = _first_versions(inputs.bars)
    if bars.empty:
        return pd.DataFrame()
    return compute_fundamentals(inputs.table("fundamentals"), bars, _actions(inputs))


def _macro_compute(inputs: Inputs) -> pd.DataFrame:
    from etl.factors.macro import compute_macro

    obs = inputs.table("macro")
    sessions = inputs.table("sessions")
    if sessions is not None and len(sessions):
        days = pd.DatetimeIndex(sessions["session"])
    else:
        days = clock.sessions_in_range(obs["event_timestamp"].min(), clock.utc_now(), inputs.calendar)
    return compute_macro(obs, days, delay_minutes=inputs.delay_minutes, calendar=inputs.calendar)


def builtin_families() -> tuple[Family, ...]:
    from etl.factors import core, fundamentals, macro, news, options, regime, technical

    bars_factor = Factor(
        name="bars", family="technical", view=BARS_VIEW, outputs=BAR_OUTPUTS, inputs=tuple(f"bars.{o.name}" for o in BAR_OUTPUTS[:5]),
        warmup=0, availability="session close + bar delay; a revision from when it was received", description="Raw daily bars as a trader saw them.",
    )
    grid_warmup = technical.DEFAULT_PLAN.max_warmup
    return (
        Family("bars", (bars_factor,), ("bars",), _bars_compute, warmup=0, availability=bars_factor.availability, known_rule="row"),
        Family("core", core.FACTORS, ("bars", "corporate_actions"), _core_compute, warmup=core.WARMUP, availability=core.AVAILABILITY),
        Family("technical", technical.FACTORS, ("bars", "corporate_actions"), _grid_compute, warmup=grid_warmup,
               availability=technical.AVAILABILITY),
        Family("options", options.FACTORS, ("option_quotes", "bars", "corporate_actions", "rates"), _options_compute, warmup=None,
               availability="chain date's close + delay, rates as published"),
        Family("news", news.FACTORS, ("news", "bars"), _news_compute, warmup=None, availability="publication time, counted at the next close + delay"),
        Family("fundamentals", fundamentals.FACTORS, ("fundamentals", "bars", "corporate_actions"), _fundamentals_compute, warmup=None,
               availability="filing acceptance time, from the next close + delay"),
        Family("macro", macro.FACTORS, ("macro", "bars"), _macro_compute, warmup=None, availability="release time (vintage)",
               entity="market"),
        Family("regime", regime.FACTORS, ("bars", "corporate_actions"), _regime_compute, warmup=None,
               availability="the proxy's session close + delay", entity="market", proxy=REGIME_PROXY),
    )


# ------------------------------------------------------------------ users' factors

def _user_compute(factors: tuple[Factor, ...]):
    def compute(inputs: Inputs) -> pd.DataFrame:
        out = _meta(inputs.bars)
        n = len(inputs.bars)
        for f in factors:
            try:
                result = f.compute(inputs)
            except Exception as exc:  # a user's code: name the factor and keep the cause
                raise DeclarationError(f"factor {f.name}: its compute failed on {inputs.entity}: {type(exc).__name__}: {exc}") from exc
            if isinstance(result, pd.Series) and len(f.outputs) == 1:
                result = {f.outputs[0].name: result}
            if isinstance(result, pd.DataFrame):
                result = {c: result[c] for c in result.columns}
            if not isinstance(result, dict):
                raise DeclarationError(f"factor {f.name}: compute must return a dict of output -> values, a Series or a DataFrame, "
                                       f"got {type(result).__name__}")
            for o in f.outputs:
                if o.name not in result:
                    raise DeclarationError(f"factor {f.name}: compute did not return output {o.name!r} (returned {sorted(result)})")
                values = np.asarray(result[o.name])
                if values.shape != (n,):
                    raise DeclarationError(f"factor {f.name}: output {o.name} has {values.shape} values for {n} bars; "
                                           "return one value per row of inputs.bars")
                out[o.name] = values
        return out

    return compute


def user_family(view: str, factors: tuple[Factor, ...]) -> Family:
    """One view of a user's factors as a family: bar-driven with the largest declared warm-up;
    every other table a factor declares is handed over whole for the symbol."""
    missing = [f.name for f in factors if f.compute is None]
    if missing:
        raise DeclarationError(f"factor(s) {missing}: a user factor needs compute=<function of Inputs>")
    tables = []
    for f in factors:
        if not f.inputs:
            raise DeclarationError(f"factor {f.name}: declare its inputs, e.g. inputs=('bars.close',)")
        for ref in f.inputs:
            table = str(ref).split(".", 1)[0]
            if table not in tables:
                tables.append(table)
    if "bars" not in tables:
        raise DeclarationError(f"view {view}: user factors are computed per symbol from its bars; declare a 'bars.<column>' input")
    return Family(
        name=f"user_{view}", factors=factors, inputs=tuple(tables), compute=_user_compute(factors),
        warmup=max(f.warmup for f in factors), availability="; ".join(sorted({f.availability for f in factors})),
        version=",".join(f.version for f in factors), user=True,
    )
