"""Replaying one entity's new information in the order it became known (the factor builder's
steps, :mod:`etl.gold.builder`).

* :func:`replay_symbol`: a bar-driven family's steps for one symbol: its new bar versions and
  newly known corporate actions, each edge a time new information became known;
* :func:`emit_changes`: which rows of a step differ from what was known before it, and their
  lagged twins;
* :func:`whole_with_actions`: a whole-history family's rows with corporate actions as they
  were known.

Pure: frames in, frames out (the builder reads and writes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from etl.core import clock
from etl.factors import registry
from etl.factors.spec import Family, Inputs

NO_TIME = np.iinfo(np.int64).min


def _typed_values(frame: pd.DataFrame, outputs) -> list[np.ndarray]:
    out = []
    for o in outputs:
        v = frame[o.name]
        if o.dtype in ("float32", "float64"):
            out.append(v.to_numpy(dtype=o.dtype, na_value=np.nan))
        else:
            out.append(v.astype(object).where(v.notna(), None).to_numpy())
    return out


def same_rows(a: pd.DataFrame, b: pd.DataFrame, outputs) -> np.ndarray:
    """Row by row: every output equal (NaN equals NaN), in each output's declared dtype."""
    same = np.ones(len(a), dtype=bool)
    for va, vb in zip(_typed_values(a, outputs), _typed_values(b, outputs), strict=True):
        if va.dtype.kind == "f":
            same &= (va == vb) | (np.isnan(va) & np.isnan(vb))
        else:
            same &= np.array([x == y for x, y in zip(va, vb, strict=True)], dtype=bool)
    return same


def _trim(rows: pd.DataFrame, bars: pd.DataFrame, start) -> pd.DataFrame:
    if start is None or rows.empty:
        return rows.reset_index(drop=True)
    first_event = bars.loc[bars["session"] >= start, "event_timestamp"].min()
    keep = (rows["event_timestamp"] >= first_event).to_numpy()
    return rows.reset_index(drop=True) if keep.all() else rows[keep].reset_index(drop=True)


# ------------------------------------------------------------------ bar-driven replay


@dataclass
class Emitted:
    base: list[pd.DataFrame] = field(default_factory=list)
    lag: list[pd.DataFrame] = field(default_factory=list)


def latest_per_session(versions: pd.DataFrame) -> pd.DataFrame:
    """One row per session: the newest version (known, then written) among ``versions``."""
    sess = versions["session"].to_numpy()
    if len(sess) < 2 or (np.diff(sess.astype("datetime64[us]").astype(np.int64)) > 0).all():
        return versions.reset_index(drop=True)  # one version per session, in order (the usual case)
    v = versions.sort_values(["session", "known_timestamp", "created_timestamp"], kind="stable")
    return v.drop_duplicates("session", keep="last").reset_index(drop=True)


def _window(state: pd.DataFrame, first_session, warmup: int) -> tuple[pd.DataFrame, object]:
    """The bars a step computes from: ``warmup`` sessions before the session preceding
    ``first_session`` (its row feeds the lag twin), and that session on."""
    sessions = state["session"].to_numpy()
    i0 = int(np.searchsorted(sessions, np.datetime64(first_session), side="left"))
    start_i = max(0, i0 - 1)
    lo = max(0, start_i - warmup)
    return state.iloc[lo:].reset_index(drop=True), sessions[start_i] if len(sessions) else None


def _run(family: Family, bars: pd.DataFrame, start, tables: dict, settings_info: tuple[str, int], entity: str) -> pd.DataFrame:
    calendar, delay = settings_info
    rows = family.compute(Inputs(entity=entity, bars=bars, start=pd.Timestamp(start) if start is not None else None,
                                 tables=tables, calendar=calendar, delay_minutes=delay))
    return _trim(rows, bars, start)


def _with_prior_known(family: Family, rows: pd.DataFrame, state: pd.DataFrame, window: pd.DataFrame) -> pd.DataFrame:
    """A bar-driven row is as new as the newest version of any earlier bar (the whole history's
    running maximum, as a build from nothing computes it), not only of its window's."""
    if family.known_rule != "running" or rows.empty or len(window) == len(state):
        return rows
    before = state.loc[state["session"] < window["session"].iloc[0], "known_timestamp"]
    if before.empty:
        return rows
    prior = clock.instant_us(before.max(), "known")
    rows["known_timestamp"] = clock.from_epoch_us(np.maximum(clock.epoch_us(rows["known_timestamp"]), prior))
    return rows


