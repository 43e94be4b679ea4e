"""The steps of the nightly and backfill jobs as plain functions.

The Prefect flows in ``flows/`` wrap these one task each; they run as well
without Prefect (the tests and ``alpha`` call them directly). Each step is
idempotent and skips work whose inputs did not change:

* :func:`ingest_configured` pulls every ``[[ingest]]`` source from its
  watermarks up to the session being closed (a rerun fetches nothing);
* :func:`compute_factors` runs the generic builder (``etl.gold.builder``): only what
  changed since its last run is computed and appended (``gold/_runs.json``), so a rerun
  of the same session writes no file;
* :func:`apply_if_changed` runs ``feast apply`` only when the generated
  definitions changed (recorded in ``feast/applied.json``);
* :func:`materialize_if_needed` pushes what the build runs since its last push
  wrote (Redis: our incremental writer over those runs' part files; SQLite: Feast's
  materialize over the time window they cover), skipped when there was no run.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from etl.core.config import IngestSpec, Settings
from etl.core.errors import ConfigError
from etl.sources.base import IngestSummary, check_symbols, run_ingest
from etl.storage.atomic import atomic_write_text

# ------------------------------------------------------------------ ingest


@dataclass
class SourceRun:
    """What one ``[[ingest]]`` source did in a run (JSON-friendly)."""

    source: str
    dataset: str
    jobs: int = 0
    up_to_date: int = 0
    rows_fetched: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    failed: list[dict] = field(default_factory=list)      # {"symbol", "error", "transient"}
    seconds: float = 0.0

    @classmethod
    def of(cls, summary: IngestSummary) -> SourceRun:
        return cls(
            source=summary.source,
            dataset=summary.dataset,
            jobs=len(summary.results),
            up_to_date=sum(1 for r in summary.results if r.skipped),
            rows_fetched=summary.rows_fetched,
            rows_written=summary.rows_written,
            rows_quarantined=summary.rows_quarantined,
            failed=[{"symbol": r.job.symbol, "error": r.error, "transient": r.transient} for r in summary.failed],
            seconds=round(summary.seconds, 2),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def ingest_spec(settings: Settings, spec: IngestSpec, end, *, symbols=None, start=None, incremental: bool = True,
                limiter=None, parallel: int = 1) -> SourceRun:
    """Pull one configured source: ``symbols`` (default the spec's) from their watermarks
    (or ``start``, default the spec's) to ``end``. Failed symbols are reported, not raised."""
    symbols = list(symbols if symbols is not None else spec.symbols)
    summary = run_ingest(
        settings, spec.source, spec.dataset, symbols,
        start if start is not None else spec.start, end,
        incremental=incremental, parallel=parallel, path=spec.path, limiter=limiter,
    )
    return SourceRun.of(summary)


def ingest_configured(settings: Settings, session, limiter_for=None, parallel: int = 1) -> list[SourceRun]:
    """Every ``[[ingest]]`` source up to ``session`` (inclusive), incrementally, ``parallel``
    symbols at a time. ``limiter_for(source_name)`` may return a shared rate limiter."""
    out = []
    for spec in settings.ingest:
        limiter = limiter_for(spec.source) if limiter_for else None
        for pull in spec.pulls():   # with the datasets the table brings along, as the nightly flow
            out.append(ingest_spec(settings, pull, session, limiter=limiter, parallel=parallel))
    return out


def check_specs(settings: Settings) -> None:
    """Fail fast, naming the fix, on an ``[[ingest]]`` table whose source or dataset does not exist."""
    from etl.sources.base import get_source_class

    for spec in settings.ingest:
        cls = get_source_class(spec.source)
        if spec.dataset not in cls.datasets:
            hint = " (Lean daily bars come from `alpha ingest lean`, not [[ingest]])" if spec.label == "lean.daily" else ""
            raise ConfigError(f"[[ingest]] {spec.label}: {spec.source} has no dataset {spec.dataset!r}; "
                              f"it has: {', '.join(cls.datasets)}{hint}")
        if cls.needs_symbols and not spec.symbols:
            raise ConfigError(f"[[ingest]] {spec.label} needs symbols: set symbols = [...] or universe = [...]")


def find_spec(settings: Settings, source: str, dataset: str | None) -> IngestSpec:
    """The configured ``[[ingest]]`` of a source, or a bare one (symbols must then be given)."""
    for spec in settings.ingest:
        if spec.source == source and (dataset is None or spec.dataset == dataset):
            return spec
    if dataset is None:
        from etl.sources.base import get_source_class

        dataset = get_source_class(source).datasets[0]
    return IngestSpec(source=source, dataset=dataset, symbols=settings.universe)


def chunks(symbols: list[str], size: int) -> list[list[str]]:
    if size < 1:
        raise ConfigError(f"chunk size must be >= 1, got {size}")
    symbols = check_symbols(symbols)
    return [symbols[i:i + size] for i in range(0, len(symbols), size)]


# ------------------------------------------------------------------ fingerprints


def _digest(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def definitions_fingerprint(settings: Settings) -> str:
    """What ``feast apply`` would register: the views, features and services generated
    from the factor declarations, and where they point."""
    from etl.factors import registry

    registry.activate(settings)
    views = sorted((name, repr(view)) for name, view in registry.views().items())
    services = sorted((name, json.dumps(spec, sort_keys=True, default=str)) for name, spec in registry.SERVICES.items())
    # the home's own paths are relative in the registry (a copied or moved home needs no re-apply)
    home = settings.home
    return _digest([views, services, settings.registry_url or settings.registry_path.relative_to(home),
                    settings.online_store_kind, settings.redis_url or settings.online_sqlite_path.relative_to(home),
                    settings.gold.relative_to(home)])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str))


# ------------------------------------------------------------------ compute, apply, materialize


def compute_factors(settings: Settings, session=None, force: bool = False, progress=None) -> dict:
    """Bring gold up to date with silver: the generic builder (``etl.gold.builder``) computes
    only what changed -- the new sessions, the symbols with revised bars or new corporate
    actions, the views whose declaration changed -- and appends it as one committed run.
    Gold's files are checked against the build records first (size and footer of every part):
    a family with a missing, truncated or unreadable part is rebuilt from silver (``repaired``).
    ``progress(message)`` is called for each family and chunk (with an estimate of what remains).
    The chunks run where ``settings.engine`` says (``engine`` in config.toml, ``ALPHA_ENGINE``):
    forked processes or Spark's executors; ``out["engine"]`` records which."""
    from etl.factors import registry
    from etl.gold.builder import build
    from etl.gold.inputs import write_manifest

    t0 = time.perf_counter()
    report = build(settings, force=force, progress=progress)
    manifest = write_manifest(settings)
    features = sum(1 for f in registry.features().values() if not registry.views()[f.view].lag_of)
    out = {
        "run": report.run,
        "symbols": len(manifest["symbols"]) if manifest else 0,
        "rows": sum(report.rows.values()),
        "features": features,
        "families": report.families,
        "views": {v: {"rows": n} for v, n in report.rows.items()},
        "fingerprint": f"run-{report.run}",
        "engine": report.engine,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if report.repaired:
        out["repaired"] = report.repaired
    if report.recovered:
        out["recovered"] = report.recovered
    if not report.changed and not report.repaired:
        out["skipped"] = "no new or changed inputs: nothing to compute"
    return out


def apply_if_changed(settings: Settings, force: bool = False) -> dict:
    """``feast apply`` when the generated definitions differ from the last apply."""
    from etl.serving import feast_store

    t0 = time.perf_counter()
    fingerprint = definitions_fingerprint(settings)
    record_path = settings.feast_dir / "applied.json"
    record = _read_json(record_path)
    registry_there = bool(settings.registry_url) or settings.registry_path.exists()
    if not force and registry_there and record.get("fingerprint") == fingerprint:
        return {"skipped": f"definitions unchanged since {record.get('applied_at')}", "objects": record.get("objects", [])}
    objects = feast_store.apply(settings)
    _write_json(record_path, {"fingerprint": fingerprint, "applied_at": pd.Timestamp.now(tz="UTC").isoformat(), "objects": objects})
    return {"applied": objects, "objects": objects, "seconds": round(time.perf_counter() - t0, 2)}


def materialize_if_needed(settings: Settings, gold_fingerprint: str | None = None) -> dict:
    """Push what the builds since the last materialize wrote (Redis: our writer over those
    runs' part files; SQLite: Feast's materialize over the time window those runs cover).
    Skipped when gold did not change *and* the online store still holds what was pushed
    (:func:`etl.serving.online_check.lost_data`); when it lost data, everything is read again
    and what is missing rewritten (``out["repaired"]`` says why)."""
    from etl.gold import layout
    from etl.serving import feast_store
    from etl.serving.online_check import lost_data

    t0 = time.perf_counter()
    record_path = settings.feast_dir / "materialized.json"
    record = _read_json(record_path)
    runs = layout.read_runs(settings)
    last = int(runs.get("last_run", 0))
    since = int(record.get("run", 0))
    # the online store may have lost what the record says was pushed (Redis restarted or evicted keys,
    # the SQLite file emptied, written in local time by an older version): one cheap look decides
    lost = lost_data(settings) if since > 0 else "nothing materialized yet"
    if not lost and since >= last and last > 0:
        return {"online_store": settings.online_store_kind, "skipped": f"gold unchanged since {record.get('at')} (run {since})"}
    out = feast_store.materialize(settings, since_run=0 if lost else since)
    out = {k: (v if isinstance(v, (dict, int, float, str, type(None))) else str(v)) for k, v in out.items()}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    deferred = (out.get("report") or {}).get("deferred_run") if isinstance(out.get("report"), dict) else None
    upto = last if deferred is None else min(last, int(deferred) - 1)  # rows known later: read again next time
    _write_json(record_path, {"run": upto, "at": pd.Timestamp.now(tz="UTC").isoformat()})
    if lost and since > 0:
        out["repaired"] = lost
    return out


def health_summary(settings: Settings) -> dict:
    """The health report (written to reports/health/) as counts and breached thresholds."""
    from etl.quality.health import run_health

    report = run_health(settings)
    s = report.summary
    return {"errors": s["counts"]["error"], "warnings": s["counts"]["warning"], "failed_thresholds": list(report.failed),
            "bars": s.get("bars", 0), "html": str(report.paths["html"])}
