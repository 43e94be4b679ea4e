"""The one generic factor builder: every family's declared inputs in, gold appended.

For each family (:class:`~etl.factors.spec.Family`) it finds the entities whose inputs
changed since the family's last build (per-entity state in ``gold/_state``), streams them in
bounded chunks through worker processes, and has each worker read exactly the declared
inputs of its chunk, run the family's pure compute and write the chunk's new rows as part
files (``etl.gold.layout``). The parent holds only per-entity summaries; memory is bounded by
a chunk, not the universe.

What is recomputed (docs/architecture.md, Gold):

* a family **with a warm-up** (bar-driven: bars, core technicals, the TA-Lib grid, users'
  factors): the new bar versions of a symbol are replayed in the order they became known.
  An append (a session after every known one) computes only the new sessions, from the
  warm-up window before them; a revised bar (or a late one) recomputes from that session on,
  and only rows whose values changed are written, known from when the revision was. The
  same replay builds a symbol from nothing, so a night's increment and a full build take
  the same steps. Corporate actions are bitemporal (``etl.storage.actions``): each step sees
  the action versions known before its next edge, and a late action (known after its
  ex-date's open, or received after its ex-date was built) is an edge of its own: the rows
  from its ex-date on are recomputed and those that change are written, known from when the
  action was known.
* a family **without a warm-up** (whole history: options, news, fundamentals, macro, regime):
  an entity whose inputs changed is recomputed and the rows gold does not hold yet are written;
  each row with the actions known at its event time, and the rows a late action changes again
  from when it was known (:func:`whole_with_actions`).
* a changed declaration (a family's fingerprint: its factors, outputs, inputs, versions)
  rebuilds that family's views only.
* a damaged family (a part file missing, truncated, unreadable or unrecorded, or its state
  file lost: :func:`etl.gold.integrity.find_damage`, checked before every build) is rebuilt from
  silver in the same way: the build does not trust its records over the files.

Every written row keeps the gold contract: ``event_timestamp`` (when knowable),
``known_timestamp`` (when this version was knowable; revisions are new rows), and
``created_timestamp`` (when the build wrote it). Nothing already written is changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import DeclarationError
from etl.core.parallel import bounded_map
from etl.factors import registry
from etl.factors.families import MARKET
from etl.factors.spec import Family, Inputs
from etl.gold import layout
from etl.gold.replay import (  # noqa: F401  (re-exported: the builder's public steps)
    Emitted,
    emit_changes,
    latest_per_session,
    replay_symbol,
    same_rows,
    whole_with_actions,
)

TIME_COLS = ["event_timestamp", "known_timestamp", "created_timestamp"]
NO_TIME = np.iinfo(np.int64).min
#: output values (rows x outputs) a chunk computes, and input bars it reads, at most: they bound
#: a worker's memory (about 7 symbols x 10 years of the TA-Lib grid; 120 symbols' histories)
CHUNK_VALUES = 20_000_000
CHUNK_BARS = 300_000


# ------------------------------------------------------------------ frames


_ARROW = {"float64": "float64", "float32": "float32", "int64": "int64", "string": "string", "bool": "bool"}


def arrow_schema(view: registry.View):
    """The Parquet schema of a view's parts (every part the same, empty ones included)."""
    import pyarrow as pa

    fields = [pa.field(view.entity, pa.string())]
    fields += [pa.field(c, pa.timestamp("us", tz="UTC")) for c in TIME_COLS]
    fields += [pa.field(o.name, pa.type_for_alias(_ARROW[o.dtype])) for o in view.outputs]
    return pa.schema(fields)


