"""The Spark engine's session, and work spread over Spark's executors.

``engine = "spark"`` in config.toml (or ``ALPHA_ENGINE=spark``) moves the heavy steps to Spark:
point-in-time history joins (``sdk.pit.spark_join``), factor builds (``etl.gold.builder`` with
:func:`spark_map`) and materialization's scan of gold (``etl.serving.spark_rows``). Every one
keeps the local engine's rules, so the answers are the same (tests/test_spark_*.py).

One session per process (Spark allows one SparkContext per JVM), opened on first use with the
``[spark]`` settings (``etl.core.config.SPARK_DEFAULTS``) and the settings every job here relies on:

* ``spark.sql.session.timeZone = UTC``: Spark hands timestamps back as naive UTC;
* ``spark.sql.parquet.outputTimestampType = TIMESTAMP_MICROS``: the warehouse's unit (Spark
  cannot read or write Parquet nanoseconds: PARQUET_TYPE_ILLEGAL);
* ``PYSPARK_PYTHON`` = this interpreter (the executors' Python must see the same packages;
  ``spark.pyspark.python`` alone was not enough here).

``pyspark`` is an optional extra (``pip install -e '.[spark]'``) and needs Java 17; without either
the engine refuses with a ConfigError saying what to install. Nothing here imports pyspark at
module import time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from etl.core.errors import AlphaError, ConfigError

#: settings every session gets (the [spark] conf table may add, not change these)
FIXED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.ui.showConsoleProgress": "false",     # our own progress lines instead of Spark's bar
}

_LOCK = threading.Lock()
_SESSION = None
#: seconds the last session took to start (the JVM, reported apart from the work by benchmarks)
last_start_seconds: float | None = None


class SparkJobError(AlphaError):
    """A Spark job failed; the message carries the Python error of the failed task."""


def available() -> str | None:
    """None when the Spark engine can run here, else why not (what to install)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed: pip install -e '.[spark]' (or `make setup`, which installs it)"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return ("no Java runtime: Spark needs Java 17 (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; "
                "or set JAVA_HOME)")
    return None


def require() -> None:
    reason = available()
    if reason:
        raise ConfigError(f"engine = \"spark\" cannot run here: {reason}")


def session(settings=None, spark: dict | None = None):
    """The process's SparkSession, opened with ``settings.spark`` (or ``spark``) on first use.
    A later call with other settings reuses the open session (one SparkContext per JVM)."""
    global _SESSION, last_start_seconds
    require()
    cfg = dict(spark if spark is not None else (settings.spark if settings is not None else {}))
    from etl.core.config import SPARK_DEFAULTS

    cfg = {**SPARK_DEFAULTS, **cfg}
    with _LOCK:
        if _SESSION is not None and _SESSION.sparkContext._jsc is not None:
            return _SESSION
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        if cfg["master"].startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")   # no warning about a loopback host name
        # executors import our packages by name: the project root must be on their path
        root = str(Path(__file__).resolve().parents[2])
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
        from pyspark.sql import SparkSession

        t0 = time.perf_counter()
        builder = (SparkSession.builder.master(cfg["master"]).appName(cfg["app_name"])
                   .config("spark.driver.memory", cfg["driver_memory"])
                   .config("spark.executor.memory", cfg["executor_memory"])
                   .config("spark.ui.enabled", "true" if cfg["ui"] else "false")
                   .config("spark.local.dir", tempfile.gettempdir())
                   .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"]))
        # shuffle partitions: Spark's default (200), coalesced by adaptive execution to ~64 MB each
        for key, value in {**cfg.get("conf", {}), **FIXED_CONF}.items():
            builder = builder.config(key, value)
        try:
            _SESSION = builder.getOrCreate()
        except Exception as exc:  # the JVM did not start: say why in one message
            raise ConfigError(f"Spark did not start (master {cfg['master']!r}): {exc}") from exc
        _SESSION.sparkContext.setLogLevel("ERROR")
        last_start_seconds = time.perf_counter() - t0
        return _SESSION


def stop() -> None:
    """Stop the process's session (its JVM stays up; a new session opens on the next use)."""
    global _SESSION
    with _LOCK:
        if _SESSION is not None:
            _SESSION.stop()
            _SESSION = None


def spark_map(settings, fn: Callable, items: Iterable, progress: Callable[[int, int], None] | None = None,
              description: str = "alpha") -> list:
    """``[fn(item) for item in items]`` on Spark's executors, one task per item, results in the
    order of ``items``. ``fn`` and each item are pickled to the executors (cloudpickle), and each
    result comes back to the driver: keep results small (a chunk's report, never its rows).
    ``progress(done, total)`` is called from a watcher thread as tasks finish. A task's Python
    error fails the job and is raised as :class:`SparkJobError` with the task's traceback."""
    items = list(items)
    if not items:
        return []
    spark = session(settings)
    sc = spark.sparkContext
    group = f"alpha-{id(items)}-{time.monotonic_ns()}"
    sc.setJobGroup(group, description, interruptOnCancel=True)
    rdd = sc.parallelize(list(enumerate(items)), len(items))
    out: dict = {}
    done = threading.Event()

    def watch() -> None:
        tracker = sc.statusTracker()
        last = -1
        while not done.wait(2.0):
            finished = 0
            for job in tracker.getJobIdsForGroup(group):
                info = tracker.getJobInfo(job)
                for stage in (info.stageIds if info else []):
                    s = tracker.getStageInfo(stage)
                    if s is not None:
                        finished += s.numCompletedTasks
            if finished != last and progress is not None:
                progress(min(finished, len(items)), len(items))
                last = finished

    watcher = threading.Thread(target=watch, daemon=True, name="alpha-spark-progress")
    watcher.start()
    try:
        pairs = rdd.map(lambda pair: (pair[0], fn(pair[1]))).collect()
    except Exception as exc:
        with contextlib.suppress(Exception):   # (a dead JVM runs no task: then the job's own error is the one to tell)
            _settle(sc, group)    # no task of the failed job may still be running (and writing) when this raises
        raise SparkJobError(f"{description}: a Spark task failed: {_python_error(exc)}") from exc
    finally:
        done.set()
        watcher.join(timeout=5)
        sc.setLocalProperty("spark.jobGroup.id", None)
    out = dict(pairs)
    if progress is not None:
        progress(len(items), len(items))
    return [out[i] for i in range(len(items))]


def _settle(sc, group: str, timeout: float = 60.0) -> None:
    """Cancel the job group and wait (at most ``timeout`` s) until none of its tasks runs: when one
    task fails, ``collect`` raises at once while Spark kills the job's other tasks asynchronously
    (a Python worker up to ``spark.python.task.killTimeout`` later), and such a task may still be
    writing a file its caller is about to roll back."""
    sc.cancelJobGroup(group)
    tracker = sc.statusTracker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = 0
        for job in tracker.getJobIdsForGroup(group):
            info = tracker.getJobInfo(job)
            for stage in (info.stageIds if info else []):
                s = tracker.getStageInfo(stage)
                running += s.numActiveTasks if s is not None else 0
        if not running:
            return
        time.sleep(0.2)


def _python_error(exc: Exception) -> str:
    """The Python traceback's last lines of a failed task (Spark wraps it in a Java stack)."""
    text = str(exc)
    marker = "Traceback (most recent call last)"
    if marker in text:
        tail = text[text.rfind(marker):].strip().splitlines()
        lines = [ln for ln in tail if ln.strip() and not ln.startswith("\tat ")]
        return "\n".join(lines[-6:])
    return text.splitlines()[0] if text else type(exc).__name__
