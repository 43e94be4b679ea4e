"""Cross-sectional rank: hold the symbols that score best on a weighted mix of factors.

At each decision time, over the symbols with every factor present: each factor is
normalised across those symbols -- ``"zscore"``: ``(x - mean) / std`` (population std; 0
when all are equal), ``"rank"``: the rank scaled to [-0.5, 0.5] (0 for a lone symbol) --
and the score is the sum of the normalised factors times their weights (a negative
weight: lower is better). The ``top_fraction`` of those symbols with the highest scores
(at least one; ties to the alphabetically first) are held, equally weighted, summing to
1; a symbol with any factor missing is not held; a decision time with no such symbol
holds cash. The same function runs in the backtest (many decision times) and live (one).

The default mix is medium-term momentum (the 126-session rate of change) against
short-term overextension (RSI(14), weight -1): buy what rose over six months and has not
just run up.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from etl.core.errors import DeclarationError, MissingColumnError
from research.walkforward import check_features, top_fraction_weights

__all__ = ["DEFAULT_FACTORS", "NORMALISERS", "CrossSectionalRank"]

#: ``view:feature`` -> weight
DEFAULT_FACTORS: dict[str, float] = {"ta_momentum:ta_roc_126": 1.0, "technicals:rsi_14": -1.0}
NORMALISERS = ("zscore", "rank")


class CrossSectionalRank:
    """See the module doc. ``factors``: ``{'view:feature': weight}``; ``top_fraction`` in (0, 1];
    ``normalise``: ``"zscore"`` or ``"rank"``."""

    NAME = "xs_rank"

    def __init__(self, *, factors: Mapping[str, float] | None = None, top_fraction: float = 0.3,
                 normalise: str = "zscore"):
        what = type(self).__name__
        factors = dict(DEFAULT_FACTORS) if factors is None else factors
        if not isinstance(factors, Mapping) or not factors:
            raise DeclarationError(f"{what}: factors must be a non-empty mapping of 'view:feature' to a weight, "
                                   f"e.g. {DEFAULT_FACTORS}; got {factors!r}")
        check_features(list(factors), what)
        for ref, w in factors.items():
            if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w):
                raise DeclarationError(f"{what}: the weight of {ref} must be a finite number, got {w!r}")
            if w == 0:
                raise DeclarationError(f"{what}: the weight of {ref} is 0 (the factor would be read for nothing); "
                                       f"remove it or give it a weight")
        if isinstance(top_fraction, bool) or not isinstance(top_fraction, (int, float, np.integer, np.floating)) \
                or not 0.0 < float(top_fraction) <= 1.0:
            raise DeclarationError(f"{what}: top_fraction={top_fraction!r} must be a number in (0, 1], e.g. 0.3")
        if normalise not in NORMALISERS:
            raise DeclarationError(f"{what}: normalise={normalise!r} must be one of {NORMALISERS}")
        self.factors = {ref: float(w) for ref, w in factors.items()}
        self.top_fraction = float(top_fraction)
        self.normalise = normalise
        self.FEATURES = list(self.factors)
        self._names = {ref.split(":", 1)[1]: w for ref, w in self.factors.items()}

    def params(self) -> dict:
        return {"factors": dict(self.factors), "top_fraction": self.top_fraction, "normalise": self.normalise}

    def __repr__(self) -> str:
        return f"CrossSectionalRank({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def scores(self, features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
        """The combined score of each row (NaN where a factor is missing)."""
        need = ["symbol", time_col, *self._names]
        missing = [c for c in need if c not in features.columns]
        if missing:
            raise MissingColumnError(f"{self.NAME}: target_positions needs columns {missing}; fetch FEATURES "
                                     f"{self.FEATURES} (the frame has {list(features.columns)})")
        values = pd.DataFrame({n: pd.to_numeric(features[n], errors="coerce").astype(float) for n in self._names},
                              index=features.index)
        valid = np.isfinite(values.to_numpy()).all(axis=1)
        rows = values.loc[valid]
        groups = features.loc[valid, time_col]
        score = pd.Series(0.0, index=rows.index)
        for name, weight in self._names.items():
            score += weight * _normalised(rows[name], groups, self.normalise)
        return score.reindex(features.index).rename("score")

    def target_positions(self, features: pd.DataFrame, time_col: str = "decision_time") -> pd.Series:
        """Target weight per row (see the module doc), aligned to ``features``."""
        scores = self.scores(features, time_col)
        return top_fraction_weights(scores, features[time_col], features["symbol"], self.top_fraction)


def _normalised(x: pd.Series, groups: pd.Series, how: str) -> pd.Series:
    g = x.groupby(groups.to_numpy(), sort=False)
    if how == "rank":
        n = g.transform("size")
        r = g.rank(method="average")
        # a lone symbol is at the middle: 0
        return ((r - 1.0) / (n - 1.0).where(n > 1) - 0.5).fillna(0.0)
    mean = g.transform("mean")
    std = g.transform("std", ddof=0)
    # every x here is present: a z-score is undefined only where all values are equal (or a lone
    # symbol), and then every symbol is at the mean: 0
    return ((x - mean) / std.where(std > 0)).fillna(0.0)
