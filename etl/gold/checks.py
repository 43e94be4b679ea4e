"""Checks a user's factors must pass before the builder spends any time on them.

The declarations are checked when the registry loads them (unknown input table, a view or
output that clashes, a missing warm-up or compute). Here the compute itself is run on one
real symbol of the home: once on its whole history and again on histories cut at a few
sessions D. A value at a session <= D that changes when later bars are added means the
compute looks ahead; the factor is refused with the session and output that moved.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core.config import Settings
from etl.core.errors import DeclarationError
from etl.factors.spec import Family, Inputs

CUTS = (0.5, 0.8)


def check_user_family(settings: Settings, family: Family) -> str | None:
    """Refuse a family whose compute looks ahead; returns the symbol checked (None: no bars yet)."""
    from etl.gold.builder import TABLE_KEYS, bar_summary, latest_per_session, load_table
    from etl.storage.bars import read_silver_bars

    summary = bar_summary(settings)
    if summary.empty:
        return None
    sample = str(summary.sort_values(["n", "symbol"], ascending=[False, True])["symbol"].iloc[0])
    bars = latest_per_session(read_silver_bars(settings, symbols=[sample], versions="all"))
    tables = {}
    for t in family.inputs:
        if t != "bars":
            frame = load_table(settings, t, [sample] if TABLE_KEYS[t] else None)
            tables[t] = frame
    full = family.compute(Inputs(sample, bars, None, tables, settings.calendar, settings.bar_delay_minutes))
    outputs = [o.name for o in family.outputs()]
    n = len(bars)
    for frac in CUTS:
        cut = int(n * frac)
        if cut < 2:
            continue
        part = family.compute(Inputs(sample, bars.iloc[:cut].reset_index(drop=True), None, tables, settings.calendar,
                                     settings.bar_delay_minutes))
        for name in outputs:
            a = pd.to_numeric(pd.Series(np.asarray(full[name])[:cut]), errors="coerce").to_numpy(dtype=float)
            b = pd.to_numeric(pd.Series(np.asarray(part[name])), errors="coerce").to_numpy(dtype=float)
            differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
            if differ.any():
                i = int(np.flatnonzero(differ)[0])
                session = pd.Timestamp(bars["session"].iloc[i]).date()
                raise DeclarationError(
                    f"factor output {name} (view {family.views[0]}) looks ahead: on {sample}, its value at {session} is "
                    f"{b[i]!r} from the bars up to {pd.Timestamp(bars['session'].iloc[cut - 1]).date()} but {a[i]!r} from the "
                    "whole history; a value may use only bars up to its own session")
    return sample
