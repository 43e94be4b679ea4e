"""Gold: the feature tables Feast reads, computed from silver.

One Parquet file per feature view (``gold/<view>.parquet``), replaced
atomically. Every row carries

- ``event_timestamp``: the bar's availability (session close + delay);
- ``known_timestamp``: when this value became knowable, the latest known time
  of any input it depends on (never before the event time). Feature views use
  it as Feast's created-timestamp column, so the bitemporal store shows a
  value only from when it was knowable;
- ``created_timestamp``: derived, not taken from the clock: the latest write
  time of its inputs, so a rebuild from the same silver is byte-identical.

Revisions: features are first computed from each bar's first version. Then,
for every later time R at which a revised bar became known, the symbol's
features are recomputed from the bars as known at R, and every row whose
values changed is written again as a new row known from max(R, its event
time). A backtest therefore sees the original value until the revision was
known and the corrected one after, and the past is never rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core.config import Settings
from etl.factors import FACTORS, compute_factors, feature_columns
from etl.storage.actions import read_corporate_actions
from etl.storage.atomic import atomic_write_frame, atomic_write_text
from etl.storage.bars import VALUE_COLUMNS, read_silver_bars

BARS_VIEW = "bars_daily"
TECH_VIEW = "technicals"
BARS_FEATURES = ["open", "high", "low", "close", "volume", "ticker", "session_date"]
KEYS = ["symbol", "event_timestamp", "known_timestamp", "created_timestamp"]


@dataclass(frozen=True)
class GoldReport:
    symbols: int
    rows: int
    features: int
    revised_rows: int
    paths: dict[str, str]


def gold_path(settings: Settings, view: str) -> Path:
    return settings.gold / f"{view}.parquet"


def symbols_manifest_path(settings: Settings) -> Path:
    return settings.gold / "symbols.json"


def as_known_at(versions: pd.DataFrame, when: pd.Timestamp | None) -> pd.DataFrame:
    """One row per session: the latest version known at ``when`` (None: the first version)."""
    if when is None:
        picked = versions.drop_duplicates("session", keep="first")
    else:
        picked = versions[versions["known_timestamp"] <= when].drop_duplicates("session", keep="last")
    return picked.sort_values("session").reset_index(drop=True)


def _symbol_rows(versions: pd.DataFrame, actions: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Gold bar and technical rows for one symbol, first computation plus revisions."""
    first = as_known_at(versions, None)
    action_created = actions["created_timestamp"].max() if actions is not None and len(actions) else None

    def rows(series: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        feats = compute_factors(series, actions)
        known = np.maximum(series["known_timestamp"].cummax(), series["event_timestamp"])
        created = series["created_timestamp"].cummax()
        if action_created is not None:
            created = np.maximum(created, action_created)
        base = pd.DataFrame({"symbol": series["symbol"], "event_timestamp": series["event_timestamp"], "known_timestamp": known, "created_timestamp": created})
        bars = base.assign(**{c: series[c] for c in VALUE_COLUMNS}, ticker=series["ticker"], session_date=series["session"].dt.strftime("%Y-%m-%d"))
        return bars, pd.concat([base, feats], axis=1)

    bars0, tech0 = rows(first)
    out_bars, out_tech, revised = [bars0], [tech0], 0
    prev_bars, prev_tech = bars0.set_index("event_timestamp"), tech0.set_index("event_timestamp")
    later = versions["known_timestamp"][versions.duplicated("session", keep="first")]
    for when in sorted(later.unique()):
        bars_r, tech_r = rows(as_known_at(versions, when))
        b, t = bars_r.set_index("event_timestamp"), tech_r.set_index("event_timestamp")
        value_cols = VALUE_COLUMNS + ["ticker"]
        b_changed = ~_equal(b[value_cols], prev_bars.reindex(b.index)[value_cols])
        t_changed = ~_equal(t[feature_columns()], prev_tech.reindex(t.index)[feature_columns()])
        for frame, changed, out in ((bars_r, b_changed, out_bars), (tech_r, t_changed, out_tech)):
            new = frame.loc[changed.to_numpy()].copy()
            new["known_timestamp"] = np.maximum(new["event_timestamp"], when)
            out.append(new)
        revised += int(t_changed.sum())
        prev_bars, prev_tech = b, t
    return pd.concat(out_bars, ignore_index=True), pd.concat(out_tech, ignore_index=True), revised


def _equal(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    same = (a == b) | (a.isna() & b.isna())
    return same.all(axis=1)


def build_gold(settings: Settings, progress=None) -> GoldReport:
    """Compute every factor for every ingested symbol and write the gold views."""
    versions = read_silver_bars(settings, versions="all")
    actions = read_corporate_actions(settings)
    bar_parts, tech_parts, revised = [], [], 0
    groups = list(versions.groupby("symbol", sort=True))
    for i, (symbol, g) in enumerate(groups):
        rows = None if actions is None else actions[actions["symbol"] == symbol]
        bars, tech, n_rev = _symbol_rows(g, rows)
        bar_parts.append(bars)
        tech_parts.append(tech)
        revised += n_rev
        if progress:
            progress(i + 1, len(groups), symbol)
    gold_bars = pd.concat(bar_parts, ignore_index=True)
    gold_tech = pd.concat(tech_parts, ignore_index=True)
    for frame in (gold_bars, gold_tech):
        for col in ("event_timestamp", "known_timestamp", "created_timestamp"):
            frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    # time-ordered files let the Parquet reader skip row groups outside a query's window
    gold_bars = gold_bars.sort_values(["event_timestamp", "symbol", "known_timestamp"], kind="stable")
    gold_tech = gold_tech.sort_values(["event_timestamp", "symbol", "known_timestamp"], kind="stable")
    paths = {
        BARS_VIEW: str(atomic_write_frame(gold_bars[KEYS + BARS_FEATURES], gold_path(settings, BARS_VIEW))),
        TECH_VIEW: str(atomic_write_frame(gold_tech[KEYS + feature_columns(TECH_VIEW)], gold_path(settings, TECH_VIEW))),
    }
    manifest = {
        "symbols": sorted(gold_bars["symbol"].unique().tolist()),
        "first_event": gold_bars["event_timestamp"].min().isoformat(),
        "last_event": gold_bars["event_timestamp"].max().isoformat(),
    }
    atomic_write_text(symbols_manifest_path(settings), json.dumps(manifest, indent=1))
    n_sessions = len(versions.drop_duplicates(["symbol", "session"]))
    return GoldReport(
        symbols=len(groups),
        rows=n_sessions,
        features=len(BARS_FEATURES) + sum(len(s.outputs) for s in FACTORS),
        revised_rows=revised,
        paths=paths,
    )


def read_symbols_manifest(settings: Settings) -> dict | None:
    path = symbols_manifest_path(settings)
    if not path.exists():
        return None
    return json.loads(path.read_text())
