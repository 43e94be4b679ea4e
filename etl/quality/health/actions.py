"""Corporate actions as the outlier and dividend checks read them: ``symbol, ex_date, split, dividend``
(``split`` = new shares per old share, ``dividend`` = cash per share)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def corporate_actions_from_factors(factors: pd.DataFrame | None) -> pd.DataFrame:
    """Lean factor-file rows (``etl.storage.actions.read_corporate_actions``) as events:
    ``symbol, ex_date, split, dividend``.

    A factor row applies to raw prices up to its date; the next row applies
    from the ex-date on. So the split at an ex-date is the ratio of the next
    row's split factor to this row's, and the dividend is
    ``reference_price * (1 - price_factor / next price_factor)``. The 20501231
    sentinel (both factors 1) follows the last stored row.
    """
    cols = ["symbol", "ex_date", "split", "dividend"]
    if factors is None or factors.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for symbol, g in factors.sort_values(["symbol", "factor_date"]).groupby("symbol", sort=True):
        pf = g["price_factor"].to_numpy(dtype=float)
        sf = g["split_factor"].to_numpy(dtype=float)
        ref = g["reference_price"].to_numpy(dtype=float)
        next_pf = np.append(pf[1:], 1.0)
        next_sf = np.append(sf[1:], 1.0)
        split = next_sf / sf
        dividend = ref * (1.0 - pf / next_pf)
        frame = pd.DataFrame({
            "symbol": symbol, "ex_date": pd.to_datetime(g["ex_date"]).to_numpy(),
            "split": np.round(split, 4), "dividend": np.round(dividend, 5),
        })
        keep = (np.abs(frame["split"] - 1.0) > 1e-6) | (frame["dividend"] > 1e-6)
        out.append(frame.loc[keep])
    events = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)
    events.loc[events["dividend"] <= 1e-6, "dividend"] = 0.0
    return events[cols].reset_index(drop=True)


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
