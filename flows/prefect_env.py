"""Prefect for a warehouse: settings set before Prefect is imported, the home's run lock and
the temporary API server of a run started from the command line.

Without ``PREFECT_API_URL`` a run gets a temporary local server whose database lives in
``$ALPHA_HOME/prefect`` (so two warehouses never share run history). With ``PREFECT_API_URL``
set, runs show in that server's UI.

:func:`prefect_run` is what ``alpha nightly`` and ``alpha run nightly|backfill`` (in this
process) wrap a flow in:

1. the home's run lock (:class:`RunLock`, ``flock`` on ``<home>/.flows.lock``) is taken
   *before* anything of Prefect starts: two nightlies (or a nightly and a backfill) of one
   home never race on its Prefect database (two temporary servers migrating one fresh SQLite
   file fail with "table block_type already exists"); the second waits and says for whom,
   or, asked to, fails at once with :class:`~etl.core.errors.HomeBusyError`;
2. without ``PREFECT_API_URL``, the temporary server is started here (:class:`LocalServer`),
   not by Prefect: the same ``uvicorn`` command Prefect 3 runs
   (``prefect.server.api.server.SubprocessASGIServer``), through a tiny exec wrapper
   (:mod:`flows.pdeathsig`) that asks Linux to send it SIGTERM when its parent dies
   (``prctl(PR_SET_PDEATHSIG)``). Prefect's own subprocess is stopped only by an ``atexit``
   hook, so a nightly killed with SIGKILL left it running (holding the home's database and a
   port). Prefect is then pointed at it with ``PREFECT_API_URL``, its supported way of
   using a server, and nothing of Prefect is patched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from etl.core.config import Settings
from etl.core.errors import HomeBusyError, OrchestrationError


def configure_prefect(settings: Settings) -> None:
    """Prefect's settings for ``settings``' home, as environment variables (a variable already
    set wins). Must run before Prefect is imported: Prefect reads its settings once, then.
    Without ``PREFECT_API_URL`` the home holds Prefect's database: a home that cannot be written
    fails here, at once, instead of after the temporary server's start-up timeout."""
    if "PREFECT_API_URL" not in os.environ:
        from etl.core.config import require_writable

        require_writable(settings)
        os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    # task results (the cache of vendor pulls) live in the warehouse, whichever server runs the flow
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(settings.home / "prefect" / "storage"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary server's 20 s default is too little on a loaded 2-core machine (a nightly failed
    # so): `prefect_startup_timeout_seconds` in config.toml (default 180); Prefect's setting is whole seconds
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                          str(math.ceil(settings.prefect_startup_timeout_seconds)))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # ...but a run's own log lines (each step, the factor build's chunks with an estimate of
    # what remains) go to the console and the run's logs in the UI
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")


# ------------------------------------------------------------------ the home's run lock

