"""Corporate actions as the outlier and dividend checks read them: ``symbol, ex_date, split, dividend``
(``split`` = new shares per old share, ``dividend`` = cash per share), as
``etl.storage.actions.current_events`` gives them from every source."""

from __future__ import annotations

import pandas as pd


def actions_by_symbol(actions: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """The actions per symbol, ``ex_date`` normalised, a missing split 1 and a missing dividend 0."""
    if actions is None or len(actions) == 0:
        return {}
    a = actions.copy()
    a["ex_date"] = pd.to_datetime(a["ex_date"]).dt.normalize()
    for col, default in (("split", 1.0), ("dividend", 0.0)):
        a[col] = pd.to_numeric(a[col], errors="coerce").fillna(default) if col in a else default
    a.loc[a["split"] <= 0, "split"] = 1.0
    return {str(s): g for s, g in a.groupby("symbol", sort=False)}
