"""``alpha experiment run SPEC`` and ``alpha experiment verify ID``.

A run is the spec's strategy (or model) backtested on ``alpha.history`` over the spec's period
and universe, evaluated (metrics, regime slices, bootstrap interval, probabilistic and deflated
Sharpe across the study's trials), written to ``$ALPHA_HOME/experiments/<run id>/`` and recorded
in the registry. The folder holds:

- ``spec.yaml`` (the spec as written) and ``manifest.json``: the spec's hash, the code version,
  the feature definitions' fingerprint, the fingerprint of every gold frame read (in order);
- ``metrics.json``: every number of the evaluation; ``returns.parquet``, ``decisions.parquet``
  (the target weight of every member at every decision time), ``orders.parquet`` (the fills);
- ``tearsheet.html`` / ``tearsheet.png``; ``model/`` for a learned model (the final fit, the
  artifact live trades).

The run id is the experiment's name and a hash of (spec, code, definitions, data): the same
spec on the same code and data is the same run (running it again finds it); anything that
changes the result changes the id. The folder is written under a temporary name and renamed
into place, so a crash leaves no half-written run.

``verify`` reruns the stored spec into a scratch folder and compares the fingerprints and every
number and frame with the stored run; it names each difference (which read's data changed,
which metric moved).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core.config import Settings
from etl.core.errors import AlphaError, DeclarationError
from lifecycle import fingerprint as fp
from lifecycle.spec import ExperimentSpec, load_spec, parse_spec

FRAMES = ("returns", "decisions", "orders", "benchmark")
BOOTSTRAP_RESAMPLES = 1000


class ExperimentError(AlphaError):
    """An experiment cannot run or be found as asked (says what to run instead)."""


@dataclass
class RunResult:
    run_id: str
    path: Path
    spec: ExperimentSpec
    manifest: dict
    metrics: dict
    existed: bool = False                 # the same run was already there (nothing recomputed on disk)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    def summary(self) -> str:
        m = self.metrics["all"]
        ci = self.metrics.get("sharpe_ci", [None, None])
        parts = [f"Sharpe {_f(m.get('sharpe'), '.2f')}"
                 + (f" (95% CI {_f(ci[0], '.2f')}..{_f(ci[1], '.2f')})" if ci[0] is not None else ""),
                 f"ann. return {_f(m.get('ann_return'), '+.1%')}", f"max DD {_f(m.get('max_drawdown'), '.1%')}",
                 f"exposure {_f(m.get('exposure'), '.0%')}", f"turnover {_f(m.get('turnover'), '.1%')}/session",
                 f"DSR {_f(self.metrics.get('deflated_sharpe', {}).get('dsr'), '.2f')} over "
                 f"{int(self.metrics.get('deflated_sharpe', {}).get('n_trials') or 1)} trial(s)"]
        return "; ".join(parts)


def _f(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def experiments_root(settings: Settings) -> Path:
    return settings.home / "experiments"


def _plain(value):
    """JSON-safe and exact: floats stay floats (repr round-trips), NaN becomes None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, pd.Timedelta)):
        return str(value)
    return value


# ------------------------------------------------------------------ evaluation
def regime_labels(client, index: pd.DatetimeIndex, start, end) -> dict[str, pd.Series]:
    """Per decision time of ``index``, the market regime known at the START of that session (the
    previous decision time's value): the label a session's return is sliced by."""
    from etl.core.errors import UnknownFeatureError, UnknownSymbolError
    from strategy.backtest import REGIMES

    try:
        before = pd.Timestamp(start) - pd.Timedelta(days=14)
        frame = client.history(["SPY"], [f"regime_daily:{c}" for c in REGIMES], start=before, end=end)
    except (UnknownFeatureError, UnknownSymbolError):   # no regime view, or no SPY: no slices (damaged gold still raises)
        return {}
    frame = frame.set_index(pd.DatetimeIndex(frame["event_timestamp"])).sort_index()
    out = {}
    for column, names in REGIMES.items():
        known = frame[column].dropna()
        if known.empty:
            continue
        # the value known at the previous decision time: asof the session's own time, minus one step
        at = known.reindex(known.index.union(index)).ffill().shift(1).reindex(index)
        out[column] = at.map(lambda v, names=names: names.get(int(v)) if pd.notna(v) else None)
    return out


