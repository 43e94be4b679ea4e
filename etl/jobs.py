"""The steps of the nightly and backfill jobs as plain functions.

The Prefect flows in ``flows/`` wrap these one task each; they run as well
without Prefect (the tests and ``alpha`` call them directly). Each step is
idempotent and skips work whose inputs did not change:

* :func:`ingest_configured` pulls every ``[[ingest]]`` source from its
  watermarks up to the session being closed (a rerun fetches nothing);
* :func:`compute_factors` rebuilds gold only when silver, the factor code or
  the session changed since the last build (recorded in
  ``gold/_build.json``), so a rerun of the same session rewrites no file;
* :func:`apply_if_changed` runs ``feast apply`` only when the generated
  definitions changed (recorded in ``feast/applied.json``);
* :func:`materialize_if_needed` pushes changed winners (Redis: our
  incremental writer; SQLite: Feast's materialize, skipped when gold is
  unchanged since the last one).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from etl.core.config import PROJECT_ROOT, IngestSpec, Settings
from etl.core.errors import ConfigError
from etl.sources.base import IngestSummary, check_symbols, run_ingest
from etl.storage.atomic import atomic_write_text

BUILD_RECORD = "_build.json"


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
        out.append(ingest_spec(settings, spec, session, limiter=limiter, parallel=parallel))
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


def silver_fingerprint(settings: Settings) -> str:
    """Every silver part file's name, size and modification time: silver only ever gains
    files (appends write new parts, compaction replaces them), so this changes exactly
    when silver does."""
    root = settings.silver
    files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith(".")) if root.exists() else []
    return _digest(f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def code_fingerprint() -> str:
    """The factor code: every module of ``etl/`` (a change to how anything is computed
    rebuilds gold)."""
    files = sorted((PROJECT_ROOT / "etl").rglob("*.py"))
    return _digest(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)


def build_fingerprint(settings: Settings, session) -> str:
    session = "" if session is None else pd.Timestamp(session).strftime("%Y-%m-%d")
    return _digest([silver_fingerprint(settings), code_fingerprint(), session, settings.bar_delay_minutes, settings.calendar])


def definitions_fingerprint(settings: Settings) -> str:
    """What ``feast apply`` would register: the views, features and services generated
    from the factor declarations, and where they point."""
    from etl.factors import registry

    views = sorted((name, repr(view)) for name, view in registry.views().items())
    services = sorted((name, json.dumps(spec, sort_keys=True, default=str)) for name, spec in registry.SERVICES.items())
    return _digest([views, services, settings.registry_url or settings.registry_path, settings.online_store_kind,
                    settings.redis_url or settings.online_sqlite_path, settings.gold])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str))


# ------------------------------------------------------------------ compute, apply, materialize


def compute_factors(settings: Settings, session=None, force: bool = False) -> dict:
    """Core factors and every family into gold, unless nothing they depend on changed."""
    from etl.factors import registry
    from etl.gold.core import build_gold, gold_path
    from etl.gold.families import build_families

    t0 = time.perf_counter()
    fingerprint = build_fingerprint(settings, session)
    record_path = settings.gold / BUILD_RECORD
    record = _read_json(record_path)
    complete = all(gold_path(settings, v).exists() for v in registry.views())
    if not force and complete and record.get("fingerprint") == fingerprint:
        return {"skipped": f"silver, factor code and session unchanged since {record.get('built_at')}",
                "fingerprint": fingerprint, "seconds": round(time.perf_counter() - t0, 2)}
    gold = build_gold(settings)
    reports = build_families(settings)
    features = sum(1 for f in registry.features().values() if not registry.views()[f.view].lag_of)
    out = {
        "symbols": gold.symbols,
        "rows": gold.rows,
        "revised_rows": gold.revised_rows,
        "features": features,
        "views": {r.view: {"rows": r.rows, "entities": r.entities} for r in reports},
        "fingerprint": fingerprint,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_json(record_path, {"fingerprint": fingerprint, "built_at": pd.Timestamp.now(tz="UTC").isoformat(),
                              "session": None if session is None else str(pd.Timestamp(session).date())})
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
    """Redis: the incremental writer (only changed winners). SQLite: Feast's materialize,
    skipped when gold did not change since the last one."""
    from etl.serving import feast_store

    t0 = time.perf_counter()
    record_path = settings.feast_dir / "materialized.json"
    record = _read_json(record_path)
    if (not settings.redis_url and gold_fingerprint and record.get("fingerprint") == gold_fingerprint
            and settings.online_sqlite_path.exists()):
        return {"online_store": "sqlite", "skipped": f"gold unchanged since {record.get('at')}"}
    out = feast_store.materialize(settings)
    out = {k: (v if isinstance(v, (dict, int, float, str, type(None))) else str(v)) for k, v in out.items()}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    if gold_fingerprint:
        _write_json(record_path, {"fingerprint": gold_fingerprint, "at": pd.Timestamp.now(tz="UTC").isoformat()})
    return out


def health_summary(settings: Settings) -> dict:
    """The health report (written to reports/health/) as counts and breached thresholds."""
    from etl.quality.health import run_health

    report = run_health(settings)
    s = report.summary
    return {"errors": s["counts"]["error"], "warnings": s["counts"]["warning"], "failed_thresholds": list(report.failed),
            "bars": s.get("bars", 0), "html": str(report.paths["html"])}
