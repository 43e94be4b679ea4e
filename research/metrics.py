"""Performance of a strategy's daily returns: headline metrics, metrics per regime, bootstrap
intervals, and the probabilistic and deflated Sharpe ratios. Pure functions over pandas/numpy.

The rules, each stated once here and applied by every function below:

- **Returns** are simple (not log) returns of the whole portfolio, one per session: a
  ``pd.Series`` whose index (sessions or decision times) is unique and increasing.
- **Missing returns**: NaNs *before the first value* (the sessions before the strategy's first
  return: a warm-up) are dropped. A NaN *after* the first value is refused with an
  :class:`~etl.core.errors.ArgumentError` naming the session: a gap is a fault upstream (a missing
  bar, a failed fill) and is never taken as a zero return. Infinite returns are refused.
- **Annualisation**: ``annual`` sessions a year (252). Risk-free rate 0.
- **Sharpe** = mean / std (ddof 1) x sqrt(annual); **ann_vol** = std (ddof 1) x sqrt(annual);
  **ann_return** is geometric: ``prod(1 + r) ** (annual / n) - 1`` (-1 when the wealth ends at 0,
  NaN when it ends below 0, which leverage allows); **total_return** = ``prod(1 + r) - 1``.
- **Sortino** (empyrical's definition): mean x annual / (downside deviation x sqrt(annual)), where
  the downside deviation is ``sqrt(mean(min(r, 0) ** 2))`` over *all* sessions (ddof 0).
- **max_drawdown** (<= 0): the deepest fall of wealth ``prod(1 + r)`` below its running peak,
  the start (wealth 1) counting as a peak, so a loss on the first session is a drawdown.
- **calmar** = ann_return / |max_drawdown|, NaN when there is no drawdown.
- Ratios over a deviation of exactly zero follow empyrical: +-inf when the numerator is non-zero,
  NaN when it is zero (0 / 0). Statistics over too few sessions are NaN (a Sharpe needs two).
- **hit_rate**: the share of sessions with a *non-zero* return whose return is positive.
  Sessions with a return of exactly 0 (flat, out of the market) are neither hits nor misses;
  NaN when no session has a non-zero return. (empyrical has no such metric.)
- **skew** and **kurtosis** are the population (biased) moment ratios ``m3 / m2**1.5`` and
  ``m4 / m2**2``: the kurtosis is Pearson's, *not* excess (3 for a normal distribution), as the
  Probabilistic and Deflated Sharpe papers use them; NaN when the returns do not vary.
- **Weights** (``weights``): a decision_time x symbol frame of target weights (fractions of the
  book, negative for shorts), as :func:`strategy.backtest.run_backtest` produces. A NaN weight
  means the symbol has no target at that time (not listed, no row) and counts as no position (0).
  Row t of the weights is paired with the return of the same index label t; every session of the
  returns must have a row of weights.
  **turnover** = the mean over sessions of ``sum_s |w_t,s - w_t-1,s| / 2`` (one-way: the share
  of the book bought, equal to the share sold), where w_t-1 is the previous row of the whole
  weights frame; the first row of the frame has no predecessor and is left out of the mean
  (pyfolio's convention: the initial build is not turnover). **exposure** = the mean over sessions
  of the gross ``sum_s |w_t,s|``. Both NaN when ``weights`` is None.
- **Per-period Sharpe** for the PSR and DSR: the Sharpe ratios of Bailey and Lopez de Prado are
  per observation (mean / std of daily returns, *not* annualised); an annualised Sharpe S maps to
  ``S / sqrt(annual)``, and an annualised variance of trial Sharpes V to ``V / annual``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from etl.core.errors import ArgumentError

__all__ = [
    "METRICS",
    "STATISTICS",
    "bootstrap_ci",
    "deflated_sharpe",
    "expected_max_sharpe",
    "performance",
    "probabilistic_sharpe",
    "sliced",
]

#: the keys of :func:`performance`, in order
METRICS = ("sessions", "total_return", "ann_return", "ann_vol", "sharpe", "sortino", "calmar", "max_drawdown",
           "hit_rate", "turnover", "exposure", "skew", "kurtosis")

#: Euler-Mascheroni constant of the False Strategy theorem
EULER_GAMMA = 0.5772156649015329

_NORMAL = NormalDist()


# ---------------------------------------------------------------- kernels
# Each kernel takes a 2-D float array (one sample per row, sessions along axis 1) and the
# sessions per year, and returns one value per row: performance() runs them on one row, the
# bootstrap on a matrix of resamples.

def _total_return(r: np.ndarray, annual: int) -> np.ndarray:
    return np.prod(1.0 + r, axis=1) - 1.0


def _ann_return(r: np.ndarray, annual: int) -> np.ndarray:
    years = r.shape[1] / annual
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.prod(1.0 + r, axis=1) ** (1.0 / years) - 1.0


def _std(r: np.ndarray) -> np.ndarray:
    """Sample standard deviation (ddof 1); exactly 0 where a row does not vary (no 1e-18 residue)."""
    if r.shape[1] < 2:
        return np.full(r.shape[0], np.nan)
    return np.where(np.ptp(r, axis=1) == 0.0, 0.0, r.std(axis=1, ddof=1))


def _ann_vol(r: np.ndarray, annual: int) -> np.ndarray:
    return _std(r) * np.sqrt(annual)


def _sharpe(r: np.ndarray, annual: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return r.mean(axis=1) / _std(r) * np.sqrt(annual)


def _sortino(r: np.ndarray, annual: int) -> np.ndarray:
    if r.shape[1] < 2:
        return np.full(r.shape[0], np.nan)
    downside = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2, axis=1)) * np.sqrt(annual)
    with np.errstate(invalid="ignore", divide="ignore"):
        return r.mean(axis=1) * annual / downside


def _max_drawdown(r: np.ndarray, annual: int) -> np.ndarray:
    wealth = np.cumprod(1.0 + r, axis=1)
    peak = np.maximum.accumulate(np.concatenate([np.ones((r.shape[0], 1)), wealth], axis=1), axis=1)[:, 1:]
    return np.min(wealth / peak - 1.0, axis=1)


def _calmar(r: np.ndarray, annual: int) -> np.ndarray:
    mdd = _max_drawdown(r, annual)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mdd < 0.0, _ann_return(r, annual) / np.abs(mdd), np.nan)


def _hit_rate(r: np.ndarray, annual: int) -> np.ndarray:
    moved = np.count_nonzero(r, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(moved > 0, np.count_nonzero(r > 0.0, axis=1) / moved, np.nan)


def _moments(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    centred = r - r.mean(axis=1, keepdims=True)
    m2 = np.mean(centred**2, axis=1)
    flat = np.ptp(r, axis=1) == 0.0
    return m2, np.mean(centred**3, axis=1), np.mean(centred**4, axis=1), flat


def _skew(r: np.ndarray, annual: int) -> np.ndarray:
    m2, m3, _, flat = _moments(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flat, np.nan, m3 / m2**1.5)


def _kurtosis(r: np.ndarray, annual: int) -> np.ndarray:
    m2, _, m4, flat = _moments(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flat, np.nan, m4 / m2**2)


_Kernel = Callable[[np.ndarray, int], np.ndarray]

#: statistics of the returns alone, by name: what :func:`bootstrap_ci` can resample
STATISTICS: dict[str, _Kernel] = {
    "total_return": _total_return,
    "ann_return": _ann_return,
    "ann_vol": _ann_vol,
    "sharpe": _sharpe,
    "sortino": _sortino,
    "calmar": _calmar,
    "max_drawdown": _max_drawdown,
    "hit_rate": _hit_rate,
    "skew": _skew,
    "kurtosis": _kurtosis,
}


# ---------------------------------------------------------------- checks

def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_returns(returns, name: str = "returns", minimum: int = 1) -> pd.Series:
    """The returns as float, leading NaNs dropped; refuses what the module doc refuses."""
    if not isinstance(returns, pd.Series):
        raise ArgumentError(f"{name} must be a pandas Series of daily returns indexed by session, "
                            f"got {type(returns).__name__}")
    if not (pd.api.types.is_numeric_dtype(returns.dtype) and not pd.api.types.is_bool_dtype(returns.dtype)):
        raise ArgumentError(f"{name} must hold numbers (simple returns), got dtype {returns.dtype}")
    if not returns.index.is_unique:
        first = returns.index[returns.index.duplicated()][0]
        raise ArgumentError(f"{name} has two returns for session {first}: give one return per session")
    if not returns.index.is_monotonic_increasing:
        raise ArgumentError(f"{name} must be sorted by session (increasing index): call .sort_index() first")
    values = returns.astype("float64")
    present = values.notna().to_numpy()
    if not present.any():
        raise ArgumentError(f"{name} has no return (empty or all NaN): nothing to measure")
    values = values.iloc[int(np.argmax(present)):]
    gaps = values.isna().to_numpy()
    if gaps.any():
        raise ArgumentError(
            f"{name} has {int(gaps.sum())} NaN return(s) after its first return, the first at session "
            f"{values.index[int(np.argmax(gaps))]}: a missing return is not a zero return; fill the gap upstream "
            f"(or slice the series) and call again")
    if not np.isfinite(values.to_numpy()).all():
        raise ArgumentError(f"{name} holds an infinite return: check the prices it was computed from")
    if len(values) < minimum:
        raise ArgumentError(f"{name} needs at least {minimum} returns, got {len(values)}")
    return values


def _weight_series(weights, sessions: pd.Index) -> tuple[pd.Series, pd.Series]:
    """Turnover and gross exposure per session of ``sessions`` from a decision_time x symbol frame."""
    if not isinstance(weights, pd.DataFrame):
        raise ArgumentError(f"weights must be a pandas DataFrame (decision_time x symbol target weights) or None, "
                            f"got {type(weights).__name__}")
    if not weights.index.is_unique or not weights.index.is_monotonic_increasing:
        raise ArgumentError("weights must have one row per decision time, sorted (unique increasing index)")
    bad = [c for c in weights.columns if not pd.api.types.is_numeric_dtype(weights[c].dtype)]
    if bad:
        raise ArgumentError(f"weights must hold numbers; columns {bad[:5]} do not")
    missing = sessions.difference(weights.index)
    if len(missing):
        raise ArgumentError(f"weights have no row for {len(missing)} session(s) of the returns, the first "
                            f"{missing[0]}: give the target weights of every session the returns cover")
    w = weights.astype("float64").fillna(0.0)  # NaN: no target for the symbol at that time, i.e. no position
    if not np.isfinite(w.to_numpy()).all():
        raise ArgumentError("weights hold an infinite weight")
    turnover = w.diff().abs().sum(axis=1, min_count=1) / 2.0
    turnover.iloc[:1] = np.nan  # the first row has no predecessor
    exposure = w.abs().sum(axis=1)
    return turnover.reindex(sessions), exposure.reindex(sessions)


# ---------------------------------------------------------------- performance

def _performance(r: pd.Series, annual: int, turnover: pd.Series | None, exposure: pd.Series | None) -> dict[str, float]:
    row = r.to_numpy(dtype="float64")[None, :]
    out: dict[str, float] = {"sessions": float(len(r))}
    for name, kernel in STATISTICS.items():
        out[name] = float(kernel(row, annual)[0])
    out["turnover"] = float(turnover.mean()) if turnover is not None and turnover.notna().any() else math.nan
    out["exposure"] = float(exposure.mean()) if exposure is not None else math.nan
    return {key: out[key] for key in METRICS}


def performance(returns: pd.Series, *, weights: pd.DataFrame | None = None, annual: int = 252) -> dict[str, float]:
    """The headline metrics of a strategy's daily returns, keyed as :data:`METRICS`.

    ``sessions, total_return, ann_return, ann_vol, sharpe, sortino, calmar, max_drawdown,
    hit_rate, turnover, exposure, skew, kurtosis``, every value a plain float, by the rules of
    the module doc (leading NaNs dropped, later NaNs refused; turnover and exposure from
    ``weights``, NaN without them).
    """
    annual = _check_int(annual, "annual", 1)
    r = _check_returns(returns)
    turnover = exposure = None
    if weights is not None:
        turnover, exposure = _weight_series(weights, r.index)
    return _performance(r, annual, turnover, exposure)


def sliced(returns: pd.Series, labels: pd.Series, *, weights: pd.DataFrame | None = None,
           annual: int = 252) -> pd.DataFrame:
    """:func:`performance` per label value: one row per label (sorted), the columns of :data:`METRICS`.

    ``labels`` gives each session of ``returns`` a label (a regime name, a year): a Series whose
    index holds every session of the returns (after their leading NaNs are dropped), none of
    them NaN. The label of session t must be the one *known* at t (a regime estimated with data up
    to t, not one fitted on the whole history): that is the caller's job, this function cannot
    tell. A label's metrics compound its sessions as if they were one account trading only on
    them (its drawdown spans the gaps between its sessions); turnover at a session still compares
    its weights with the previous row of the whole weights frame.
    """
    annual = _check_int(annual, "annual", 1)
    r = _check_returns(returns)
    if not isinstance(labels, pd.Series):
        raise ArgumentError(f"labels must be a pandas Series of one label per session, got {type(labels).__name__}")
    if not labels.index.is_unique:
        raise ArgumentError("labels must have one label per session (unique index)")
    missing = r.index.difference(labels.index)
    if len(missing):
        raise ArgumentError(f"labels have no label for {len(missing)} session(s) of the returns, the first "
                            f"{missing[0]}: label every session (e.g. 'unknown' before a regime is known)")
    lab = labels.reindex(r.index)
    if lab.isna().any():
        raise ArgumentError(f"labels are NaN at {int(lab.isna().sum())} session(s) of the returns, the first "
                            f"{lab.index[lab.isna().to_numpy()][0]}: label every session (e.g. 'unknown')")
    values = label_values(lab, "labels")
    turnover = exposure = None
    if weights is not None:
        turnover, exposure = _weight_series(weights, r.index)
    rows = []
    for value in values:
        mask = (lab == value).to_numpy()
        rows.append(_performance(r[mask], annual, None if turnover is None else turnover[mask],
                                 None if exposure is None else exposure[mask]))
    return pd.DataFrame(rows, index=pd.Index(values, name=labels.name or "label"), columns=list(METRICS))


# ---------------------------------------------------------------- bootstrap

#: resamples x sessions drawn at once (bounds the bootstrap's memory, about 16 MB per array)
_CHUNK_CELLS = 2_000_000


def _stationary_indices(rng: np.random.Generator, m: int, n: int, block: int) -> np.ndarray:
    """``m`` rows of ``n`` indices of the stationary bootstrap (Politis and Romano, 1994)."""
    t = np.arange(n)
    new = rng.random((m, n)) < 1.0 / block
    new[:, 0] = True
    starts = rng.integers(0, n, size=(m, n))
    last = np.maximum.accumulate(np.where(new, t, 0), axis=1)  # where the current block began
    return (np.take_along_axis(starts, last, axis=1) + (t - last)) % n


def bootstrap_ci(returns: pd.Series, statistic: str = "sharpe", *, n_resamples: int = 1000, block: int = 20,
                 level: float = 0.95, seed: int = 0, annual: int = 252) -> tuple[float, float]:
    """A percentile interval of ``statistic`` (a name of :data:`STATISTICS`) by the stationary bootstrap.

    The stationary bootstrap (Politis and Romano, 1994) keeps the serial dependence of daily
    returns (volatility clusters): each resample of the n sessions is built from blocks that
    start at uniformly drawn sessions and run for a geometric number of sessions of mean
    ``block``, wrapping from the last session to the first (``block=1`` is the i.i.d.
    bootstrap). The statistic is computed on each of ``n_resamples`` resamples; the interval is
    their ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation), ignoring
    resamples where the statistic is undefined (a Calmar without drawdown); (NaN, NaN) when it
    is undefined on all. Deterministic: the same inputs and ``seed`` give the same interval.
    """
    if not isinstance(statistic, str) or statistic not in STATISTICS:
        raise ArgumentError(f"statistic must be one of {sorted(STATISTICS)}, got {statistic!r}")
    n_resamples = _check_int(n_resamples, "n_resamples", 1)
    block = _check_int(block, "block", 1)
    seed = _check_int(seed, "seed", 0)
    annual = _check_int(annual, "annual", 1)
    if isinstance(level, bool) or not isinstance(level, float | int) or not 0.0 < level < 1.0:
        raise ArgumentError(f"level must be a number strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    r = _check_returns(returns, minimum=2).to_numpy(dtype="float64")
    n = len(r)
    kernel = STATISTICS[statistic]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n)
    values = []
    for start in range(0, n_resamples, chunk):
        idx = _stationary_indices(rng, min(chunk, n_resamples - start), n, block)
        values.append(kernel(r[idx], annual))
    stats = np.concatenate(values)
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return (math.nan, math.nan)
    low, high = np.quantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return (float(low), float(high))


# ---------------------------------------------------------------- PSR and DSR

def _check_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value):
        raise ArgumentError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def probabilistic_sharpe(sr: float, n_obs: int, skew: float, kurtosis: float, sr_benchmark: float = 0.0) -> float:
    """The Probabilistic Sharpe Ratio (Bailey and Lopez de Prado, 2012): P(true SR > ``sr_benchmark``).

    ``PSR = Phi((sr - sr_benchmark) * sqrt(n_obs - 1) / sqrt(1 - skew * sr + (kurtosis - 1) / 4 * sr**2))``
    with ``sr`` and ``sr_benchmark`` per-period (not annualised) Sharpe ratios, ``skew`` and
    ``kurtosis`` the returns' skewness and Pearson (non-excess) kurtosis, and Phi the standard
    normal CDF.
    """
    sr = _check_number(sr, "sr")
    n_obs = _check_int(n_obs, "n_obs", 2)
    skew = _check_number(skew, "skew")
    kurtosis = _check_number(kurtosis, "kurtosis")
    sr_benchmark = _check_number(sr_benchmark, "sr_benchmark")
    radicand = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if radicand <= 0.0:
        raise ArgumentError(
            f"1 - skew * sr + (kurtosis - 1) / 4 * sr**2 = {radicand:.6g} is not positive (sr={sr}, skew={skew}, "
            f"kurtosis={kurtosis}): is sr annualised (divide by sqrt(252)) or the kurtosis excess (add 3)?")
    return _NORMAL.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(radicand))


def expected_max_sharpe(n_trials: int, var_trials: float) -> float:
    """The expected maximum Sharpe of ``n_trials`` skill-less trials (the False Strategy theorem).

    ``E[max SR] = sqrt(var_trials) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))``, g the
    Euler-Mascheroni constant, Phi^-1 the standard normal quantile; the trials' Sharpe ratios are
    taken as drawn around a true Sharpe of 0 with variance ``var_trials`` (per-period Sharpe ratios:
    pass an annualised variance divided by the sessions per year). One trial: 0 (no selection).
    """
    n_trials = _check_int(n_trials, "n_trials", 1)
    var_trials = _check_number(var_trials, "var_trials")
    if var_trials < 0.0:
        raise ArgumentError(f"var_trials must be >= 0 (a variance), got {var_trials}")
    if n_trials == 1:
        return 0.0
    z = ((1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
         + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e)))
    return math.sqrt(var_trials) * z


def deflated_sharpe(returns: pd.Series, trial_sharpes: Sequence[float]) -> dict[str, float]:
    """The Deflated Sharpe Ratio (Bailey and Lopez de Prado, 2014) of the strategy chosen among trials.

    ``trial_sharpes`` are the per-period (not annualised) Sharpe ratios of *every* trial of the
    search, the chosen one included; N = their number, V = their sample variance (ddof 1).
    ``sr0 = expected_max_sharpe(N, V)`` is the best Sharpe luck alone would give, and
    ``dsr = probabilistic_sharpe(sr, T, skew, kurtosis, sr0)`` with sr, T, skew and kurtosis
    those of ``returns`` (mean / std ddof 1, sessions, moments as in the module doc). With one
    trial there is no selection: sr0 = 0, var_trials NaN, and the DSR is the PSR against 0.

    Returns ``{"sr", "sr0", "dsr", "n_trials", "n_obs", "skew", "kurtosis", "var_trials"}``.
    """
    r = _check_returns(returns, minimum=2)
    if isinstance(trial_sharpes, str | bytes) or not isinstance(trial_sharpes, Sequence | np.ndarray | pd.Series):
        raise ArgumentError(f"trial_sharpes must be a sequence of the per-period Sharpe ratios of every trial, "
                            f"got {type(trial_sharpes).__name__}")
    trials = np.asarray(trial_sharpes, dtype="float64").ravel()
    if trials.size == 0 or not np.isfinite(trials).all():
        raise ArgumentError("trial_sharpes must hold at least one Sharpe ratio, all finite (one per trial, the "
                            "chosen one included)")
    row = r.to_numpy(dtype="float64")[None, :]
    sd = float(_std(row)[0])
    if sd == 0.0:
        raise ArgumentError("returns do not vary: their Sharpe ratio is undefined")
    sr = float(row.mean()) / sd
    skew, kurt = float(_skew(row, 1)[0]), float(_kurtosis(row, 1)[0])
    n_trials = int(trials.size)
    var_trials = float(trials.var(ddof=1)) if n_trials > 1 else math.nan
    sr0 = expected_max_sharpe(n_trials, var_trials) if n_trials > 1 else 0.0
    dsr = probabilistic_sharpe(sr, len(r), skew, kurt, sr0)
    return {"sr": sr, "sr0": sr0, "dsr": dsr, "n_trials": float(n_trials), "n_obs": float(len(r)),
            "skew": skew, "kurtosis": kurt, "var_trials": var_trials}


def label_values(labels: pd.Series, name: str) -> list:
    """The distinct labels sorted, or an ArgumentError naming ``name`` when they do not sort
    (a mix of kinds)."""
    try:
        return sorted(pd.unique(labels))
    except TypeError as err:
        raise ArgumentError(f"{name} must be of one sortable kind (all strings or all numbers): {err}") from err
