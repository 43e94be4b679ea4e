"""The point-in-time engine against a brute-force reference (hypothesis):
random panels with ties, duplicate entity rows, TTL edges, late-written
revisions, keys missing from the source and empty sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.core.pit import factorize_keys, latest_indices, pit_indices

KEYS = ["A", "B", "C"]

source_rows = st.lists(
    st.tuples(st.sampled_from(KEYS), st.integers(0, 20), st.integers(-3, 12)),  # key, event, created - event
    max_size=40,
)
entity_rows = st.lists(st.tuples(st.sampled_from(KEYS + ["Z"]), st.integers(0, 30)), min_size=1, max_size=40)
ttls = st.one_of(st.none(), st.integers(0, 8))


def reference(entities, source, ttl, bitemporal, as_of):
    out = []
    for key, t in entities:
        known = as_of if as_of is not None else t
        cands = [
            (event, created, pos)
            for pos, (k, event, created) in enumerate(source)
            if k == key and event <= t and (not bitemporal or created <= known)
        ]
        if not cands:
            out.append(-1)
            continue
        event, created, pos = max(cands)
        out.append(pos if ttl is None or event >= t - ttl else -1)
    return out


def run(entities, source, ttl, bitemporal, as_of=None):
    e_codes, s_codes = factorize_keys([np.array([k for k, _ in entities], dtype=object)], [np.array([k for k, _, _ in source], dtype=object)])
    return pit_indices(
        e_codes,
        np.array([t for _, t in entities], dtype=np.int64),
        s_codes,
        np.array([e for _, e, _ in source], dtype=np.int64),
        np.array([c for _, _, c in source], dtype=np.int64),
        ttl=ttl,
        bitemporal=bitemporal,
        as_of=as_of,
    ).tolist()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source_rows, entity_rows, ttls, st.booleans())
def test_engine_equals_brute_force(raw_source, entities, ttl, bitemporal):
    source = [(k, e, e + d) for k, e, d in raw_source]
    assert run(entities, source, ttl, bitemporal) == reference(entities, source, ttl, bitemporal, None)


@settings(max_examples=200, deadline=None)
@given(source_rows, entity_rows, ttls, st.integers(0, 35))
def test_engine_with_a_fixed_knowledge_time(raw_source, entities, ttl, as_of):
    source = [(k, e, e + d) for k, e, d in raw_source]
    assert run(entities, source, ttl, True, as_of) == reference(entities, source, ttl, True, as_of)


def test_ties_go_to_the_greatest_created_then_the_last_row():
    source = [("A", 5, 6), ("A", 5, 9), ("A", 5, 9), ("A", 4, 20)]
    # at t=10 (bitemporal): rows 0-2 visible; greatest created 9 twice -> the later row (2)
    assert run([("A", 10)], source, None, True) == [2]
    # at t=7 only row 0 is known yet
    assert run([("A", 7)], source, None, True) == [0]
    # plain semantics ignore created times for visibility
    assert run([("A", 5)], source, None, False) == [2]


def test_late_written_rows_are_invisible_until_written():
    source = [("A", 1, 1), ("A", 2, 30)]  # the second row was written late
    assert run([("A", 2), ("A", 29), ("A", 30)], source, None, True) == [0, 0, 1]
    assert run([("A", 2)], source, None, False) == [1]


def test_ttl_edge_is_inclusive():
    source = [("A", 10, 10)]
    assert run([("A", 15), ("A", 16)], source, 5, True) == [0, -1]


def test_empty_source_and_unknown_keys():
    assert run([("A", 3), ("Z", 3)], [], None, True) == [-1, -1]
    assert run([("Z", 3)], [("A", 1, 1)], None, True) == [-1]


def test_huge_time_range_does_not_overflow():
    big = np.int64(4_000_000_000_000_000)  # year ~2096 in microseconds
    source = [(k, int(big) - i, int(big) - i) for i, k in enumerate(KEYS * 3000)]
    entities = [(k, int(big)) for k in KEYS] + [("A", 0)]
    assert run(entities, source, None, True) == reference(entities, source, None, True, None)


def test_latest_indices_pick_newest_per_key():
    codes = np.array([0, 0, 1, 1, 0])
    event = np.array([5, 7, 3, 3, 7])
    created = np.array([1, 1, 1, 2, 1])
    assert sorted(latest_indices(codes, event, created).tolist()) == [3, 4]


def test_multi_column_keys():
    e, s = factorize_keys(
        [np.array(["A", "A"], dtype=object), np.array([1, 2])],
        [np.array(["A", "A", "B"], dtype=object), np.array([2, 1, 1])],
    )
    assert e[0] == s[1] and e[1] == s[0] and s[2] not in e
    assert isinstance(pd.unique(s), np.ndarray)
