"""News factors: per-item sentiment, counts, time-decayed sentiment, novelty.

Pure: frames in, frames out (one symbol's ``news_items`` in, one row per
session of view ``news_daily`` out). VADER sentiment, the point-in-time
window, every output and the coverage rule are in docs/factors.md (News).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR
from etl.core.errors import FactorInputError
from etl.factors.spec import Factor, Output

VIEW = "news_daily"
FAMILY = "news"
SENT_COLUMNS = ("sent_compound", "sent_pos", "sent_neg", "sent_neu")
POS_THRESHOLD = 0.05
NEG_THRESHOLD = -0.05
HALF_LIVES = (1.0, 5.0)
MAX_AGE_DAYS = 30
COUNT_SESSIONS = 5
ABNORMAL_SESSIONS = 20
NOVELTY_DAYS = 5
NOVELTY_JACCARD = 0.8
DAY_NS = 86_400 * 10**9
_CALENDAR_LOOKBACK = pd.Timedelta(days=70)   # > 30 days and > 21 sessions before the first session
_NOISE = re.compile(r"https?://\S*|www\.\S+|[$@][A-Za-z_][\w.\-]*")
_WORD = re.compile(r"\w+")
_AVAILABILITY = "session close + bar delay; counts items published before the close (after the previous close)"
_INPUTS = ("news_items.published_at", "news_items.title", "news_items.description", "news_items.item_id")


FACTORS: tuple[Factor, ...] = (
    Factor(
        name="news_count",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("news_count_1d", "float64", "news items counted for the session (published after the previous close, before this close)"),
            Output("news_count_5d", "float64", "news items counted for the last 5 sessions"),
        ),
        inputs=_INPUTS[:1],
        warmup=COUNT_SESSIONS - 1,
        availability=_AVAILABILITY,
        description="How many news items (tweets until a news vendor is configured) the symbol drew.",
        params=(("sessions", (1, COUNT_SESSIONS)),),
    ),
    Factor(
        name="news_sentiment",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("news_sent_mean_1d", "float64", "mean VADER compound score of the session's items (NaN without items)"),
            Output("news_sent_pos_share_1d", "float64", "share of the session's items with VADER compound >= 0.05"),
            Output("news_sent_neg_share_1d", "float64", "share of the session's items with VADER compound <= -0.05"),
        ),
        inputs=_INPUTS[:3],
        warmup=0,
        availability=_AVAILABILITY,
        description="Same-session news sentiment (VADER, Hutto & Gilbert 2014).",
        params=(("model", "vaderSentiment==3.3.2"), ("pos_threshold", POS_THRESHOLD), ("neg_threshold", NEG_THRESHOLD)),
    ),
    Factor(
        name="news_decay",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("news_sent_decay_hl1", "float64", "VADER compound of items up to 30 days old, weighted 0.5**(age days / 1)"),
            Output("news_sent_decay_hl5", "float64", "VADER compound of items up to 30 days old, weighted 0.5**(age days / 5)"),
            Output("news_count_decay_hl1", "float64", "items up to 30 days old, each counted 0.5**(age days / 1)"),
        ),
        inputs=_INPUTS[:3],
        warmup=22,   # 30 days before a close always lie within the 22 previous sessions' windows (DST and early closes included)
        availability=_AVAILABILITY,
        description="Exponentially time-decayed news sentiment and attention, age measured to the session close.",
        params=(("half_lives_days", HALF_LIVES), ("max_age_days", MAX_AGE_DAYS)),
    ),
    Factor(
        name="news_novelty",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("news_novelty_1d", "float64", "share of the session's items that are no near duplicate (word Jaccard >= 0.8) of an item of the last 5 days"),
        ),
        inputs=_INPUTS,
        warmup=5,    # 5 days before the previous close lie within the 5 sessions before it
        availability=_AVAILABILITY,
        description="How much of the session's news is new rather than repeated (retweets, copies).",
        params=(("window_days", NOVELTY_DAYS), ("jaccard", NOVELTY_JACCARD)),
    ),
    Factor(
        name="news_abnormal",
        family=FAMILY,
        view=VIEW,
        outputs=(
            Output("news_abnormal_count", "float64", "news_count_1d over the mean daily count of the 20 previous sessions"),
        ),
        inputs=_INPUTS[:1],
        warmup=ABNORMAL_SESSIONS,
        availability=_AVAILABILITY,
        description="Abnormal news attention relative to the symbol's recent normal.",
        params=(("sessions", ABNORMAL_SESSIONS),),
    ),
)
OUTPUTS: tuple[str, ...] = tuple(o.name for f in FACTORS for o in f.outputs)


# ------------------------------------------------------------------ per item

@lru_cache(maxsize=1)
def _vader():
    """The VADER model (its lexicon read once per process; read-only afterwards)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def item_text(items: pd.DataFrame) -> pd.Series:
    """Title and description joined by a space (either may be missing or empty)."""
    parts = [items[c].fillna("").astype(str).str.strip() if c in items.columns else pd.Series("", index=items.index)
             for c in ("title", "description")]
    return (parts[0] + " " + parts[1]).str.strip()