def emit_changes(after: pd.DataFrame, before: pd.DataFrame | None, first_event, outputs, known_floor=None,
                 lag: bool = True) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Base rows of ``after`` at or after ``first_event`` that ``before`` lacks or holds with
    other values, and (``lag``) the lag rows they imply (each emitted row shown again at the
    entity's next event; a new event whose predecessor did not change shows the predecessor's
    row). Wide frames are copied as little as possible: the TA-Lib grid's are 1,021 columns."""
    ev = clock.epoch_us(after["event_timestamp"])
    if len(ev) > 1 and not (np.diff(ev) >= 0).all():
        after = after.sort_values("event_timestamp", kind="stable")
        ev = clock.epoch_us(after["event_timestamp"])
    after = after.reset_index(drop=True)
    first_us = clock.instant_us(pd.Timestamp(first_event), "first event")
    wanted = ev >= first_us
    if before is not None and len(before):
        b = before.drop_duplicates("event_timestamp", keep="last").set_index("event_timestamp")
        matched = b.reindex(after["event_timestamp"])
        present = matched["known_timestamp"].notna().to_numpy() if "known_timestamp" in matched else np.zeros(len(after), bool)
        same = present & same_rows(after, matched.reset_index(drop=True), outputs)
    else:
        present = np.zeros(len(after), bool)
        same = present
    changed = wanted & ~same
    known = clock.epoch_us(after["known_timestamp"])
    if known_floor is not None:
        known = np.where(changed & present, np.maximum(known, clock.instant_us(known_floor, "known floor")), known)
    after["known_timestamp"] = clock.from_epoch_us(np.maximum(known, ev))  # one column replaced, no copy of the rest
    base = after if changed.all() else after.loc[changed]
    if not lag:
        return base.reset_index(drop=True), None
    # lag rows: row i shown at event i+1
    idx = np.flatnonzero(changed[:-1]) if len(after) > 1 else np.array([], dtype=int)
    new_event = wanted & ~present
    new_idx = np.flatnonzero(new_event[1:]) + 1 if len(after) > 1 else np.array([], dtype=int)
    from_prev = new_idx[~changed[new_idx - 1]] - 1 if len(new_idx) else new_idx
    src = np.union1d(idx, from_prev).astype(int)
    lagged = after.iloc[src].copy()
    nxt = ev[src + 1] if len(src) else np.array([], dtype=np.int64)
    lagged["event_timestamp"] = clock.from_epoch_us(nxt)
    lagged["known_timestamp"] = clock.from_epoch_us(np.maximum(clock.epoch_us(lagged["known_timestamp"]) if len(lagged) else nxt, nxt))
    return base.reset_index(drop=True), lagged.reset_index(drop=True)


def _late_actions(acts: pd.DataFrame | None, actions_hw_us: int, seed_session) -> pd.DataFrame | None:
    """The new action versions (written after ``actions_hw_us``) that restate rows: known after
    their ex-date's open, or of an ex-date already built (``seed_session``)."""
    if acts is None or len(acts) == 0:
        return None
    new = acts[clock.epoch_us(acts["created_timestamp"]) > actions_hw_us]
    if new.empty:
        return None
    late = clock.epoch_us(new["known_timestamp"]) > clock.epoch_us(new["event_timestamp"])
    if seed_session is not None:
        late |= new["ex_date"].to_numpy().astype("datetime64[us]") <= np.datetime64(seed_session, "us")
    return new.loc[late] if late.any() else None


def _actions_known(acts: pd.DataFrame | None, fresh: np.ndarray | None, before_us: int) -> pd.DataFrame | None:
    """The action versions a step sees: every version already built, and the new ones known
    before ``before_us``."""
    if acts is None or fresh is None:
        return acts
    keep = ~fresh | (clock.epoch_us(acts["known_timestamp"]) < before_us)
    return acts if keep.all() else acts.loc[keep].reset_index(drop=True)


