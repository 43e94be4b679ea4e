"""Watermarks: how far each (source, dataset, symbol) has been ingested.

Stored in SQLite at ``$ALPHA_HOME/state/state.db`` by default, or in
PostgreSQL when ``state_url`` (config.toml) or ``ALPHA_STATE_URL`` is set,
e.g. ``postgresql+psycopg://alpha@db:5432/alpha``. A watermark is advanced
only after the rows it covers are committed to silver, so a crash at any
point makes the next ``--incremental`` run fetch the same range again, and
the idempotent silver write turns that into a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from etl.core.config import Settings
from etl.storage.state import default_url, display_url, open_engine

_META = sa.MetaData()
WATERMARKS = sa.Table(
    "alpha_watermarks",
    _META,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("dataset", sa.String(64), primary_key=True),
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("high_water", sa.String(40), nullable=False),   # ISO date or UTC time, inclusive
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("updated_at", sa.String(40), nullable=False),
)


@dataclass(frozen=True)
class Watermark:
    source: str
    dataset: str
    symbol: str
    high_water: str
    rows: int
    updated_at: str


class WatermarkStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = open_engine(url, _META, setting="state_url", store="watermark store")

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    def get(self, source: str, dataset: str, symbol: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(WATERMARKS.c.high_water).where(
                    WATERMARKS.c.source == source, WATERMARKS.c.dataset == dataset, WATERMARKS.c.symbol == symbol
                )
            ).first()
        return row[0] if row else None

    def advance(self, source: str, dataset: str, symbol: str, high_water: str, rows: int = 0) -> None:
        """Move the watermark forward (never back) in one transaction."""
        now = pd.Timestamp.now(tz="UTC").isoformat()
        with self.engine.begin() as conn:
            cur = conn.execute(
                sa.select(WATERMARKS.c.high_water, WATERMARKS.c.rows).where(
                    WATERMARKS.c.source == source, WATERMARKS.c.dataset == dataset, WATERMARKS.c.symbol == symbol
                ).with_for_update()
            ).first()
            if cur is None:
                conn.execute(WATERMARKS.insert().values(source=source, dataset=dataset, symbol=symbol, high_water=high_water, rows=rows, updated_at=now))
            elif high_water > cur[0]:
                conn.execute(
                    WATERMARKS.update()
                    .where(WATERMARKS.c.source == source, WATERMARKS.c.dataset == dataset, WATERMARKS.c.symbol == symbol)
                    .values(high_water=high_water, rows=cur[1] + rows, updated_at=now)
                )

    def all(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(WATERMARKS).order_by(WATERMARKS.c.source, WATERMARKS.c.dataset, WATERMARKS.c.symbol)).all()
        return pd.DataFrame([dict(r._mapping) for r in rows], columns=[c.name for c in WATERMARKS.columns])

    def dispose(self) -> None:
        self.engine.dispose()


def open_watermarks(settings: Settings) -> WatermarkStore:
    return WatermarkStore(default_url(settings, "state.db"))
