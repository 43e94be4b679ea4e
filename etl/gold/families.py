"""Gold for the factor families: load silver inputs, call the pure family
code, write one Parquet file per feature view (and its ``_lag1`` twin).

Every gold row has the entity key, ``event_timestamp`` (when knowable),
``known_timestamp`` (when this version was knowable: revisions are new rows)
and ``created_timestamp`` (derived from the inputs' write times, so a rebuild
from the same silver is byte-identical), then the view's features. A family
whose inputs were never ingested gets an empty file with the right schema,
so queries return missing values instead of failing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import DeclarationError
from etl.factors import registry
from etl.factors.spec import Output
from etl.gold.core import as_known_at
from etl.storage import silver
from etl.storage.atomic import atomic_write_frame

TIME_COLS = ["event_timestamp", "known_timestamp", "created_timestamp"]
MARKET = "US"
_PANDAS_DTYPES = {"float64": "float64", "float32": "float32", "int64": "Int64", "string": "object", "bool": "boolean"}


@dataclass(frozen=True)
class ViewReport:
    view: str
    rows: int
    entities: int
    seconds: float


# ------------------------------------------------------------------ helpers

def _empty(entity: str, outputs: tuple[Output, ...]) -> pd.DataFrame:
    columns = {entity: pd.Series(dtype=object)}
    columns.update({c: pd.Series(dtype="datetime64[us, UTC]") for c in TIME_COLS})
    columns.update({o.name: pd.Series(dtype=_PANDAS_DTYPES[o.dtype]) for o in outputs})
    return pd.DataFrame(columns)


def _finish(frame: pd.DataFrame, view: registry.View) -> pd.DataFrame:
    """Columns in view order, typed, times in UTC us, sorted by time for row-group pruning."""
    if frame is None or frame.empty:
        return _empty(view.entity, view.outputs)
    out = frame.copy()
    for c in TIME_COLS:
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[us, UTC]")
    for o in view.outputs:
        if o.name not in out.columns:
            raise DeclarationError(f"view {view.name}: the family's compute did not return {o.name!r}")
        out[o.name] = out[o.name].astype(_PANDAS_DTYPES[o.dtype])
    out = out[[view.entity, *TIME_COLS, *view.output_names]]
    return out.sort_values(["event_timestamp", view.entity, "known_timestamp"], kind="stable").reset_index(drop=True)


def lag_frame(frame: pd.DataFrame, view: registry.View, lag_view: registry.View) -> pd.DataFrame:
    """The ``_lag1`` twin: each entity's value of the previous event time, shown at
    the next event time (known from the later of its own known time and that time)."""
    if frame.empty:
        return _empty(lag_view.entity, lag_view.outputs)
    key = view.entity
    events = frame[[key, "event_timestamp"]].drop_duplicates().sort_values([key, "event_timestamp"], kind="stable")
    events["next_event"] = events.groupby(key, sort=False)["event_timestamp"].shift(-1)
    out = frame.merge(events, on=[key, "event_timestamp"], how="left")
    out = out[out["next_event"].notna()].copy()
    out["event_timestamp"] = out["next_event"]
    out["known_timestamp"] = np.maximum(out["known_timestamp"], out["event_timestamp"])
    out = out.drop(columns=["next_event"]).rename(columns={n: n + registry.LAG_SUFFIX for n in view.output_names})
    return _finish(out, lag_view)


def _latest_created(*frames: pd.DataFrame | None) -> pd.Timestamp | None:
    stamps = [f["created_timestamp"].max() for f in frames if f is not None and len(f) and "created_timestamp" in f]
    stamps = [s for s in stamps if pd.notna(s)]
    return max(stamps) if stamps else None


def _stamp_created(frame: pd.DataFrame, *inputs: pd.DataFrame | None) -> pd.DataFrame:
    created = _latest_created(*inputs)
    frame = frame.copy()
    frame["created_timestamp"] = created if created is not None else frame["known_timestamp"]
    return frame


def _bars_first(settings: Settings) -> pd.DataFrame | None:
    from etl.core.errors import NotIngestedError
    from etl.storage.bars import read_silver_bars

    try:
        return read_silver_bars(settings, versions="all")
    except NotIngestedError:
        return None


def with_revisions(versions: pd.DataFrame, compute: Callable[[pd.DataFrame], pd.DataFrame], outputs: list[str]) -> pd.DataFrame:
    """Compute from each bar's first version, then again as known at every later
    revision time R; rows whose values changed are added, known from max(R, event).
    ``compute`` returns one row per input bar, in order."""

    def run(series: pd.DataFrame) -> pd.DataFrame:
        out = compute(series).reset_index(drop=True)
        if len(out) != len(series):
            raise DeclarationError(f"compute returned {len(out)} rows for {len(series)} bars")
        out["known_timestamp"] = np.maximum(series["known_timestamp"].cummax().to_numpy(), series["event_timestamp"].to_numpy())
        return out

    base = run(as_known_at(versions, None))
    parts, prev = [base], base.set_index("event_timestamp")
    later = versions["known_timestamp"][versions.duplicated("session", keep="first")]
    for when in sorted(later.unique()):
        again = run(as_known_at(versions, when))
        cur = again.set_index("event_timestamp")
        old = prev.reindex(cur.index)[outputs]
        same = ((cur[outputs] == old) | (cur[outputs].isna() & old.isna())).all(axis=1).to_numpy()
        new = again.loc[~same].copy()
        new["known_timestamp"] = np.maximum(new["event_timestamp"], when)
        parts.append(new)
        prev = cur
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------ families

def _technical_one(args) -> pd.DataFrame:
    from etl.factors.technical import FACTORS, compute_technical

    versions, actions = args
    outputs = [o.name for f in FACTORS for o in f.outputs]
    frame = with_revisions(versions, lambda bars: compute_technical(bars, actions), outputs)
    return _stamp_created(frame, versions, actions)


def technical(settings: Settings, n_jobs: int = 2) -> dict[str, pd.DataFrame]:
    from etl.factors.technical import FACTORS
    from etl.storage.actions import read_corporate_actions

    versions = _bars_first(settings)
    views = sorted({f.view for f in FACTORS})
    if versions is None:
        return {v: None for v in views}
    actions = read_corporate_actions(settings)
    jobs = [(g, None if actions is None else actions[actions["symbol"] == s]) for s, g in versions.groupby("symbol", sort=True)]
    if n_jobs > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("fork")) as pool:
            frames = list(pool.map(_technical_one, jobs))
    else:
        frames = [_technical_one(j) for j in jobs]
    allf = pd.concat(frames, ignore_index=True)
    by_view = {}
    for v in views:
        cols = [o.name for f in FACTORS if f.view == v for o in f.outputs]
        by_view[v] = allf[["symbol", *TIME_COLS, *cols]]
    return by_view


def _per_symbol_bars(versions: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    cols = ["symbol", "session", "open", "high", "low", "close", "volume", "event_timestamp", "known_timestamp", "created_timestamp"]
    if versions is None:
        return pd.DataFrame(columns=cols)
    g = versions[versions["symbol"] == symbol]
    return as_known_at(g, None)[cols] if len(g) else pd.DataFrame(columns=cols)


def options(settings: Settings) -> dict[str, pd.DataFrame]:
    from etl.factors.options import FACTORS, compute_options
    from etl.storage.actions import read_corporate_actions
    from etl.storage.tables import OPTION_QUOTES

    view = FACTORS[0].view
    quotes = silver.read(settings, OPTION_QUOTES)
    if quotes.empty:
        return {view: None}
    versions = _bars_first(settings)
    actions = read_corporate_actions(settings)
    rates = load_rates(settings)
    frames = []
    for und, q in quotes.groupby("underlying", sort=True):
        bars = _per_symbol_bars(versions, und)
        rows = None if actions is None else actions[actions["symbol"] == und]
        out = compute_options(q, bars, rates, rows)
        frames.append(_stamp_created(out, q, bars))
    return {view: pd.concat(frames, ignore_index=True)}


def news(settings: Settings) -> dict[str, pd.DataFrame]:
    from etl.factors.news import FACTORS, compute_news
    from etl.storage.tables import NEWS

    view = FACTORS[0].view
    items = silver.read(settings, NEWS)
    if items.empty:
        return {view: None}
    versions = _bars_first(settings)
    frames = []
    for sym, g in items.groupby("symbol", sort=True):
        bars = _per_symbol_bars(versions, sym)
        if len(bars):
            sessions = pd.DatetimeIndex(bars["session"])
        else:
            sessions = clock.sessions_in_range(pd.to_datetime(g["session"]).min(), pd.to_datetime(g["session"]).max(), settings.calendar)
        # outside the span the items cover a count of 0 would be a false zero: those are NaN
        span = pd.to_datetime(g["session"])
        out = compute_news(g, sessions, calendar=settings.calendar, delay_minutes=settings.bar_delay_minutes,
                           symbol=sym, coverage_start=span.min(), coverage_end=span.max())
        frames.append(_stamp_created(out, g))
    return {view: pd.concat(frames, ignore_index=True)}


def fundamentals(settings: Settings) -> dict[str, pd.DataFrame]:
    from etl.factors.fundamentals import FACTORS, compute_fundamentals
    from etl.storage.actions import read_corporate_actions
    from etl.storage.tables import FUNDAMENTALS

    view = FACTORS[0].view
    facts = silver.read(settings, FUNDAMENTALS)
    versions = _bars_first(settings)
    if facts.empty or versions is None:
        return {view: None}
    actions = read_corporate_actions(settings)
    frames = []
    for sym, f in facts.groupby("symbol", sort=True):
        bars = _per_symbol_bars(versions, sym)
        if bars.empty:
            continue
        rows = None if actions is None else actions[actions["symbol"] == sym]
        frames.append(_stamp_created(compute_fundamentals(f, bars, rows), f, bars))
    return {view: pd.concat(frames, ignore_index=True) if frames else None}


def macro(settings: Settings) -> dict[str, pd.DataFrame]:
    from etl.factors.macro import FACTORS, compute_macro
    from etl.storage.tables import MACRO

    view = FACTORS[0].view
    obs = silver.read(settings, MACRO)
    if obs.empty:
        return {view: None}
    versions = _bars_first(settings)
    if versions is not None:
        sessions = pd.DatetimeIndex(sorted(versions["session"].unique()))
    else:
        sessions = clock.sessions_in_range(obs["event_timestamp"].min(), clock.utc_now(), settings.calendar)
    out = compute_macro(obs, sessions, delay_minutes=settings.bar_delay_minutes, calendar=settings.calendar)
    return {view: _stamp_created(out, obs)}


REGIME_PROXY = "SPY"


def regime(settings: Settings) -> dict[str, pd.DataFrame]:
    from etl.factors.regime import FACTORS, compute_regime
    from etl.storage.actions import read_corporate_actions

    view = FACTORS[0].view
    versions = _bars_first(settings)
    bars = _per_symbol_bars(versions, REGIME_PROXY)
    if bars.empty:
        return {view: None}
    actions = read_corporate_actions(settings)
    rows = None if actions is None else actions[actions["symbol"] == REGIME_PROXY]
    return {view: _stamp_created(compute_regime(bars, rows), bars, rows)}


BUILDERS: dict[str, Callable[..., dict[str, pd.DataFrame]]] = {
    "technical": technical,
    "options": options,
    "news": news,
    "fundamentals": fundamentals,
    "macro": macro,
    "regime": regime,
}


def write_core_lags(settings: Settings) -> None:
    """The ``_lag1`` twins of the core views that :func:`etl.gold.core.build_gold` writes."""
    from etl.gold.core import gold_path

    all_views = registry.views()
    for name in (registry.BARS_VIEW, registry.CORE_VIEW):
        view, lag = all_views[name], all_views[name + registry.LAG_SUFFIX]
        frame = pd.read_parquet(gold_path(settings, name))
        atomic_write_frame(lag_frame(frame, view, lag), gold_path(settings, lag.name))


def build_families(settings: Settings, families: list[str] | None = None, n_jobs: int | None = None, progress=None) -> list[ViewReport]:
    """Compute every family and write its views and their ``_lag1`` twins."""
    from etl.gold.core import gold_path

    n_jobs = n_jobs or min(2, os.cpu_count() or 1)
    all_views = registry.views()
    reports = []
    if families is None and gold_path(settings, registry.CORE_VIEW).exists():
        write_core_lags(settings)
    for family in families or list(BUILDERS):
        t0 = time.perf_counter()
        builder = BUILDERS[family]
        frames = builder(settings, n_jobs=n_jobs) if family == "technical" else builder(settings)
        for name, frame in frames.items():
            view = all_views[name]
            out = _finish(frame, view)
            atomic_write_frame(out, gold_path(settings, name))
            lag = all_views.get(name + registry.LAG_SUFFIX)
            if lag is not None:
                atomic_write_frame(lag_frame(out, view, lag), gold_path(settings, lag.name))
            reports.append(ViewReport(name, len(out), out[view.entity].nunique(), round(time.perf_counter() - t0, 2)))
            if progress:
                progress(reports[-1])
    return reports


def load_rates(settings=None) -> pd.DataFrame:
    """The risk-free rate table for the options family: Lean's Fed primary credit
    rate file under the Lean data root (``$ALPHA_LEAN_DATA`` or the shared data).
    Empty (so every implied volatility is missing, never computed at rate 0)
    when the file is absent."""
    from etl.core.config import default_lean_path
    from etl.factors.options import rates_from_lean

    path = default_lean_path() / "interest_rate_usa" / "interest-rate.csv"
    if not path.exists():
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[us]"), "rate": pd.Series(dtype=float),
                             "event_timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    return rates_from_lean(pd.read_csv(path))
