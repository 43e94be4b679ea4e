"""A learned cross-sectional ranker: scikit-learn trained walk-forward.

``LearnedRank`` is a :class:`research.walkforward.WalkForward` over one of two learners:

* ``model="ridge"``: ``StandardScaler`` then ``Ridge(alpha)`` (a linear score, fast, stable);
* ``model="gbm"``: ``HistGradientBoostingRegressor(max_iter, learning_rate,
  random_state=seed)`` (non-linear; its early stopping on large folds draws its validation
  rows with the seed, so a run is reproducible).

It predicts each symbol's forward return over ``horizon`` sessions from ``features`` and
holds the ``top_fraction`` with the highest predictions, equally weighted; the model is
retrained every ``retrain_every`` sessions on the labels known by then (see
:mod:`research.walkforward` for the rules and the look-ahead audit, ``folds``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from etl.core.errors import DeclarationError
from research.splits import Embargo
from research.walkforward import WalkForward

__all__ = ["DEFAULT_FEATURES", "MODELS", "LearnedRank"]

#: price-scale-free technicals: comparable across symbols
DEFAULT_FEATURES = [
    "technicals:ret_1d",
    "technicals:ret_5d",
    "technicals:ret_21d",
    "technicals:rv_21d",
    "technicals:rsi_14",
    "technicals:bb_pctb_20",
]
MODELS = ("ridge", "gbm")


class LearnedRank(WalkForward):
    """See the module doc. ``alpha``: the ridge penalty (``model="ridge"``); ``max_iter`` and
    ``learning_rate``: the boosting's (``model="gbm"``). ``n_threads``: the OpenMP/BLAS threads
    scikit-learn may use while fitting and predicting (1 by default: on a busy 2-core machine
    the boosting's spinning threads made a fit 40 times slower than one thread)."""

    MODEL_KEYS = ("horizon", "model")

    def __init__(
        self,
        *,
        model: str = "ridge",
        features: Sequence[str] | None = None,
        horizon: int = 5,
        retrain_every: int = 63,
        min_train_rows: int = 250,
        embargo: Embargo | str = 0,
        top_fraction: float = 0.3,
        seed: int = 0,
        alpha: float = 1.0,
        max_iter: int = 100,
        learning_rate: float = 0.05,
        n_threads: int = 1,
    ):
        what = type(self).__name__
        if model not in MODELS:
            raise DeclarationError(f"{what}: model={model!r} must be one of {MODELS}")
        for name, value in (("alpha", alpha), ("learning_rate", learning_rate)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(value) or value <= 0:
                raise DeclarationError(f"{what}: {name}={value!r} must be a positive number")
        for name, value in (("max_iter", max_iter), ("n_threads", n_threads)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise DeclarationError(f"{what}: {name}={value!r} must be an int >= 1")
        self.model = model
        self.alpha = float(alpha)
        self.max_iter = int(max_iter)
        self.learning_rate = float(learning_rate)
        self.n_threads = int(n_threads)
        super().__init__(learner_factory=self._learner, features=list(DEFAULT_FEATURES if features is None else features),
                         horizon=horizon, retrain_every=retrain_every, min_train_rows=min_train_rows, embargo=embargo,
                         top_fraction=top_fraction, seed=seed, name="learned_rank")

    def params(self) -> dict:
        out = {"model": self.model, **super().params()}
        if self.model == "ridge":
            out["alpha"] = self.alpha
        else:
            out.update(max_iter=self.max_iter, learning_rate=self.learning_rate)
        out["n_threads"] = self.n_threads
        return out

    def scores(self, features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
        with threadpool_limits(limits=self.n_threads):
            return super().scores(features, time_col)

    def fit_final(self, frame: pd.DataFrame, time_col: str = "decision_time") -> LearnedRank:
        with threadpool_limits(limits=self.n_threads):
            return super().fit_final(frame, time_col)

    def _learner(self, seed: int):
        """A fresh, unfitted scikit-learn estimator."""
        if self.model == "ridge":
            from sklearn.linear_model import Ridge
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=self.max_iter, learning_rate=self.learning_rate, random_state=seed)
