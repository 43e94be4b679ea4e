"""Helpers for tests that start real servers (redis-server, databases)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

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


def no_spark(reason: str):
    """Skip loudly without pyspark or Java; under CI=true fail instead."""
    msg = f"SPARK TESTS NOT RUN: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: the Spark engine's tests must run; `make test` installs pyspark and Java 17)")
    pytest.skip(msg)


def no_shared_data(reason: str):
    """Skip loudly without the larger shared data sets (../shared/data); under CI=true fail instead."""
    msg = f"SHARED DATA TESTS NOT RUN: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: tests on the shared data must run)")
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


class RedisServer:
    """Our own redis-server on a free port with AOF persistence in ``workdir``."""

    def __init__(self, workdir: Path, *extra: str, port: int | None = None):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            no_redis("no redis-server binary on PATH")
        self.workdir, self.extra = workdir, list(extra)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None

    def start(self, ping_kwargs: dict | None = None) -> RedisServer:
        import redis

        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", **(ping_kwargs or {"port": self.port}))
        deadline = time.time() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.RedisError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def prefect_server(workdir: Path, database_url: str, ui: bool = False, timeout: float = 120.0, env: dict | None = None):
    """``prefect server start`` on a free port against ``database_url`` (a PostgreSQL
    SQLAlchemy URL; the server talks asyncpg), as docker-compose runs it. Yields the API
    URL; stops the server (its whole process group) afterwards. RuntimeError with the
    log's tail if it does not answer ``/api/health`` within ``timeout``. ``env``: more
    settings for the server."""
    import sys

    import httpx

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, **(env or {}), "PREFECT_HOME": str(workdir), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_DATABASE_CONNECTION_URL": database_url.replace("postgresql+psycopg", "postgresql+asyncpg"),
           "PREFECT_UI_ENABLED": "true" if ui else "false", "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    env.pop("PREFECT_API_URL", None)
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        api = f"http://127.0.0.1:{port}/api"
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    if httpx.get(f"{api}/health", timeout=2).json() is True:
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"prefect server did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.25)
            yield api
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
