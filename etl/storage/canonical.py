"""One canonical daily bar when several sources deliver the same symbol-session.

Silver keeps every source's versions of a bar (each with its ``source`` and the sha256 of the
bronze ``payload`` it came from). What the features, the health report and the other readers
see by default is the *canonical stream*: a pure function of those rows and the priority
history (``[source_priority] bars_daily`` in config.toml, and when each priority came into
force). The stream of one ``(symbol, session)``, in the order the rows were written:

- a row of the best source received so far (``settings.priority("bars_daily")``: first wins;
  a source ``csv:<folder>`` ranks as ``csv`` unless named itself; sources not listed come
  after, by name) is a version of the stream, known when the row says: a vendor correction of
  the canonical source stays a revision, known from when it was received;
- a row of a better source than the canonical one so far takes over: it is a version known
  from when it was written (``known = max(known, created)``), never earlier, so what a
  backtest saw before stays as it was;
- a row of a worse source is not in the stream (the health report lists it when it disagrees,
  :mod:`etl.quality.health.sources`);
- when the priority changes, every session whose best source changes gets a version at that
  time: the new best source's latest row, written and known from the change
  (``created = known = since``). The features then restate exactly those sessions' windows.

The priority history lives beside the rows, in ``silver/bars_daily/_canonical.json``
(``{"history": [{"since": null | ISO time, "priority": [...]}, ...]}``). It is recorded by
:func:`record_priority` (callers hold the home's write lock): by every write of bars and by
the build before it plans. A warehouse whose bars all come from one source needs none (the
file is written once two sources are present). Readers use the recorded history only, so
the features, the health report and the lineage agree on what was canonical when; with no
file, the configured priority applies from the beginning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import BadInputError

DATASET = "bars_daily"
HISTORY_FILE = "_canonical.json"
#: no time (the first epoch of the priority history starts here) / no rank
NO_TIME = np.iinfo(np.int64).min
_BIG = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Epoch:
    """One priority in force from ``since_us`` (epoch microseconds; :data:`NO_TIME`: always)."""

    since_us: int
    priority: tuple[str, ...]


def source_order(names, priority: tuple[str, ...]) -> list[str]:
    """``names`` (sources) best first: the order of ``priority``; a source ``family:detail``
    (``csv:prices``) not listed itself takes its family's place; then the rest, by name."""
    place = {s: i for i, s in enumerate(priority)}

    def key(name: str):
        fam = name.split(":", 1)[0]
        return (place.get(name, place.get(fam, len(priority))), name)

    return sorted({str(n) for n in names}, key=key)


# ------------------------------------------------------------------ the priority history


def history_path(settings: Settings) -> Path:
    from etl.storage.bars import silver_bars_dir

    return silver_bars_dir(settings) / HISTORY_FILE


