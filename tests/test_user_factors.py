"""A quant's own factors, from a module outside this repo, through the CLI as a user runs it:
declared in a temporary folder, named in the home's config.toml, backfilled alone, applied to
Feast, read back with ``alpha.history`` and ``alpha latest``. Each wrong declaration is
refused with a message that names it, before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
ALPHA = [sys.executable, "-m", "cli.app"]

GOOD = '''
import numpy as np
from etl.factors.spec import Factor, Output


def gap(inputs):
    """Overnight gap: today's open over yesterday's close, split-adjusted (a split is no gap)."""
    bars = inputs.adjusted("split")
    prev = bars["close"].shift(1)
    return {"gap_1d": (bars["open"] / prev - 1.0).to_numpy()}


def range_mean(inputs):
    b = inputs.bars
    r = ((b["high"] - b["low"]) / b["close"]).rolling(10, min_periods=10).mean()
    return {"range_10d": r.to_numpy()}


FACTORS = [
    Factor(name="gap_1d", family="mylab", view="mylab_daily", outputs=(Output("gap_1d", "float64", "overnight gap"),),
           inputs=("bars.open", "bars.close", "corporate_actions.split_factor"), warmup=1,
           availability="session close + bar delay", description="overnight gap", compute=gap),
    Factor(name="range_10d", family="mylab", view="mylab_daily", outputs=(Output("range_10d", "float64", "mean daily range"),),
           inputs=("bars.high", "bars.low", "bars.close"), warmup=9,
           availability="session close + bar delay", description="10-session mean of (high - low) / close", compute=range_mean),
]
'''

BAD = {
    "unknown_table": ('Factor(name="x1", family="bad", view="bad_daily", outputs=(Output("x1"),), inputs=("trades.price",), '
                      'warmup=0, availability="close", description="", compute=f)', "unknown input 'trades.price'"),
    "clash": ('Factor(name="x2", family="bad", view="bad_daily", outputs=(Output("rsi_14"),), inputs=("bars.close",), '
              'warmup=0, availability="close", description="", compute=f)', "feature names declared twice"),
    "builtin_view": ('Factor(name="x3", family="bad", view="technicals", outputs=(Output("x3"),), inputs=("bars.close",), '
                     'warmup=0, availability="close", description="", compute=f)', "is a built-in view"),
    "no_warmup": ('Factor(name="x4", family="bad", view="bad_daily", outputs=(Output("x4"),), inputs=("bars.close",), '
                  'warmup=None, availability="close", description="", compute=f)', "warmup must be a whole number"),
    "no_compute": ('Factor(name="x5", family="bad", view="bad_daily", outputs=(Output("x5"),), inputs=("bars.close",), '
                   'warmup=0, availability="close", description="")', "needs compute="),
}

LOOKAHEAD = '''
from etl.factors.spec import Factor, Output


def tomorrow(inputs):
    return {"next_close": inputs.bars["close"].shift(-1).to_numpy()}


FACTORS = [Factor(name="next_close", family="bad", view="peek_daily", outputs=(Output("next_close"),), inputs=("bars.close",),
                  warmup=0, availability="close", description="looks ahead", compute=tomorrow)]
'''


def _alpha(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALPHA_HOME": str(home), "PYTHONPATH": str(REPO)}
    out = subprocess.run([*ALPHA, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if ok:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def _config(home: Path, lab: Path, module: str) -> None:
    (home / "config.toml").write_text(f'factor_modules = ["{module}"]\nfactor_paths = ["{lab}"]\n')


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lean_root):
    root = tmp_path_factory.mktemp("user_factors")
    lab = root / "lab"
    (lab / "mylab").mkdir(parents=True)
    (lab / "mylab" / "__init__.py").write_text("")
    (lab / "mylab" / "factors.py").write_text(GOOD)
    for name, (decl, _) in BAD.items():
        (lab / f"bad_{name}.py").write_text("from etl.factors.spec import Factor, Output\n\n\ndef f(inputs):\n    return {}\n\n\n"
                                            f"FACTORS = [{decl}]\n")
    (lab / "peek.py").write_text(LOOKAHEAD)
    home = root / "home"
    home.mkdir()
    _alpha(home, "ingest", "lean", "AAPL,SPY", "--path", str(lean_root))
    first = _alpha(home, "nightly")  # the built-in factors, before the user's module exists
    _config(home, lab, "mylab.factors")
    backfill = _alpha(home, "features", "build", "--family", "user_mylab_daily")
    _alpha(home, "apply")
    _alpha(home, "materialize")
    return {"home": home, "lab": lab, "first": first, "backfill": backfill}


def test_a_user_factor_goes_from_declaration_to_history_and_latest(lab):
    from etl.core.config import load_settings
    from etl.storage.actions import read_corporate_actions
    from etl.storage.bars import read_silver_bars
    from sdk import connect

    home = lab["home"]
    assert "user_mylab_daily" in lab["backfill"].stdout and "rows written" in lab["backfill"].stdout
    assert "factors: technical" not in lab["backfill"].stdout  # only the new family was built
    settings = load_settings(home)
    bars = read_silver_bars(settings, ["AAPL"])
    acts = read_corporate_actions(settings)
    from etl.factors.core import cumulative_factors

    split, _ = cumulative_factors(bars["session"], acts[acts["symbol"] == "AAPL"])
    expected = bars["open"].to_numpy() * split / np.r_[np.nan, (bars["close"].to_numpy() * split)[:-1]] - 1.0
    got = connect(home).history(pd.DataFrame({"symbol": "AAPL", "event_timestamp": bars["event_timestamp"]}),
                                ["mylab_daily:gap_1d", "mylab_daily:range_10d"])
    np.testing.assert_allclose(got["gap_1d"].to_numpy(), expected, rtol=1e-12, equal_nan=True)
    split_day = bars.index[bars["session"] == pd.Timestamp("2014-06-09")][0]
    assert abs(got["gap_1d"].iloc[split_day]) < 0.05  # AAPL's 7:1 split is not a -86 % gap
    assert got["range_10d"].iloc[:9].isna().all() and got["range_10d"].iloc[9:].notna().all()
    latest = _alpha(home, "latest", "AAPL", "mylab_daily:gap_1d", "--now", "warehouse", "--json")
    row = json.loads(latest.stdout.strip().splitlines()[-1])[0]
    assert row["gap_1d"] == pytest.approx(expected[-1], abs=1e-10)  # the CLI prints 10 decimal places
    listed = _alpha(home, "features", "list", "--family", "mylab").stdout
    assert "gap_1d" in listed and "range_10d" in listed
    described = _alpha(home, "features", "describe", "gap_1d").stdout
    assert "user module" in described and "bars.open" in described and "mylab_daily" in described


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_wrong_declaration_is_refused_before_any_work(lab, tmp_path, name):
    home = tmp_path / "home"
    home.mkdir()
    _config(home, lab["lab"], f"bad_{name}")
    out = _alpha(home, "features", "list", ok=False)
    assert out.returncode == 1
    assert BAD[name][1] in out.stdout + out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_a_compute_that_looks_ahead_is_refused_with_the_session_it_moved(lab):
    home = lab["home"]
    cfg = (home / "config.toml").read_text()
    try:
        _config(home, lab["lab"], "peek")
        out = _alpha(home, "features", "build", "--family", "user_peek_daily", ok=False)
    finally:
        (home / "config.toml").write_text(cfg)
    assert out.returncode == 1
    text = textwrap.dedent(out.stdout + out.stderr)
    assert "looks ahead" in text and "next_close" in text and "Traceback" not in text
    assert not (home / "gold" / "peek_daily").exists()  # refused before any work
