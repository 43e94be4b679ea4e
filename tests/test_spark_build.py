"""The factor build on Spark (``engine = "spark"``) writes the gold of the local build.

Two homes hold the same silver (one ingest of the shipped Lean bars of three symbols, AAPL's
option chains and tweets, copied): one is built by the forked worker processes, the other with
every chunk as a Spark task (local[2]). Every view must hold the same rows, value for value
(bit for bit; created_timestamp, the build's own time, aside), after a first build and again
after a night that brings new sessions and a restated AAPL bar (an incremental build: new
sessions from their warm-up window, the revised session recomputed, known from the night).
A chunk that fails on an executor (a user's factor that raises on one symbol) fails the build
with an AlphaError carrying the Python error; no run is committed, and the next build rolls
the unfinished run back.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from etl.core.config import load_settings
from etl.core.errors import AlphaError, ConfigError
from etl.core.spark import SparkJobError
from etl.factors import registry
from etl.gold import layout
from etl.gold.builder import arrow_schema, build
from etl.jobs import compute_factors
from etl.sources.archive import ingest_lean
from etl.sources.base import run_ingest
from tests.conftest import STOCKNET, spark_toml

SYMBOLS = ["AAPL", "IBM", "SPY"]
T1, T2 = pd.Timestamp("2021-06-01", tz="UTC"), pd.Timestamp("2021-07-01", tz="UTC")
HELD_BACK = 5                      # the last sessions of each symbol, first seen on night 2
RESTATED = "20140605"              # AAPL's close of that session is restated on night 2 (+1 %)
CHUNK = 2                          # entities per chunk: two chunks per bar-driven family


def _lean_copy(lean_root, dest, held_back: int, restate: bool):
    """The shipped Lean folder, the four symbols' bar files without their last ``held_back``
    sessions, AAPL's ``RESTATED`` close raised 1 % if ``restate``."""
    shutil.copytree(lean_root, dest)
    for sym in SYMBOLS:
        path = dest / "equity_usa_daily" / f"{sym.lower()}.csv"
        lines = path.read_text().splitlines()
        lines = lines[:len(lines) - held_back]
        if restate and sym == "AAPL":
            hit = [i for i, line in enumerate(lines) if line.startswith(RESTATED)]
            assert len(hit) == 1
            day, o, h, low, c, v = lines[hit[0]].split(",")
            close = round(int(c) * 1.01)
            lines[hit[0]] = ",".join([day, o, str(max(int(h), close)), low, str(close), v])
        path.write_text("\n".join(lines) + "\n")
    return dest


def gold_rows(settings) -> dict[str, pd.DataFrame]:
    """Every view's visible rows (the committed part files), sorted by entity, event and known
    time (stable over the parts in name order), without created_timestamp."""
    import pyarrow.dataset as ds

    registry.activate(settings)
    out = {}
    for name, view in registry.views().items():
        schema = arrow_schema(view)
        files = [str(p) for p in layout.parts(settings, name)]
        table = ds.dataset(files, format="parquet", schema=schema).to_table() if files else schema.empty_table()
        frame = table.to_pandas().drop(columns="created_timestamp")
        out[name] = frame.sort_values([view.entity, "event_timestamp", "known_timestamp"], kind="stable").reset_index(drop=True)
    return out


def assert_same_gold(local: dict[str, pd.DataFrame], spark: dict[str, pd.DataFrame]) -> int:
    """View by view, the same rows: floats bit for bit (NaN == NaN), times to the microsecond,
    everything else equal (missing == missing). Returns the rows compared."""
    assert list(local) == list(spark)
    total = 0
    for name in local:
        a, b = local[name], spark[name]
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b), f"{name}: {len(a)} rows built locally, {len(b)} on Spark"
        for kind, bits in (("float64", np.uint64), ("float32", np.uint32)):
            cols = [c for c in a.columns if a[c].dtype == kind]
            if cols:     # one block per dtype: the bits of every value (a NaN's too)
                same = (a[cols].to_numpy().view(bits) == b[cols].to_numpy(dtype=kind).view(bits)).all(axis=0)
                _no_difference(name, a, b, [c for c, ok in zip(cols, same, strict=True) if not ok])
        others = [c for c in a.columns if a[c].dtype.kind != "f"]
        for col in others:
            x, y = a[col], b[col]
            if x.dtype.kind == "M":
                same = x.array.asi8 == y.array.asi8      # the same instant and unit (both read as us)
            else:
                na = x.isna().to_numpy()
                same = (na == y.isna().to_numpy()) & (na | (x.astype(object) == y.astype(object)).to_numpy())
            _no_difference(name, a, b, [] if same.all() else [col])
        total += len(a)
    return total