LOCK_NAME = ".flows.lock"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class RunLock:
    """The home's run lock: one flow run (nightly or backfill started from this machine's
    command line) per home at a time. ``flock`` on ``<home>/.flows.lock``, released by the
    kernel when the holder exits, however it ends (a SIGKILL included), so a lock is never
    stale. The holder writes who it is (what, pid, start time) into the file for the others'
    messages. Threads of one process are serialised too."""

    _guard = threading.Lock()
    _thread_locks: dict[str, threading.Lock] = {}

    def __init__(self, home: Path, what: str):
        self.home = Path(home)
        self.path = self.home / LOCK_NAME
        self.what = what
        with RunLock._guard:
            self._thread_lock = RunLock._thread_locks.setdefault(str(self.path), threading.Lock())
        self._fd: int | None = None

    def holder(self) -> str:
        """``nightly (pid N, started at T)`` as the holder wrote it; '' when unknown."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"{info['what']} holds {self.home} (pid {info['pid']}, started at {info['started']})"
        except (OSError, ValueError, KeyError, TypeError):
            return f"another run holds {self.home}"

    def acquire(self, wait: bool = True, say: Callable[[str], None] = _say) -> RunLock:
        if not self._thread_lock.acquire(blocking=False):
            if not wait:
                raise HomeBusyError(f"{self._busy()}: wait for it to finish, or leave out --fail-if-busy to wait")
            say(f"{self._busy()}; waiting")
            self._thread_lock.acquire()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise HomeBusyError(f"{self._busy()}: wait for it to finish, or leave out --fail-if-busy "
                                        "to wait") from None
                say(f"{self._busy()}; waiting")
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps({"what": self.what, "pid": os.getpid(), "started": started}).encode(), 0)
        except BaseException:
            self._close()
            self._thread_lock.release()
            raise
        return self

    def _busy(self) -> str:
        text = self.holder()
        return text if text.startswith("another") else f"another {text}"

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor releases the flock
            self._fd = None

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)   # nobody holds it now
        self._close()
        self._thread_lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------------ the temporary server

def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """Prefect's temporary API server for one run, started like Prefect 3.8 starts its own
    (``SubprocessASGIServer._run_uvicorn_command``: uvicorn on ``create_app`` with the UI off,
    marked ephemeral) but through :mod:`flows.pdeathsig`, so the kernel stops it when this
    process dies, whatever kills it. Must be started from the main thread (the death signal
    follows the thread that started it). Its output goes to ``<home>/prefect/server.log``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def command(self) -> list[str]:
        import importlib.util

        prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
        return [sys.executable, "-m", "flows.pdeathsig", str(os.getpid()), sys.executable, "-m", "uvicorn", "--app-dir",
                str(prefect_dir.parent), "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]

    def start(self) -> str:
        import httpx

        timeout = self.settings.prefect_startup_timeout_seconds
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        # the wrapper is this project's module: importable from wherever the command runs
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        log_path = Path(os.environ.get("PREFECT_HOME", self.settings.home / "prefect")) / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        for _attempt in range(5):   # another process may take the free port first
            self.port = _free_port()
            with open(log_path, "ab") as log:
                self.process = subprocess.Popen(self.command(), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT)
            with httpx.Client() as client:
                while time.monotonic() < deadline and self.process.poll() is None:
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                            return self.api_url
                    time.sleep(0.1)
            if self.process.poll() is None:   # still starting when the time was up
                self.stop()
                raise OrchestrationError(
                    f"Prefect's temporary server did not answer within {timeout:g} s "
                    f"(prefect_startup_timeout_seconds in config.toml); see {log_path}")
            if time.monotonic() >= deadline:
                break
        code = self.process.returncode if self.process else None
        self.process = None
        raise OrchestrationError(f"Prefect's temporary server exited with code {code} before answering; see {log_path}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain_prefect() -> None:
    """Let Prefect send what its background workers hold (logs, events) while the server is
    still up; best effort (Prefect would otherwise try at exit, against a stopped server)."""
    if "prefect" not in sys.modules:
        return
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10, at_exit=False)
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10, at_exit=False)


@contextlib.contextmanager
def prefect_run(settings: Settings, what: str, wait: bool = True, say: Callable[[str], None] = _say):
    """The setting of a flow run started here (module doc): the home's run lock, Prefect's
    settings, and without ``PREFECT_API_URL`` a temporary server that dies with this process.
    Import the flow inside the block."""
    lock = RunLock(settings.home, what).acquire(wait=wait, say=say)
    try:
        configure_prefect(settings)
        # Prefect reads its settings when first imported: once it is, only its own server can serve it
        if os.environ.get("PREFECT_API_URL") or "prefect.settings" in sys.modules:
            yield None
            return
        server = LocalServer(settings)
        os.environ["PREFECT_API_URL"] = server.start()
        try:
            yield server
        finally:
            _drain_prefect()
            server.stop()
            os.environ.pop("PREFECT_API_URL", None)
    finally:
        lock.release()