def _read_history(path: Path) -> list[Epoch] | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        epochs = [Epoch(NO_TIME if e["since"] is None else clock.instant_us(pd.Timestamp(e["since"]), "since"),
                        tuple(str(s) for s in e["priority"])) for e in doc["history"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError([(str(path), None, f"the record of source priorities cannot be read ({exc}); restore it "
                                               "from a backup, or delete it to apply the configured priority to all history")]) from None
    if not epochs or any(b.since_us <= a.since_us for a, b in zip(epochs, epochs[1:], strict=False)):
        raise BadInputError([(str(path), None, "the record of source priorities must list epochs in rising 'since' order")])
    return epochs


def priority_history(settings: Settings) -> list[Epoch]:
    """The recorded priority history (module doc); without a record, the configured priority
    from the beginning."""
    return _read_history(history_path(settings)) or [Epoch(NO_TIME, settings.priority(DATASET))]


def record_priority(settings: Settings, now: pd.Timestamp | None = None, *, shared: bool | None = None) -> bool:
    """Record the configured priority if it differs from the one in force, in force from
    ``now`` (default: the wall clock; always after the previous change). With no record yet,
    start one (in force from the beginning) once two sources have bars: ``shared`` says
    whether they have (a writer that just saw another source's bars of its symbols), ``None``:
    look (the part files' statistics). Callers hold the home's write lock. Returns whether the
    record changed."""
    from etl.storage.atomic import atomic_write_text

    path = history_path(settings)
    current = settings.priority(DATASET)
    epochs = _read_history(path)
    if epochs is None:
        if not (shared if shared is not None else len(sources_present(settings)) > 1):
            return False
        epochs = [Epoch(NO_TIME, current)]
    elif epochs[-1].priority == current:
        return False
    else:
        since = max(clock.instant_us(clock.utc_us(now), "now"), epochs[-1].since_us + 1)
        epochs = [*epochs, Epoch(since, current)]
    doc = {"history": [{"since": None if e.since_us == NO_TIME else clock.from_epoch_us([e.since_us])[0].isoformat(),
                        "priority": list(e.priority)} for e in epochs]}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return True


def sources_present(settings: Settings) -> set[str]:
    """The sources of the stored bars, from the part files' statistics where they tell (a row
    group of one source), else from the column."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from etl.storage.bars import bar_files

    out: set[str] = set()
    for path in bar_files(settings):
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        col = meta.schema.names.index("source")
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(col).statistics
            if st is not None and st.has_min_max and st.min == st.max:
                out.add(str(st.min))
            else:
                out.update(str(s) for s in pc.unique(pf.read_row_group(i, columns=["source"]).column("source")).to_pylist())
        if len(out) > 1:
            break
    return out


# ------------------------------------------------------------------ the canonical stream


def _ranks(names: list[str], priority: tuple[str, ...]) -> np.ndarray:
    """rank (0 best) of each source code (codes index ``names``)."""
    order = {s: i for i, s in enumerate(source_order(names, priority))}
    return np.array([order[n] for n in names], dtype=np.int64)


def _groups(frame: pd.DataFrame) -> np.ndarray:
    """A group number per row, one per ``(symbol, session)``; ``frame`` is sorted by them."""
    sym = frame["symbol"].to_numpy()
    ses = frame["session"].to_numpy()
    new = np.ones(len(frame), dtype=bool)
    new[1:] = (sym[1:] != sym[:-1]) | (ses[1:] != ses[:-1])
    return np.cumsum(new) - 1


def canonical_versions(frame: pd.DataFrame, history: list[Epoch]) -> pd.DataFrame:
    """The canonical stream (module doc) of ``frame``: silver rows of every source, sorted by
    symbol and session (as the readers give them). Sessions delivered by one source are
    returned as they are; the result is sorted by symbol, session, known and written time."""
    if frame is None or len(frame) < 2:
        return frame
    codes, names = pd.factorize(frame["source"].astype(str), sort=True)
    if len(names) < 2:
        return frame
    g = _groups(frame)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    multi = np.minimum.reduceat(codes, starts) != np.maximum.reduceat(codes, starts)
    if not multi.any():
        return frame
    names = [str(n) for n in names]
    ranks = [_ranks(names, e.priority) for e in history]
    rows = np.flatnonzero(multi[g])
    gm = np.unique(g[rows], return_inverse=True)[1].astype(np.int64)
    c = clock.epoch_us(frame["created_timestamp"].iloc[rows])
    k = clock.epoch_us(frame["known_timestamp"].iloc[rows])
    code = codes[rows].astype(np.int64)
    epoch_of = np.searchsorted(np.array([e.since_us for e in history], dtype=np.int64), c, side="right") - 1
    tie = np.stack(ranks)[epoch_of, code]                # the rank in force when the row was written
    order = np.lexsort((k, tie, c, gm))                  # in the order written; a tie: the better source first
    rows, gm, c, k, code = rows[order], gm[order], c[order], k[order], code[order]
    emit, known, copies = _stream(gm, c, k, code, history, ranks, len(names))
    sub = frame.iloc[rows]
    out = sub.iloc[np.flatnonzero(emit)].copy()
    out["known_timestamp"] = clock.from_epoch_us(known[emit])
    pieces = [frame.iloc[np.flatnonzero(~multi[g])], out]
    for pick, since in copies:
        moved = sub.iloc[pick].copy()
        moved["created_timestamp"] = clock.from_epoch_us(np.full(len(pick), since))
        moved["known_timestamp"] = clock.from_epoch_us(np.maximum(k[pick], since))
        pieces.append(moved)
    from etl.storage.bars import READ_ORDER

    result = pd.concat(pieces, ignore_index=True)
    return result.sort_values(READ_ORDER, kind="stable").reset_index(drop=True)


def _stream(gm, c, k, code, history: list[Epoch], ranks: list[np.ndarray], n_sources: int):
    """The kernel of :func:`canonical_versions` over the rows of sessions with two or more
    sources, ordered by group and write time: which rows are versions (``emit``), their known
    times, and the copies a priority change makes (``[(row positions, since_us)]``)."""
    n_groups = int(gm.max()) + 1 if len(gm) else 0
    emit = np.zeros(len(gm), dtype=bool)
    known = k.copy()
    copies: list[tuple[np.ndarray, int]] = []
    cur = np.full(n_groups, -1, dtype=np.int64)           # the canonical source (code) so far
    for e, epoch in enumerate(history):
        rank = ranks[e]
        code_of = np.argsort(rank)                         # rank -> code
        lo = epoch.since_us
        hi = history[e + 1].since_us if e + 1 < len(history) else _BIG
        if e:
            before = c < lo
            best = np.full(n_groups, _BIG, dtype=np.int64)
            np.minimum.at(best, gm[before], rank[code[before]])
            has = best < _BIG
            best_code = np.where(has, code_of[np.minimum(best, n_sources - 1)], -1)
            switched = has & (best_code != cur)
            if switched.any():
                cand = np.flatnonzero(before & switched[gm] & (code == best_code[gm]))
                cand = cand[np.lexsort((c[cand], k[cand], gm[cand]))]
                last = np.r_[gm[cand][1:] != gm[cand][:-1], True]
                copies.append((cand[last], lo))            # the new best source's latest row
            cur = np.where(has, best_code, cur)
        idx = np.flatnonzero((c >= lo) & (c < hi))
        if not len(idx):
            continue
        gi, ri = gm[idx], rank[code[idx]]
        seed = np.where(cur >= 0, rank[np.maximum(cur, 0)], _BIG)
        # the best rank so far within each group: a running maximum of (group, reversed rank)
        acc = np.maximum.accumulate(gi * n_sources + (n_sources - 1 - ri))
        run = n_sources - 1 - (acc - gi * n_sources)
        prev = np.full(len(idx), _BIG, dtype=np.int64)
        same = gi[1:] == gi[:-1]
        prev[1:][same] = run[:-1][same]
        prev = np.minimum(prev, seed[gi])
        emit[idx[ri <= prev]] = True
        takeover = (ri < prev) & (prev < _BIG)
        known[idx[takeover]] = np.maximum(k[idx[takeover]], c[idx[takeover]])
        last = np.r_[gi[1:] != gi[:-1], True]
        cur[gi[last]] = code_of[np.minimum(seed[gi[last]], run[last])]
    return emit, known, copies


def latest_by_source(frame: pd.DataFrame) -> pd.DataFrame:
    """Each source's newest version (known, then written) of each ``(symbol, session)``."""
    f = frame.sort_values(["symbol", "session", "source", "known_timestamp", "created_timestamp"], kind="stable")
    return f.drop_duplicates(["symbol", "session", "source"], keep="last").reset_index(drop=True)
