"""The point-in-time join, exact and bitemporal, in numpy.

For each entity row (key, t) and a source of rows (key, event, created):

* eligible rows have ``event <= t`` and, when bitemporal, ``created <= K``
  where K is the knowledge time (t itself, or one explicit ``as_of``);
* the winner is the eligible row with the greatest ``event``; among equal
  events the greatest ``created``; among rows equal in both, the one that
  comes LAST in source order (the later-written row of a file, the later file
  of a folder in name order) -- deterministic for a given source;
* the winner must lie within the TTL: ``event >= t - ttl``, else no value.

How (K = t): a row becomes visible at ``vf = max(event, created)``. Sort the
source by (key, vf) and carry, as a running maximum, the rank of the best row
seen so far in (key, event, created, position) order; the answer for (key, t)
is that running best at the last source row with ``vf <= t``, found by one
binary search. Keys are sorted first in both orders, so one running maximum
over the whole array never crosses keys. O((n + m) log n), no Python loops.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NAT = np.iinfo(np.int64).min


def factorize_keys(entity_keys: list[np.ndarray], source_keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for entity and source keys (one or more join columns)."""
    n_e = len(entity_keys[0])
    if len(entity_keys) == 1:
        both = pd.concat([pd.Series(entity_keys[0]), pd.Series(source_keys[0])], ignore_index=True)
        codes, _ = pd.factorize(both, sort=False)
    else:
        frame = pd.DataFrame({i: np.concatenate([e, s]) for i, (e, s) in enumerate(zip(entity_keys, source_keys, strict=True))})
        codes = frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()
    return codes[:n_e].astype(np.int64), codes[n_e:].astype(np.int64)


def pit_indices(
    entity_codes: np.ndarray,
    entity_ts: np.ndarray,
    source_codes: np.ndarray,
    source_event: np.ndarray,
    source_created: np.ndarray | None,
    *,
    ttl: int | None,
    bitemporal: bool = True,
    as_of: int | None = None,
) -> np.ndarray:
    """Index of the winning source row for every entity row, -1 where none.

    All times are int64 (any unit, the same for all); ``ttl`` in that unit or
    None for no limit; ``source_created`` None means rows have no created
    time (ties are then broken by source order alone).
    """
    m = len(entity_codes)
    out = np.full(m, -1, dtype=np.int64)
    n = len(source_codes)
    if n == 0 or m == 0:
        return out
    created = source_created if source_created is not None else np.zeros(n, dtype=np.int64)
    position = np.arange(n, dtype=np.int64)

    eligible = np.ones(n, dtype=bool)
    if bitemporal and as_of is not None:
        eligible &= created <= as_of  # a fixed knowledge time: filter, then a plain as-of on event
        visible = source_event
    elif bitemporal:
        visible = np.maximum(source_event, created)
    else:
        visible = source_event
    if not eligible.all():
        keep = np.flatnonzero(eligible)
        source_codes, source_event, created, visible, position = (
            source_codes[keep], source_event[keep], created[keep], visible[keep], position[keep],
        )
        n = len(keep)
        if n == 0:
            return out

    by_best = np.lexsort((position, created, source_event, source_codes))
    rank = np.empty(n, dtype=np.int64)
    rank[by_best] = np.arange(n, dtype=np.int64)
    by_visible = np.lexsort((visible, source_codes))
    running_best = np.maximum.accumulate(rank[by_visible])
    s_codes = source_codes[by_visible]
    s_vis = visible[by_visible]

    # one combined sort key: code * span + (time - base), in chunks of codes if it would overflow
    base = min(int(s_vis.min()), int(entity_ts.min()))
    span = max(int(s_vis.max()), int(entity_ts.max())) - base + 2
    max_code = int(max(s_codes.max(), entity_codes.max())) + 1
    codes_per_chunk = max(1, (2**62) // span)
    for lo in range(0, max_code, codes_per_chunk):
        hi = lo + codes_per_chunk
        e_sel = np.flatnonzero((entity_codes >= lo) & (entity_codes < hi))
        if len(e_sel) == 0:
            continue
        s_lo, s_hi = np.searchsorted(s_codes, [lo, hi], side="left")
        if s_lo == s_hi:
            continue
        skey = (s_codes[s_lo:s_hi] - lo) * span + (s_vis[s_lo:s_hi] - base)
        ekey = (entity_codes[e_sel] - lo) * span + (entity_ts[e_sel] - base)
        pos = np.searchsorted(skey, ekey, side="right") - 1
        hit = pos >= 0
        pos_c = np.where(hit, pos, 0) + s_lo
        hit &= s_codes[pos_c] == entity_codes[e_sel]
        winner = by_best[running_best[pos_c]]
        if ttl is not None:
            hit &= source_event[winner] >= entity_ts[e_sel] - ttl
        out[e_sel[hit]] = position[winner[hit]]
    return out


def latest_indices(source_codes: np.ndarray, source_event: np.ndarray, *tiebreaks: np.ndarray | None) -> np.ndarray:
    """Index of the newest row per key: greatest event, then the greatest of each tie-break
    column in turn (e.g. known, then created time; None is skipped), then the row that comes
    last in source order. Sorted by key."""
    n = len(source_codes)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    ties = [t for t in tiebreaks if t is not None]
    order = np.lexsort((np.arange(n), *reversed(ties), source_event, source_codes))
    last_of_key = np.append(source_codes[order][1:] != source_codes[order][:-1], True)
    return order[last_of_key]


def winners_at(codes: np.ndarray, event: np.ndarray, known: np.ndarray, created: np.ndarray | None, now: int) -> np.ndarray:
    """Index of the winning row per key as known at ``now`` (the online store's latest value):
    among rows with ``event <= now`` and ``known <= now``, the greatest event, then known, then
    created time, then the row that comes last. The same rule as :func:`pit_indices` for one
    entity row per key at ``now``, bitemporal, without a TTL."""
    eligible = np.flatnonzero((event <= now) & (known <= now))
    if len(eligible) == 0:
        return eligible
    return eligible[latest_indices(codes[eligible], event[eligible], known[eligible],
                                   None if created is None else created[eligible])]