def benchmark_returns(client, spec: ExperimentSpec, index: pd.DatetimeIndex, decisions: pd.DataFrame) -> tuple[pd.Series, str]:
    """The benchmark's daily returns on the run's decision times: a symbol's point-in-time
    total return, or the universe bought and held equally weighted (the mean ret_1d of the
    members at each decision time)."""
    if spec.benchmark == "buy_and_hold":
        members = decisions.copy()
        rets = client.history(members[["symbol", "decision_time"]].rename(columns={"decision_time": "event_timestamp"}),
                              ["technicals:ret_1d"])
        members["ret_1d"] = rets["ret_1d"].to_numpy()
        series = members.groupby("decision_time")["ret_1d"].mean().reindex(index)
        return series.rename("benchmark"), "universe equal weight"
    frame = client.history([spec.benchmark], ["technicals:ret_1d"], start=spec.start, end=spec.end)
    series = frame.set_index(pd.DatetimeIndex(frame["event_timestamp"]))["ret_1d"].astype(float).reindex(index)
    return series.rename("benchmark"), f"{spec.benchmark} total return"


def evaluate(returns: pd.Series, weights: pd.DataFrame, regimes: dict[str, pd.Series], benchmark: pd.Series,
             trial_sharpes: list[float], seed: int) -> dict:
    """Every number of a run's evaluation (research.metrics), as a JSON-ready dict."""
    from research import metrics as rm

    out: dict = {"all": rm.performance(returns, weights=weights)}
    bench = benchmark.dropna()
    out["benchmark"] = rm.performance(bench) if len(bench) > 2 else {}
    out["regimes"] = {}
    for column, labels in regimes.items():
        known = labels.dropna()
        if known.empty:
            continue
        table = rm.sliced(returns.reindex(known.index), known, weights=weights.reindex(known.index))
        out["regimes"][column] = {str(k): row for k, row in table.to_dict(orient="index").items()}
    lo, hi = rm.bootstrap_ci(returns, "sharpe", n_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    out["sharpe_ci"] = [lo, hi]
    out["deflated_sharpe"] = rm.deflated_sharpe(returns, trial_sharpes)
    return _plain(out)


# ------------------------------------------------------------------ running
def _check_service(client, spec: ExperimentSpec, strategy) -> None:
    if spec.feature_service is None:
        return
    services = client._services()
    if spec.feature_service not in services:
        raise DeclarationError(f"feature_service {spec.feature_service!r} is not a feature service here "
                               f"(see `alpha features list`; services: {', '.join(sorted(services))})")
    allowed = set(services[spec.feature_service])
    outside = [f for f in strategy.FEATURES if f not in allowed]
    if outside:
        raise DeclarationError(f"strategy {strategy.NAME!r} reads {outside} outside feature_service {spec.feature_service!r}")


def make_strategy(settings: Settings, spec: ExperimentSpec, model_dir: Path | None = None):
    """The spec's strategy, loaded through the plugin protocol; with ``model_dir`` a learned
    model is the stored final fit (predict only), as live and the shadow replay run it."""
    from strategy.protocol import load_strategy

    strategy = load_strategy(spec.strategy, spec.params, (*spec.paths, *settings.factor_paths))
    if spec.kind == "model" and strategy.kind != "model":
        raise DeclarationError(f"model {spec.strategy!r} has no fit_final: a model is a WalkForward "
                               "(research.walkforward) or offers fit_final/save/load; use strategy: for a plain strategy")
    if model_dir is not None and strategy.kind == "model":
        strategy.load(model_dir)
    return strategy


def run_id_for(spec: ExperimentSpec, code_fp: str, features_fp: str, data_fp: str) -> str:
    digest = hashlib.sha256("|".join([spec.sha256, code_fp, features_fp, data_fp]).encode()).hexdigest()
    return f"{spec.name}-{digest[:10]}"


def compute_run(settings: Settings, spec: ExperimentSpec, out_dir: Path, *, trial_sharpes: list[float] | None = None,
                progress: Callable[[str], None] = lambda _m: None) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    """Run the spec into ``out_dir`` (which must exist and be empty): (manifest, metrics, frames).
    Nothing is recorded in the registry here."""
    from sdk.client import Alpha
    from strategy.backtest import run_backtest

    client = fp.RecordingClient(Alpha(settings=settings))
    strategy = make_strategy(settings, spec)
    _check_service(client, spec, strategy)
    progress(f"backtest {strategy.NAME} ({strategy.kind}, {strategy.ref}) {spec.start:%Y-%m-%d}..{spec.end:%Y-%m-%d}, "
             f"universe {spec.universe}")
    bt = run_backtest(client, list(spec.symbols) or None, spec.start, spec.end, spec.fees, spec.slippage,
                      init_cash=spec.init_cash, out_dir=out_dir, strategy=strategy, universe=spec.universe,
                      report=False)   # the run's own tearsheet is below
    returns = bt.returns.astype(float).rename("return")
    weights = bt.targets.fillna(0.0)
    decisions = bt.targets.stack().rename("target_weight").reset_index()
    decisions.columns = ["decision_time", "symbol", "target_weight"]
    progress("evaluate: metrics, regime slices, bootstrap interval, deflated Sharpe")
    bench, bench_name = benchmark_returns(client, spec, returns.index, decisions)
    regimes = regime_labels(client, returns.index, spec.start, spec.end)
    from research import metrics as rm

    own = rm.performance(returns)["sharpe"]
    trials = [*(trial_sharpes or []), own]
    metrics = evaluate(returns, weights, regimes, bench, trials, spec.seed)
    folds = [f.as_dict() for f in getattr(strategy, "folds", [])]   # a model's walk-forward audit, one per fit
    if strategy.kind == "model":
        progress(f"walk-forward: {len(folds)} fits, each on labels known at its training time; fit the final model on "
                 "every label known at the period's end (the artifact live trades)")
        strategy.fit_final(bt.features)
        strategy.save(out_dir / "model")
        final = getattr(strategy, "final_fold", None)
        if final is not None:
            folds.append({**final.as_dict(), "final": True})
    frames = {
        "returns": returns.to_frame().rename_axis("decision_time").reset_index(),
        "decisions": decisions,
        "orders": bt.orders if bt.orders is not None else pd.DataFrame(),
        "benchmark": bench.to_frame().rename_axis("decision_time").reset_index(),
    }
    for name, frame in frames.items():
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    features_fp, per_view = fp.features_fingerprint(settings, client.views)
    version = fp.code_version(strategy)
    manifest = {
        "spec_sha256": spec.sha256, "spec": spec.canonical(), "spec_path": str(spec.path) if spec.path else None,
        "strategy": {"name": strategy.NAME, "kind": strategy.kind, "ref": strategy.ref, "params": spec.params,
                     "features": strategy.FEATURES},
        "code_version": version, "code_fingerprint": fp.code_fingerprint(version),
        "features_fingerprint": features_fp, "views": per_view,
        "data_fingerprint": client.data_fingerprint(), "reads": client.reads,
        "frames": {name: fp.frame_sha256(frame) for name, frame in frames.items()},
        "benchmark": bench_name, "trial_sharpes": trials[:-1], "folds": folds,
    }
    (out_dir / "spec.yaml").write_text(spec.source)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    _tearsheet(out_dir, spec, strategy, returns, bench, bench_name, weights, metrics)
    return manifest, metrics, frames


def _tearsheet(out_dir: Path, spec, strategy, returns, bench, bench_name, weights, metrics) -> None:
    from research.tearsheet import write_tearsheet

    tables = {column: pd.DataFrame.from_dict(rows, orient="index") for column, rows in metrics["regimes"].items()}
    flat = dict(metrics["all"])
    flat["sharpe_ci_low"], flat["sharpe_ci_high"] = metrics["sharpe_ci"]
    flat["psr"] = metrics["deflated_sharpe"].get("psr")
    flat["dsr"] = metrics["deflated_sharpe"].get("dsr")
    write_tearsheet(out_dir, title=f"{spec.name}: {strategy.NAME} ({strategy.kind})", returns=returns, benchmark=bench,
                    benchmark_name=bench_name, weights=weights, metrics=flat, benchmark_metrics=metrics.get("benchmark") or None,
                    regime_tables=tables,
                    params={"strategy": strategy.ref, **{f"params.{k}": v for k, v in spec.params.items()},
                            "period": f"{spec.start:%Y-%m-%d}..{spec.end:%Y-%m-%d}", "universe": spec.universe,
                            "fees": spec.fees, "slippage": spec.slippage, "seed": spec.seed},
                    notes=[f"Regime of each session: the one known at its start (the previous session's {', '.join(tables) or 'none'})."])


def run_experiment(settings: Settings, spec_or_path, *, progress: Callable[[str], None] = lambda _m: None) -> RunResult:
    """Run a spec (a path or an ExperimentSpec), write its folder and record it in the registry."""
    from lifecycle.registry import open_registry

    spec = spec_or_path if isinstance(spec_or_path, ExperimentSpec) else load_spec(spec_or_path)
    root = experiments_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    registry = open_registry(settings)
    try:
        trial_sharpes = _study_trials(registry, spec)
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=root))
        try:
            manifest, metrics, frames = compute_run(settings, spec, staging, trial_sharpes=trial_sharpes, progress=progress)
            run_id = run_id_for(spec, manifest["code_fingerprint"], manifest["features_fingerprint"], manifest["data_fingerprint"])
            manifest["run_id"] = run_id
            (staging / "manifest.json").write_text(json.dumps(_plain(manifest), indent=1, sort_keys=True))
            final = root / run_id
            if final.exists():
                shutil.rmtree(staging)
                existed = True
            else:
                os.replace(staging, final)
                existed = False
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not registry.has_run(run_id):
            _record(registry, spec, manifest, metrics, frames["decisions"], final)
        return RunResult(run_id=run_id, path=final, spec=spec, manifest=manifest, metrics=metrics, existed=existed, frames=frames)
    finally:
        registry.dispose()


