"""Inputs the builder derives rather than reads from one silver table: the risk-free rate
file, the exchange sessions the bars span, and the symbols manifest readers use."""

from __future__ import annotations

import json

import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.storage.atomic import atomic_write_text

MANIFEST = "symbols.json"


def load_rates(settings=None) -> pd.DataFrame:
    """The risk-free rate table for the options family: Lean's Fed primary credit
    rate file under the Lean data root (``$ALPHA_LEAN_DATA`` or the shared data).
    Empty (so every implied volatility is missing, never computed at rate 0)
    when the file is absent."""
    from etl.core.config import default_lean_path
    from etl.factors.options import rates_from_lean

    path = default_lean_path() / "interest_rate_usa" / "interest-rate.csv"
    if not path.exists():
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[us]"), "rate": pd.Series(dtype=float),
                             "event_timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    return rates_from_lean(pd.read_csv(path))


def session_table(settings: Settings) -> pd.DataFrame | None:
    """The exchange sessions from the first to the last bar in silver (market-wide families
    produce one row per session)."""
    from etl.gold.builder import bar_summary

    bars = bar_summary(settings)
    if bars.empty:
        return None
    days = clock.sessions_in_range(pd.Timestamp(bars["first"].min()), pd.Timestamp(bars["last"].max()), settings.calendar)
    return pd.DataFrame({"session": days})


def write_manifest(settings: Settings) -> dict | None:
    """``gold/symbols.json``: the symbols with bars and the first and last bar availability
    (the SDK's symbol list and the warehouse clock of the online reader)."""
    from etl.gold.builder import bar_summary

    bars = bar_summary(settings)
    if bars.empty:
        return None
    first, last = clock.availability_times(pd.DatetimeIndex([pd.Timestamp(bars["first"].min()), pd.Timestamp(bars["last"].max())]),
                                           settings.bar_delay_minutes, settings.calendar)
    manifest = {"symbols": sorted(bars["symbol"].astype(str)), "first_event": pd.Timestamp(first).isoformat(),
                "last_event": pd.Timestamp(last).isoformat()}
    atomic_write_text(settings.gold / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def read_symbols_manifest(settings: Settings) -> dict | None:
    path = settings.gold / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())
