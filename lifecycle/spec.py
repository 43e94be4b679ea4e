"""Experiment specs: one YAML file says everything a run depends on.

.. code-block:: yaml

    spec_version: 1
    name: trend_rsi_core          # the experiment; runs of it are ranked and promoted under this name
    study: demo                   # trials compared by the deflated Sharpe (default: the name)
    strategy: trend_rsi           # a built-in name or package.module:object (or model: for a learned one)
    params: {}                    # keyword arguments for a strategy class or factory
    paths: []                     # folders of the user's code, relative to this file
    universe: listed              # listed (bars known at each decision time) or a named universe
    symbols: []                   # optional: only these (still only while listed)
    feature_service: null         # optional: the strategy's features must all be in this service
    period: {start: 2005-01-01, end: 2020-12-31}
    costs: {fees: 0.0005, slippage: 0.0005}
    init_cash: 1000000
    benchmark: SPY                # a symbol (its total return) or "buy_and_hold" (the universe, equal weight)
    baseline: null                # optional: the experiment (name) or run id to qualify against by default
    replay: {start: 2021-01-04, end: 2021-03-31}   # the shadow replay's sessions (after the period)
    seed: 7

Unknown keys are refused (a typo must not silently fall back to a default). The spec's hash is
the sha256 of its canonical JSON form (keys sorted, dates as ISO strings), so reformatting the
YAML or reordering keys does not change it; changing any value does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from etl.core.errors import AlphaError, DeclarationError

SPEC_VERSION = 1
KEYS = {"spec_version", "name", "study", "strategy", "model", "params", "paths", "universe", "symbols", "feature_service",
        "period", "costs", "init_cash", "benchmark", "baseline", "replay", "seed", "description"}


class SpecError(DeclarationError):
    """An experiment spec is malformed: names the file, the key and what it must be."""


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    strategy: str
    kind: str                              # "strategy" | "model"
    start: pd.Timestamp
    end: pd.Timestamp
    study: str
    params: dict = field(default_factory=dict)
    paths: tuple[str, ...] = ()            # absolute
    universe: str = "listed"
    symbols: tuple[str, ...] = ()
    feature_service: str | None = None
    fees: float = 0.0005
    slippage: float = 0.0005
    init_cash: float = 1_000_000.0
    benchmark: str = "SPY"
    baseline: str | None = None
    replay_start: pd.Timestamp | None = None
    replay_end: pd.Timestamp | None = None
    seed: int = 0
    description: str = ""
    source: str = ""                       # the YAML text as written
    path: Path | None = None

    def canonical(self) -> dict:
        """What the hash covers: every value that changes a run (not the text's layout, not where
        the file lies; the user's folders by name relative to nothing, their code by its hash)."""
        out = asdict(self)
        for key in ("source", "path"):
            out.pop(key)
        out["paths"] = [Path(p).name for p in self.paths]
        for key in ("start", "end", "replay_start", "replay_end"):
            out[key] = None if out[key] is None else out[key].strftime("%Y-%m-%d")
        out["symbols"] = list(self.symbols)
        out["spec_version"] = SPEC_VERSION
        return out

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True, default=str).encode()).hexdigest()


