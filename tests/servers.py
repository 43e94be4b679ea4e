"""Helpers for tests that start real servers (redis-server, databases)."""

from __future__ import annotations

import os
import socket

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
