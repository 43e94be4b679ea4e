"""Helpers for tests that start real servers (redis-server, databases)."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_redis(reason: str):
    """Skip loudly without a Redis; under CI=true fail instead."""
    msg = f"REDIS TESTS NOT RUN: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: Redis tests must run)")
    pytest.skip(msg)


@contextlib.contextmanager
def postgres_database(prefix: str = "alpha_test"):
    """A fresh database on the machine's PostgreSQL (trust auth) for the block, dropped after;
    skipped loudly when unreachable, failed under CI=true."""
    import sqlalchemy as sa

    base = os.environ.get("ALPHA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001
        msg = f"POSTGRESQL TESTS NOT RUN: cannot reach {base}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(msg)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
