"""Factor evaluation (alphalens-style) from two long frames. Pure functions over pandas/numpy.

Inputs:

- ``factor``: one row per (symbol, decision_time) with the factor's ``value`` known at that
  decision time (columns ``symbol``, ``decision_time``, ``value``).
- ``forward``: one row per (symbol, decision_time) with the forward returns ``fwd_ret_<h>`` for
  each horizon h (in sessions) of ``horizons``: the return from decision time t over the next h
  sessions, as :mod:`research`'s labels compute them from point-in-time ``ret_1d``.

The rules, each stated once here:

- **Pairing**: a factor value meets the forward returns of the same (symbol, decision_time)
  (an inner join). Rows whose value or forward return is NaN are left out, per horizon: a NaN
  ``fwd_ret_20`` near the end of the history does not remove the row from horizon 1.
- **IC** at a decision time is the correlation across symbols between the factor and the
  forward return: Pearson on the values, or Spearman (the *rank IC*: Pearson on the ranks, ties
  at their average rank, as ``scipy.stats.spearmanr``). NaN when fewer than :data:`MIN_NAMES`
  symbols have both, or when either side does not vary.
- **Quantiles** depend on the factor alone: at each decision time the symbols with a value are
  ordered by value, ties broken by symbol (ascending), and the i-th of n (0-based) falls in
  quantile ``clip(ceil(i * q / (n - 1)), 1, q)``: ``pandas.qcut`` of the ordered positions,
  which is alphalens' ``qcut`` of the values when no two are equal. Quantile 1 holds the lowest
  values, q the highest. Decision times with fewer than q symbols get no quantiles.
- **Quantile returns**: the mean forward return of a quantile's symbols at each decision time,
  then the mean of those over decision times (every decision time weighs the same: a portfolio
  rebalanced at each one); raw returns, not demeaned. The **spread** at a decision time is the
  top quantile's mean minus the bottom's.
- **Summaries** of an IC series (:func:`ic_summary`): mean, std (ddof 1), IR = mean / std,
  t-stat = IR x sqrt(n), hit = share of ICs above 0, n = decision times with an IC. With h > 1 the
  forward windows of consecutive decision times overlap, so the ICs are autocorrelated and the
  t-stat overstates the evidence (by about sqrt(h)).
- **Regimes** (:func:`by_regime`): the label of decision time t must be the one *known* at t
  (computed from data up to t): that is the caller's job, this module cannot tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.core.errors import ArgumentError, MissingColumnError
from research.metrics import label_values

__all__ = [
    "MIN_NAMES",
    "FactorReport",
    "by_regime",
    "factor_autocorrelation",
    "factor_quantiles",
    "factor_report",
    "factor_turnover",
    "fwd_column",
    "ic_decay",
    "ic_summary",
    "information_coefficient",
    "quantile_returns",
    "quantile_spread",
]

#: fewest symbols with both a value and a forward return for a cross-sectional correlation
MIN_NAMES = 3

KEYS = ["symbol", "decision_time"]
SUMMARY_COLUMNS = ["mean", "std", "ir", "t_stat", "hit", "n"]


def fwd_column(horizon: int) -> str:
    """The forward-return column of a horizon: ``fwd_ret_<h>``."""
    return f"fwd_ret_{horizon}"


# ---------------------------------------------------------------- checks

def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_horizons(horizons) -> list[int]:
    if isinstance(horizons, str | bytes) or not isinstance(horizons, Sequence | np.ndarray | pd.Index):
        raise ArgumentError(f"horizons must be a sequence of horizons in sessions (e.g. [1, 5, 20]), got {horizons!r}")
    out = [_check_int(h, "each of horizons", 1) for h in horizons]
    if not out or len(set(out)) != len(out):
        raise ArgumentError(f"horizons must be non-empty and without repeats, got {list(horizons)!r}")
    return out


def _check_frame(frame, name: str, columns: list[str]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ArgumentError(f"{name} must be a pandas DataFrame with columns {columns}, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")
    for col in columns[2:]:
        dtype = frame[col].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise ArgumentError(f"{name}[{col!r}] must hold numbers, got dtype {dtype}")
    if not pd.api.types.is_datetime64_any_dtype(frame["decision_time"].dtype):
        raise ArgumentError(f"{name}['decision_time'] must hold timestamps, got dtype {frame['decision_time'].dtype}")
    if frame["decision_time"].isna().any() or frame["symbol"].isna().any():
        raise ArgumentError(f"{name} has rows without a symbol or decision_time: drop them first")
    dup = frame.duplicated(KEYS)
    if dup.any():
        first = frame.loc[dup, KEYS].iloc[0]
        raise ArgumentError(f"{name} has {int(dup.sum())} repeated (symbol, decision_time) row(s), the first "
                            f"({first['symbol']}, {first['decision_time']}): give one row per symbol and time")
    return frame[columns]


def _check_factor(factor) -> pd.DataFrame:
    return _check_frame(factor, "factor", [*KEYS, "value"])


def _paired(factor, forward, horizons) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """The checked factor, and the factor joined with its forward returns (inner join on symbol and
    decision_time)."""
    horizons = _check_horizons(horizons)
    fac = _check_factor(factor)
    fwd = _check_frame(forward, "forward", [*KEYS, *(fwd_column(h) for h in horizons)])
    tz_f, tz_w = getattr(fac["decision_time"].dtype, "tz", None), getattr(fwd["decision_time"].dtype, "tz", None)
    if (tz_f is None) != (tz_w is None) or (tz_f is not None and str(tz_f) != str(tz_w)):
        raise ArgumentError(f"factor and forward decision_time must share a time zone, got {tz_f} and {tz_w}")
    data = fac.merge(fwd, on=KEYS, how="inner")
    if data.empty:
        raise ArgumentError("factor and forward share no (symbol, decision_time) row: are they of the same symbols "
                            "and decision times (and time zone)?")
    return fac, data, horizons


# ---------------------------------------------------------------- IC

def _cross_corr(times: pd.Series, x: pd.Series, y: pd.Series, rank: bool) -> pd.Series:
    """Correlation of x and y per decision time over the rows where both are present."""
    frame = pd.DataFrame({"t": times, "x": x.astype("float64"), "y": y.astype("float64")}).dropna()
    group = frame.groupby("t", sort=True)
    if rank:
        frame["x"] = group["x"].rank(method="average")
        frame["y"] = group["y"].rank(method="average")
        group = frame.groupby("t", sort=True)
    dx = frame["x"] - group["x"].transform("mean")
    dy = frame["y"] - group["y"].transform("mean")
    sums = pd.DataFrame({"t": frame["t"], "xy": dx * dy, "xx": dx * dx, "yy": dy * dy}).groupby("t", sort=True).sum()
    n = group.size()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    flat = (sums["xx"] <= 0.0) | (sums["yy"] <= 0.0)
    return corr.where((n >= MIN_NAMES) & ~flat).clip(-1.0, 1.0)


def _ic(data: pd.DataFrame, horizons: list[int], method: str) -> pd.DataFrame:
    times = pd.Index(data["decision_time"].drop_duplicates().sort_values(), name="decision_time")
    out = pd.DataFrame(index=times, columns=pd.Index(horizons, name="horizon"), dtype="float64")
    for h in horizons:
        ic = _cross_corr(data["decision_time"], data["value"], data[fwd_column(h)], rank=method == "spearman")
        out[h] = ic.reindex(times).to_numpy()
    return out


def information_coefficient(factor: pd.DataFrame, forward: pd.DataFrame, horizons: Sequence[int],
                            method: str = "spearman") -> pd.DataFrame:
    """The IC per decision time (rows, sorted) and horizon (columns, named by h in sessions).

    ``method`` "spearman" (the rank IC) or "pearson"; see the module doc for the pairing and the
    NaN rule. The rows are every decision time the factor and forward frames share.
    """
    if method not in ("spearman", "pearson"):
        raise ArgumentError(f"method must be 'spearman' or 'pearson', got {method!r}")
    _, data, horizons = _paired(factor, forward, horizons)
    return _ic(data, horizons, method)


def ic_summary(ic: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, IR, t-stat, hit share and n of each column of an IC frame (rows: the columns).

    See the module doc for the definitions; NaN ICs are left out (n counts the others).
    """
    if not isinstance(ic, pd.DataFrame) or not all(pd.api.types.is_numeric_dtype(d) for d in ic.dtypes):
        raise ArgumentError("ic must be a DataFrame of ICs (decision_time x horizon), as information_coefficient "
                            "returns")
    n = ic.count()
    mean = ic.mean()
    std = ic.std(ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ir = (mean / std).where(std > 0.0)
    out = pd.DataFrame({
        "mean": mean,
        "std": std,
        "ir": ir,
        "t_stat": ir * np.sqrt(n.astype("float64")),
        "hit": (ic > 0.0).sum() / n.where(n > 0),
        "n": n.astype("float64"),
    }, columns=SUMMARY_COLUMNS)
    out.index.name = ic.columns.name
    return out


def ic_decay(factor: pd.DataFrame, forward: pd.DataFrame, horizons: Sequence[int]) -> pd.Series:
    """The mean rank IC by horizon (index: h in sessions): how fast the factor's edge fades."""
    return information_coefficient(factor, forward, horizons, method="spearman").mean().rename("rank_ic")


# ---------------------------------------------------------------- quantiles

def _quantiles(fac: pd.DataFrame, q: int) -> pd.DataFrame:
    fac = fac[fac["value"].notna()].sort_values(["decision_time", "value", "symbol"], kind="stable")
    by_time = fac.groupby("decision_time", sort=False)
    position = by_time.cumcount().to_numpy()
    size = by_time["value"].transform("size").to_numpy()
    keep = size >= q
    i, n = position[keep], size[keep]
    bucket = np.clip(-((-i * q) // (n - 1)), 1, q)  # ceil(i * q / (n - 1)) in integers
    out = fac.loc[keep, KEYS].assign(quantile=bucket.astype("int64"))
    return out.sort_values(["decision_time", "quantile", "symbol"], kind="stable").reset_index(drop=True)


def factor_quantiles(factor: pd.DataFrame, quantiles: int = 5) -> pd.DataFrame:
    """The quantile (1 = lowest values .. ``quantiles``) of each factor row with a value.

    Columns ``symbol, decision_time, quantile`` (int), sorted by decision time then quantile then
    symbol; the rule (ties broken by symbol, times with fewer than ``quantiles`` symbols left out)
    is the module doc's.
    """
    q = _check_int(quantiles, "quantiles", 2)
    return _quantiles(_check_factor(factor), q)


def _quantile_means(data: pd.DataFrame, buckets: pd.DataFrame, horizons: list[int]) -> pd.DataFrame:
    """Mean forward return per (decision_time, quantile) (rows) and horizon (columns)."""
    joined = data.merge(buckets, on=KEYS, how="inner")
    means = joined.groupby(["decision_time", "quantile"], sort=True)[[fwd_column(h) for h in horizons]].mean()
    means.columns = pd.Index(horizons, name="horizon")
    return means


def _quantile_table(means: pd.DataFrame, q: int) -> pd.DataFrame:
    out = means.groupby(level="quantile").mean().reindex(pd.RangeIndex(1, q + 1, name="quantile"))
    out.columns = means.columns
    return out


def _spread(means: pd.DataFrame, q: int) -> pd.DataFrame:
    wide = means.unstack("quantile")
    out = pd.DataFrame({h: wide[(h, q)] - wide[(h, 1)] if (h, q) in wide and (h, 1) in wide else np.nan
                        for h in means.columns}, index=wide.index)
    out.columns = means.columns
    return out


def quantile_returns(factor: pd.DataFrame, forward: pd.DataFrame, horizons: Sequence[int],
                     quantiles: int = 5) -> pd.DataFrame:
    """Mean forward return per quantile (rows 1..``quantiles``) and horizon (columns).

    The mean over decision times of each quantile's mean forward return at that time (module
    doc); :func:`quantile_spread` gives the top-minus-bottom spread per decision time.
    """
    q = _check_int(quantiles, "quantiles", 2)
    fac, data, horizons = _paired(factor, forward, horizons)
    return _quantile_table(_quantile_means(data, _quantiles(fac, q), horizons), q)


def quantile_spread(factor: pd.DataFrame, forward: pd.DataFrame, horizons: Sequence[int],
                    quantiles: int = 5) -> pd.DataFrame:
    """The top quantile's mean forward return minus the bottom's, per decision time and horizon.

    NaN where either side has no forward return; its mean is the long-short return of the factor
    (before costs) and :func:`ic_summary` of it gives its t-stat.
    """
    q = _check_int(quantiles, "quantiles", 2)
    fac, data, horizons = _paired(factor, forward, horizons)
    return _spread(_quantile_means(data, _quantiles(fac, q), horizons), q)


# ---------------------------------------------------------------- stability

def factor_turnover(factor: pd.DataFrame, quantiles: int = 5) -> pd.Series:
    """The share of the top quantile's symbols that are new since the previous decision time.

    ``len(top_t - top_prev) / len(top_t)`` (alphalens' ``quantile_turnover`` of the top
    quantile), where prev is the previous decision time that has quantiles; NaN at the first.
    Index: decision times with quantiles, sorted.
    """
    q = _check_int(quantiles, "quantiles", 2)
    return _turnover(_quantiles(_check_factor(factor), q), q)


def _turnover(buckets: pd.DataFrame, q: int) -> pd.Series:
    times = pd.Index(buckets["decision_time"].unique(), name="decision_time")
    top = buckets[buckets["quantile"] == q].groupby("decision_time", sort=True)["symbol"].agg(frozenset)
    top = top.reindex(times)
    out = np.full(len(times), np.nan)
    for k in range(1, len(times)):
        now, before = top.iloc[k], top.iloc[k - 1]
        if isinstance(now, frozenset) and isinstance(before, frozenset) and now:
            out[k] = len(now - before) / len(now)
    return pd.Series(out, index=times, name="top_turnover")


def factor_autocorrelation(factor: pd.DataFrame, lag: int = 1) -> pd.Series:
    """The rank autocorrelation of the factor: Spearman between its values at t and ``lag`` decision times before.

    Over the symbols with a value at both times (re-ranked among them); NaN for the first ``lag``
    times and where fewer than :data:`MIN_NAMES` symbols are common. Equal to alphalens'
    ``factor_rank_autocorrelation`` when the universe does not change. Index: the factor's
    decision times, sorted. A stable factor (near 1) trades little; near 0 it is noise or fast.
    """
    lag = _check_int(lag, "lag", 1)
    return _autocorrelation(_check_factor(factor), lag)


def _autocorrelation(fac: pd.DataFrame, lag: int) -> pd.Series:
    wide = fac.pivot(index="decision_time", columns="symbol", values="value").sort_index()
    prev = wide.shift(lag)
    both = wide.notna() & prev.notna()
    a = wide.where(both).rank(axis=1)
    b = prev.where(both).rank(axis=1)
    da = a.sub(a.mean(axis=1), axis=0)
    db = b.sub(b.mean(axis=1), axis=0)
    sxy, sxx, syy = (da * db).sum(axis=1), (da * da).sum(axis=1), (db * db).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = sxy / np.sqrt(sxx * syy)
    ok = (both.sum(axis=1) >= MIN_NAMES) & (sxx > 0.0) & (syy > 0.0)
    return corr.where(ok).clip(-1.0, 1.0).rename("rank_autocorrelation")


# ---------------------------------------------------------------- regimes

def by_regime(factor: pd.DataFrame, forward: pd.DataFrame, horizons: Sequence[int],
              regimes: pd.Series) -> pd.DataFrame:
    """The rank-IC summary (:func:`ic_summary`) per regime: rows (regime, horizon), regimes sorted.

    ``regimes`` holds the regime known at each decision time (a Series indexed by decision time);
    every decision time the factor and forward frames share must have one, not NaN (label the
    unknown ones, e.g. 'unknown', or drop those rows from the factor frame).
    """
    _check_regimes(regimes)
    return _by_regime(information_coefficient(factor, forward, horizons, method="spearman"), regimes)


def _check_regimes(regimes) -> None:
    if not isinstance(regimes, pd.Series):
        raise ArgumentError(f"regimes must be a pandas Series of the regime known at each decision time, "
                            f"got {type(regimes).__name__}")
    if not regimes.index.is_unique:
        raise ArgumentError("regimes must have one label per decision time (unique index)")


def _by_regime(ic: pd.DataFrame, regimes: pd.Series) -> pd.DataFrame:
    try:
        labels = regimes.reindex(ic.index)
    except TypeError as err:
        raise ArgumentError(f"regimes must be indexed by decision times like the factor's: {err}") from err
    if labels.isna().any():
        first = ic.index[labels.isna().to_numpy()][0]
        raise ArgumentError(f"regimes have no label for {int(labels.isna().sum())} decision time(s), the first "
                            f"{first}: label every decision time (e.g. 'unknown') or drop those factor rows")
    values = label_values(labels, "regimes")
    parts = {value: ic_summary(ic[(labels == value).to_numpy()]) for value in values}
    return pd.concat(parts, names=[regimes.name or "regime", "horizon"])


# ---------------------------------------------------------------- report

@dataclass(frozen=True)
class FactorReport:
    """The evaluation of one factor (:func:`factor_report`); ``to_dict`` flattens it to plain floats."""

    horizons: tuple[int, ...]
    quantiles: int
    ic: pd.DataFrame                  # rank IC per decision time x horizon
    ic_summary: pd.DataFrame          # its summary per horizon
    quantile_returns: pd.DataFrame    # quantile x horizon
    spread: pd.DataFrame              # top minus bottom per decision time x horizon
    turnover: pd.Series               # top-quantile turnover per decision time
    autocorrelation: pd.Series        # rank autocorrelation per decision time
    by_regime: pd.DataFrame | None    # rank-IC summary per (regime, horizon), or None

    def to_dict(self) -> dict[str, float]:
        """Flat ``name -> float`` (NaN kept): ``ic_<stat>_h<h>`` for the stats of :func:`ic_summary`,
        ``q<k>_h<h>`` (quantile mean returns), ``spread_h<h>`` (mean spread), ``turnover`` and
        ``autocorrelation`` (means), and ``regime[<name>].ic_<stat>_h<h>`` with regimes."""
        out: dict[str, float] = {}
        for h in self.horizons:
            for stat in SUMMARY_COLUMNS:
                out[f"ic_{stat}_h{h}"] = float(self.ic_summary.loc[h, stat])
        for h in self.horizons:
            for k in range(1, self.quantiles + 1):
                out[f"q{k}_h{h}"] = float(self.quantile_returns.loc[k, h])
            out[f"spread_h{h}"] = float(self.spread[h].mean()) if len(self.spread) else math.nan
        out["turnover"] = float(self.turnover.mean()) if self.turnover.notna().any() else math.nan
        out["autocorrelation"] = float(self.autocorrelation.mean()) if self.autocorrelation.notna().any() \
            else math.nan
        if self.by_regime is not None:
            for (regime, h), row in self.by_regime.iterrows():
                for stat in SUMMARY_COLUMNS:
                    out[f"regime[{regime}].ic_{stat}_h{h}"] = float(row[stat])
        return out


def factor_report(factor: pd.DataFrame, forward: pd.DataFrame, horizons: Sequence[int], *, quantiles: int = 5,
                  regimes: pd.Series | None = None, lag: int = 1) -> FactorReport:
    """Everything above for one factor: rank IC and its summary, quantile returns and spread,
    top-quantile turnover, rank autocorrelation at ``lag``, and the rank IC per regime when
    ``regimes`` is given."""
    q = _check_int(quantiles, "quantiles", 2)
    lag = _check_int(lag, "lag", 1)
    if regimes is not None:
        _check_regimes(regimes)
    fac, data, horizons = _paired(factor, forward, horizons)
    ic = _ic(data, horizons, "spearman")
    buckets = _quantiles(fac, q)
    means = _quantile_means(data, buckets, horizons)
    return FactorReport(
        horizons=tuple(horizons),
        quantiles=q,
        ic=ic,
        ic_summary=ic_summary(ic),
        quantile_returns=_quantile_table(means, q),
        spread=_spread(means, q),
        turnover=_turnover(buckets, q),
        autocorrelation=_autocorrelation(fac, lag),
        by_regime=None if regimes is None else _by_regime(ic, regimes),
    )
