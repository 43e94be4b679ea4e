"""Vendor quotas as Prefect global rate limits.

Each vendor gets one limit named ``vendor-<source>`` with ``slot_decay_per_second``
= its configured rate (requests per second, ``[vendors.<name>] rate``) and
``limit`` = its burst. Every request of every task, thread and worker process
takes a slot first, so parallel backfill workers together never exceed the
vendor's quota; the limits show (and can be tuned) under Concurrency in the UI.
"""

from __future__ import annotations

from etl.config import Settings
from etl.pipeline import vendor_rate

#: sources that call a vendor over HTTP (file sources need no quota)
HTTP_SOURCES = ("polygon", "edgar", "fred")


def limit_name(source: str) -> str:
    return f"vendor-{source}"


def ensure_vendor_limit(settings: Settings, source: str) -> str | None:
    """Create or update the vendor's rate limit on the Prefect server; ``None`` for file sources."""
    if source not in HTTP_SOURCES:
        return None
    from prefect.client.orchestration import get_client

    rate, burst = vendor_rate(settings, source)
    name = limit_name(source)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=max(1, burst), slot_decay_per_second=rate)
    return name


class PrefectRateLimit:
    """A rate limiter (``acquire()``) backed by a Prefect global rate limit."""

    def __init__(self, name: str):
        self.name = name

    def acquire(self) -> None:
        from prefect.concurrency.sync import rate_limit

        rate_limit(self.name, occupy=1, strict=True)