def finish(frame: pd.DataFrame, view: registry.View, created_us: int):
    """The view's Arrow table: columns in view order, typed, times in UTC us, sorted by (event
    time, entity, known time) so a time window or a symbol range skips row groups."""
    import pyarrow as pa

    schema = arrow_schema(view)
    if frame is None or frame.empty:
        return schema.empty_table()
    ev, kn = clock.epoch_us(frame["event_timestamp"]), clock.epoch_us(frame["known_timestamp"])
    ent = frame[view.entity].astype(str).to_numpy()
    order = np.lexsort((kn, ent, ev))
    ts = pa.timestamp("us", tz="UTC")
    arrays = [pa.array(ent[order], pa.string()), pa.array(ev[order], ts), pa.array(kn[order], ts),
              pa.array(np.full(len(order), created_us, dtype=np.int64), ts)]
    for o in view.outputs:
        if o.name not in frame.columns:
            raise DeclarationError(f"view {view.name}: the family's compute did not return {o.name!r}")
        col = frame[o.name]
        if o.dtype in ("float32", "float64"):
            arrays.append(pa.array(col.to_numpy(dtype=o.dtype, na_value=np.nan)[order]))
        else:
            values = col.astype(object).where(col.notna(), None).to_numpy()[order]
            arrays.append(pa.array(values, type=schema.field(o.name).type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


# ------------------------------------------------------------------ inputs


def bar_summary(settings: Settings) -> pd.DataFrame:
    """Per symbol: canonical bar versions, newest write time (us), first and last session
    (:func:`etl.storage.bars.version_summary`)."""
    from etl.storage.bars import version_summary

    return version_summary(settings)


def table_summary(settings: Settings, name: str, key: str | None) -> dict[str, str]:
    """Per entity of a silver table (or ``"*"`` for the whole table): rows and newest write."""
    frame = load_table(settings, name, None, columns=[c for c in (key, "created_timestamp") if c])
    if frame is None or frame.empty:
        return {}
    us = clock.epoch_us(frame["created_timestamp"]) if "created_timestamp" in frame else np.zeros(len(frame), np.int64)
    if key is None:
        return {"*": f"{len(frame)}:{int(us.max())}"}
    g = pd.DataFrame({"k": frame[key].astype(str).to_numpy(), "us": us}).groupby("k")["us"].agg(["size", "max"])
    return {k: f"{int(r['size'])}:{int(r['max'])}" for k, r in g.iterrows()}


TABLE_KEYS = {"corporate_actions": "symbol", "option_quotes": "underlying", "news": "symbol", "fundamentals": "symbol",
              "macro": None, "rates": None}


def load_table(settings: Settings, name: str, entities: list[str] | None, columns=None) -> pd.DataFrame | None:
    """One declared input table, only ``entities``' rows where it has an entity column."""
    from etl.storage import silver, tables

    key = TABLE_KEYS[name]
    if name == "corporate_actions":
        from etl.storage.actions import priority_rank, read_all_versions

        frame = read_all_versions(settings)  # every version: each step sees those known before it
        if frame is None:
            return None
        frame = frame.assign(rank=priority_rank(frame["source"], settings.priority("corporate_actions")))
    elif name == "rates":
        from etl.gold.inputs import load_rates

        frame = load_rates(settings)
        if "created_timestamp" not in frame.columns:
            frame = frame.assign(created_timestamp=pd.Timestamp("1970-01-01", tz="UTC"))
    else:
        table = {"option_quotes": tables.OPTION_QUOTES, "news": tables.NEWS, "fundamentals": tables.FUNDAMENTALS,
                 "macro": tables.MACRO}[name]
        filters = None
        if entities is not None and key is not None:
            import pyarrow.dataset as ds

            filters = ds.field(key).isin(list(entities))
        frame = silver.read(settings, table, filters=filters)
        if frame.empty:
            return None
    if entities is not None and key is not None:
        frame = frame[frame[key].astype(str).isin(entities)]
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    return frame.reset_index(drop=True)


# ------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Job:
    """One entity of one family to bring up to date."""

    entity: str
    hw_created_us: int = NO_TIME      # bar versions written after this are new (window mode)
    sig: str = ""                      # the entity's input signature after this build
    actions_sig: str = ""
    actions_hw_us: int = NO_TIME       # corporate action versions written after this are new
    cost: int = 1                      # rows to compute (chunking)
    read: int = 0                      # bars to read (chunking)


@dataclass
class FamilyPlan:
    family: Family
    jobs: list[Job]
    state: pd.DataFrame                # the new state of every entity (written at commit)
    rebuild: bool
    reason: str


def _window_plan(family: Family, bars: pd.DataFrame, actions: dict[str, str], state: pd.DataFrame | None) -> tuple[list[Job], pd.DataFrame]:
    prev = {} if state is None else {r.entity: r for r in state.itertuples(index=False)}
    jobs, rows = [], []
    for r in bars.itertuples(index=False):
        p = prev.get(r.symbol)
        hw = int(p.hw_created_us) if p is not None else NO_TIME
        a_sig = actions.get(r.symbol, "") if "corporate_actions" in family.inputs else ""
        a_changed = p is not None and a_sig != p.actions_sig
        a_hw = _sig_time(p.actions_sig) if p is not None else NO_TIME
        if p is None or int(r.created_us) > hw or a_changed:
            todo = int(r.n) if p is None or a_changed else 8
            jobs.append(Job(r.symbol, hw, "", a_sig, a_hw, cost=todo, read=int(r.n)))
        rows.append((r.symbol, max(hw, int(r.created_us)), "", a_sig))
    new_state = pd.DataFrame(rows, columns=["entity", "hw_created_us", "sig", "actions_sig"])
    return jobs, new_state


def _sig_time(sig: str) -> int:
    """The newest write time in a table signature (``rows:us``), or none."""
    try:
        return int(str(sig).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return NO_TIME


def _whole_plan(settings: Settings, family: Family, bars: pd.DataFrame, state: pd.DataFrame | None) -> tuple[list[Job], pd.DataFrame]:
    prev = {} if state is None else dict(zip(state["entity"], state["sig"], strict=True))
    bar_sig = {r.symbol: f"{r.n}:{r.created_us}" for r in bars.itertuples(index=False)}
    summaries = {t: table_summary(settings, t, TABLE_KEYS[t]) for t in family.inputs if t != "bars"}
    if family.entity == "market":
        if family.proxy is not None:
            parts = [bar_sig.get(family.proxy, "")] + [summaries[t].get(family.proxy, "") for t in summaries]
            entities = {MARKET: parts} if bar_sig.get(family.proxy) else {}
        else:
            span = f"{bars['first'].min()}:{bars['last'].max()}" if len(bars) else ""
            parts = [span] + [summaries[t].get("*", "") for t in summaries]
            primary = family.inputs[0]
            entities = {MARKET: parts} if summaries.get(primary) else {}
    else:
        primary = family.inputs[0]
        keys = sorted(summaries.get(primary, {}))
        entities = {k: [bar_sig.get(k, "")] + [summaries[t].get(k if TABLE_KEYS[t] else "*", "") for t in summaries] for k in keys}
    jobs, rows = [], []
    for entity, parts in entities.items():
        sig = "|".join(parts)
        if prev.get(entity) != sig:
            jobs.append(Job(entity, sig=sig, cost=2_600, read=2_600))
        rows.append((entity, NO_TIME, sig, ""))
    return jobs, pd.DataFrame(rows, columns=["entity", "hw_created_us", "sig", "actions_sig"])


def fingerprint(settings: Settings, family: Family) -> str:
    """The family's declaration fingerprint; with corporate actions among its inputs, also the
    source priority that picks them (changing it rebuilds those families)."""
    fp = family.fingerprint()
    if "corporate_actions" in family.inputs:
        fp += "|actions:" + ",".join(settings.priority("corporate_actions"))
    return fp


def plan(settings: Settings, families: list[Family] | None = None, force: bool = False,
         bars: pd.DataFrame | None = None, repair: dict[str, str] | None = None) -> list[FamilyPlan]:
    """What each family must build. ``repair``: families to rebuild from silver because their
    gold is damaged (family -> what was found)."""
    repair = repair or {}
    runs = layout.read_runs(settings)
    bars = bar_summary(settings) if bars is None else bars
    actions = table_summary(settings, "corporate_actions", "symbol")
    plans = []
    for fam in families or list(registry.families()):
        info = runs["families"].get(fam.name)
        fp = fingerprint(settings, fam)
        rebuild = force or info is None or info.get("fingerprint") != fp or fam.name in repair
        state = None if rebuild else layout.read_state(settings, fam.name)
        if fam.warmup is not None:
            jobs, new_state = _window_plan(fam, bars, actions, state)
        else:
            jobs, new_state = _whole_plan(settings, fam, bars, state)
        reason = ("first build" if info is None else "forced" if force else
                  f"repair: {repair[fam.name]}" if fam.name in repair else "declaration changed") if rebuild else "incremental"
        plans.append(FamilyPlan(fam, jobs, new_state, rebuild, reason))
    return plans


def chunks_of(jobs: list[Job], max_symbols: int, n_outputs: int, max_values: int = CHUNK_VALUES,
              max_read: int = CHUNK_BARS) -> list[list[Job]]:
    """Consecutive entities (sorted, so a chunk's part covers a symbol range) in chunks of at
    most ``max_symbols`` entities, about ``max_values`` output values (rows x outputs) and
    ``max_read`` input bars: a worker's memory is bounded by that, whatever the universe."""
    max_rows = max(1, max_values // max(1, n_outputs))
    out, cur, cost, read = [], [], 0, 0
    for job in jobs:
        if cur and (len(cur) >= max_symbols or cost + job.cost > max_rows or read + job.read > max_read):
            out.append(cur)
            cur, cost, read = [], 0, 0
        cur.append(job)
        cost += job.cost
        read += job.read
    if cur:
        out.append(cur)
    return out


# ------------------------------------------------------------------ the worker


@dataclass(frozen=True)
class Task:
    home: str
    family: str
    run: int
    chunk: int
    jobs: tuple[Job, ...]
    rebuild: bool
    created: pd.Timestamp
    #: the driver's settings (secrets removed) for a worker that is not forked from it (a Spark
    #: executor): the same environment overrides everywhere; None: read the home's again
    settings: Settings | None = None


@dataclass
class ChunkResult:
    family: str
    chunk: int
    entities: int
    rows: dict[str, int]
    min_event_us: int | None
    seconds: float
    #: per view, the part written: {"name", "size", "rows", "sha256"} (recorded at commit)
    files: dict[str, dict] = field(default_factory=dict)


def _existing_latest(settings: Settings, view: str, entity_col: str, entities: list[str]) -> pd.DataFrame:
    """Gold's rows of ``entities`` in one view, every version (for whole-history diffs)."""
    import pyarrow.dataset as ds

    files = layout.parts(settings, view)
    if not files:
        return pd.DataFrame()
    dataset = ds.dataset([str(p) for p in files], format="parquet")
    return dataset.to_table(filter=ds.field(entity_col).isin(entities)).to_pandas()


def build_chunk(task: Task) -> ChunkResult:
    """One chunk of one family: read its inputs, compute, write its part files (hidden until
    the run commits). Runs in a worker process, forked or a Spark executor's."""
    from etl.core.config import load_settings
    from etl.storage.bars import read_silver_bars

    t0 = time.perf_counter()
    settings = task.settings if task.settings is not None else load_settings(task.home)
    registry.activate(settings)     # an executor's Python did not inherit the driver's user factors
    family = next(f for f in registry.families() if f.name == task.family)
    all_views = registry.views()
    entities = [j.entity for j in task.jobs]
    info = (settings.calendar, settings.bar_delay_minutes)
    bar_symbols = [family.proxy] if family.proxy else (None if family.entity == "market" else entities)
    bars = None
    if "bars" in family.inputs and (bar_symbols is not None or family.warmup is not None):
        bars = read_silver_bars(settings, symbols=bar_symbols, versions="all")
    tables_all = {t: load_table(settings, t, None if (family.entity == "market" and not family.proxy) else
                                (bar_symbols if family.proxy else entities))
                  for t in family.inputs if t != "bars"}
    if family.name == "macro":
        from etl.gold.inputs import session_table

        tables_all["sessions"] = session_table(settings)
    by_symbol = dict(tuple(bars.groupby("symbol", sort=False))) if bars is not None and len(bars) else {}
    # each keyed table cut by entity once per chunk (not scanned once per entity)
    by_key = {t: {str(e): g.reset_index(drop=True) for e, g in frame.groupby(TABLE_KEYS[t], sort=False)}
              for t, frame in tables_all.items() if frame is not None and TABLE_KEYS.get(t)}
    collected: dict[str, list[pd.DataFrame]] = {}
    for job in task.jobs:
        key = family.proxy or job.entity
        tables = {}
        for t, frame in tables_all.items():
            tables[t] = by_key[t].get(key, frame.iloc[:0]) if t in by_key else frame
        versions = by_symbol.get(key)
        versions = versions.reset_index(drop=True) if versions is not None else None
        if family.warmup is not None:
            em = replay_symbol(family, versions, job.hw_created_us, tables, info, job.entity, actions_hw_us=job.actions_hw_us)
            # every view of the family is cut from the chunk's rows once, below
            collected.setdefault("__base__", []).extend(f for f in em.base if len(f))
            collected.setdefault("__lag__", []).extend(f for f in em.lag if len(f))
        else:
            entity_col = "market" if family.entity == "market" else "symbol"
            inputs_bars = versions if versions is not None else None
            rows = whole_with_actions(family, Inputs(entity=job.entity, bars=inputs_bars, start=None, tables=tables,
                                                     calendar=info[0], delay_minutes=info[1]))
            if rows is None or rows.empty:
                continue
            if entity_col not in rows.columns:
                rows = rows.assign(**{entity_col: job.entity})
            for view in family.views:
                v = all_views[view]
                base = rows[[entity_col, "event_timestamp", "known_timestamp", *v.output_names]]
                # a rebuild replaces every part of the view (the old ones are obsolete at commit, and may
                # be damaged): nothing stored counts; else only rows gold does not hold yet are written
                existing = pd.DataFrame() if task.rebuild else _existing_latest(settings, view, entity_col, [job.entity])
                new = _new_rows(base, existing, v.output_names)
                collected.setdefault(view, []).append(new)
                lag = all_views.get(view + registry.LAG_SUFFIX)
                if lag is not None:
                    lagged = lag_rows(base, entity_col).rename(columns={n: n + registry.LAG_SUFFIX for n in v.output_names})
                    collected.setdefault(lag.name, []).append(
                        _new_rows(lagged, pd.DataFrame() if task.rebuild else _existing_latest(settings, lag.name, entity_col, [job.entity]),
                                  lag.output_names))
    if family.warmup is not None:
        for key, suffix in (("__base__", ""), ("__lag__", registry.LAG_SUFFIX)):
            frames = collected.pop(key, [])
            if not frames:
                continue
            rows = pd.concat(frames, ignore_index=True)
            for view in family.views:
                if view + suffix not in all_views:
                    continue
                names = all_views[view].output_names
                part = rows[["symbol", "event_timestamp", "known_timestamp", *names]]
                collected[view + suffix] = [part.rename(columns={n: n + suffix for n in names}) if suffix else part]
    counts, min_event, files = {}, None, {}
    views = family.views + [v + registry.LAG_SUFFIX for v in family.views if v + registry.LAG_SUFFIX in all_views]
    for view in views:
        frames = [f for f in collected.get(view, []) if len(f)]
        if not frames:
            counts[view] = 0
            continue
        out = finish(pd.concat(frames, ignore_index=True), all_views[view], clock.instant_us(task.created, "created"))
        path = layout.hidden(layout.view_dir(settings, view) / layout.part_name(task.run, family.name, task.chunk))
        write_part(out, path)
        files[view] = {"name": path.name[1:], **layout.describe_part(path)}
        counts[view] = out.num_rows
        ev = int(clock.epoch_us(out.column("event_timestamp")).min())
        min_event = ev if min_event is None else min(min_event, ev)
    return ChunkResult(family.name, task.chunk, len(task.jobs), counts, min_event, time.perf_counter() - t0, files)


def lag_rows(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Each row shown again at the entity's next event time, known from the later of its
    own known time and that event."""
    if frame.empty:
        return frame
    events = frame[[key, "event_timestamp"]].drop_duplicates().sort_values([key, "event_timestamp"], kind="stable")
    events["next_event"] = events.groupby(key, sort=False)["event_timestamp"].shift(-1)
    out = frame.merge(events, on=[key, "event_timestamp"], how="left")
    out = out[out["next_event"].notna()].copy()
    out["event_timestamp"] = out["next_event"]
    out["known_timestamp"] = np.maximum(pd.to_datetime(out["known_timestamp"], utc=True), pd.to_datetime(out["event_timestamp"], utc=True))
    return out.drop(columns=["next_event"]).reset_index(drop=True)


def _new_rows(rows: pd.DataFrame, existing: pd.DataFrame, outputs: list[str]) -> pd.DataFrame:
    """Rows gold does not hold yet: no stored row with the same event and known time and
    the same values."""
    if existing is None or existing.empty or rows.empty:
        return rows
    key = ["event_timestamp", "known_timestamp"]
    rows = rows.copy()
    for c in key:
        rows[c] = pd.to_datetime(rows[c], utc=True).astype("datetime64[us, UTC]")
        existing[c] = pd.to_datetime(existing[c], utc=True).astype("datetime64[us, UTC]")
    stored = existing.drop_duplicates(key, keep="last").set_index(key)
    matched = stored.reindex(pd.MultiIndex.from_frame(rows[key]))
    present = matched[outputs[0]].index.isin(stored.index) if len(outputs) else np.zeros(len(rows), bool)
    same = np.ones(len(rows), dtype=bool)
    for c in outputs:
        a = rows[c].to_numpy()
        b = matched[c].to_numpy()
        eq = np.array([(x == y) or (pd.isna(x) and pd.isna(y)) for x, y in zip(a, b, strict=True)], dtype=bool)
        same &= eq
    return rows[~(present & same)].reset_index(drop=True)


def write_part(table, path) -> None:
    """One part file, atomically: LZ4, row groups of 64k rows, statistics (what pruning reads) and
    dictionaries only on the key and time columns."""
    import pyarrow.parquet as pq

    from etl.storage.atomic import atomic_path

    keys = table.column_names[:4]
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="lz4", row_group_size=64_000, use_dictionary=keys[:1], write_statistics=keys)


# ------------------------------------------------------------------ the run


@dataclass
class BuildReport:
    run: int | None
    families: dict[str, dict]
    rows: dict[str, int]
    min_event_us: int | None
    seconds: float
    recovered: str | None = None
    #: families rebuilt from silver because their gold was damaged (family -> what was found)
    repaired: dict[str, str] = field(default_factory=dict)
    #: where the chunks ran: "local" (forked processes) or "spark" (Spark's executors)
    engine: str = "local"

    @property
    def changed(self) -> bool:
        return any(self.rows.values())


def build(settings: Settings, families: list[str] | None = None, force: bool = False, n_jobs: int | None = None,
          progress: Callable[[str], None] | None = None, chunk_symbols: int | None = None,
          engine: str | None = None) -> BuildReport:
    """Bring every family's gold up to date with silver (see the module doc). ``engine`` (default
    ``settings.engine``): where the chunks run, ``"local"`` (``n_jobs`` forked processes) or ``"spark"``
    (one Spark task per chunk on the session of ``settings.spark``; ``n_jobs`` is then Spark's, and
    the executors must see the home at the same path). The plan and the commit stay here, so both
    write the same gold."""
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    engine = _engine(settings, engine)
    registry.activate(settings)
    from etl.gold import integrity

    lost = layout.recover_runs(settings)
    if lost:
        say(f"gold: {lost}")
    recovered = layout.finish_pending(settings)
    if recovered:
        say(f"gold: {recovered} (an earlier build was interrupted)")
    recovered = "; ".join(r for r in (lost, recovered) if r) or None
    chosen = [f for f in registry.families() if families is None or f.name in families]
    unknown = sorted(set(families or []) - {f.name for f in chosen})
    if unknown:
        raise DeclarationError(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {unknown}; the families are "
                               f"{[f.name for f in registry.families()]}")
    for fam in chosen:
        if fam.user:
            from etl.gold.checks import check_user_family

            check_user_family(settings, fam)
    from etl.storage.atomic import HomeLock
    from etl.storage.canonical import record_priority

    with HomeLock(settings.home):
        record_priority(settings)      # a changed [source_priority] is in force from now: its sessions are new versions
    runs = layout.read_runs(settings)
    if layout.PARTS not in runs and runs.get("families"):   # built before parts were recorded: record them once
        layout.write_runs(settings, integrity.adopt_parts(settings, runs))
    # the files, not the records: a damaged family is rebuilt from silver (stat + footer per part)
    damage = integrity.find_damage(settings, runs)
    repair = integrity.families_to_repair(damage)
    for fam, what in repair.items():
        if fam in {f.name for f in chosen}:
            say(f"gold: {what}: rebuilding {fam} from silver")
        else:
            say(f"gold: {what}: not rebuilt now ({fam} is not among the families built); run `alpha nightly`")
    bars = bar_summary(settings)
    plans = plan(settings, chosen, force=force, bars=bars, repair=repair)
    all_views = registry.views()
    runs = layout.read_runs(settings)
    runs.setdefault(layout.PARTS, {})
    damaged_files = {d.file for d in damage}
    if not any(p.jobs for p in plans) and not any(len(p.state) for p in plans):
        from etl.core.errors import NotIngestedError

        raise NotIngestedError(f"nothing in silver to compute factors from ({settings.silver}); run `alpha ingest lean` or "
                               "`alpha ingest csv --path DIR` first")
    if not any(p.jobs or p.rebuild for p in plans):
        say("factors: every family is up to date with silver")
        return BuildReport(None, {p.family.name: {"entities": 0, "mode": p.reason, "chunks": 0, "rows": 0} for p in plans}, {}, None,
                           round(time.perf_counter() - t0, 2), recovered, engine=engine)
    run = int(runs.get("last_run", 0)) + 1
    n_jobs = n_jobs or min(2, os.cpu_count() or 1)
    size = chunk_symbols or settings.build_chunk_symbols
    created = clock.utc_us()
    views_touched = sorted({v for p in plans for v in p.family.views} | {v + registry.LAG_SUFFIX for p in plans for v in p.family.views
                                                                       if v + registry.LAG_SUFFIX in all_views})
    obsolete = {}
    for p in plans:
        if p.rebuild:
            for v in p.family.views + [v + registry.LAG_SUFFIX for v in p.family.views if v + registry.LAG_SUFFIX in all_views]:
                obsolete[v] = [f.name for f in layout.parts(settings, v) if f.name != layout.SCHEMA_PART]
    runs["pending"] = {"run": run, "views": views_touched, "obsolete": obsolete}
    layout.write_runs(settings, runs)
    for v in views_touched:
        path = layout.view_dir(settings, v) / layout.SCHEMA_PART
        if not path.exists() or str(path.relative_to(settings.home)) in damaged_files:
            write_part(arrow_schema(all_views[v]).empty_table(), path)
    tasks: list[Task] = []
    for p in plans:
        for i, chunk in enumerate(chunks_of(p.jobs, size, len(p.family.outputs()))):
            tasks.append(Task(str(settings.home), p.family.name, run, i, tuple(chunk), p.rebuild, created,
                              _for_executors(settings) if engine == "spark" else None))
    width = {p.family.name: len(p.family.outputs()) for p in plans}
    total_cost = sum(j.cost * width[t.family] for t in tasks for j in t.jobs) or 1  # output values: what takes the time
    fam_report = {p.family.name: {"entities": len(p.jobs), "mode": p.reason, "chunks": 0, "rows": 0} for p in plans}
    for p in plans:
        say(f"factors: {p.family.name}: {len(p.jobs):,} of {len(p.state):,} entities to build ({p.reason})")
    rows: dict[str, int] = dict.fromkeys(views_touched, 0)
    min_event = None
    written: list[tuple[str, dict]] = []
    done_cost = 0
    started = last_say = time.perf_counter()
    if engine == "spark":
        results = iter(_on_spark(settings, tasks, width, total_cost, run, say))
    else:
        results = bounded_map(build_chunk, iter(tasks), n_jobs if len(tasks) > 1 else 1)
    for k, res in enumerate(results):
        task = tasks[k]
        done_cost += sum(j.cost for j in task.jobs) * width[task.family]
        for v, n in res.rows.items():
            rows[v] = rows.get(v, 0) + n
        fam_report[res.family]["chunks"] += 1
        written += list(res.files.items())
        fam_report[res.family]["rows"] += sum(res.rows.values())
        if res.min_event_us is not None:
            min_event = res.min_event_us if min_event is None else min(min_event, res.min_event_us)
        elapsed = time.perf_counter() - started
        eta = elapsed / done_cost * (total_cost - done_cost)
        if (engine == "spark" or time.perf_counter() - last_say < 2.0) and k + 1 < len(tasks):
            continue        # (on Spark, every result arrives at the end: only the last line, the rest was told as tasks ended)
        last_say = time.perf_counter()
        say(f"factors: {res.family} chunk {k + 1}/{len(tasks)} ({res.entities} entities, {sum(res.rows.values()):,} rows) "
            f"{100 * done_cost / total_cost:.0f}% done, {elapsed:.0f} s elapsed, ~{eta:.0f} s left")
    # commit: state files, then the run record (the commit point), then the renames
    from etl.storage.atomic import atomic_write_frame

    for p in plans:
        atomic_write_frame(p.state, layout.state_path(settings, p.family.name, run))
        runs["families"][p.family.name] = {"run": run, "fingerprint": fingerprint(settings, p.family), "views": p.family.views}
    runs["last_run"] = run
    if min_event is not None:
        runs.setdefault("min_event", {})[str(run)] = min_event
    # the parts of the run (and, of rebuilt views, only those) recorded in the same atomic write
    parts = runs[layout.PARTS]
    for v in obsolete:
        parts[v] = {}
    for v in views_touched:
        path = layout.view_dir(settings, v) / layout.SCHEMA_PART
        if layout.SCHEMA_PART not in parts.get(v, {}) or str(path.relative_to(settings.home)) in damaged_files:
            parts.setdefault(v, {})[layout.SCHEMA_PART] = layout.describe_part(path)
    for v, rec in written:
        parts.setdefault(v, {})[rec["name"]] = {k: rec[k] for k in ("size", "rows", "sha256")}
    layout.write_runs(settings, runs)
    layout.finish_pending(settings)
    if any(p.family.warmup is not None for p in plans):
        from etl.storage.actions import record_published

        # features of these sessions are out: an action of an ex-date up to them that arrives later is late
        record_published(settings, bars[["symbol", "last"]])
    repaired = {p.family.name: repair[p.family.name] for p in plans if p.family.name in repair}
    return BuildReport(run, fam_report, rows, min_event, round(time.perf_counter() - t0, 2), recovered, repaired, engine)


def _engine(settings: Settings, engine: str | None) -> str:
    from etl.core.config import check_engine

    chosen = settings.engine if engine is None else check_engine(engine, "engine")
    if chosen == "spark":
        from etl.core import spark

        spark.require()
    return chosen


def _for_executors(settings: Settings) -> Settings:
    """The settings a chunk needs, without what may hold a secret (no chunk reads them): they are
    pickled into every Spark task."""
    from dataclasses import replace

    return replace(settings, redis_url=None, redis_password=None, state_url=None, registry_url=None, vendors={})


def _on_spark(settings: Settings, tasks: list[Task], width: dict[str, int], total_cost: int, run: int,
              say: Callable[[str], None]) -> list[ChunkResult]:
    """Every chunk as one Spark task (``etl.core.spark.spark_map``): only the small
    :class:`ChunkResult` comes back. Progress is told as Spark's tasks finish (Spark starts them in
    chunk order, so the first ``done`` chunks stand for what is done). A failed chunk fails the
    run before its commit: gold is as it was, and the next build removes the run's hidden parts."""
    from etl.core.spark import SparkJobError, session, spark_map

    cost = [sum(j.cost for j in t.jobs) * width[t.family] for t in tasks]
    if tasks:
        say(f"factors: {len(tasks)} chunk(s) as Spark tasks on {session(settings).sparkContext.master}")
    started = time.perf_counter()

    def tell(done: int, total: int) -> None:
        if not done or done >= total:     # the last line is the build loop's own, with the rows
            return
        part = sum(cost[:done])
        elapsed = time.perf_counter() - started
        task = tasks[done - 1]
        say(f"factors: {task.family} chunk {done}/{total} ({len(task.jobs)} entities) on Spark "
            f"{100 * part / total_cost:.0f}% done, {elapsed:.0f} s elapsed, ~{elapsed / max(part, 1) * (total_cost - part):.0f} s left")

    try:
        return spark_map(settings, build_chunk, tasks, progress=tell, description=f"factor build run {run}")
    except SparkJobError as exc:
        raise SparkJobError(f"{exc}\nRun {run} was not committed: gold is as before (the next build removes its unfinished "
                            "part files). Fix the error and run `alpha features build` again (`--engine local` runs the same "
                            "chunks in local processes, easier to debug).") from exc
