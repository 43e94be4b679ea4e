"""Point-in-time labels (research.labels) and purged, embargoed splits (research.splits).

Labels: exact values on literal frames (compounding, the symbol's end, a missing return, a
value carried forward after the last bar, the known time, masking), and on the demo
warehouse the label queried before its horizon ended is missing, after it the compounded
``ret_1d``. Splits: exact folds on literal intervals, and hypothesis properties -- no
training interval overlaps the test block, the embargo holds, and nothing else is dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.errors import ArgumentError, MissingColumnError, NaiveTimestampError
from research.labels import forward_returns, history_labels, mask_unknown
from research.splits import purged_kfold, walk_forward_splits

T = pd.to_datetime(["2021-01-04 21:15", "2021-01-05 21:15", "2021-01-06 21:15", "2021-01-07 21:15"],
                   utc=True).astype("datetime64[us, UTC]")


def literal() -> pd.DataFrame:
    """Two symbols, four sessions; B has no return on its second session. Shuffled, own index."""
    frame = pd.DataFrame(
        {
            "symbol": ["A"] * 4 + ["B"] * 4,
            "decision_time": list(T) * 2,
            "ret_1d": [0.10, 0.20, -0.10, 0.05, 0.01, np.nan, 0.02, 0.03],
        },
        index=list("abcdefgh"),
    )
    return frame.loc[["h", "c", "b", "g", "a", "e", "d", "f"]]


# ------------------------------------------------------------------ forward_returns
def test_forward_returns_compound_the_next_sessions_and_say_when_known():
    frame = literal()
    labels = forward_returns(frame, [1, 2])
    assert list(labels.columns) == ["fwd_ret_1", "fwd_known_1", "fwd_ret_2", "fwd_known_2"]
    assert list(labels.index) == list(frame.index)  # aligned to the frame's rows, in its order
    by_row = labels.sort_index()
    nan = np.nan
    # A: 1.2 - 1, 0.9 - 1, 1.05 - 1, end;  (1.2 * 0.9) - 1, (0.9 * 1.05) - 1
    assert by_row["fwd_ret_1"].tolist() == pytest.approx([0.2, -0.1, 0.05, nan, nan, 0.02, 0.03, nan], nan_ok=True)
    assert by_row["fwd_ret_2"].tolist() == pytest.approx(
        [1.2 * 0.9 - 1, 0.9 * 1.05 - 1, nan, nan, nan, 1.02 * 1.03 - 1, nan, nan], nan_ok=True)
    assert by_row.loc["a", "fwd_ret_2"] == 1.2 * 0.9 - 1  # exactly prod(1 + r) - 1, in order
    assert by_row["fwd_known_1"].tolist() == [T[1], T[2], T[3], pd.NaT, pd.NaT, T[2], T[3], pd.NaT]
    assert by_row["fwd_known_2"].tolist() == [T[2], T[3], pd.NaT, pd.NaT, pd.NaT, T[3], pd.NaT, pd.NaT]
    assert labels["fwd_known_1"].dtype == frame["decision_time"].dtype


def test_a_value_carried_forward_after_the_last_bar_is_not_a_return():
    """UW's last bar is on 07-16; the history repeats its values within the view's TTL. The
    repeated session (session_date) has no return, so no label compounds it."""
    frame = pd.DataFrame({
        "symbol": ["UW"] * 4,
        "decision_time": list(T),
        "ret_1d": [0.01, 0.046, 0.046, 0.046],
        "session_date": ["1998-07-15", "1998-07-16", "1998-07-16", "1998-07-16"],
    })
    labels = forward_returns(frame, [1, 2])
    assert labels["fwd_ret_1"].tolist() == pytest.approx([0.046, np.nan, np.nan, np.nan], nan_ok=True)
    assert labels["fwd_ret_2"].isna().all()
    assert labels["fwd_known_1"].tolist() == [T[1], pd.NaT, pd.NaT, pd.NaT]
    # without the session column the carried values would compound: the rule needs it
    assert forward_returns(frame.drop(columns="session_date"), [2])["fwd_ret_2"].iloc[0] == pytest.approx(1.046**2 - 1)


def test_mask_unknown_keeps_only_labels_known_at_the_time():
    labels = forward_returns(literal(), [1, 2]).sort_index()
    at = T[2]
    masked = mask_unknown(labels, at)
    nan = np.nan
    # known at T[2]: A's 1-session labels of T[0] and T[1] (known at T[1], T[2]) and B's of T[1] (known T[2])
    assert masked["fwd_ret_1"].tolist() == pytest.approx([0.2, -0.1, nan, nan, nan, 0.02, nan, nan], nan_ok=True)
    assert masked["fwd_ret_2"].tolist() == pytest.approx([1.2 * 0.9 - 1] + [nan] * 7, nan_ok=True)
    assert masked["fwd_known_2"].equals(labels["fwd_known_2"])  # when they will be known stays
    assert mask_unknown(labels, T[3])["fwd_ret_1"].equals(labels["fwd_ret_1"])
    with pytest.raises(NaiveTimestampError):
        mask_unknown(labels, pd.Timestamp("2021-01-06 21:15"))


def test_forward_returns_refuse_what_they_cannot_label():
    frame = literal()
    with pytest.raises(MissingColumnError, match="ret_1d"):
        forward_returns(frame.drop(columns="ret_1d"), [1])
    with pytest.raises(ArgumentError, match="one row per"):
        forward_returns(pd.concat([frame, frame.iloc[:1]]), [1])
    with pytest.raises(ArgumentError, match="positive"):
        forward_returns(frame, [0])
    with pytest.raises(ArgumentError, match="repeat"):
        forward_returns(frame, [2, 2])
    with pytest.raises(NaiveTimestampError):
        forward_returns(frame.assign(decision_time=frame["decision_time"].dt.tz_localize(None)), [1])


# ------------------------------------------------------------------ splits: literal folds
def _rows(times: list[int], per: int = 2) -> np.ndarray:
    return np.repeat(np.asarray(times), per)


def test_purged_kfold_on_literal_intervals():
    start = _rows([0, 1, 2, 3, 4, 5])            # two symbols per decision time
    folds = list(purged_kfold(start, start + 1, 3, embargo=1))
    # block 1 (times 0, 1): span (0, 2]; the rows of time 2 are embargoed
    assert folds[0][0].tolist() == [6, 7, 8, 9, 10, 11] and folds[0][1].tolist() == [0, 1, 2, 3]
    # block 2 (times 2, 3): span (2, 4]; time 1 ends at 2 (known at the test's start): kept; time 4 embargoed
    assert folds[1][0].tolist() == [0, 1, 2, 3, 10, 11] and folds[1][1].tolist() == [4, 5, 6, 7]
    assert folds[2][0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7] and folds[2][1].tolist() == [8, 9, 10, 11]
    # labels over two sessions: block 2's span is (2, 5]; times 1 and 4 overlap it, time 5 is embargoed
    two = list(purged_kfold(start, start + 2, 3, embargo=1))
    assert two[1][0].tolist() == [0, 1]


def test_walk_forward_splits_on_literal_intervals():
    start = _rows([0, 1, 2, 3, 4, 5])
    folds = list(walk_forward_splits(start, start + 1, 2))
    assert [(tr.tolist(), te.tolist()) for tr, te in folds] == [
        ([0, 1, 2, 3], [4, 5, 6, 7]),                # T = 2: labels of times 0 and 1 ended by 2
        ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11]),  # T = 4
    ]
    embargoed = list(walk_forward_splits(start, start + 1, 2, embargo=1))
    assert [tr.tolist() for tr, _ in embargoed] == [[0, 1], [0, 1, 2, 3, 4, 5]]  # ended by times 1 and 3


def test_splits_on_times_with_a_duration_embargo():
    t = pd.date_range("2021-01-04 21:15", periods=6, freq="D", tz="UTC")
    start = pd.Series(np.repeat(t, 2))
    end = start + pd.Timedelta(days=1)
    folds = list(purged_kfold(start, end, 3, embargo=pd.Timedelta(hours=12)))
    assert folds[0][0].tolist() == [6, 7, 8, 9, 10, 11]      # the rows of day 2 start within 12 h of the span's end
    assert folds[1][0].tolist() == [0, 1, 2, 3, 10, 11]
    with pytest.raises(ArgumentError, match="Timedelta"):
        list(purged_kfold(_rows([0, 1, 2]), _rows([1, 2, 3]), 2, embargo=pd.Timedelta(days=1)))


def test_splits_refuse_bad_arguments():
    start = _rows([0, 1, 2])
    with pytest.raises(ArgumentError, match="ends before"):
        list(purged_kfold(start, start - 1, 2))
    with pytest.raises(ArgumentError, match="n_splits"):
        list(purged_kfold(start, start + 1, 4))
    with pytest.raises(ArgumentError, match="embargo"):
        list(purged_kfold(start, start + 1, 2, embargo=-1))
    with pytest.raises(ArgumentError, match="missing"):
        list(walk_forward_splits(start, np.where(start == 1, np.nan, start + 1.0), 1))


# ------------------------------------------------------------------ splits: properties
@st.composite
def intervals(draw):
    n = draw(st.integers(2, 40))
    start = np.array(draw(st.lists(st.integers(0, 30), min_size=n, max_size=n)))
    length = np.array(draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)))
    n_times = len(np.unique(start))
    return start, start + length, n_times


@settings(max_examples=100, deadline=None)
@given(data=intervals(), n_splits=st.integers(2, 6), embargo=st.integers(0, 4))
def test_purged_kfold_never_trains_on_an_interval_overlapping_the_test(data, n_splits, embargo):
    start, end, n_times = data
    if n_splits > n_times:
        with pytest.raises(ArgumentError):
            list(purged_kfold(start, end, n_splits, embargo))
        return
    folds = list(purged_kfold(start, end, n_splits, embargo))
    tested = np.sort(np.concatenate([te for _, te in folds]))
    assert tested.tolist() == list(range(len(start)))  # every row tested exactly once
    uniq = np.unique(start)
    for train, test in folds:
        assert not set(train) & set(test)
        span_start, span_end = start[test].min(), end[test].max()
        # no training interval (s, e] overlaps the test span, hence none overlaps a test interval
        assert not ((start[train] < span_end) & (end[train] > span_start)).any()
        s_tr, e_tr, s_te, e_te = start[train][:, None], end[train][:, None], start[test][None, :], end[test][None, :]
        assert not ((s_tr < e_te) & (s_te < e_tr)).any()
        # the embargo: no training row among the first `embargo` decision times from the span's end
        embargoed = uniq[uniq >= span_end][:embargo]
        assert not np.isin(start[train], embargoed).any()
        # and nothing else is dropped
        free = ~np.isin(np.arange(len(start)), test) & ~((start < span_end) & (end > span_start)) \
            & ~np.isin(start, embargoed)
        assert np.flatnonzero(free).tolist() == train.tolist()


@settings(max_examples=100, deadline=None)
@given(data=intervals(), n_splits=st.integers(1, 5), embargo=st.integers(0, 4))
def test_walk_forward_trains_only_on_labels_ended_before_the_test(data, n_splits, embargo):
    start, end, n_times = data
    if n_splits > n_times - 1:
        with pytest.raises(ArgumentError):
            list(walk_forward_splits(start, end, n_splits, embargo=embargo))
        return
    uniq = np.unique(start)
    for train, test in walk_forward_splits(start, end, n_splits, embargo=embargo):
        first = start[test].min()
        p = int(np.searchsorted(uniq, first))
        assert p - embargo >= 0
        cutoff = uniq[p - embargo]
        assert (end[train] <= cutoff).all() and (start[train] < first).all()
        assert not ((start[train][:, None] < end[test][None, :]) & (start[test][None, :] < end[train][:, None])).any()
        assert train.tolist() == np.flatnonzero((start < first) & (end <= cutoff)).tolist()


# ------------------------------------------------------------------ the demo warehouse
def test_history_labels_are_missing_until_their_horizon_ends(client):
    symbols = ["AAPL", "IBM"]
    labels = history_labels(client, symbols, "2021-03-01", "2021-03-10", [1, 5])
    assert sorted(labels["symbol"].unique()) == symbols
    assert labels["decision_time"].max() == pd.Timestamp("2021-03-10 21:15", tz="UTC")  # the extension is cut off
    row = labels[(labels["symbol"] == "AAPL") & (labels["decision_time"] == pd.Timestamp("2021-03-01 21:15", tz="UTC"))]
    known = row["fwd_known_5"].iloc[0]
    assert known == pd.Timestamp("2021-03-08 21:15", tz="UTC")  # five sessions later, at its availability time

    hist = client.history(["AAPL"], ["technicals:ret_1d"], start="2021-03-02", end="2021-03-08")
    growth = 1.0
    for r in hist["ret_1d"]:
        growth *= 1.0 + r
    assert row["fwd_ret_5"].iloc[0] == growth - 1.0

    before = history_labels(client, symbols, "2021-03-01", "2021-03-10", [5], as_of=known - pd.Timedelta(minutes=1))
    after = history_labels(client, symbols, "2021-03-01", "2021-03-10", [5], as_of=known)
    pick = (before["symbol"] == "AAPL") & (before["decision_time"] == row["decision_time"].iloc[0])
    assert np.isnan(before.loc[pick, "fwd_ret_5"].iloc[0])
    assert after.loc[pick, "fwd_ret_5"].iloc[0] == growth - 1.0
    # at that time, no label anywhere is known after it
    assert (after["fwd_ret_5"].isna() | (after["fwd_known_5"] <= known)).all()
    assert after["fwd_ret_5"].notna().sum() == 2  # AAPL's and IBM's of 03-01


def test_history_labels_of_a_delisted_symbol_stop_at_its_last_bar(client):
    """UW's last bar is 1998-07-16; alpha.history carries it forward within the TTL, and the
    labels do not compound the carried value."""
    labels = history_labels(client, ["UW"], "1998-07-14", "1998-07-17", [1, 2]).set_index("decision_time")
    day = lambda d: pd.Timestamp(f"1998-07-{d} 20:15", tz="UTC")  # noqa: E731 (EDT close + 15 min)
    hist = client.history(["UW"], ["technicals:ret_1d"], start="1998-07-15", end="1998-07-16")
    r15, r16 = hist["ret_1d"].tolist()
    assert labels.loc[day(14), "fwd_ret_2"] == (1 + r15) * (1 + r16) - 1
    assert labels.loc[day(15), "fwd_ret_1"] == (1 + r16) - 1
    assert labels.loc[day(16), ["fwd_ret_1", "fwd_ret_2"]].isna().all()
    assert labels.loc[day(17), ["fwd_ret_1", "fwd_ret_2"]].isna().all()


def test_history_labels_refuse_a_naive_as_of(client):
    with pytest.raises(NaiveTimestampError):
        history_labels(client, ["AAPL"], "2021-03-01", "2021-03-10", [5], as_of=pd.Timestamp("2021-03-05"))