def replay_symbol(family: Family, versions: pd.DataFrame, hw_created_us: int, tables: dict, settings_info, symbol: str,
                  actions_hw_us: int = NO_TIME) -> Emitted:
    """Every step of one symbol's new bar versions and newly known corporate actions (see the
    module doc). A step's edges are the times new information became known: a revised or late
    bar, or a late action (known after its ex-date's open, or one of an ex-date already built).
    Each step computes from the first session the new information touches, with the bars and
    the actions known before its next edge, and writes the rows that differ from what was
    known before it, known no earlier than the edge."""
    out = Emitted()
    outputs = family.outputs()
    want_lag = any(v + registry.LAG_SUFFIX in registry.views() for v in family.views)
    if versions is None or versions.empty:
        return out
    created = clock.epoch_us(versions["created_timestamp"])
    is_new = created > hw_created_us
    old = versions.loc[~is_new]
    seed_session = old["session"].max() if len(old) else None
    acts = tables.get("corporate_actions") if "corporate_actions" in family.inputs else None
    fresh = (clock.epoch_us(acts["created_timestamp"]) > actions_hw_us) if acts is not None and len(acts) else None
    late = _late_actions(acts, actions_hw_us, seed_session)
    new = versions.loc[is_new].sort_values(["known_timestamp", "session"], kind="stable")
    if new.empty and late is None:
        return out
    # change points: a version of a session not after every session known before it; a late action
    sess = new["session"].to_numpy().astype("datetime64[us]").astype(np.int64)
    seed = old["session"].to_numpy().astype("datetime64[us]").astype(np.int64).max() if len(old) else NO_TIME
    prev_max = np.maximum.accumulate(np.concatenate([[seed], sess]))[:-1]
    known_new = clock.epoch_us(new["known_timestamp"])
    known_all = clock.epoch_us(versions["known_timestamp"])
    points = known_new[sess <= prev_max]
    late_known = clock.epoch_us(late["known_timestamp"]) if late is not None else np.array([], dtype=np.int64)
    late_ex = late["ex_date"].to_numpy().astype("datetime64[us]") if late is not None else np.array([], dtype="datetime64[us]")
    points = np.unique(np.concatenate([points, late_known]))
    edges = [NO_TIME, *points.tolist(), np.iinfo(np.int64).max]
    for lo_k, hi_k in zip(edges[:-1], edges[1:], strict=True):
        seg = (known_new >= lo_k) & (known_new < hi_k)
        seg_acts = (late_known >= lo_k) & (late_known < hi_k)
        if not seg.any() and not seg_acts.any():
            continue
        firsts = []
        if seg.any():
            firsts.append(np.datetime64(new.loc[seg, "session"].min(), "us"))
        if seg_acts.any():
            firsts.append(late_ex[seg_acts].min())
        s0 = pd.Timestamp(min(firsts))
        # the versions known before each edge, kept in silver's order (session, known, written)
        after_state = latest_per_session(versions.loc[~is_new | (is_new & (known_all < hi_k))])
        before_state = latest_per_session(versions.loc[~is_new | (is_new & (known_all < lo_k))]) if lo_k != NO_TIME or len(old) else None
        if after_state.empty or after_state["session"].max() < s0:
            continue  # an action whose ex-date no bar reached yet: the sessions it changes are still to come
        window, start = _window(after_state, s0, family.warmup)
        t_after = dict(tables, corporate_actions=_actions_known(acts, fresh, hi_k)) if acts is not None else tables
        after = _with_prior_known(family, _run(family, window, start, t_after, settings_info, symbol), after_state, window)
        before = None
        if before_state is not None and len(before_state) and before_state["session"].max() >= s0:
            bwin = before_state[before_state["session"] >= window["session"].iloc[0]].reset_index(drop=True)
            t_before = dict(tables, corporate_actions=_actions_known(acts, fresh, lo_k)) if acts is not None else tables
            before = _run(family, bwin, start, t_before, settings_info, symbol)
        first_event = after_state.loc[after_state["session"] >= s0, "event_timestamp"].min()
        floor = None if lo_k == NO_TIME else clock.from_epoch_us(np.array([lo_k]))[0]
        base, lag = emit_changes(after, before, first_event, outputs, known_floor=floor, lag=want_lag)
        out.base.append(base)
        if lag is not None:
            out.lag.append(lag)
    return out


def whole_with_actions(family: Family, inputs: Inputs) -> pd.DataFrame | None:
    """A whole-history family's rows with corporate actions as they were known: each row
    computed with the actions known at its event time, and, at each time a late action (known
    after its ex-date's open) became known, the earlier rows it changes again, known from then."""
    acts = inputs.table("corporate_actions")
    if acts is None or len(acts) == 0 or "known_timestamp" not in acts.columns:
        return family.compute(inputs)
    kn = clock.epoch_us(acts["known_timestamp"])
    times = np.unique(kn[kn > clock.epoch_us(acts["event_timestamp"])])
    if not len(times):
        return family.compute(inputs)

    def with_known(before_us):
        t = dict(inputs.tables, corporate_actions=acts.loc[kn < before_us].reset_index(drop=True))
        return family.compute(Inputs(inputs.entity, inputs.bars, inputs.start, t, inputs.calendar, inputs.delay_minutes))

    bounds = [*times.tolist(), np.iinfo(np.int64).max]
    outputs = family.outputs()
    pieces, prev = [], None
    for j, hi in enumerate(bounds):
        rows = with_known(hi)
        if rows is None or rows.empty:
            prev = rows
            continue
        ev = clock.epoch_us(rows["event_timestamp"])
        lo = bounds[j - 1] if j else NO_TIME
        pieces.append(rows.loc[(ev >= lo) & (ev < hi)])
        if j and prev is not None and len(prev) == len(rows) and (clock.epoch_us(prev["event_timestamp"]) == ev).all():
            earlier = ev < lo
            differ = earlier & ~same_rows(rows.reset_index(drop=True), prev.reset_index(drop=True), outputs)
            if differ.any():
                restated = rows.loc[differ].copy()
                restated["known_timestamp"] = clock.from_epoch_us(np.maximum(clock.epoch_us(restated["known_timestamp"]), lo))
                pieces.append(restated)
        elif j:
            restated = rows.loc[ev < lo].copy()
            restated["known_timestamp"] = clock.from_epoch_us(np.maximum(clock.epoch_us(restated["known_timestamp"]), lo))
            pieces.append(restated)
        prev = rows
    pieces = [p for p in pieces if len(p)]
    return pd.concat(pieces, ignore_index=True) if pieces else None
