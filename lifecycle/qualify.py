"""``alpha experiment qualify ID --baseline ID``: a run against the home's gates and a baseline.

**Hard gates** (``[qualification]`` in config.toml, :data:`etl.core.config.QUALIFICATION_DEFAULTS`)
refuse promotion when any fails:

- ``min_sessions``: the run traded at least this many sessions;
- ``min_high_vol_sessions``: it saw at least this many high-volatility sessions (the regime known
  at each session's start), so the next two gates judge something;
- ``high_vol_max_drawdown``: its worst drawdown over the high-volatility sessions is no deeper;
- ``high_vol_max_exposure``: its mean gross exposure over them is no higher.

**Soft evidence** is reported, never decisive: the Sharpe ratio and its bootstrap interval
against the baseline's (margin ``min_sharpe_margin``), and regression against the baseline
experiment's last run (a Sharpe drop of more than ``max_sharpe_regression``, drawdown and
turnover side by side). Global performance is evidence; risk in the stressed regime is a gate.

The gates come from the home's config, not from the spec: a candidate cannot relax its own.
The report is JSON (every value) and HTML (with plots), written into the run's folder, and the
verdict is recorded (append-only) in the registry.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from etl.core.config import Settings
from lifecycle.experiment import ExperimentError, load_run, resolve_run

HIGH_VOL = ("regime_vol", "high vol")


@dataclass
class Check:
    name: str
    kind: str            # "hard" | "soft"
    passed: bool
    value: float | None
    limit: float | None
    detail: str


@dataclass
class Qualification:
    run_id: str
    baseline_run_id: str
    passed: bool                                       # every hard gate passed
    checks: list[Check] = field(default_factory=list)
    report_json: Path | None = None
    report_html: Path | None = None
    qualification_id: int | None = None

    @property
    def hard_failures(self) -> list[Check]:
        return [c for c in self.checks if c.kind == "hard" and not c.passed]

    def text(self) -> str:
        lines = [f"{'QUALIFIED' if self.passed else 'NOT QUALIFIED'}: {self.run_id} against {self.baseline_run_id}"]
        for c in self.checks:
            mark = "pass" if c.passed else ("FAIL" if c.kind == "hard" else "weak")
            lines.append(f"  [{c.kind} {mark}] {c.name}: {c.detail}")
        return "\n".join(lines)


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


def _high_vol(metrics: dict) -> dict:
    column, label = HIGH_VOL
    return metrics.get("regimes", {}).get(column, {}).get(label, {})


def gates(metrics: dict, limits: dict[str, float]) -> list[Check]:
    """The hard gates on a run's metrics (metrics.json)."""
    checks = []
    sessions = _num(metrics["all"].get("sessions")) or 0.0
    need = limits["min_sessions"]
    checks.append(Check("min_sessions", "hard", sessions >= need, sessions, need,
                        f"{sessions:,.0f} sessions traded, at least {need:,.0f} required"))
    hv = _high_vol(metrics)
    hv_sessions = _num(hv.get("sessions")) or 0.0
    need = limits["min_high_vol_sessions"]
    checks.append(Check("min_high_vol_sessions", "hard", hv_sessions >= need, hv_sessions, need,
                        f"{hv_sessions:,.0f} high-volatility sessions seen, at least {need:,.0f} required"))
    dd = _num(hv.get("max_drawdown"))
    limit = limits["high_vol_max_drawdown"]
    ok = dd is not None and abs(dd) <= limit
    checks.append(Check("high_vol_max_drawdown", "hard", ok, dd, -limit,
                        f"max drawdown in high volatility {'n/a' if dd is None else f'{dd:.1%}'}, no deeper than {-limit:.1%} allowed"))
    exposure = _num(hv.get("exposure"))
    limit = limits["high_vol_max_exposure"]
    ok = exposure is not None and exposure <= limit
    checks.append(Check("high_vol_max_exposure", "hard", ok, exposure, limit,
                        f"mean gross exposure in high volatility {'n/a' if exposure is None else f'{exposure:.0%}'}, "
                        f"at most {limit:.0%} allowed"))
    return checks


