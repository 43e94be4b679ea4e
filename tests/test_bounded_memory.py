"""Memory is bounded by a chunk, not by the universe: ``alpha nightly`` over a universe twice
as large peaks within 10 % of the same memory (the sum of RSS over its whole process tree:
the CLI, Prefect's temporary server, the build's worker processes), measured as a user runs
it, on generated CSV universes of 10 years of daily bars."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.core import clock

REPO = Path(__file__).resolve().parents[1]
ALPHA = str(Path(sys.executable).parent / "alpha")
SIZES = (24, 48)


def _universe(folder: Path, n: int) -> None:
    days = clock.sessions_in_range("2015-01-02", "2024-12-31")
    folder.mkdir(parents=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, len(days))))
        openp = close * np.exp(rng.normal(0, 0.005, len(days)))
        high = np.maximum(openp, close) * (1 + rng.uniform(0, 0.01, len(days)))
        low = np.minimum(openp, close) * (1 - rng.uniform(0, 0.01, len(days)))
        vol = rng.integers(100_000, 5_000_000, len(days))
        pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "open": openp.round(4), "high": high.round(4), "low": low.round(4),
                      "close": close.round(4), "volume": vol}).to_csv(folder / f"S{i:04d}.csv", index=False)


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def _peak(cmd: list[str], env: dict) -> int:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    out = proc.stdout.read()
    assert proc.returncode == 0, out
    return peak


@pytest.fixture(scope="module")
def peaks(tmp_path_factory):
    pytest.importorskip("psutil")
    out = {}
    for n in SIZES:
        root = tmp_path_factory.mktemp(f"mem{n}")
        _universe(root / "csv", n)
        env = {k: v for k, v in os.environ.items() if k not in ("ALPHA_REDIS_URL", "PREFECT_API_URL")}
        env["ALPHA_HOME"] = str(root / "home")
        subprocess.run([ALPHA, "ingest", "csv", "--path", str(root / "csv")], cwd=REPO, env=env, check=True, capture_output=True)
        out[n] = _peak([ALPHA, "nightly", "--session", "2024-12-31"], env)
    return out


def test_twice_the_universe_peaks_within_ten_percent(peaks):
    small, large = peaks[SIZES[0]], peaks[SIZES[1]]
    assert small > 100 * 2**20  # measured something real (the CLI alone is more than this)
    assert large <= 1.10 * small, f"{SIZES[0]} symbols: {small / 2**30:.2f} GB, {SIZES[1]} symbols: {large / 2**30:.2f} GB"
