"""Shadow replay and promotion: the last steps before a strategy may trade.

- :func:`shadow_replay` runs the live loop (:func:`strategy.live_loop.replay`, the paper broker,
  the same code ``alpha live`` runs) over the spec's ``replay:`` sessions, with the run's own
  artifact (a learned model's final fit, predict only), and compares it fill by fill with the
  vectorbt backtest of the same sessions. It passes when every fill is equal and there was at
  least one. A prerequisite of promotion, not a tuning loop: its result is recorded, append-only.
- :func:`promote` records a promotion to a tier (``candidate``, then ``production``) with the
  reason, the time, the spec's hash and the data fingerprint. The registry refuses it without a
  passing qualification and a passing shadow replay of the same run; ``production`` also needs
  the run (or the experiment) promoted to ``candidate`` first.
- :func:`promoted_strategy` is what ``alpha live`` trades: the experiment's promoted run at the
  tier it runs at, loaded from the run's folder, or a :class:`NotPromotedError` saying what to run.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

import pandas as pd

from etl.core.config import Settings
from etl.core.errors import AlphaError
from lifecycle.experiment import ExperimentError, latest_run, load_run, make_strategy, stored_spec

TIERS = ("candidate", "production")


class NotPromotedError(AlphaError):
    """A strategy asked to trade has no promotion record for the tier it would run at."""


@dataclass
class ReplayOutcome:
    run_id: str
    passed: bool
    sessions: int
    fills: int
    differing: int
    detail: str
    replay_id: int | None = None
    table: pd.DataFrame | None = None


def shadow_replay(settings: Settings, run_id: str) -> ReplayOutcome:
    """Replay the run's strategy through the live loop and compare with its backtest."""
    from lifecycle.registry import open_registry
    from sdk.client import Alpha
    from strategy.backtest import run_backtest
    from strategy.live_loop import compare_fills, replay

    run_id = latest_run(settings, run_id)
    path, manifest = load_run(settings, run_id)
    spec = stored_spec(path, manifest)
    if spec.replay_start is None:
        raise ExperimentError(f"the spec of {run_id} has no replay: window; add `replay: {{start: ..., end: ...}}` (sessions after "
                              "its period) and run the experiment again")
    strategy = make_strategy(settings, spec, model_dir=path / "model")
    client = Alpha(settings=settings)
    symbols = list(spec.symbols) or None
    result = replay(client, strategy, spec.replay_start, spec.replay_end, spec.fees, spec.slippage, symbols=symbols,
                    init_cash=spec.init_cash, universe=spec.universe)
    bt = run_backtest(client, symbols, spec.replay_start, spec.replay_end, spec.fees, spec.slippage, init_cash=spec.init_cash,
                      out_dir=path / "replay" / "backtest", strategy=strategy, universe=spec.universe, report=False)
    table = compare_fills(result.fills, bt.orders)
    differing = int((~table["equal"]).sum())
    sessions = len(result.reports)
    passed = differing == 0 and len(result.fills) > 0
    detail = (f"{sessions} sessions {spec.replay_start:%Y-%m-%d}..{spec.replay_end:%Y-%m-%d}: {len(result.fills)} replay fills, "
              f"{len(bt.orders)} backtest fills, {differing} differ"
              + ("" if len(result.fills) else "; no fill at all: nothing was compared, the replay does not pass"))
    (path / "replay").mkdir(exist_ok=True)
    table.to_csv(path / "replay" / "fills.csv", index=False)
    registry = open_registry(settings)
    try:
        replay_id = registry.record_replay(run_id=run_id, passed=passed, sessions=sessions, fills=len(result.fills),
                                           differing_fills=differing, detail=detail)
    finally:
        registry.dispose()
    return ReplayOutcome(run_id, passed, sessions, len(result.fills), differing, detail, replay_id, table)


def promote(settings: Settings, run_id: str, tier: str, reason: str):
    """Record the promotion (append-only); the registry refuses it without the evidence."""
    from lifecycle.registry import open_registry

    if tier not in TIERS:
        raise ExperimentError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
    if not reason or not reason.strip():
        raise ExperimentError("a promotion needs a reason (--reason '...'): it is the audit record")
    run_id = latest_run(settings, run_id)
    _, manifest = load_run(settings, run_id)
    registry = open_registry(settings)
    try:
        name = manifest["spec"]["name"]
        if tier == "production":
            earlier = registry.promotions(name)
            if not ((earlier["run_id"] == run_id) & (earlier["tier"] == "candidate")).any() if len(earlier) else True:
                raise ExperimentError(f"run {run_id} was never a candidate: promote it with --tier candidate first, trade it "
                                      "on paper, then promote it to production")
        return registry.promote(strategy=name, run_id=run_id, tier=tier, reason=reason.strip(),
                                spec_sha256=manifest["spec_sha256"], data_fingerprint=manifest["data_fingerprint"],
                                actor=_actor())
    finally:
        registry.dispose()


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def what_to_run(name: str, tier: str) -> str:
    return (f"`alpha experiment run SPEC` (name: {name}), `alpha experiment qualify RUN_ID --baseline BASELINE`, "
            f"`alpha experiment replay RUN_ID`, then `alpha experiment promote RUN_ID --tier {tier} --reason '...'`")


def promoted_strategy(settings: Settings, name: str, tier: str):
    """(strategy, spec, promotion) of the experiment ``name`` promoted at ``tier`` (or above), the
    artifact live trades; NotPromotedError says what to run when there is none."""
    from lifecycle.registry import open_registry

    registry = open_registry(settings)
    try:
        record = registry.current_promotion(name, tier)
    finally:
        registry.dispose()
    if record is None:
        raise NotPromotedError(f"strategy {name!r} has no promotion at tier {tier!r}: only promoted strategies trade. Run "
                               + what_to_run(name, tier))
    path, manifest = load_run(settings, record.run_id)
    spec = stored_spec(path, manifest)
    return make_strategy(settings, spec, model_dir=path / "model"), spec, record
