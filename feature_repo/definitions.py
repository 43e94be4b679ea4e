"""Feast objects for one warehouse, generated from the factor specs.

Pure constructors: no I/O, no clients. ``repo.py`` binds them at module level
for the ``feast`` CLI; the SDK and the nightly flow call
:func:`build_definitions` with the home they serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

from etl.factors import FACTORS
from etl.gold import BARS_VIEW, TECH_VIEW

#: How long a daily value stays valid for a point-in-time join. Covers the
#: longest NYSE closure since 1990 (2001-09-11..14: 7 calendar days).
DAILY_TTL = timedelta(days=10)
DEFAULT_SERVICE = "daily_v1"


@dataclass(frozen=True)
class Definitions:
    symbol: Entity
    bars_source: FileSource
    technicals_source: FileSource
    bars_daily: FeatureView
    technicals: FeatureView
    daily_v1: FeatureService

    def objects(self) -> list:
        return [self.symbol, self.bars_source, self.technicals_source, self.bars_daily, self.technicals, self.daily_v1]


def _gold_source(gold: Path, view: str, description: str) -> FileSource:
    return FileSource(
        name=f"{view}_source",
        path=str(gold / f"{view}.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="known_timestamp",  # when each value became knowable (bitemporal)
        description=description,
    )


def build_definitions(home: Path) -> Definitions:
    gold = Path(home) / "gold"
    symbol = Entity(
        name="symbol",
        join_keys=["symbol"],
        value_type=ValueType.STRING,
        description="A listed security, named by its current ticker (Lean's permanent file name).",
    )
    bars_source = _gold_source(gold, BARS_VIEW, "Daily bars as traded; event_timestamp = session close + delay (UTC).")
    technicals_source = _gold_source(gold, TECH_VIEW, "Technical factors computed from silver bars, point-in-time adjusted.")
    bars_daily = FeatureView(
        name=BARS_VIEW,
        entities=[symbol],
        ttl=DAILY_TTL,
        schema=[
            Field(name="open", dtype=Float64, description="open, as traded (dollars)"),
            Field(name="high", dtype=Float64, description="high, as traded"),
            Field(name="low", dtype=Float64, description="low, as traded"),
            Field(name="close", dtype=Float64, description="close, as traded"),
            Field(name="volume", dtype=Float64, description="shares traded, as reported"),
            Field(name="ticker", dtype=String, description="ticker the symbol traded under that session"),
            Field(name="session_date", dtype=String, description="exchange session date YYYY-MM-DD"),
        ],
        source=bars_source,
        online=True,
        description="Raw daily bars as a trader saw them.",
    )
    technicals = FeatureView(
        name=TECH_VIEW,
        entities=[symbol],
        ttl=DAILY_TTL,
        schema=[
            Field(name=out, dtype=Float64, description=spec.description)
            for spec in FACTORS
            if spec.view == TECH_VIEW
            for out in spec.outputs
        ],
        source=technicals_source,
        online=True,
        description="TA-Lib technicals, returns and realised volatility (etl/factors.py).",
    )
    daily_v1 = FeatureService(
        name=DEFAULT_SERVICE,
        features=[bars_daily, technicals],
        description="Every daily bar field and technical factor, version 1.",
    )
    return Definitions(symbol, bars_source, technicals_source, bars_daily, technicals, daily_v1)
