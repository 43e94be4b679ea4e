"""Sources that disagree: two sources' bars of one symbol-session further apart than the tolerance.

When several sources deliver a bar, the features use the canonical one (the configured
priority, :mod:`etl.storage.canonical`); the others are kept in silver and compared here.
Each source's newest version of the bar is compared with the canonical source's newest
version, field by field: a price (open, high, low, close) whose relative difference
``|other - canonical| / |canonical|`` exceeds ``source_tolerance`` (config.toml, default
0.005), or a volume beyond :data:`VOLUME_FACTOR` times it, is a disagreement. One finding
(``source_disagreement``, a warning: the canonical bar is in use, nothing is restated) per bar
and other source names both sources and values; the report also lists every disagreeing
field in ``summary["source_disagreements"]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.quality.health.frames import BAR_VALUE_COLUMNS, day, finding, findings_frame, fmt

CHECK = "source_disagreement"
#: volumes differ between vendors more than prices do (late prints, consolidated or primary
#: volume): their tolerance is this many times the price tolerance
VOLUME_FACTOR = 10
#: the columns of one disagreeing field
DISAGREEMENT_COLUMNS = ["symbol", "session", "field", "canonical_source", "canonical_value", "other_source",
                        "other_value", "rel_diff", "tolerance"]


def _relative(other: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """``|other - canonical| / |canonical|``; infinite when the canonical value is 0 and the other is not."""
    diff = np.abs(other - canonical)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / np.abs(canonical)
    return np.where(diff == 0, 0.0, rel)


def source_disagreements(all_versions: pd.DataFrame, canonical: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Every disagreeing field (:data:`DISAGREEMENT_COLUMNS`) between each source's newest
    version of a bar (``all_versions``: every source's rows, as ``read_silver_bars(...,
    sources="all")`` gives them) and the canonical one (``canonical``: the canonical stream of
    the same rows), sorted by symbol, session, other source and field."""
    from etl.storage.canonical import latest_by_source

    empty = pd.DataFrame(columns=DISAGREEMENT_COLUMNS)
    if all_versions is None or all_versions.empty or all_versions["source"].nunique() < 2:
        return empty
    n_src = all_versions.groupby(["symbol", "session"], sort=False)["source"].transform("nunique")
    shared = all_versions.loc[(n_src > 1).to_numpy()]
    if shared.empty:
        return empty
    latest = latest_by_source(shared)
    canon = canonical.sort_values(["symbol", "session", "known_timestamp", "created_timestamp"], kind="stable")
    canon = canon.drop_duplicates(["symbol", "session"], keep="last")[["symbol", "session", "source", *BAR_VALUE_COLUMNS]]
    pairs = latest.merge(canon, on=["symbol", "session"], suffixes=("", "_c"))
    pairs = pairs[pairs["source"] != pairs["source_c"]]
    out = []
    for col in BAR_VALUE_COLUMNS:
        tol = tolerance * (VOLUME_FACTOR if col == "volume" else 1)
        rel = _relative(pairs[col].to_numpy(float), pairs[f"{col}_c"].to_numpy(float))
        bad = rel > tol
        if bad.any():
            p = pairs.loc[bad]
            out.append(pd.DataFrame({
                "symbol": p["symbol"].to_numpy(), "session": p["session"].to_numpy(), "field": col,
                "canonical_source": p["source_c"].to_numpy(), "canonical_value": p[f"{col}_c"].to_numpy(float),
                "other_source": p["source"].to_numpy(), "other_value": p[col].to_numpy(float),
                "rel_diff": rel[bad], "tolerance": tol}))
    if not out:
        return empty
    order = {c: i for i, c in enumerate(BAR_VALUE_COLUMNS)}
    frame = pd.concat(out, ignore_index=True)
    frame = frame.assign(_f=frame["field"].map(order)).sort_values(["symbol", "session", "other_source", "_f"], kind="stable")
    return frame.drop(columns=["_f"]).reset_index(drop=True)


def check_sources(disagreements: pd.DataFrame) -> pd.DataFrame:
    """One warning per bar and other source of :func:`source_disagreements`: both sources,
    both values of each disagreeing field and how far apart; value = the largest relative
    difference, threshold = the price tolerance."""
    rows = []
    if disagreements is None or disagreements.empty:
        return findings_frame(rows)
    for (sym, sess, other), g in disagreements.groupby(["symbol", "session", "other_source"], sort=False):
        canon = g["canonical_source"].iloc[0]
        fields = "; ".join(f"{r.field} {canon} {fmt(r.canonical_value)} vs {other} {fmt(r.other_value)} ({r.rel_diff:.2%})"
                           for r in g.itertuples())
        price_tol = float(g["tolerance"].min() if (g["field"] != "volume").any() else g["tolerance"].iloc[0] / VOLUME_FACTOR)
        rows.append(finding(
            CHECK, sym, sess, float(g["rel_diff"].max()), price_tol,
            f"{day(sess)}: {other} disagrees with the canonical {canon} beyond the tolerance: {fields}; "
            f"the features use {canon} (the configured priority)", "warning"))
    return findings_frame(rows)