def _study_trials(registry, spec: ExperimentSpec) -> list[float]:
    """The Sharpe ratios of the study's other trials (the runs of other experiments of the
    study, each experiment's latest run): what the deflated Sharpe deflates against."""
    runs = registry.runs(study=spec.study)
    if runs.empty:
        return []
    latest = runs[runs["experiment"] != spec.name].sort_values("created_at").groupby("experiment").tail(1)
    out = []
    for run_id in latest["run_id"]:
        m = registry.metrics(run_id)
        row = m[(m["scope"] == "all") & (m["metric"] == "sharpe")]
        if len(row) and pd.notna(row["value"].iloc[0]):
            out.append(float(row["value"].iloc[0]))
    return out


def _record(registry, spec: ExperimentSpec, manifest: dict, metrics: dict, decisions: pd.DataFrame, path: Path) -> None:
    from lifecycle.registry import RunRecord

    strategy = manifest["strategy"]
    registry.record_strategy(strategy["name"], kind=strategy["kind"], ref=strategy["ref"],
                             source_sha256=manifest["code_version"]["strategy_sha256"])
    scopes: dict[str, dict[str, float]] = {"all": metrics["all"], "benchmark": metrics.get("benchmark") or {}}
    for column, rows in metrics["regimes"].items():
        for label, row in rows.items():
            scopes[f"{column}={label}"] = row
    ci = metrics["sharpe_ci"]
    scopes["all"] = {**scopes["all"], "sharpe_ci_low": ci[0], "sharpe_ci_high": ci[1],
                     "psr": metrics["deflated_sharpe"].get("psr"), "dsr": metrics["deflated_sharpe"].get("dsr")}
    record = RunRecord(
        run_id=manifest["run_id"], experiment=spec.name, study=spec.study, strategy=strategy["name"], kind=strategy["kind"],
        spec_sha256=spec.sha256, spec_text=spec.source, code_version=json.dumps(manifest["code_version"], sort_keys=True),
        features_fingerprint=manifest["features_fingerprint"], data_fingerprint=manifest["data_fingerprint"],
        start=spec.start, end=spec.end, seed=spec.seed, status="ok", path=str(path),
    )
    signals = decisions[decisions["target_weight"] > 0]
    registry.record_run(record, {k: {m: v for m, v in d.items() if isinstance(v, (int, float)) or v is None}
                                 for k, d in scopes.items()}, signals)