def _no_difference(view: str, a: pd.DataFrame, b: pd.DataFrame, cols: list[str]) -> None:
    if not cols:
        return
    col = cols[0]
    x, y = a[col].to_numpy(), b[col].to_numpy()
    i = next(i for i in range(len(x)) if repr(x[i]) != repr(y[i]))     # distinct floats have distinct reprs
    key = a.iloc[i][[a.columns[0], "event_timestamp", "known_timestamp"]].tolist()
    raise AssertionError(f"{view}: {len(cols)} column(s) differ ({cols[:5]}); {col} at {key}: local {x[i]!r}, spark {y[i]!r}")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 1)


@pytest.fixture(scope="module")
def homes(tmp_path_factory, lean_root, spark):
    """Two homes of the same silver, built locally and on Spark, on night 1 and night 2."""
    root = tmp_path_factory.mktemp("spark_build")
    (root / "local").mkdir()
    (root / "local" / "config.toml").write_text(f"build_chunk_symbols = {CHUNK}\n")
    local = load_settings(root / "local")
    ingest_lean(local, _lean_copy(lean_root, root / "lean1", HELD_BACK, restate=False), SYMBOLS, now=T1)
    assert not run_ingest(local, "lean", "option_chains", ["AAPL"], "2014-06-02", "2014-06-16", path=str(lean_root)).failed
    assert not run_ingest(local, "stocknet", "tweets", ["AAPL"], "2014-06-16", "2014-07-11", path=str(STOCKNET)).failed
    shutil.copytree(local.home, root / "spark", symlinks=True)     # a home is self-contained: the same silver
    (root / "spark" / "config.toml").write_text(f"build_chunk_symbols = {CHUNK}\n" + spark_toml())
    on_spark = load_settings(root / "spark")
    assert (local.engine, on_spark.engine) == ("local", "spark")
    times = {}
    first_local, times["night 1 local"] = _timed(lambda: build(local))
    lines: list[str] = []
    first_spark, times["night 1 spark"] = _timed(lambda: build(on_spark, progress=lines.append))
    night1 = (gold_rows(local), gold_rows(on_spark))
    # night 2: five more sessions per symbol and AAPL's restated bar, known from T2
    lean2 = _lean_copy(lean_root, root / "lean2", 0, restate=True)
    for home in (local, on_spark):
        ingest_lean(home, lean2, SYMBOLS, now=T2)
    # the nightly's factor step (etl.jobs.compute_factors): the home's engine, recorded in its report
    second_local, times["night 2 local"] = _timed(lambda: compute_factors(local))
    second_spark, times["night 2 spark"] = _timed(lambda: compute_factors(on_spark))
    print(f"\nwall times (s) on {len(SYMBOLS)} symbols, chunks of {CHUNK}: {times}")
    return {"local": local, "spark": on_spark, "night1": night1, "night2": (gold_rows(local), gold_rows(on_spark)),
            "reports": {"local": (first_local, second_local), "spark": (first_spark, second_spark)}, "lines": lines,
            "root": root}


def test_a_first_build_on_spark_writes_the_gold_of_the_local_build(homes):
    local, spark = homes["night1"]
    rows = assert_same_gold(local, spark)
    r_local, r_spark = homes["reports"]["local"][0], homes["reports"]["spark"][0]
    assert (r_local.engine, r_spark.engine) == ("local", "spark")
    assert r_local.families == r_spark.families and r_local.rows == r_spark.rows
    # not a vacuous comparison: the bar-driven families ran in two chunks, and every input family wrote rows
    assert r_spark.families["technical"]["chunks"] == 2 and rows == sum(r_spark.rows.values())
    assert {v for v, n in r_spark.rows.items() if n} >= {"bars_daily", "technicals", "ta_pattern", "options_daily", "news_daily",
                                                         "regime_daily", "options_daily_lag1"}
    assert set(local["technicals"]["symbol"]) == set(SYMBOLS)
    # progress from Spark's tasks as they finish, in the local build's words
    told = [ln for ln in homes["lines"] if " on Spark " in ln]
    assert told and all(" done, " in ln and " s elapsed, ~" in ln and " s left" in ln for ln in told)
    n = sum(f["chunks"] for f in r_spark.families.values())
    assert re.match(rf"factors: \w+ chunk {n}/{n} \(.* rows\) 100% done, \d+ s elapsed, ~0 s left", homes["lines"][-1])