def evidence(metrics: dict, baseline: dict, baseline_last: dict | None, limits: dict[str, float]) -> list[Check]:
    """The soft evidence: Sharpe and its interval against the baseline, regression against the
    baseline experiment's last run."""
    sharpe, base = _num(metrics["all"].get("sharpe")), _num(baseline["all"].get("sharpe"))
    lo, hi = (metrics.get("sharpe_ci") or [None, None])[:2]
    margin = limits["min_sharpe_margin"]
    diff = None if sharpe is None or base is None else sharpe - base
    out = [Check("sharpe_vs_baseline", "soft", diff is not None and diff >= margin, diff, margin,
                 f"Sharpe {_fmt(sharpe)} (95% CI {_fmt(lo)}..{_fmt(hi)}) vs baseline {_fmt(base)}: "
                 f"difference {_fmt(diff, '+.2f')}, margin {margin:.2f} wanted")]
    beats = lo is not None and base is not None and lo > base
    out.append(Check("sharpe_ci_above_baseline", "soft", beats, _num(lo), base,
                     f"the interval's low end {_fmt(lo)} is {'above' if beats else 'not above'} the baseline's Sharpe {_fmt(base)}"))
    dsr = _num(metrics.get("deflated_sharpe", {}).get("dsr"))
    out.append(Check("deflated_sharpe", "soft", dsr is not None and dsr >= 0.95, dsr, 0.95,
                     f"deflated Sharpe {_fmt(dsr)} over {int(metrics.get('deflated_sharpe', {}).get('n_trials') or 1)} trial(s) "
                     "(probability the true Sharpe beats the best of as many unskilled trials)"))
    if baseline_last is not None:
        last = _num(baseline_last["all"].get("sharpe"))
        drop = None if sharpe is None or last is None else last - sharpe
        limit = limits["max_sharpe_regression"]
        out.append(Check("regression_vs_baseline_last_run", "soft", drop is not None and drop <= limit, drop, limit,
                         f"Sharpe {_fmt(sharpe)} vs the baseline's last run {_fmt(last)} (drop {_fmt(drop)}, at most "
                         f"{limit:.2f}); max DD {_fmt(metrics['all'].get('max_drawdown'), '.1%')} vs "
                         f"{_fmt(baseline_last['all'].get('max_drawdown'), '.1%')}; turnover "
                         f"{_fmt(metrics['all'].get('turnover'), '.1%')} vs {_fmt(baseline_last['all'].get('turnover'), '.1%')}"))
    return out


def _fmt(value, spec: str = ".2f") -> str:
    value = _num(value)
    return "n/a" if value is None else format(value, spec)


def qualify(settings: Settings, run_id: str, baseline: str) -> Qualification:
    """Judge ``run_id`` against the home's gates and ``baseline`` (a run id or an experiment name);
    write the report into the run's folder and record the verdict."""
    from lifecycle.registry import open_registry

    registry = open_registry(settings)
    try:
        run_id = resolve_run(settings, registry, run_id)
        baseline_id = resolve_run(settings, registry, baseline)
        if baseline_id == run_id:
            raise ExperimentError(f"run {run_id} cannot be its own baseline; pass another run or experiment with --baseline")
        path, manifest = load_run(settings, run_id)
        base_path, base_manifest = load_run(settings, baseline_id)
        metrics = json.loads((path / "metrics.json").read_text())
        base_metrics = json.loads((base_path / "metrics.json").read_text())
        base_experiment = base_manifest["spec"]["name"]
        last_id = resolve_run(settings, registry, base_experiment)
        last_metrics = json.loads((load_run(settings, last_id)[0] / "metrics.json").read_text())
        limits = dict(settings.qualification)
        checks = gates(metrics, limits) + evidence(metrics, base_metrics, last_metrics, limits)
        result = Qualification(run_id=run_id, baseline_run_id=baseline_id, passed=all(c.passed for c in checks if c.kind == "hard"),
                               checks=checks)
        stem = f"qualification-vs-{baseline_id}"
        result.report_json = path / f"{stem}.json"
        result.report_json.write_text(json.dumps({
            "run_id": run_id, "baseline_run_id": baseline_id, "baseline_last_run_id": last_id, "passed": result.passed,
            "limits": limits, "checks": [asdict(c) for c in checks],
        }, indent=1))
        result.report_html = _write_html(path / f"{stem}.html", result, path, base_path, metrics, base_metrics, limits)
        result.qualification_id = registry.record_qualification(
            run_id=run_id, baseline_run_id=baseline_id, passed=result.passed,
            hard_failures="\n".join(c.detail for c in result.hard_failures), report_path=str(result.report_html))
        return result
    finally:
        registry.dispose()