def score_items(items: pd.DataFrame, analyzer=None) -> pd.DataFrame:
    """``items`` with VADER's ``sent_compound``, ``sent_pos``, ``sent_neg`` and ``sent_neu`` per item."""
    model = analyzer or _vader()
    scores = [model.polarity_scores(t) for t in item_text(items)]
    out = items.copy()
    for col, key in zip(SENT_COLUMNS, ("compound", "pos", "neg", "neu"), strict=True):
        out[col] = np.array([s[key] for s in scores], dtype="float64")
    return out


def words(text: str) -> frozenset[str]:
    """The word set novelty compares: lower case, no URLs, cashtags, mentions or ``rt``."""
    return frozenset(_WORD.findall(_NOISE.sub(" ", text.lower()))) - {"rt"}


def near_duplicate(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return not a and not b
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    if len(small) / len(large) < NOVELTY_JACCARD:   # Jaccard <= |small| / |large|: cannot reach the bar
        return False
    inter = len(small & large)
    return inter / (len(a) + len(b) - inter) >= NOVELTY_JACCARD


def _novel(published_ns: np.ndarray, tokens: list[frozenset[str]], targets: np.ndarray) -> np.ndarray:
    """For each item position in ``targets`` (items sorted by time, then id): True when no
    earlier item published at most ``NOVELTY_DAYS`` before it is a near duplicate."""
    out = np.ones(len(targets), dtype=bool)
    starts = np.searchsorted(published_ns, published_ns[targets] - NOVELTY_DAYS * DAY_NS, side="left")
    for n, (i, lo) in enumerate(zip(targets, starts, strict=True)):
        mine = tokens[i]
        for k in range(lo, i):
            if near_duplicate(mine, tokens[k]):
                out[n] = False
                break
    return out


# ------------------------------------------------------------------ checks

def _check_sessions(sessions, calendar: str) -> pd.DatetimeIndex:
    s = pd.DatetimeIndex(sessions)
    if s.empty:
        raise FactorInputError("news: sessions is empty: give the sessions to compute news factors for")
    if s.tz is not None:
        raise FactorInputError("news: sessions must be naive session dates (e.g. 2014-01-02), not tz-aware times")
    if not (s == s.normalize()).all() or not s.is_monotonic_increasing or s.has_duplicates:
        raise FactorInputError("news: sessions must be sorted, unique dates at midnight")
    bad = s[~clock.is_session(s, calendar)]
    if len(bad):
        raise FactorInputError(f"news: not {calendar} sessions: {[d.strftime('%Y-%m-%d') for d in bad[:5]]}")
    return s.astype("datetime64[ns]")


def _check_items(items: pd.DataFrame, symbol: str | None) -> tuple[pd.DataFrame, str]:
    missing = [c for c in ("published_at", "item_id") if c not in items.columns]
    if missing:
        raise FactorInputError(f"news: items lack column(s) {missing}; pass news_items rows")
    syms = sorted(set(items["symbol"].dropna().astype(str))) if "symbol" in items.columns else []
    if len(syms) > 1:
        raise FactorInputError(f"news: items of one symbol expected, got {syms[:5]}; call compute_news per symbol")
    if symbol is None:
        if not syms:
            raise FactorInputError("news: no symbol: the items are empty or lack a symbol column; pass symbol=")
        symbol = syms[0]
    elif syms and syms[0] != symbol:
        raise FactorInputError(f"news: items are of {syms[0]}, not {symbol}")
    frame = items.copy()
    if len(frame):
        if getattr(frame["published_at"].dtype, "tz", None) is None:
            raise FactorInputError("news: published_at has no time zone; the warehouse never guesses one (news_items hold UTC)")
        if frame["published_at"].isna().any():
            raise FactorInputError(f"news: published_at is missing in {int(frame['published_at'].isna().sum())} item(s)")
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True).astype("datetime64[ns, UTC]")
    frame["item_id"] = frame["item_id"].astype(str)
    # one row per item (a silver read may hold an item under two write times): the first published
    key = ["source", "item_id"] if "source" in frame.columns else ["item_id"]
    frame = frame.sort_values(["published_at", "item_id"], kind="stable").drop_duplicates(key, keep="first")
    return frame.reset_index(drop=True), symbol


# ------------------------------------------------------------------ compute