def test_a_revision_night_on_spark_writes_the_gold_of_the_local_build(homes):
    local, spark = homes["night2"]
    assert_same_gold(local, spark)
    r_local, r_spark = homes["reports"]["local"][1], homes["reports"]["spark"][1]
    assert (r_local["engine"], r_spark["engine"]) == ("local", "spark") and r_spark["run"] == 2
    assert r_local["families"] == r_spark["families"] and r_local["views"] == r_spark["views"]
    assert r_spark["families"]["technical"]["mode"] == "incremental"
    # the night wrote the new sessions of every symbol, and the restated session's new values (AAPL's,
    # from RESTATED on), known from T2 (a first version of a session is known from its availability)
    tech, before = spark["technicals"], homes["night1"][1]["technicals"]
    new = tech[tech["event_timestamp"] > before["event_timestamp"].max()]
    assert new.groupby("symbol").size().to_dict() == dict.fromkeys(SYMBOLS, HELD_BACK)
    revised = tech[tech["known_timestamp"] >= T2]
    assert set(revised["symbol"]) == {"AAPL"} and revised["event_timestamp"].min().strftime("%Y%m%d") == RESTATED
    assert len(tech) == len(before) + len(new) + len(revised)
    assert len(spark["bars_daily"]) == len(homes["night1"][1]["bars_daily"]) + len(SYMBOLS) * HELD_BACK + 1


BOOM = '''
import time
from pathlib import Path

from etl.factors.spec import Factor, Output

#: the other chunk's hidden part: SPY's chunk fails once it is written, so a rollback has work to do
OTHER_CHUNK = Path({gold!r}) / "boom_daily"


def boom(inputs):
    if inputs.entity == "SPY":
        deadline = time.monotonic() + 120
        while not any(OTHER_CHUNK.glob(".r*-c00000.parquet")) and time.monotonic() < deadline:
            time.sleep(0.1)
        raise ValueError("no quotes for SPY today")
    return {{"boom_x": inputs.bars["close"].to_numpy() * 2.0}}


FACTORS = [Factor(name="boom_x", family="boomlab", view="boom_daily", outputs=(Output("boom_x", "float64", "twice the close"),),
                  inputs=("bars.close",), warmup=0, availability="session close + bar delay", description="fails on SPY",
                  compute=boom)]
'''


def _visible(settings) -> dict[str, str]:
    """The sha256 of every part file a reader sees (part files are never changed in place)."""
    return {str(p.relative_to(settings.gold)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(settings.gold.glob("*/*.parquet")) if not p.name.startswith(".")}


def test_a_chunk_failing_on_an_executor_commits_nothing_and_is_rolled_back(homes):
    settings = homes["spark"]
    lab = homes["root"] / "lab"
    lab.mkdir()
    (lab / "boomlab.py").write_text(BOOM.format(gold=str(settings.gold)))
    config = settings.home / "config.toml"
    plain = config.read_text()
    before_runs = json.loads((settings.gold / layout.RUNS).read_text())
    before_files = _visible(settings)
    config.write_text(f'factor_modules = ["boomlab"]\nfactor_paths = ["{lab}"]\n' + plain)
    with_boom = load_settings(settings.home)
    with pytest.raises(SparkJobError) as err:
        build(with_boom)
    assert isinstance(err.value, AlphaError)
    message = str(err.value)
    # the executor's Python error (our wrapping of the user's error), the run, what to do
    assert "factor boom_x: its compute failed on SPY: ValueError: no quotes for SPY today" in message
    assert f"Run {before_runs['last_run'] + 1} was not committed" in message and "alpha features build" in message
    runs = json.loads((settings.gold / layout.RUNS).read_text())
    assert runs["last_run"] == before_runs["last_run"] and runs["families"] == before_runs["families"]
    assert runs["pending"]["run"] == before_runs["last_run"] + 1
    hidden = sorted(p.name for p in (settings.gold / "boom_daily").glob(".r*.parquet"))
    assert hidden, "the first chunk's part should be written (hidden) before the second chunk failed"
    assert {k: v for k, v in _visible(settings).items() if not k.startswith("boom_daily")} == before_files
    # of the new view, a reader sees its empty schema part only (written before the chunks, as a local build does)
    assert {k.split("/")[1] for k in _visible(settings) if k.startswith("boom_daily")} == {layout.SCHEMA_PART}
    # the user drops the factor: the next build rolls the unfinished run back and has nothing else to do
    config.write_text(plain)
    said: list[str] = []
    report = build(load_settings(settings.home), progress=said.append)
    assert report.recovered == f"run {before_runs['last_run'] + 1} rolled back" and report.run is None
    assert not list(settings.gold.glob("*/.r*.parquet"))
    assert said[0] == f"gold: run {before_runs['last_run'] + 1} rolled back (an earlier build was interrupted)"
    assert said[-1] == "factors: every family is up to date with silver", said
    after_runs = json.loads((settings.gold / layout.RUNS).read_text())
    assert {k: v for k, v in after_runs.items() if k != "pending"} == {k: v for k, v in before_runs.items() if k != "pending"}
    assert after_runs["pending"] is None
    assert {k: v for k, v in _visible(settings).items() if not k.startswith("boom_daily")} == before_files


def test_an_unknown_engine_is_refused(tmp_home):
    with pytest.raises(ConfigError, match=r"engine must be one of \['local', 'spark'\], got 'dask'"):
        build(tmp_home, engine="dask")
