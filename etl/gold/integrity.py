"""Gold's integrity: the files are checked against what the builds recorded, never trusted.

Every committed part file is recorded in ``gold/_runs.json`` (``parts``: size, rows and
sha256, taken when the part was written; :mod:`etl.gold.layout`). Three users check against it:

- the builder (:func:`etl.gold.builder.build`, so ``alpha nightly``) before planning: every
  recorded part present with its size and a readable footer whose row count matches, every
  family's state file readable, no part nobody recorded (cheap: a ``stat`` and a footer read per
  part). A family with a damaged part is rebuilt from silver in the same run;
- the offline store (:mod:`sdk.pit.store`) before it reads a view: the parts present with their
  recorded sizes (a ``stat`` per part), and any error of the Parquet reader turned into a
  :class:`~etl.core.errors.GoldDamagedError` naming the file and the command that fixes it;
- ``alpha doctor`` (:func:`gold_problems`, :func:`registry_problems`); ``deep`` also
  recomputes every checksum.

Feast is imported only by :func:`registry_problems`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from etl.core.config import FEAST_PROJECT, Settings
from etl.core.errors import GoldDamagedError
from etl.gold import layout

FIX = "run `alpha nightly` (or `alpha features build`): it rebuilds the damaged family from silver"
REBUILD = "run `alpha nightly` (or `alpha features build`): it rebuilds family {family} from silver"


@dataclass(frozen=True)
class Damage:
    """One damaged gold file: ``view`` (None for a family's state file), the file relative to
    the home, what is wrong, and the family a rebuild repairs it with (None: unknown view)."""

    view: str | None
    file: str
    what: str
    family: str | None = None
    #: found only by the checksum (``deep``): the nightly's cheap check does not see it
    deep: bool = False

    def sentence(self) -> str:
        if not self.family:
            fix = "no declared view owns it: remove it"
        elif self.deep:
            fix = f"run `alpha features build --family {self.family} --force` (rebuilds it from silver)"
        else:
            fix = REBUILD.format(family=self.family)
        return f"gold file {self.file} {self.what}: {fix}"


def _rel(settings: Settings, path: Path) -> str:
    try:
        return str(path.relative_to(settings.home))
    except ValueError:
        return str(path)


def footer(path: Path) -> tuple[int | None, str | None]:
    """(rows, None) when the Parquet footer reads, else (None, the reader's complaint)."""
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows), None
    except Exception as exc:  # noqa: BLE001 -- any unreadable footer is the finding
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _view_families(settings: Settings) -> dict[str, str]:
    from etl.factors import registry

    registry.activate(settings)
    out = {}
    for fam in registry.families():   # a family writes its views and their lagged twins
        for view in fam.views:
            out[view] = out[view + registry.LAG_SUFFIX] = fam.name
    return out


def _state_family(settings: Settings, runs: dict) -> list[tuple[str, Path]]:
    return [(fam, layout.state_path(settings, fam, int(info["run"]))) for fam, info in runs.get("families", {}).items()]


def find_damage(settings: Settings, runs: dict | None = None, deep: bool = False, footers: bool = True) -> list[Damage]:
    """Every recorded part present, with its recorded size (and, ``footers``, a readable
    footer of the recorded row count; ``deep``, the recorded sha256); every family's state file
    readable; no visible part that no run recorded. A part of the pending run (committed, not
    yet renamed) is not missing. Homes built before parts were recorded: footers only."""
    runs = layout.read_runs(settings) if runs is None else runs
    fam_of = _view_families(settings)
    pending = runs.get("pending") or {}
    pending_prefix = f".r{int(pending['run']):06d}-" if pending else None
    recorded_all = runs.get(layout.PARTS)
    out: list[Damage] = []
    for fam, path in _state_family(settings, runs):
        err = footer(path)[1] if footers and path.exists() else None
        if not path.exists():
            out.append(Damage(None, _rel(settings, path), "(the family's build state) is missing", fam))
        elif err is not None:
            out.append(Damage(None, _rel(settings, path), f"(the family's build state) is unreadable ({err})", fam))
    views = set(recorded_all or {}) | {p.name for p in settings.gold.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))} \
        if settings.gold.is_dir() else set(recorded_all or {})
    for view in sorted(views):
        folder = layout.view_dir(settings, view)
        recorded = (recorded_all or {}).get(view, {})
        present = {p.name: p for p in layout.parts(settings, view)}
        fam = fam_of.get(view)
        for name, rec in sorted(recorded.items()):
            path = folder / name
            rel = _rel(settings, path)
            if name not in present:
                if pending_prefix and name.startswith(pending_prefix[1:]) and (folder / ("." + name)).exists():
                    continue
                out.append(Damage(view, rel, "is missing", fam))
                continue
            size = path.stat().st_size
            if size != rec["size"]:
                out.append(Damage(view, rel, f"has {size:,} bytes, {rec['size']:,} when written (truncated or changed)", fam))
                continue
            if footers:
                rows, err = footer(path)
                if err is not None:
                    out.append(Damage(view, rel, f"is unreadable ({err})", fam))
                    continue
                if rows != rec["rows"]:
                    out.append(Damage(view, rel, f"holds {rows:,} rows, {rec['rows']:,} when written", fam))
                    continue
            if deep and rec.get("sha256") and layout.sha256_file(path) != rec["sha256"]:
                out.append(Damage(view, rel, "does not match its checksum (changed since it was written)", fam, deep=True))
        obsolete = set((pending.get("obsolete") or {}).get(view, []))
        for name, path in sorted(present.items()):
            if name in recorded or name in obsolete:
                continue
            if recorded_all is None or name == layout.SCHEMA_PART:   # no rows to duplicate: the footer is all to check
                err = footer(path)[1] if footers else None
                if err is not None:
                    out.append(Damage(view, _rel(settings, path), f"is unreadable ({err})", fam))
                continue
            out.append(Damage(view, _rel(settings, path), "was written by no committed run (a foreign or leftover file "
                              "that queries would read)", fam))
    return out


