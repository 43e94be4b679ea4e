"""News family: the stocknet tweets through the real ingest, VADER sentiment, counts,
decay, novelty and abnormal attention, checked against a plain re-computation.

The reference below reads the shared csv with the csv module, puts each tweet on
its session with datetime arithmetic and a hand-written NYSE calendar (holidays
and 13:00 early closes from nyse.com), scores it with vaderSentiment directly
and loops over items; it shares no code with etl.news_files or etl.factors.news.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import shutil
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from etl.factors.news import FACTORS, OUTPUTS, compute_news, score_items
from etl.sources.base import run_ingest
from etl.storage import silver, tables
from etl.storage.watermarks import open_watermarks
from tests.conftest import STOCKNET  # the tweets of AAPL, BAC, FB and GOOG shipped in data/demo

CSV = STOCKNET / "tweets_raw_extract.csv.gz"
NY = ZoneInfo("America/New_York")
HOLIDAYS = {date(2013, 11, 28), date(2013, 12, 25), date(2014, 1, 1), date(2014, 1, 20), date(2014, 2, 17), date(2014, 4, 18),
            date(2014, 5, 26), date(2014, 7, 4), date(2014, 9, 1), date(2014, 11, 27), date(2014, 12, 25), date(2015, 1, 1),
            date(2015, 1, 19), date(2015, 2, 16), date(2015, 4, 3), date(2015, 5, 25), date(2015, 7, 3), date(2015, 9, 7),
            date(2015, 11, 26), date(2015, 12, 25), date(2016, 1, 1)}
EARLY_CLOSES = {date(2013, 11, 29), date(2013, 12, 24), date(2014, 7, 3), date(2014, 11, 28), date(2014, 12, 24),
                date(2015, 11, 27), date(2015, 12, 24)}
#: the ingested ranges: a quarter of AAPL and FB, and two AAPL windows around early closes
RANGES = [(["AAPL", "FB"], "2014-01-01", "2014-03-31"), (["AAPL"], "2014-06-16", "2014-07-11"), (["AAPL"], "2015-12-14", "2015-12-31")]
Q1 = (date(2014, 1, 2), date(2014, 3, 31))
VADER = SentimentIntensityAnalyzer()


# ------------------------------------------------------------------ the reference

def is_session(d: date) -> bool:
    return d.weekday() < 5 and d not in HOLIDAYS


def close_of(d: date) -> datetime:
    return datetime.combine(d, time(13 if d in EARLY_CLOSES else 16), tzinfo=NY)


def session_of(t: datetime) -> date:
    d = t.astimezone(NY).date()
    if is_session(d) and t < close_of(d):
        return d
    d += timedelta(days=1)
    while not is_session(d):
        d += timedelta(days=1)
    return d


def sessions_between(a: date, b: date) -> list[date]:
    out, d = [], a
    while d <= b:
        if is_session(d):
            out.append(d)
        d += timedelta(days=1)
    return out


def previous_sessions(d: date, n: int) -> list[date]:
    out, x = [], d - timedelta(days=1)
    while len(out) < n:
        if is_session(x):
            out.append(x)
        x -= timedelta(days=1)
    return out[::-1]


def raw_tweets(ticker: str, first: str, last: str) -> list[dict]:
    """The ticker's tweets posted on the UTC days first..last, one per id, by (time, id)."""
    lo, hi = date.fromisoformat(first), date.fromisoformat(last)
    seen, out = set(), []
    with gzip.open(CSV, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["ticker"] != ticker or row["tweet_id"] in seen:
                continue
            t = datetime.strptime(row["created_at_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            if lo <= t.date() <= hi:
                seen.add(row["tweet_id"])
                text = row["text"].strip()
                out.append({"id": row["tweet_id"], "t": t, "text": text, "compound": VADER.polarity_scores(text)["compound"]})
    return sorted(out, key=lambda x: (x["t"], x["id"]))


def word_set(text: str) -> set[str]:
    text = re.sub(r"https?://\S*|www\.\S+|[$@][A-Za-z_][\w.\-]*", " ", text.lower())
    return set(re.findall(r"\w+", text)) - {"rt"}


def jaccard(a: set, b: set) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def reference(tweets: list[dict], s: date) -> dict:
    """Every output of session ``s``, computed plainly from the tweets."""
    mine = [x for x in tweets if session_of(x["t"]) == s]
    n = len(mine)
    out = {"news_count_1d": float(n)}
    last5 = [*previous_sessions(s, 4), s]
    out["news_count_5d"] = float(sum(1 for x in tweets if session_of(x["t"]) in last5))
    out["news_sent_mean_1d"] = sum(x["compound"] for x in mine) / n if n else math.nan
    out["news_sent_pos_share_1d"] = sum(1 for x in mine if x["compound"] >= 0.05) / n if n else math.nan
    out["news_sent_neg_share_1d"] = sum(1 for x in mine if x["compound"] <= -0.05) / n if n else math.nan
    close = close_of(s)
    for hl in (1, 5):
        num = den = 0.0
        for x in tweets:
            age = (close - x["t"]).total_seconds() / 86400
            if 0 < age <= 30:
                w = 0.5 ** (age / hl)
                num, den = num + w * x["compound"], den + w
        out[f"news_sent_decay_hl{hl}"] = num / den if den else math.nan
        if hl == 1:
            out["news_count_decay_hl1"] = den
    novel = 0
    for i, x in enumerate(tweets):
        if session_of(x["t"]) != s:
            continue
        earlier = [y for y in tweets[:i] if x["t"] - y["t"] <= timedelta(days=5)]
        novel += not any(jaccard(word_set(x["text"]), word_set(y["text"])) >= 0.8 for y in earlier)
    out["news_novelty_1d"] = novel / n if n else math.nan
    prev = previous_sessions(s, 20)
    mean20 = sum(1 for x in tweets if session_of(x["t"]) in prev) / 20
    out["news_abnormal_count"] = n / mean20 if mean20 else math.nan
    return out


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from etl.core.config import load_settings

    settings = load_settings(tmp_path_factory.mktemp("news") / "home")
    for symbols, start, end in RANGES:
        summary = run_ingest(settings, "stocknet", "tweets", symbols, start, end, path=str(STOCKNET))
        assert not summary.failed, summary.text()
    return settings


@pytest.fixture(scope="module")
def items(home) -> pd.DataFrame:
    return silver.read(home, tables.NEWS)


@pytest.fixture(scope="module")
def aapl(items) -> pd.DataFrame:
    """AAPL's Q1 items, scored once (compute_news uses given sent_* columns)."""
    a = items[(items["symbol"] == "AAPL") & (items["published_at"] < pd.Timestamp("2014-04-01", tz="UTC"))]
    return score_items(a)


@pytest.fixture(scope="module")
def q1_sessions() -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(d) for d in sessions_between(*Q1)])


@pytest.fixture(scope="module")
def aapl_q1(aapl, q1_sessions) -> pd.DataFrame:
    return compute_news(aapl, q1_sessions)


# ------------------------------------------------------------------ the source

def test_tweets_land_as_news_items_on_their_session(home, items):
    ref = {sym: raw_tweets(sym, "2014-01-01", "2014-03-31") for sym in ("AAPL", "FB")}
    q1 = items[items["published_at"] < pd.Timestamp("2014-04-01", tz="UTC")]
    for sym in ("AAPL", "FB"):
        got = q1[q1["symbol"] == sym].set_index("item_id")
        assert sorted(got.index) == sorted(x["id"] for x in ref[sym])
        for x in ref[sym]:
            row = got.loc[x["id"]]
            assert row["published_at"] == row["event_timestamp"] == pd.Timestamp(x["t"])
            assert row["session"] == pd.Timestamp(session_of(x["t"]))
            assert row["description"].strip() == x["text"]
    assert len(q1[q1["symbol"] == "AAPL"]) == 1869 and len(q1[q1["symbol"] == "FB"]) == 1171
    assert str(items["published_at"].dtype) == str(items["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert set(items["source"]) == {"stocknet"} and set(items["publisher"]) == {"twitter"}
    assert (items["title"] == "").all() and (items["url"] == "").all() and (items["keywords"] == "").all()
    first = items.set_index("item_id").loc["418229860210057216"]   # the csv's first line
    assert first["author"] == "1938270918" and first["tickers"] == "AAPL,WYNN,GOOG,LGF"
    assert first["session"] == pd.Timestamp("2014-01-02")          # posted on New Year's Day, a holiday
    # 4 of the quarter's lines are copies of a tweet already seen (same id, time, user and text): one item each
    assert silver.read_quarantine(home, "news_items").empty
    marks = open_watermarks(home)
    try:
        assert marks.get("stocknet", "tweets", "FB") == "2014-03-31"
        assert marks.get("stocknet", "tweets", "AAPL") == "2015-12-31"
    finally:
        marks.dispose()


def test_tweet_at_the_early_close_counts_for_the_next_session(items):
    got = items.set_index("item_id")
    # 2015-12-24 closed at 13:00 New York = 18:00 UTC: a tweet at 18:00:00 is not before the close
    at_close = got.loc["680085531171143680"]
    assert at_close["published_at"] == pd.Timestamp("2015-12-24 18:00:00", tz="UTC")
    assert at_close["session"] == pd.Timestamp("2015-12-28")
    assert got.loc["680082263778791424", "session"] == pd.Timestamp("2015-12-24")   # 17:47:01 UTC, before the close
    # 2014-07-03 closed at 13:00 EDT = 17:00 UTC; July 4 was a holiday: afternoon tweets count for Monday 7 July
    late = items[(items["published_at"] >= pd.Timestamp("2014-07-03 17:00", tz="UTC")) & (items["published_at"] < pd.Timestamp("2014-07-04", tz="UTC"))]
    assert len(late) == 25 and (late["session"] == pd.Timestamp("2014-07-07")).all()


# ------------------------------------------------------------------ values

#: 13 Jan: a Monday with the weekend's tweets; 21 Jan: after the MLK holiday; 28 Jan: the morning after
#: Apple's results (27 Jan after 16:00); 10 Mar: the first close in daylight time (20:00 UTC)
CHECKED = [date(2014, 1, 13), date(2014, 1, 21), date(2014, 1, 28), date(2014, 2, 3), date(2014, 2, 18), date(2014, 3, 10), date(2014, 3, 31)]


def test_values_match_the_plain_computation(aapl_q1, q1_sessions):
    tweets = raw_tweets("AAPL", "2014-01-01", "2014-03-31")
    out = aapl_q1.set_index(q1_sessions)
    assert list(aapl_q1.columns) == ["symbol", "event_timestamp", "known_timestamp", *OUTPUTS]
    for s in CHECKED:
        row, ref = out.loc[pd.Timestamp(s)], reference(tweets, s)
        assert row["event_timestamp"] == row["known_timestamp"] == pd.Timestamp(close_of(s)) + pd.Timedelta(minutes=15)
        for name in ("news_count_1d", "news_sent_mean_1d", "news_sent_pos_share_1d", "news_sent_neg_share_1d", "news_novelty_1d"):
            assert row[name] == ref[name], (s, name)          # exact
        for name in ("news_count_5d", "news_abnormal_count"):
            if s >= date(2014, 1, 8) and (name == "news_count_5d" or s >= date(2014, 1, 31)):
                assert row[name] == ref[name], (s, name)
            else:
                assert math.isnan(row[name]), (s, name)      # the window reaches before the first session
        for name in ("news_sent_decay_hl1", "news_sent_decay_hl5", "news_count_decay_hl1"):
            if s >= date(2014, 1, 31):
                assert row[name] == pytest.approx(ref[name], rel=1e-12, abs=1e-15), (s, name)
            else:
                assert math.isnan(row[name]), (s, name)
    # the cases the sessions were picked for
    mon = [x for x in tweets if session_of(x["t"]) == date(2014, 1, 13)]
    assert {x["t"].astimezone(NY).strftime("%a") for x in mon} >= {"Fri", "Sat", "Sun", "Mon"}
    tue = [x for x in tweets if session_of(x["t"]) == date(2014, 1, 21)]
    assert any(x["t"].astimezone(NY).date() == date(2014, 1, 20) for x in tue)     # the holiday's tweets
    after = [x for x in tweets if session_of(x["t"]) == date(2014, 1, 28) and x["t"].astimezone(NY).date() == date(2014, 1, 27)]
    assert len(after) > 50 and all(x["t"].astimezone(NY).time() >= time(16) for x in after)
    assert out.loc["2014-01-28", "news_count_1d"] == 163 and out.loc["2014-01-28", "news_count_5d"] == 349
    assert out.loc["2014-03-10", "event_timestamp"] == pd.Timestamp("2014-03-10 20:15", tz="UTC")
    # a day without tweets: counts 0, means and shares NaN (never 0)
    empty = out.loc["2014-01-17"]
    assert empty["news_count_1d"] == 0 and np.isnan(empty[["news_sent_mean_1d", "news_sent_pos_share_1d", "news_novelty_1d"]].to_numpy(float)).all()


def test_early_close_session_counts_only_tweets_before_13_00(items):
    a = items[(items["symbol"] == "AAPL") & (items["published_at"] >= pd.Timestamp("2014-06-16", tz="UTC"))
              & (items["published_at"] < pd.Timestamp("2014-07-12", tz="UTC"))]
    sessions = pd.DatetimeIndex([pd.Timestamp(d) for d in sessions_between(date(2014, 6, 17), date(2014, 7, 11))])
    out = compute_news(a, sessions).set_index(sessions)
    tweets = raw_tweets("AAPL", "2014-06-16", "2014-07-11")
    for s in (date(2014, 7, 3), date(2014, 7, 7)):
        ref = reference(tweets, s)
        for name in ("news_count_1d", "news_sent_mean_1d", "news_sent_pos_share_1d", "news_sent_neg_share_1d", "news_novelty_1d"):
            assert out.loc[pd.Timestamp(s), name] == ref[name], (s, name)
    assert out.loc["2014-07-03", "event_timestamp"] == pd.Timestamp("2014-07-03 17:15", tz="UTC")
    assert {x["t"].astimezone(NY).date() for x in tweets if session_of(x["t"]) == date(2014, 7, 7)} >= {date(2014, 7, 3), date(2014, 7, 4)}


def test_declared_outputs_and_warmups_are_honest(aapl_q1):
    declared = [o.name for f in FACTORS for o in f.outputs]
    assert tuple(declared) == OUTPUTS and all(o.dtype == "float64" for f in FACTORS for o in f.outputs)
    assert {f.family for f in FACTORS} == {"news"} and {f.view for f in FACTORS} == {"news_daily"}
    assert all(str(aapl_q1[c].dtype) == "float64" for c in OUTPUTS)
    assert str(aapl_q1["event_timestamp"].dtype) == "datetime64[us, UTC]"
    # after its warm-up every count is known; before it, a window that reaches past the data is NaN
    for f in FACTORS:
        for o in f.outputs:
            values = aapl_q1[o.name]
            if "count" in o.name:
                assert values.iloc[f.warmup:].notna().all(), o.name
            first = int(np.flatnonzero(values.notna().to_numpy())[0])
            assert first <= f.warmup, (o.name, first, f.warmup)


def test_vader_scores_are_the_models_own(aapl):
    for _, row in aapl.head(50).iterrows():
        s = VADER.polarity_scores(row["description"].strip())
        assert (row["sent_compound"], row["sent_pos"], row["sent_neg"], row["sent_neu"]) == (s["compound"], s["pos"], s["neg"], s["neu"])


# ------------------------------------------------------------------ point in time

def test_no_item_published_after_the_close_is_used(aapl, aapl_q1, q1_sessions):
    # every counted item was published before its session's close, and the row is known after that close
    for s, row in zip(q1_sessions, aapl_q1.itertuples(), strict=True):
        counted = aapl[aapl["session"] == s]
        assert len(counted) == row.news_count_1d
        close = pd.Timestamp(close_of(s.date()))
        assert (counted["published_at"] < close).all() and (counted["event_timestamp"] < row.event_timestamp).all()
    # a row never changes when every item published at or after its close is removed
    for k in range(20, len(q1_sessions), 6):
        s = q1_sessions[k]
        before = aapl[aapl["published_at"] < pd.Timestamp(close_of(s.date()))]
        cut = compute_news(before, q1_sessions[: k + 1], coverage_start=q1_sessions[0])
        pd.testing.assert_series_equal(cut.iloc[-1], aapl_q1.iloc[k], check_names=False)


def test_leakage_shifting_availability_one_session_moves_outputs_one_session(aapl, aapl_q1, q1_sessions):
    """Each tweet is made available only at its session's close (so it counts for the next session)."""
    shifted = aapl.copy()
    shifted["published_at"] = [pd.Timestamp(close_of(s.date())) for s in shifted["session"]]
    moved = compute_news(shifted, q1_sessions)
    bucketed = ["news_count_1d", "news_count_5d", "news_sent_mean_1d", "news_sent_pos_share_1d", "news_sent_neg_share_1d",
                "news_abnormal_count"]
    # the session-bucketed outputs at t are the original ones at t-1 (once both windows are inside the data)
    start = max(f.warmup for f in FACTORS) + 1
    pd.testing.assert_frame_equal(moved[bucketed].iloc[start:].reset_index(drop=True),
                                  aapl_q1[bucketed].iloc[start - 1: -1].reset_index(drop=True))
    # the first session now counts nothing that was published before the first close
    assert moved["news_count_1d"].iloc[0] == 0 and aapl_q1["news_count_1d"].iloc[0] == 36
    # decayed and novelty outputs at t use nothing from the original session t: dropping those items changes nothing
    for k in (25, 40, 55):
        s = q1_sessions[k]
        kept = shifted[aapl["session"] < s]
        cut = compute_news(kept, q1_sessions[: k + 1], coverage_start=q1_sessions[0])
        pd.testing.assert_series_equal(cut.iloc[-1], moved.iloc[k], check_names=False)
        assert not aapl_q1.iloc[k][list(OUTPUTS)].equals(moved.iloc[k][list(OUTPUTS)])


# ------------------------------------------------------------------ quarantine

def test_malformed_rows_are_quarantined_with_reasons(tmp_home, tmp_path):
    with gzip.open(CSV, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(21)]          # the header and 20 AAPL tweets of 2014-01-01
    head, good = lines[0], lines[1:]
    fields = next(csv.reader([good[0]]))

    def line(**change) -> str:
        row = dict(zip(head.strip().split(","), fields, strict=True))
        row.update(change)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(list(row.values()))
        return buf.getvalue()

    bad = [
        line(created_at_utc="2014-01-01T25:61:00Z", tweet_id="1"),       # line 22
        line(created_at_utc="2014-01-01 12:00:00", tweet_id="2"),        # 23
        line(text="   ", tweet_id="3"),                                  # 24
        line(tweet_id=""),                                               # 25
        line(tweet_id="12ab"),                                           # 26
        "AAPL,2014-01-01T05:00:00Z,4,5\n",                              # 27
        line(tweet_id="7", text="first words"),                          # 28
        line(tweet_id="7", text="other words"),                          # 29
        line(created_at_utc="not a time", file_date="2015-06-01", tweet_id="8"),  # 30: its file date is out of range
        good[0].replace(",2,0,en,", ",3,1,en,"),                         # 31: the first tweet again, new follower count
        "FB,oops,9,1,1,0,en,x,2014-01-01\n",                             # 32: another ticker's job
    ]
    folder = tmp_path / "stocknet"
    folder.mkdir()
    with gzip.open(folder / "tweets_raw_extract.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write(head + "".join(good) + "".join(bad))
    shutil.copyfile(STOCKNET / "SOURCE.txt", folder / "SOURCE.txt")
    summary = run_ingest(tmp_home, "stocknet", "tweets", ["AAPL"], "2014-01-01", "2014-01-31", path=str(folder))
    assert not summary.failed
    q = silver.read_quarantine(tmp_home, "news_items").set_index("source_row")
    assert dict(q["reason"]) == {
        22: "unparseable created_at_utc '2014-01-01T25:61:00Z'",
        23: "created_at_utc '2014-01-01 12:00:00' has no time zone; the warehouse never guesses one",
        24: "empty text",
        25: "missing tweet_id",
        26: "tweet_id '12ab' is not a numeric id",
        27: "expected 9 fields like the header, got 4",
        28: "tweet_id 7 appears more than once with different content; every copy is quarantined",
        29: "tweet_id 7 appears more than once with different content; every copy is quarantined",
    }
    assert set(q["symbol"]) == {"AAPL"} and q.loc[27, "raw"] == "AAPL,2014-01-01T05:00:00Z,4,5"
    stored = silver.read(tmp_home, tables.NEWS)
    in_january = [f for f in csv.reader(good) if f[1] >= "2014-01-01"]   # line 9 was posted on 2013-12-31
    assert len(in_january) == 19 and sorted(stored["item_id"]) == sorted(f[2] for f in in_january)
    assert summary.rows_fetched == 19 + 9 and summary.rows_quarantined == 8 and summary.rows_written == len(stored) == 19