def _write_html(out: Path, result: Qualification, path: Path, base_path: Path, metrics: dict, base_metrics: dict,
                limits: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from research.report_html import figure_tag, page, table_html

    cand = pd.read_parquet(path / "returns.parquet").set_index("decision_time")["return"]
    base = pd.read_parquet(base_path / "returns.parquet").set_index("decision_time")["return"]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    for series, label, color in ((cand, result.run_id, "#1f5fa8"), (base, f"baseline {result.baseline_run_id}", "#888")):
        wealth = (1.0 + series.fillna(0.0)).cumprod()
        axes[0].plot(wealth.index, wealth.values, label=label, color=color, lw=1.2)
        axes[1].plot(wealth.index, (wealth / wealth.cummax() - 1.0) * 100.0, color=color, lw=1.0)
    axes[0].set_ylabel("growth of 1")
    axes[0].legend(loc="upper left")
    axes[0].grid(alpha=0.3)
    axes[1].set_ylabel("drawdown (%)")
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    equity = figure_tag(fig, alt="candidate and baseline equity and drawdown")

    rows = []
    for column, table in (metrics.get("regimes") or {}).items():
        for label, row in table.items():
            other = (base_metrics.get("regimes") or {}).get(column, {}).get(label, {})
            rows.append((f"{column} = {label}", row.get("sessions"), row.get("sharpe"), other.get("sharpe"), row.get("max_drawdown"),
                         other.get("max_drawdown"), row.get("exposure"), other.get("exposure")))
    fig, ax = plt.subplots(figsize=(10, 3.2))
    labels = [r[0] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [(r[4] or 0) * 100 for r in rows], width=0.4, label="candidate max DD (%)", color="#c0392b")
    ax.bar([i + 0.2 for i in x], [(r[5] or 0) * 100 for r in rows], width=0.4, label="baseline max DD (%)", color="#bbb")
    ax.axhline(-limits["high_vol_max_drawdown"] * 100, color="#c0392b", ls="--", lw=1, label="hard gate (high vol)")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    regimes = figure_tag(fig, alt="max drawdown per regime, candidate and baseline")
    checks = pd.DataFrame([{"check": c.name, "kind": c.kind, "result": "pass" if c.passed else ("FAIL" if c.kind == "hard" else "weak"),
                            "detail": c.detail} for c in result.checks])
    regime_table = pd.DataFrame(rows, columns=["regime", "sessions", "Sharpe", "baseline Sharpe", "max DD", "baseline max DD",
                                               "exposure", "baseline exposure"])
    verdict = ("<p class='ok'>Every hard gate passed: the run may be promoted once its shadow replay passes.</p>" if result.passed
               else "<p class='bad'>Hard gate(s) failed: " + "; ".join(c.detail for c in result.hard_failures) + ". Promotion is refused.</p>")
    html = page(f"Qualification of {result.run_id}", [
        ("Verdict", verdict),
        ("Gates and evidence", table_html(checks)),
        ("Equity and drawdown against the baseline", equity),
        ("Regime slices (regime known at each session's start)",
         table_html(regime_table, formats={"sessions": "count", "Sharpe": "ratio", "baseline Sharpe": "ratio", "max DD": "percent",
                                           "baseline max DD": "percent", "exposure": "percent", "baseline exposure": "percent"})
         + regimes),
    ], subtitle=f"baseline {result.baseline_run_id}")
    out.write_text(html)
    return out
