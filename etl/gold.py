"""Gold: the feature tables Feast reads, computed from silver.

One Parquet file per feature view (``gold/<view>.parquet``), replaced
atomically. Every row carries the bar's ``event_timestamp`` (session close on
the exchange calendar plus the delay) and a ``created_timestamp`` that is
derived, not taken from the clock: the latest write time of any input the row
depends on (silver bars up to its session, and the symbol's corporate
actions). A rebuild from the same silver is therefore byte-identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from etl.bars import VALUE_COLUMNS, read_silver_bars
from etl.config import Settings
from etl.factors import FACTORS, compute_factors, feature_columns
from etl.ingest import read_corporate_actions
from etl.store import atomic_write_frame

BARS_VIEW = "bars_daily"
TECH_VIEW = "technicals"
BARS_FEATURES = ["open", "high", "low", "close", "volume", "ticker", "session_date"]
KEYS = ["symbol", "event_timestamp", "created_timestamp"]


@dataclass(frozen=True)
class GoldReport:
    symbols: int
    rows: int
    features: int
    paths: dict[str, str]


def gold_path(settings: Settings, view: str) -> Path:
    return settings.gold / f"{view}.parquet"


def symbols_manifest_path(settings: Settings) -> Path:
    return settings.gold / "symbols.json"


def build_gold(settings: Settings, progress=None) -> GoldReport:
    """Compute every factor for every ingested symbol and write the gold views."""
    bars = read_silver_bars(settings, versions="first")
    actions = read_corporate_actions(settings)
    bar_parts, tech_parts = [], []
    groups = list(bars.groupby("symbol", sort=True))
    for i, (symbol, g) in enumerate(groups):
        g = g.sort_values("session").reset_index(drop=True)
        rows = None if actions is None else actions[actions["symbol"] == symbol]
        feats = compute_factors(g, rows)
        created = g["created_timestamp"].cummax()
        if rows is not None and len(rows):
            created = np.maximum(created, rows["created_timestamp"].max())
        base = pd.DataFrame({"symbol": g["symbol"], "event_timestamp": g["event_timestamp"], "created_timestamp": created})
        bar_parts.append(
            base.assign(
                **{c: g[c] for c in VALUE_COLUMNS},
                ticker=g["ticker"],
                session_date=g["session"].dt.strftime("%Y-%m-%d"),
            )
        )
        tech_parts.append(pd.concat([base, feats], axis=1))
        if progress:
            progress(i + 1, len(groups), symbol)
    gold_bars = pd.concat(bar_parts, ignore_index=True)
    gold_tech = pd.concat(tech_parts, ignore_index=True)
    for frame in (gold_bars, gold_tech):
        for col in ("event_timestamp", "created_timestamp"):
            frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    paths = {
        BARS_VIEW: str(atomic_write_frame(gold_bars[KEYS + BARS_FEATURES], gold_path(settings, BARS_VIEW))),
        TECH_VIEW: str(atomic_write_frame(gold_tech[KEYS + feature_columns(TECH_VIEW)], gold_path(settings, TECH_VIEW))),
    }
    manifest = {
        "symbols": sorted(gold_bars["symbol"].unique().tolist()),
        "first_event": gold_bars["event_timestamp"].min().isoformat(),
        "last_event": gold_bars["event_timestamp"].max().isoformat(),
    }
    tmp = symbols_manifest_path(settings).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(symbols_manifest_path(settings))
    return GoldReport(
        symbols=len(groups),
        rows=len(gold_bars),
        features=len(BARS_FEATURES) + sum(len(s.outputs) for s in FACTORS),
        paths=paths,
    )


def read_symbols_manifest(settings: Settings) -> dict | None:
    path = symbols_manifest_path(settings)
    if not path.exists():
        return None
    return json.loads(path.read_text())