def families_to_repair(damage: list[Damage]) -> dict[str, str]:
    """The families a rebuild repairs, each with the first damage found in it."""
    out: dict[str, str] = {}
    for d in damage:
        if d.family and d.family not in out:
            out[d.family] = f"{d.file} {d.what}"
    return out


def adopt_parts(settings: Settings, runs: dict) -> dict:
    """Record the parts of a home built before parts were recorded (once, on its next build):
    every visible part with a readable footer, as it is now."""
    recorded: dict[str, dict] = {}
    if settings.gold.is_dir():
        for folder in sorted(p for p in settings.gold.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            for path in layout.parts(settings, folder.name):
                if footer(path)[1] is None:
                    recorded.setdefault(folder.name, {})[path.name] = layout.describe_part(path)
    runs[layout.PARTS] = recorded
    return runs


# ------------------------------------------------------------------ for the offline store

_RUNS_CACHE: dict[str, tuple[tuple[int, int], dict]] = {}


def _runs_at(gold: Path) -> dict | None:
    """``gold/_runs.json`` (cached while the file is unchanged); None when there is none."""
    path = gold / layout.RUNS
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    hit = _RUNS_CACHE.get(str(path))
    if hit and hit[0] == key:
        return hit[1]
    try:
        runs = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GoldDamagedError(f"the gold build record {path} is unreadable ({type(exc).__name__}); {FIX}") from None
    _RUNS_CACHE[str(path)] = (key, runs)
    return runs


def _size_problems(folder: Path, runs: dict) -> list[str]:
    recorded = (runs.get(layout.PARTS) or {}).get(folder.name)
    if not recorded:
        return []
    pending = runs.get("pending") or {}
    out = []
    for name, rec in recorded.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if pending and (folder / ("." + name)).exists():
                continue
            out.append(f"{path} is missing")
            continue
        if size != rec["size"]:
            out.append(f"{path} has {size:,} bytes, {rec['size']:,} when written (truncated or changed)")
    return out


def check_source(path: str | os.PathLike) -> None:
    """Before a read of a FileSource: when it is a view of a warehouse's gold, every part its
    run record lists is present with its size (a ``stat`` per part), else GoldDamagedError."""
    folder = Path(path)
    gold = folder.parent
    if gold.name != "gold" or not folder.is_dir():
        return
    runs = _runs_at(gold)
    if runs is None:
        return
    problems = _size_problems(folder, runs)
    if problems:   # a build may have committed between the two reads: look once more
        _RUNS_CACHE.pop(str(gold / layout.RUNS), None)
        problems = _size_problems(folder, _runs_at(gold) or {})
    if problems:
        raise GoldDamagedError(f"gold of view {folder.name} is damaged: {'; '.join(problems[:3])}"
                               f"{f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''}; {FIX}")


def source_error(path: str | os.PathLike, view: str, exc: BaseException) -> GoldDamagedError:
    """The reader failed on a source (a Parquet error): name the unreadable file(s)."""
    root = Path(path)
    files = sorted(p for p in (root.rglob("*.parquet") if root.is_dir() else [root])
                   if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)) if root.exists() else []
    bad = [f"{p} ({err})" for p in files for err in [footer(p)[1]] if err is not None]
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    is_gold = root.parent.name == "gold" and (root.parent / layout.RUNS).exists()
    fix = FIX if is_gold else "restore or rewrite the file"
    if bad:
        return GoldDamagedError(f"feature view {view}: unreadable Parquet file {'; '.join(bad[:3])}; {fix}")
    if not root.exists():
        return GoldDamagedError(f"feature view {view}: its source {root} does not exist; {fix}")
    deep = " (`alpha doctor --deep` finds which)" if is_gold else ""
    return GoldDamagedError(f"feature view {view}: reading {root} failed ({type(exc).__name__}: {reason}); a file there is "
                            f"damaged{deep}; {fix}")