def _date(value, where: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(str(value))
    except ValueError:
        raise SpecError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None
    if ts.tzinfo is not None or ts != ts.normalize():
        raise SpecError(f"{where}: {value!r} must be a plain date (YYYY-MM-DD), the session")
    return ts


def _number(value, where: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= float(value) <= high):
        raise SpecError(f"{where}: {value!r} must be a number in [{low}, {high}]")
    return float(value)


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: must be a non-empty string, got {value!r}")
    return value.strip()


def _table(raw: dict, key: str, allowed: set[str], where: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: {key} must be a mapping, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SpecError(f"{where}: {key} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return value


def parse_spec(text: str, *, path: Path | None = None) -> ExperimentSpec:
    """The spec in ``text`` (YAML), checked; ``path`` (the file) anchors relative ``paths``."""
    import yaml

    where = str(path) if path else "spec"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a spec is a YAML mapping (name:, strategy:, period:, ...)")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(KEYS)}")
    version = raw.get("spec_version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise SpecError(f"{where}: spec_version {version!r} is not supported (this version reads {SPEC_VERSION})")
    name = _text(raw.get("name"), f"{where}: name")
    if not all(c.isalnum() or c in "_-." for c in name):
        raise SpecError(f"{where}: name {name!r} may hold letters, digits, '_', '-' and '.' only (it names folders)")
    if ("strategy" in raw) == ("model" in raw):
        raise SpecError(f"{where}: give exactly one of strategy: (a built-in name or package.module:object) or model:")
    kind = "strategy" if "strategy" in raw else "model"
    ref = _text(raw[kind], f"{where}: {kind}")
    params = raw.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise SpecError(f"{where}: params must be a mapping of keyword arguments, got {params!r}")
    base = path.parent if path else Path.cwd()
    paths_raw = raw.get("paths") or []
    if isinstance(paths_raw, str) or not isinstance(paths_raw, list):
        raise SpecError(f"{where}: paths must be a list of folders, got {paths_raw!r}")
    paths = []
    for p in paths_raw:
        folder = (base / Path(_text(p, f"{where}: paths")).expanduser()).resolve()
        if not folder.is_dir():
            raise SpecError(f"{where}: paths: {p!r} is not a folder ({folder})")
        paths.append(str(folder))
    period = _table(raw, "period", {"start", "end"}, where)
    if "start" not in period or "end" not in period:
        raise SpecError(f"{where}: period needs start: and end: (YYYY-MM-DD)")
    start, end = _date(period["start"], f"{where}: period.start"), _date(period["end"], f"{where}: period.end")
    if end <= start:
        raise SpecError(f"{where}: period.end {end:%Y-%m-%d} is not after period.start {start:%Y-%m-%d}")
    costs = _table(raw, "costs", {"fees", "slippage"}, where)
    replay = _table(raw, "replay", {"start", "end"}, where)
    replay_start = _date(replay["start"], f"{where}: replay.start") if "start" in replay else None
    replay_end = _date(replay["end"], f"{where}: replay.end") if "end" in replay else None
    if (replay_start is None) != (replay_end is None) or (replay_start is not None and replay_end < replay_start):
        raise SpecError(f"{where}: replay needs both start: and end:, end not before start")
    symbols = raw.get("symbols") or []
    if isinstance(symbols, str) or not isinstance(symbols, list) or not all(isinstance(s, str) and s for s in symbols):
        raise SpecError(f"{where}: symbols must be a list of symbols, got {symbols!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    service = raw.get("feature_service")
    return ExperimentSpec(
        name=name, strategy=ref, kind=kind, start=start, end=end,
        study=_text(raw.get("study", name), f"{where}: study"),
        params=params, paths=tuple(paths),
        universe=_text(raw.get("universe", "listed"), f"{where}: universe"),
        symbols=tuple(symbols),
        feature_service=None if service is None else _text(service, f"{where}: feature_service"),
        fees=_number(costs.get("fees", 0.0005), f"{where}: costs.fees", low=0.0, high=0.1),
        slippage=_number(costs.get("slippage", 0.0005), f"{where}: costs.slippage", low=0.0, high=0.1),
        init_cash=_number(raw.get("init_cash", 1_000_000), f"{where}: init_cash", low=1.0, high=1e15),
        benchmark=_text(raw.get("benchmark", "SPY"), f"{where}: benchmark"),
        baseline=None if raw.get("baseline") is None else _text(raw["baseline"], f"{where}: baseline"),
        replay_start=replay_start, replay_end=replay_end, seed=seed,
        description=str(raw.get("description", "")), source=text, path=path,
    )


def load_spec(path: str | Path) -> ExperimentSpec:
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise AlphaError(f"no experiment spec at {path}; specs are YAML files (docs/research.md shows one)")
    return parse_spec(path.read_text(), path=path)
