"""Walk-forward training: a learner (anything with ``fit(X, y)`` and ``predict(X)``, e.g. a
scikit-learn estimator) turned into a strategy that never trains on a label it could not
have known.

Rules, for a frame of many decision times (a backtest):

* Labels are the forward returns over ``horizon`` sessions computed from the frame's own
  ``ret_1d`` (:func:`research.labels.forward_returns`), each with ``fwd_known``, the
  decision time at which its last return became known.
* The model is retrained every ``retrain_every`` decision times of the frame, starting at
  the first decision time ``T`` at which ``min_train_rows`` labels are trainable. At ``T``
  the training rows are those with a label, every input present, a decision time before
  ``T`` and ``fwd_known <= T`` moved earlier by the ``embargo``
  (:func:`research.splits.known_cutoff`); a fresh learner from ``learner_factory(seed)``
  is fitted on them (rows in time then symbol order, so the result does not depend on the
  frame's order).
* That model scores the rows of the decision times from ``T`` up to the next retrain; each
  decision time holds the ``top_fraction`` of its scored symbols with the highest scores,
  equally weighted (:func:`top_fraction_weights`). Before the first training every weight
  is 0 (cash).
* Every fit is audited: its training rows are checked again, apart from the code that
  chose them, and a label with ``fwd_known > T`` (or a row at or after ``T``) raises
  :class:`~etl.core.errors.LookAheadError`. ``folds`` records one :class:`Fold` per fit of the
  last walk-forward run.

For one decision time (live), :meth:`WalkForward.fit_final` first trains on every label
known at the last decision time of a history, :meth:`WalkForward.save` /
:meth:`WalkForward.load` keep that model (joblib, with its sha256 in a JSON sidecar), and
``target_positions`` on a frame of a single decision time only predicts -- and refuses a
decision time before the time the model was trained at (its labels were not known then). A
model :meth:`WalkForward.load` read is *frozen*: it scores frames of any number of decision
times (all after its training time) without refitting, so the shadow replay's backtest and its
live loop trade the same artifact.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import AlphaError, ArgumentError, DeclarationError, LookAheadError, MissingColumnError
from research.labels import forward_returns, known_col, label_col
from research.splits import Embargo, known_cutoff

__all__ = ["RET_1D", "SESSION_DATE", "Fold", "Learner", "ModelFileError", "NotFittedError", "WalkForward",
           "top_fraction_weights"]

#: the daily return the labels are computed from (always fetched)
RET_1D = "technicals:ret_1d"
#: tells a new bar from a value carried forward within the view's TTL (see research.labels)
SESSION_DATE = "bars_daily:session_date"
#: the version of the saved-model format
MODEL_FORMAT = 1


class NotFittedError(AlphaError):
    """A single decision time (live) was given to a walk-forward strategy without a fitted model."""


class ModelFileError(AlphaError):
    """A saved model is missing, has no sidecar, or its bytes differ from the sha256 recorded at save."""


class Learner(Protocol):
    """What a learner must do: scikit-learn's estimator interface, reduced to two methods."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Any: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Fold:
    """One fit: trained at ``train_end`` on ``n_train`` labels, the latest known at
    ``max_known`` (always <= ``train_end``); predicted the decision times from
    ``first_predicted`` to ``last_predicted`` (None for the final model). ``ic``: the Spearman
    correlation of those predictions with their labels, measured after the fact (NaN when
    fewer than 3 have a label); a diagnostic, never used to decide."""

    train_end: pd.Timestamp
    n_train: int
    max_known: pd.Timestamp
    first_predicted: pd.Timestamp | None = None
    last_predicted: pd.Timestamp | None = None
    ic: float = math.nan

    def as_dict(self) -> dict:
        """Plain values (times as ISO strings, a missing ic as None): for JSON."""
        def plain(v):
            if isinstance(v, pd.Timestamp):
                return v.isoformat()
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {k: plain(v) for k, v in asdict(self).items()}