# ------------------------------------------------------------------ alpha doctor


def gold_problems(settings: Settings, deep: bool = False) -> list[str]:
    """Each problem of gold as a sentence naming the command that fixes it: recorded parts
    missing, of another size, with an unreadable footer or another row count (``deep``: another
    checksum); parts no run recorded; an interrupted build; hidden files of a crashed one;
    orphan state files."""
    if not settings.gold.is_dir():
        return []
    try:
        runs = layout.read_runs(settings)
    except GoldDamagedError as exc:
        return [str(exc)]
    out = [d.sentence() for d in find_damage(settings, runs, deep=deep)]
    if runs.get("families") and layout.PARTS not in runs:
        out.append("gold/_runs.json records no part sizes (gold was built by an older version): the next "
                   "`alpha nightly` (or `alpha features build`) records them")
    pending = runs.get("pending")
    if pending:
        out.append(f"build run {pending.get('run')} was interrupted: the next `alpha nightly` (or `alpha features build`) "
                   "finishes or undoes it")
    else:
        hidden = [p for p in settings.gold.glob("*/.r*.parquet")]
        if hidden:
            out.append(f"{len(hidden)} hidden part file(s) of a build that never committed (e.g. {_rel(settings, hidden[0])}): "
                       "harmless to readers; the next `alpha nightly` (or `alpha features build`) removes them")
        keep = {p.name for _, p in _state_family(settings, runs)}
        state_dir = settings.gold / layout.STATE_DIR
        orphans = [p for p in state_dir.glob("*.parquet") if p.name not in keep] if state_dir.is_dir() else []
        if orphans:
            out.append(f"{len(orphans)} orphan build state file(s) (e.g. {_rel(settings, orphans[0])}): the next "
                       "`alpha nightly` (or `alpha features build`) removes them")
    return out


