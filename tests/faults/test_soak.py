"""Soak: 200 random operations against one home, then one repair run, then the truth.

The operations (seeded, ``ALPHA_SOAK_SEED`` to vary it, ``ALPHA_SOAK_OPS`` for more) are what a
warehouse lives through: a CSV vendor delivering the next sessions (``ingest``), the factor build,
``apply``, the incremental push to Redis, ``latest`` and ``history`` reads, ``kill -9`` of an
``alpha`` command at a random point (nightly, factor build, ingest, materialize), Redis restarts
without persistence, Redis evictions (keys deleted as ``allkeys-lru`` would) and truncated gold
files. Every read during the run must either answer or raise a clear :class:`AlphaError`; a raw
exception fails the test with the log of operations.

Afterwards one ``alpha nightly`` (the repair run) and ``alpha doctor`` must be clean, and every
answer must equal a clean rebuild's: a second home that received the same CSV files at once
(gold of every view as known now, and ``alpha.latest`` of every view's features).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.servers import RedisServer
from tests.test_incremental_build import _as_known

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SYMBOLS = ["AAPL", "IBM", "SPY"]
SEED = int(os.environ.get("ALPHA_SOAK_SEED", "16"))
N_OPS = int(os.environ.get("ALPHA_SOAK_OPS", "200"))
ALPHA = str(Path(sys.executable).with_name("alpha"))
#: operation -> weight of the draw
WEIGHTS = {"ingest": 6, "build": 3, "apply": 1, "materialize": 3, "latest": 8, "history": 3, "kill": 2,
           "redis_restart": 1, "evict": 2, "truncate": 2}
LATEST_REFS = ["technicals:rsi_14", "bars_daily:close", "ta_momentum:ta_adx_10"]


def _bars() -> pd.DataFrame:
    """Raw daily bars of the shipped Lean data for SYMBOLS, 2013-06 .. 2014-12 (AAPL's 7:1 split
    of 2014-06-09 inside), and the Lean corporate actions."""
    import tempfile

    from etl.core.config import default_lean_path, load_settings
    from etl.sources.lean.daily import ingest_lean
    from etl.storage.actions import read_corporate_actions
    from etl.storage.bars import read_silver_bars

    with tempfile.TemporaryDirectory() as tmp:
        lean = load_settings(Path(tmp) / "lean")
        ingest_lean(lean, default_lean_path(), SYMBOLS, now=pd.Timestamp("2020-01-01", tz="UTC"))
        raw = read_silver_bars(lean)
        actions = read_corporate_actions(lean)
    raw = raw[(raw["session"] >= "2013-06-03") & (raw["session"] <= "2014-12-31")].reset_index(drop=True)
    return raw, actions


def _write_csv(folder: Path, bars: pd.DataFrame, upto) -> None:
    for sym, g in bars[bars["session"] <= upto].groupby("symbol"):
        out = pd.DataFrame({"date": g["session"].dt.strftime("%Y-%m-%d"), "open": g["open"], "high": g["high"],
                            "low": g["low"], "close": g["close"], "volume": g["volume"]})
        text = out.to_csv(index=False)
        tmp = folder / f".{sym}.csv.part"
        tmp.write_text(text)
        os.replace(tmp, folder / f"{sym}.csv")   # the vendor delivers whole files


def _home(root: Path, name: str, redis_url: str, folder: Path, actions):
    from etl.core.config import load_settings
    from etl.storage.actions import write_corporate_actions

    home = root / name
    home.mkdir()
    (home / "config.toml").write_text(
        f'redis_url = "{redis_url}"\n\n[[ingest]]\nsource = "csv"\ndataset = "daily"\npath = "{folder}"\n')
    settings = load_settings(home)
    write_corporate_actions(settings, actions, pd.Timestamp("2013-01-01", tz="UTC"))
    return settings


def _env(settings) -> dict:
    env = dict(os.environ, ALPHA_HOME=str(settings.home), PYTHONUNBUFFERED="1")
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(settings.home / "prefect")
    return env


def _run(settings, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([ALPHA, *args], env=_env(settings), capture_output=True, text=True, timeout=timeout)


def _processes_of(home: Path) -> list[tuple[int, list[str]]]:
    """Live processes (not this one) whose ALPHA_HOME is ``home``."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get("ALPHA_HOME") == str(home) and p.status() != psutil.STATUS_ZOMBIE:
                out.append((p.pid, p.info["cmdline"]))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """``kill -9`` of the command alone (its children are left to fend for themselves, as after
    an OOM kill), then wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


class Soak:
    def __init__(self, root: Path, redis: RedisServer):
        from etl.core.errors import AlphaError

        self.AlphaError = AlphaError
        self.rng = random.Random(SEED)
        self.redis = redis
        self.raw, self.actions = _bars()
        self.sessions = sorted(self.raw["session"].unique())
        self.folder = root / "vendor"
        self.folder.mkdir()
        self.upto = 220                                   # sessions delivered so far
        _write_csv(self.folder, self.raw, self.sessions[self.upto - 1])
        self.settings = _home(root, "home", redis.url, self.folder, self.actions)
        self.log: list[str] = []
        self.errors: dict[str, int] = {}

    # ------------------------------------------------------------------ operations
    def ingest(self):
        from etl.sources.csv_folder import ingest_csv_folder

        self.upto = min(len(self.sessions), self.upto + self.rng.randint(1, 3))
        _write_csv(self.folder, self.raw, self.sessions[self.upto - 1])
        ingest_csv_folder(self.settings, self.folder)
        return f"to {self.sessions[self.upto - 1]:%Y-%m-%d}"

    def build(self):
        from etl.jobs import compute_factors

        return f"run {compute_factors(self.settings)['run']}"

    def apply(self):
        from etl.jobs import apply_if_changed

        return "skipped" if "skipped" in apply_if_changed(self.settings) else "applied"

    def materialize(self):
        from etl.jobs import materialize_if_needed

        return "skipped" if "skipped" in materialize_if_needed(self.settings) else "written"

    def latest(self):
        from sdk import connect

        out = connect(self.settings.home).latest(SYMBOLS, LATEST_REFS, now="warehouse", allow_stale=True)
        return f"{int(out[['rsi_14', 'close']].notna().sum().sum())} values"

    def history(self):
        from sdk import connect

        day = self.sessions[self.rng.randrange(60, self.upto)]
        out = connect(self.settings.home).history(SYMBOLS, LATEST_REFS, start=day, end=day)
        return f"{len(out)} rows"

    def kill(self):
        cmd = self.rng.choice([["nightly"], ["features", "build"], ["ingest", "csv", "--path", str(self.folder)],
                               ["materialize"]])
        if cmd[0] == "ingest":
            self.upto = min(len(self.sessions), self.upto + 1)
            _write_csv(self.folder, self.raw, self.sessions[self.upto - 1])
        delay = self.rng.uniform(0.5, 8.0 if cmd == ["nightly"] else 4.0)
        proc = subprocess.Popen([ALPHA, *cmd], env=_env(self.settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            return f"{' '.join(cmd[:2])} finished before the kill (rc {proc.returncode})"
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            return f"{' '.join(cmd[:2])} killed after {delay:.1f} s"

    def redis_restart(self):
        self.redis.kill9()
        self.redis.start()             # no persistence: it comes back empty
        return "empty again"

    def evict(self):
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.redis.port)
        keys = list(client.scan_iter(count=1000))
        chosen = self.rng.sample(keys, k=max(1, len(keys) // 3)) if keys else []
        if chosen:
            client.delete(*chosen)
        return f"{len(chosen)} of {len(keys)} keys"

    def truncate(self):
        parts = sorted(p for p in self.settings.gold.rglob("*.parquet") if not p.name.startswith("."))
        if not parts:
            return "no gold yet"
        path = self.rng.choice(parts)
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
        return f"{path.relative_to(self.settings.home)} {size} -> {size // 2} bytes"

    # ------------------------------------------------------------------ the run
    def step(self, i: int, name: str) -> None:
        t0 = time.perf_counter()
        try:
            what = getattr(self, name)()
        except self.AlphaError as exc:           # a clear error is an answer; a raw exception is not
            self.errors[name] = self.errors.get(name, 0) + 1
            what = f"AlphaError: {str(exc)[:160]}"
        self.log.append(f"{i:3d} {name:<13} {time.perf_counter() - t0:6.2f} s  {what}")

    def run(self, n: int) -> None:
        names, weights = zip(*WEIGHTS.items(), strict=True)
        plan = ["build", "apply", "materialize"] + self.rng.choices(names, weights=weights, k=n - 3)
        for i, name in enumerate(plan):
            try:
                self.step(i, name)
            except Exception as exc:  # noqa: BLE001 -- the log makes the failure reproducible
                raise AssertionError(f"operation {i} ({name}) raised {type(exc).__name__}: {exc}\n"
                                     + "\n".join(self.log[-30:])) from exc


def _clean_rebuild(root: Path, soak: Soak, redis_url: str):
    """A second home that received the final CSV files at once, built and pushed once."""
    from etl.jobs import apply_if_changed, compute_factors, materialize_if_needed
    from etl.sources.csv_folder import ingest_csv_folder

    folder = root / "vendor_once"
    folder.mkdir()
    _write_csv(folder, soak.raw, soak.sessions[soak.upto - 1])
    clean = _home(root, "clean", redis_url, folder, soak.actions)
    ingest_csv_folder(clean, folder)
    compute_factors(clean)
    apply_if_changed(clean)
    materialize_if_needed(clean)
    return clean


def test_soak_200_random_operations_then_one_repair_run(tmp_path):
    from etl.factors import registry
    from sdk import connect

    # a Redis of the test's own, without persistence, as a cache-only Redis runs
    redis = RedisServer(tmp_path / "redis", "--appendonly", "no").start()
    t0 = time.perf_counter()
    try:
        soak = Soak(tmp_path, redis)
        soak.run(N_OPS)
        ops_s = time.perf_counter() - t0
        print(f"\nsoak: {N_OPS} operations in {ops_s:.0f} s (seed {SEED}); errors reported clearly: {soak.errors}")
        print("\n".join(soak.log))
        # the repair run: one nightly, exactly as a user runs it
        nightly = _run(soak.settings, "nightly")
        assert nightly.returncode == 0, nightly.stdout[-3000:] + nightly.stderr[-3000:]
        doctor = _run(soak.settings, "doctor", "--json", timeout=300)
        assert doctor.stdout.strip().startswith("{"), doctor.stdout[-2000:] + doctor.stderr[-3000:]
        report = json.loads(doctor.stdout)
        assert doctor.returncode == 0 and report["ok"], json.dumps([c for c in report["checks"] if not c["ok"]], indent=1)
        # no process of the home outlived its command (killed nightlies' servers, builds' workers)
        left = _processes_of(soak.settings.home)
        assert not left, f"processes of the home left running: {left}"
        # the truth: a clean rebuild from the same files (its online store: database 1 of the same Redis)
        clean = _clean_rebuild(tmp_path, soak, redis.url.replace("/0", "/1"))
        now = pd.Timestamp("2100-01-01", tz="UTC")
        checked = 0
        for view in registry.views():
            a, b = _as_known(soak.settings, view, now), _as_known(clean, view, now)
            assert a.index.equals(b.index), view
            assert (a["known_timestamp"] == b["known_timestamp"]).all(), view
            for col in a.columns.drop("known_timestamp"):
                x, y = a[col], b[col]
                if x.dtype.kind == "f":
                    xv, yv = x.to_numpy(float), y.to_numpy(float)
                    d = np.abs(xv - yv)
                    scale = np.nanmax(np.abs(yv)) if np.isfinite(yv).any() else 0.0
                    # recursive outputs: the grid's convergence rule (as tests/test_incremental_build.py)
                    close = ((xv == yv) | (np.isnan(xv) & np.isnan(yv)) | (d <= 1e-6 * np.maximum(np.abs(xv), np.abs(yv)))
                             | (d <= 1e-6 * scale))
                    assert close.all(), (view, col, a.index[~close][:3].tolist())
                else:
                    assert (x.astype(str) == y.astype(str)).all(), (view, col)
                checked += len(a)
        refs = [f"{v}:{f}" for v in ("technicals", "bars_daily", "ta_momentum") for f in registry.views()[v].output_names][:60]
        got = connect(soak.settings.home).latest(SYMBOLS, refs, now="warehouse")
        want = connect(clean.home).latest(SYMBOLS, refs, now="warehouse")
        pd.testing.assert_frame_equal(got, want, rtol=1e-6)
        assert checked > 100_000
    finally:
        redis.stop()