# ------------------------------------------------------------------ verify
@dataclass
class VerifyResult:
    run_id: str
    identical: bool
    differences: list[str]
    checked: int                            # numbers and frames compared

    def text(self) -> str:
        if self.identical:
            return f"{self.run_id}: identical — {self.checked} numbers, frames and fingerprints reproduced bit for bit"
        return f"{self.run_id}: DIFFERS in {len(self.differences)} place(s):\n" + "\n".join("  " + d for d in self.differences[:40])


def _compare_numbers(old, new, where: str, out: list[str]) -> int:
    if isinstance(old, dict) and isinstance(new, dict):
        n = 0
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                out.append(f"{where}.{key}: {'only in the rerun' if key not in old else 'missing in the rerun'}")
                continue
            n += _compare_numbers(old[key], new[key], f"{where}.{key}" if where else key, out)
        return n
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return sum(_compare_numbers(a, b, f"{where}[{i}]", out) for i, (a, b) in enumerate(zip(old, new, strict=True)))
    if old != new:
        out.append(f"{where}: {old!r} -> {new!r}")
    return 1


def load_run(settings: Settings, run_id: str) -> tuple[Path, dict]:
    path = experiments_root(settings) / run_id
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        known = sorted(p.name for p in experiments_root(settings).glob("*") if (p / "manifest.json").is_file())
        raise ExperimentError(f"no run {run_id!r} in {experiments_root(settings)} (runs: {', '.join(known[-10:]) or 'none'}); "
                              "see `alpha experiment list`")
    return path, json.loads(manifest_path.read_text())