def registry_problems(settings: Settings) -> list[str]:
    """The Feast registry: present and readable when gold is built, every source of the
    warehouse's project inside this home, and the views it holds those the factor declarations
    generate (names and features). Each problem names the command that fixes it."""
    try:
        built = bool(layout.read_runs(settings).get("families"))
    except GoldDamagedError:
        built = True
    if settings.registry_url:
        try:
            sources, views = _sql_registry(settings)
        except Exception as exc:  # noqa: BLE001 -- an unreachable or unreadable registry is the finding
            return [f"the Feast SQL registry (registry_url) cannot be read ({type(exc).__name__}: {exc}); check the "
                    "database, then run `alpha apply`"]
    else:
        path = settings.registry_path
        if not path.exists():
            return [f"no Feast registry at {_rel(settings, path)} although gold is built: run `alpha apply`"] if built else []
        try:
            sources, views = _file_registry(path)
        except Exception as exc:  # noqa: BLE001
            return [f"the Feast registry {_rel(settings, path)} is unreadable ({type(exc).__name__}: {exc}): remove it and "
                    "run `alpha apply`"]
    out = []
    home = Path(os.path.abspath(settings.home))
    for name, uri in sorted(sources.items()):
        if "://" in uri:
            continue
        # lexically (a gold/ that is a symlink to a shared volume is still this home's gold/)
        resolved = Path(os.path.normpath(home / uri))
        if not resolved.is_relative_to(home):
            out.append(f"registry source {name} points outside this home ({uri}): run `alpha apply` (sources are "
                       "registered relative to the home)")
            continue
        if Path(uri).is_absolute():
            out.append(f"registry source {name} has an absolute path ({uri}): the home cannot be moved or copied; "
                       "run `alpha apply` (sources are registered relative to the home)")
        elif built and not resolved.is_dir():
            out.append(f"registry source {name} points to {uri}, which does not exist: run `alpha nightly`")
    if built:
        from etl.factors import registry

        registry.activate(settings)
        want = {name: sorted(o.name for o in v.outputs) for name, v in registry.views().items()}
        missing = sorted(set(want) - set(views))
        extra = sorted(set(views) - set(want))
        changed = sorted(n for n in set(want) & set(views) if sorted(views[n]) != want[n])
        for what, names in (("not registered", missing), ("registered but no longer declared", extra),
                            ("registered with other features than declared", changed)):
            if names:
                out.append(f"{len(names)} feature view(s) {what} ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}): "
                           "run `alpha apply`")
    return out


def _file_registry(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(source name -> path, view name -> feature names) of the warehouse's project."""
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    proto = RegistryProto()
    proto.ParseFromString(path.read_bytes())
    sources = {ds.name: ds.file_options.uri for ds in proto.data_sources
               if ds.project == FEAST_PROJECT and ds.HasField("file_options")}
    views = {}
    for fv in proto.feature_views:
        if fv.spec.project != FEAST_PROJECT:
            continue
        views[fv.spec.name] = [f.name for f in fv.spec.features]
        src = fv.spec.batch_source
        if src.HasField("file_options"):
            sources.setdefault(src.name or fv.spec.name, src.file_options.uri)
    return sources, views


def _sql_registry(settings: Settings) -> tuple[dict[str, str], dict[str, list[str]]]:
    from feast.infra.offline_stores.file_source import FileSource
    from feast.infra.registry.sql import SqlRegistry, SqlRegistryConfig

    reg = SqlRegistry(SqlRegistryConfig(registry_type="sql", path=settings.registry_url), FEAST_PROJECT, None)
    sources = {ds.name: ds.path for ds in reg.list_data_sources(FEAST_PROJECT) if isinstance(ds, FileSource)}
    views = {fv.name: [f.name for f in fv.features] for fv in reg.list_feature_views(FEAST_PROJECT)}
    for fv in reg.list_feature_views(FEAST_PROJECT):
        if isinstance(fv.batch_source, FileSource):
            sources.setdefault(fv.batch_source.name, fv.batch_source.path)
    return sources, views