def compute_news(
    items: pd.DataFrame,
    sessions: pd.DatetimeIndex,
    calendar: str = DEFAULT_CALENDAR,
    delay_minutes: int = 15,
    *,
    symbol: str | None = None,
    coverage_start=None,
    coverage_end=None,
) -> pd.DataFrame:
    """One symbol's news factors, one row per session of ``sessions`` (see the module doc).

    ``items``: that symbol's ``news_items`` rows (``published_at`` tz-aware,
    ``item_id``, ``title`` / ``description``; ``sent_*`` columns are used when
    present, else computed with :func:`score_items`). ``coverage_start`` /
    ``coverage_end`` (dates): the sessions the items are complete for
    (default: the first and last of ``sessions``).
    Returns ``symbol, event_timestamp, known_timestamp`` and :data:`OUTPUTS`.
    """
    sessions = _check_sessions(sessions, calendar)
    frame, symbol = _check_items(items, symbol)
    if len(frame) and not all(c in frame.columns for c in SENT_COLUMNS):
        frame = score_items(frame)

    # the calendar from well before the first session: position 0 is a sentinel that
    # collects every older item and is never part of a window
    cal = clock.sessions_in_range(sessions[0] - _CALENDAR_LOOKBACK, sessions[-1], calendar).astype("datetime64[ns]")
    closes = clock.to_utc_us(clock.session_closes(cal, calendar)).astype("datetime64[ns, UTC]").asi8
    rows = np.searchsorted(cal.asi8, sessions.asi8)
    cov_lo = max(1, int(np.searchsorted(cal.asi8, clock.naive_date(coverage_start or sessions[0]).value, side="left")))
    cov_hi = int(np.searchsorted(cal.asi8, clock.naive_date(coverage_end or sessions[-1]).value, side="right")) - 1
    begin = closes[cov_lo - 1]                       # coverage starts at the close before the first covered session

    pub = pd.DatetimeIndex(frame["published_at"]).asi8
    comp = frame["sent_compound"].to_numpy(dtype="float64") if len(frame) else np.array([], "float64")
    slot = np.searchsorted(closes, pub, side="right")   # the session each item counts for
    use = slot < len(cal)                              # items after the last close count for no session here
    n = len(cal)
    counts = np.bincount(slot[use], minlength=n).astype("float64")
    comp_sum = np.bincount(slot[use], weights=comp[use], minlength=n)
    pos = np.bincount(slot[use], weights=(comp[use] >= POS_THRESHOLD).astype("float64"), minlength=n)
    neg = np.bincount(slot[use], weights=(comp[use] <= NEG_THRESHOLD).astype("float64"), minlength=n)

    out = pd.DataFrame(index=range(len(sessions)), columns=list(OUTPUTS), dtype="float64")
    in_cov = (rows >= cov_lo) & (rows <= cov_hi)
    has = in_cov & (counts[rows] > 0)
    out["news_count_1d"] = np.where(in_cov, counts[rows], np.nan)
    c5 = np.array([counts[j - COUNT_SESSIONS + 1: j + 1].sum() for j in rows])
    out["news_count_5d"] = np.where(in_cov & (rows - COUNT_SESSIONS + 1 >= cov_lo), c5, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["news_sent_mean_1d"] = np.where(has, comp_sum[rows] / counts[rows], np.nan)
        out["news_sent_pos_share_1d"] = np.where(has, pos[rows] / counts[rows], np.nan)
        out["news_sent_neg_share_1d"] = np.where(has, neg[rows] / counts[rows], np.nan)
        base = np.array([counts[j - ABNORMAL_SESSIONS: j].mean() if j >= ABNORMAL_SESSIONS else np.nan for j in rows])
        ok = in_cov & (rows - ABNORMAL_SESSIONS >= cov_lo) & (base > 0)
        out["news_abnormal_count"] = np.where(ok, counts[rows] / np.where(ok, base, 1.0), np.nan)

    # time-decayed sentiment and attention over [C_t - 30 days, C_t)
    decay = {f"hl{int(h)}": np.full(len(rows), np.nan) for h in HALF_LIVES}
    decay_count = np.full(len(rows), np.nan)
    for n_out, j in enumerate(rows):
        close = closes[j]
        if not in_cov[n_out] or close - MAX_AGE_DAYS * DAY_NS < begin:
            continue
        lo = np.searchsorted(pub, close - MAX_AGE_DAYS * DAY_NS, side="left")
        hi = np.searchsorted(pub, close, side="left")
        age = (close - pub[lo:hi]) / DAY_NS
        for h in HALF_LIVES:
            w = 0.5 ** (age / h)
            if h == 1.0:
                decay_count[n_out] = w.sum()
            if hi > lo:
                decay[f"hl{int(h)}"][n_out] = (w * comp[lo:hi]).sum() / w.sum()
    out["news_sent_decay_hl1"] = decay["hl1"]
    out["news_sent_decay_hl5"] = decay["hl5"]
    out["news_count_decay_hl1"] = decay_count

    # novelty of the items of each covered session with items
    novelty = np.full(len(rows), np.nan)
    prev_close_ok = np.array([closes[j - 1] - NOVELTY_DAYS * DAY_NS >= begin for j in rows])
    wanted = has & prev_close_ok
    if wanted.any():
        want_slots = set(rows[wanted].tolist())
        targets = np.flatnonzero(use & np.isin(slot, list(want_slots)))
        tokens = [words(t) for t in item_text(frame)]
        novel = _novel(pub, tokens, targets)
        novel_count = np.bincount(slot[targets], weights=novel.astype("float64"), minlength=n)
        novelty = np.where(wanted, novel_count[rows] / np.where(wanted, counts[rows], 1.0), np.nan)
    out["news_novelty_1d"] = novelty

    events = clock.availability_times(sessions, delay_minutes, calendar)
    result = pd.DataFrame({"symbol": symbol, "event_timestamp": events, "known_timestamp": events})
    for c in OUTPUTS:
        result[c] = out[c].to_numpy(dtype="float64")
    return result