def top_fraction_weights(scores: pd.Series, times: pd.Series, symbols: pd.Series, top_fraction: float) -> pd.Series:
    """Per decision time, equal weights on the ``ceil(top_fraction x n)`` highest of its ``n``
    finite scores (ties: the alphabetically first symbols), 0 elsewhere; a decision time
    with any scored symbol sums to 1, one without sums to 0. Aligned to ``scores``."""
    score = pd.to_numeric(scores, errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(score)
    frame = pd.DataFrame({"t": times.reset_index(drop=True), "s": symbols.astype(str).reset_index(drop=True),
                          "neg": -score, "row": np.arange(len(score))})
    frame = frame.loc[ok].sort_values(["t", "neg", "s"], kind="stable")
    rank = frame.groupby("t", sort=False).cumcount().to_numpy()
    n = frame.groupby("t", sort=False)["row"].transform("size").to_numpy()
    k = np.maximum(1, np.ceil(top_fraction * n - 1e-9)).astype(int)
    weights = np.zeros(len(score))
    held = rank < k
    weights[frame["row"].to_numpy()[held]] = 1.0 / k[held]
    return pd.Series(weights, index=scores.index, name="target_weight")


def _short(ref: str) -> str:
    return ref.split(":", 1)[1]


def check_features(features, what: str) -> list[str]:
    """``features`` as a list of distinct ``view:feature`` refs with distinct short names."""
    if isinstance(features, str) or not isinstance(features, Sequence) or not features:
        raise DeclarationError(f"{what}: features must be a non-empty list of 'view:feature' refs, got {features!r}")
    bad = [f for f in features if not isinstance(f, str) or f.count(":") != 1 or not all(f.split(":"))]
    if bad:
        raise DeclarationError(f"{what}: features {bad} are not 'view:feature' refs (e.g. 'technicals:rsi_14')")
    shorts = [_short(f) for f in features]
    dup = sorted({s for s in shorts if shorts.count(s) > 1})
    if dup:
        raise DeclarationError(f"{what}: features {dup} appear twice (short names must be distinct: the frame's "
                               f"columns are the names after ':')")
    leaked = [f for f in shorts if f.startswith(("fwd_ret_", "fwd_known_"))]
    if leaked:
        raise DeclarationError(f"{what}: {leaked} are labels (forward returns), not features: a model fed them "
                               f"would see the future. Remove them from features")
    return list(features)


def _positive_int(value, name: str, what: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise DeclarationError(f"{what}: {name}={value!r} must be an int >= {least}")
    return int(value)


def _fraction(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (0.0 < float(value) <= 1.0):
        raise DeclarationError(f"{what}: top_fraction={value!r} must be a number in (0, 1], e.g. 0.3")
    return float(value)


def _embargo(value, what: str) -> Embargo:
    if isinstance(value, str):
        try:
            value = pd.Timedelta(value)
        except ValueError:
            raise DeclarationError(f"{what}: embargo={value!r} is not a duration (e.g. '7D') nor a session count") from None
    if isinstance(value, pd.Timedelta):
        if value < pd.Timedelta(0):
            raise DeclarationError(f"{what}: embargo={value} must be >= 0")
        return value
    return _positive_int(value, "embargo", what, least=0)


class WalkForward:
    """A learner as a strategy, trained walk-forward (see the module doc).

    ``learner_factory(seed)`` returns a fresh unfitted learner; ``features`` the
    ``view:feature`` refs the model reads (``technicals:ret_1d`` and
    ``bars_daily:session_date`` are added to ``FEATURES`` for the labels, not to the
    model's inputs unless listed); ``horizon`` the label's sessions; ``retrain_every``
    sessions between fits; ``min_train_rows`` labels needed for the first fit; ``embargo``
    sessions (int) or a duration (``pd.Timedelta`` or a string like ``'7D'``) between a
    label's end and the training time; ``top_fraction`` of the scored symbols held.
    """

    #: parameters a saved model must share with the strategy that loads it (besides the features)
    MODEL_KEYS: tuple[str, ...] = ("horizon",)

    def __init__(
        self,
        *,
        learner_factory: Callable[[int], Learner],
        features: Sequence[str],
        horizon: int = 5,
        retrain_every: int = 63,
        min_train_rows: int = 250,
        embargo: Embargo | str = 0,
        top_fraction: float = 0.3,
        seed: int = 0,
        name: str = "walk_forward",
    ):
        what = type(self).__name__
        if not callable(learner_factory):
            raise DeclarationError(f"{what}: learner_factory must be a callable taking a seed and returning an object "
                                   f"with fit(X, y) and predict(X), got {learner_factory!r}")
        if not isinstance(name, str) or not name:
            raise DeclarationError(f"{what}: name must be a non-empty string, got {name!r}")
        self.learner_factory = learner_factory
        self.features = check_features(features, what)
        self.horizon = _positive_int(horizon, "horizon", what)
        self.retrain_every = _positive_int(retrain_every, "retrain_every", what)
        self.min_train_rows = _positive_int(min_train_rows, "min_train_rows", what)
        self.embargo = _embargo(embargo, what)
        self.top_fraction = _fraction(top_fraction, what)
        self.seed = _positive_int(seed, "seed", what, least=0)
        self.NAME = name
        self.FEATURES = self.features + [f for f in (RET_1D, SESSION_DATE) if f not in self.features]
        self.inputs = [_short(f) for f in self.features]
        self.folds: list[Fold] = []
        self.fitted: Learner | None = None
        self.final_fold: Fold | None = None
        self.frozen = False   # set by load(): the saved model scores every frame (the artifact live trades)

    # ------------------------------------------------------------------ description
    def params(self) -> dict:
        """The constructor's parameters (those a spec can set), as plain values."""
        embargo = str(self.embargo) if isinstance(self.embargo, pd.Timedelta) else self.embargo
        return {"features": list(self.features), "horizon": self.horizon, "retrain_every": self.retrain_every,
                "min_train_rows": self.min_train_rows, "embargo": embargo, "top_fraction": self.top_fraction,
                "seed": self.seed}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    # ------------------------------------------------------------------ the rule
    def training_mask(self, labelled: np.ndarray, times: np.ndarray, known: np.ndarray, at: int, cutoff: int) -> np.ndarray:
        """Rows a model trained at decision time ``at`` may learn from: labelled (label and
        every input present), decided before ``at``, label known by ``cutoff`` (``at`` moved
        earlier by the embargo). Times are int64 ns; a missing ``known`` is int64 min."""
        return labelled & (times < at) & (known <= cutoff) & (known != np.iinfo(np.int64).min)

    # ------------------------------------------------------------------ strategy protocol
    def target_positions(self, features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
        """Target weights aligned to ``features``' rows: walk-forward over a frame of many
        decision times; the fitted model's prediction on a frame of one decision time."""
        scores = self.scores(features, time_col)
        return top_fraction_weights(scores, features[time_col], features["symbol"], self.top_fraction)

    def scores(self, features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
        """The model's score of each row (NaN where not scored: missing inputs, before the first fit)."""
        self._check_frame(features, time_col, need_ret=False)
        times = features[time_col]
        if times.nunique() == 1 or self.frozen:
            return self._predict_live(features, time_col)
        self._check_frame(features, time_col, need_ret=True)
        return self._walk_forward(features, time_col)

    # ------------------------------------------------------------------ internals
    def _check_frame(self, frame: pd.DataFrame, time_col: str, need_ret: bool) -> None:
        need = ["symbol", time_col, *self.inputs] + (["ret_1d"] if need_ret else [])
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise MissingColumnError(f"{self.NAME}: target_positions needs columns {missing}; fetch the strategy's "
                                     f"FEATURES {self.FEATURES} (the frame has {list(frame.columns)})")
        if len(frame) == 0:
            raise ArgumentError(f"{self.NAME}: the frame has no rows")
        times = frame[time_col]
        if not isinstance(times.dtype, pd.DatetimeTZDtype) or times.isna().any():
            raise ArgumentError(f"{self.NAME}: {time_col} must be tz-aware times without gaps, got {times.dtype}")

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        cols = []
        for name in self.inputs:
            col = frame[name]
            if not (pd.api.types.is_numeric_dtype(col) or col.isna().all()):
                raise DeclarationError(f"{self.NAME}: feature {name!r} is not numeric ({col.dtype}); a model reads numbers")
            cols.append(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float))
        return np.column_stack(cols) if cols else np.empty((len(frame), 0))

    def _predict_live(self, frame: pd.DataFrame, time_col: str) -> pd.Series:
        if self.fitted is None or self.final_fold is None:
            raise NotFittedError(f"{self.NAME}: one decision time and no fitted model; call fit_final(history) "
                                 f"(or load(path)) first, or pass a history of many decision times to walk forward")
        at = frame[time_col].min()
        if at < self.final_fold.train_end:
            raise LookAheadError(f"{self.NAME}: the fitted model was trained at {self.final_fold.train_end} on labels "
                                 f"known up to {self.final_fold.max_known}, after this decision time {at}; replay the "
                                 f"past walk-forward (a frame of many decision times) or fit_final on history up to {at}")
        X = self._matrix(frame)
        ok = np.isfinite(X).all(axis=1)
        out = np.full(len(frame), np.nan)
        if ok.any():
            out[ok] = np.asarray(self.fitted.predict(X[ok]), dtype=float)
        return pd.Series(out, index=frame.index, name="score")

    def _prepared(self, frame: pd.DataFrame, time_col: str):
        """Rows in (time, symbol) order: the order, X, y, known (int64 ns), times (int64 ns)."""
        times = frame[time_col].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        t_ns = times.array.asi8
        order = np.lexsort((frame["symbol"].astype(str).to_numpy(), t_ns))
        labels = forward_returns(frame, [self.horizon], time_col=time_col)
        y = labels[label_col(self.horizon)].to_numpy(dtype=float)[order]
        known_s = labels[known_col(self.horizon)].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        known = known_s.array.asi8[order]  # NaT -> int64 min
        X = self._matrix(frame)[order]
        return order, X, y, known, t_ns[order]

    def _audit(self, t_train: np.ndarray, known_train: np.ndarray, at: int) -> int:
        """The look-ahead check of one fit: every training label known by ``at``, every training
        row decided before it. Returns the latest known time."""
        never = np.iinfo(np.int64).min
        if (known_train == never).any():
            raise LookAheadError(f"{self.NAME}: a training row has no known time for its label (training at "
                                 f"{_ts(at)}); only labels known by then may be used")
        late = known_train > at
        if late.any():
            i = int(np.flatnonzero(late)[0])
            raise LookAheadError(f"{self.NAME}: {int(late.sum())} training label(s) became known after the training "
                                 f"time {_ts(at)} (e.g. the row decided at {_ts(t_train[i])}, known at "
                                 f"{_ts(known_train[i])}); the training rows must have fwd_known <= the training time")
        if (t_train >= at).any():
            raise LookAheadError(f"{self.NAME}: training rows decided at or after the training time {_ts(at)}")
        return int(known_train.max())

    def _fit(self, X: np.ndarray, y: np.ndarray, train: np.ndarray):
        learner = self.learner_factory(self.seed)
        learner.fit(X[train], y[train])
        return learner

    def _walk_forward(self, frame: pd.DataFrame, time_col: str) -> pd.Series:
        order, X, y, known, t_ns = self._prepared(frame, time_col)
        labelled = np.isfinite(y) & np.isfinite(X).all(axis=1)
        finite_x = np.isfinite(X).all(axis=1)
        uniq = np.unique(t_ns)
        pos = np.searchsorted(uniq, t_ns)
        never = np.iinfo(np.int64).min
        known_sorted = np.sort(known[labelled & (known != never)])
        cutoffs = [known_cutoff(uniq, p, self.embargo) for p in range(len(uniq))]
        counts = np.array([0 if c is None else int(np.searchsorted(known_sorted, c, side="right")) for c in cutoffs])
        enough = np.flatnonzero(counts >= self.min_train_rows)
        self.folds = []
        scores = np.full(len(order), np.nan)
        if len(enough):
            starts = list(range(int(enough[0]), len(uniq), self.retrain_every))
            for i, p in enumerate(starts):
                at, stop = int(uniq[p]), starts[i + 1] if i + 1 < len(starts) else len(uniq)
                cutoff = cutoffs[p]
                train = self.training_mask(labelled, t_ns, known, at, int(cutoff)) if cutoff is not None \
                    else np.zeros(len(order), dtype=bool)
                if not train.any():
                    continue
                max_known = self._audit(t_ns[train], known[train], at)
                learner = self._fit(X, y, train)
                rows = finite_x & (pos >= p) & (pos < stop)
                if rows.any():
                    scores[rows] = np.asarray(learner.predict(X[rows]), dtype=float)
                predicted = t_ns[rows]
                self.folds.append(Fold(
                    train_end=_ts(at), n_train=int(train.sum()), max_known=_ts(max_known),
                    first_predicted=_ts(predicted.min()) if rows.any() else None,
                    last_predicted=_ts(predicted.max()) if rows.any() else None,
                    ic=_rank_ic(scores[rows], y[rows]),
                ))
        out = np.empty(len(order))
        out[order] = scores
        return pd.Series(out, index=frame.index, name="score")

    # ------------------------------------------------------------------ the final model
    def fit_final(self, frame: pd.DataFrame, time_col: str = "decision_time") -> WalkForward:
        """Train on every label known at the frame's last decision time (moved earlier by the
        embargo) and keep the model for live decisions from then on. Returns ``self``."""
        self._check_frame(frame, time_col, need_ret=True)
        _, X, y, known, t_ns = self._prepared(frame, time_col)
        uniq = np.unique(t_ns)
        at = int(uniq[-1])
        cutoff = known_cutoff(uniq, len(uniq) - 1, self.embargo)
        labelled = np.isfinite(y) & np.isfinite(X).all(axis=1)
        train = self.training_mask(labelled, t_ns, known, at, int(cutoff)) if cutoff is not None \
            else np.zeros(len(y), dtype=bool)
        if train.sum() < self.min_train_rows:
            raise ArgumentError(f"{self.NAME}: {int(train.sum())} labels are known at {_ts(at)}, fewer than "
                                f"min_train_rows={self.min_train_rows}; pass a longer history")
        max_known = self._audit(t_ns[train], known[train], at)
        self.fitted = self._fit(X, y, train)
        self.final_fold = Fold(train_end=_ts(at), n_train=int(train.sum()), max_known=_ts(max_known))
        return self

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to ``path`` (joblib) and ``<path>.json`` beside it (its sha256,
        size, the parameters and the fold it was trained on), each atomically."""
        import joblib

        from etl.storage.atomic import atomic_path, atomic_write_text

        if self.fitted is None or self.final_fold is None:
            raise NotFittedError(f"{self.NAME}: nothing to save; call fit_final(history) first")
        path = Path(path)
        payload = {"format": MODEL_FORMAT, "name": self.NAME, "class": type(self).__name__, "params": self.params(),
                   "inputs": self.inputs, "learner": self.fitted, "final_fold": self.final_fold}
        with atomic_path(path) as tmp:
            joblib.dump(payload, tmp)
        data = path.read_bytes()
        sidecar = {"format": MODEL_FORMAT, "file": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                   "bytes": len(data), "name": self.NAME, "class": type(self).__name__, "params": self.params(),
                   "final_fold": self.final_fold.as_dict(), "saved_at": str(clock.utc_now())}
        atomic_write_text(_sidecar(path), json.dumps(sidecar, indent=1, default=str))
        return path

    def load(self, path: str | Path) -> WalkForward:
        """Load a model :meth:`save` wrote, after checking its sha256 against the sidecar and
        its inputs and horizon against this strategy's. Returns ``self``. (The check finds
        damaged or replaced bytes; like any pickle, load only files you trust.)"""
        import joblib

        path = Path(path)
        meta_path = _sidecar(path)
        if not path.is_file() or not meta_path.is_file():
            raise ModelFileError(f"{self.NAME}: no saved model at {path} (with {meta_path.name} beside it); "
                                 f"run fit_final(history) and save(path)")
        meta = json.loads(meta_path.read_text())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != meta.get("sha256"):
            raise ModelFileError(f"{self.NAME}: {path} changed since it was saved (sha256 {digest[:12]}... != "
                                 f"{str(meta.get('sha256'))[:12]}... in {meta_path.name}); fit and save it again")
        payload = joblib.load(path)
        if payload.get("format") != MODEL_FORMAT:
            raise ModelFileError(f"{self.NAME}: {path} is model format {payload.get('format')}, this code reads "
                                 f"{MODEL_FORMAT}; fit and save it again")
        saved, mine = payload["params"], self.params()
        differ = [k for k in self.MODEL_KEYS if saved.get(k) != mine.get(k)]
        if payload["inputs"] != self.inputs or payload["class"] != type(self).__name__ or differ:
            raise DeclarationError(f"{self.NAME}: {path} is a {payload['class']} trained with "
                                   f"{ {k: saved.get(k) for k in ('features', *self.MODEL_KEYS)} }; this strategy is a "
                                   f"{type(self).__name__} with { {k: mine.get(k) for k in ('features', *self.MODEL_KEYS)} }. "
                                   f"Construct it with the saved parameters")
        self.fitted = payload["learner"]
        self.final_fold = payload["final_fold"]
        self.frozen = True   # the artifact: every frame from now on is scored by it, never refitted
        return self


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _ts(ns) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def _rank_ic(pred: np.ndarray, label: np.ndarray) -> float:
    ok = np.isfinite(pred) & np.isfinite(label)
    if ok.sum() < 3:
        return math.nan
    a = pd.Series(pred[ok]).rank().to_numpy()
    b = pd.Series(label[ok]).rank().to_numpy()
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])