def resolve_run(settings: Settings, registry, ref: str) -> str:
    """A run id, or an experiment's name standing for its latest run."""
    if (experiments_root(settings) / ref / "manifest.json").is_file():
        return ref
    runs = registry.runs(experiment=ref)
    if runs.empty:
        raise ExperimentError(f"{ref!r} is neither a run id nor an experiment with runs; see `alpha experiment list`")
    return str(runs.sort_values("created_at")["run_id"].iloc[-1])


def latest_run(settings: Settings, ref: str) -> str:
    """:func:`resolve_run` with its own registry connection."""
    from lifecycle.registry import open_registry

    registry = open_registry(settings)
    try:
        return resolve_run(settings, registry, ref)
    finally:
        registry.dispose()


def stored_spec(path: Path, manifest: dict) -> ExperimentSpec:
    spec_path = Path(manifest["spec_path"]) if manifest.get("spec_path") else None
    return parse_spec((path / "spec.yaml").read_text(), path=spec_path)


def verify_run(settings: Settings, run_id: str, *, progress: Callable[[str], None] = lambda _m: None) -> VerifyResult:
    """Rerun the stored spec in a scratch folder; compare fingerprints, every number, every frame."""
    from lifecycle.registry import open_registry

    run_id = latest_run(settings, run_id)
    path, manifest = load_run(settings, run_id)
    spec = stored_spec(path, manifest)
    old_metrics = json.loads((path / "metrics.json").read_text())
    registry = open_registry(settings)
    try:
        trials = list(manifest.get("trial_sharpes", []))   # the study as it was when the run was made
        with tempfile.TemporaryDirectory(prefix=f".verify-{run_id}.", dir=experiments_root(settings)) as scratch:
            new_manifest, new_metrics, frames = compute_run(settings, spec, Path(scratch), trial_sharpes=trials, progress=progress)
        differences: list[str] = []
        checked = 0
        for key, what in (("spec_sha256", "spec hash"), ("code_fingerprint", "code version"),
                          ("features_fingerprint", "feature definitions fingerprint"), ("data_fingerprint", "data fingerprint")):
            checked += 1
            if manifest.get(key) != new_manifest.get(key):
                differences.append(f"{what} changed: {manifest.get(key)} -> {new_manifest.get(key)}")
        if manifest.get("data_fingerprint") != new_manifest.get("data_fingerprint"):
            for i, (old, new) in enumerate(zip(manifest["reads"], new_manifest["reads"], strict=False)):
                if list(old) != list(new):
                    differences.append(f"  read #{i + 1} ({old[0]}): {old[1]} rows sha {old[2][:12]} -> {new[1]} rows sha {new[2][:12]}")
        if manifest.get("code_fingerprint") != new_manifest.get("code_fingerprint"):
            old_v, new_v = manifest["code_version"], new_manifest["code_version"]
            differences += [f"  {k}: {old_v.get(k)} -> {new_v.get(k)}" for k in sorted(set(old_v) | set(new_v))
                            if k != "git_commit" and old_v.get(k) != new_v.get(k)]
        for name, sha in manifest["frames"].items():
            checked += 1
            if new_manifest["frames"].get(name) != sha:
                differences.append(f"{name}.parquet differs (sha {sha[:12]} -> {new_manifest['frames'].get(name, '')[:12]})")
        checked += _compare_numbers(old_metrics, json.loads(json.dumps(new_metrics)), "", differences)
        result = VerifyResult(run_id=run_id, identical=not differences, differences=differences, checked=checked)
        if result.identical and registry.has_run(run_id):
            registry.mark_verified(run_id)
        return result
    finally:
        registry.dispose()
