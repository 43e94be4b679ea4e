"""Polygon.io corporate actions: the ``splits`` and ``dividends`` datasets of the polygon source.

``alpha ingest polygon AAPL --dataset splits`` (or ``dividends``); the nightly pulls both for
the symbols of every ``[[ingest]]`` of polygon ``daily`` bars (``actions = false`` turns that
off). Rows go to silver ``corporate_actions`` through the bitemporal writer
(:func:`etl.storage.actions.write_actions`), one row per action of the source ``polygon``:

- ``splits``: ``/v3/reference/splits?ticker=T&execution_date.gte=START``; ``split_ratio =
  split_to / split_from`` (new shares per old: 7.0 for a 7-for-1 split). Polygon states no
  announcement time, so ``known_timestamp`` is NaT: the writer uses the ex-date's open, or
  the time received when the warehouse had already published features of the ex-date or later.
- ``dividends``: ``/v3/reference/dividends?ticker=T&ex_dividend_date.gte=START``;
  ``cash_dividend = cash_amount``, known at the end of the declaration day in New York (the
  midnight after it: an announcement of that day is public by then); NaT without a
  ``declaration_date``.

The range has no upper bound: actions are announced ahead of their ex-dates, so a pull asks
for every action from the job's start on (the nightly: from the day after the last night),
and the watermark moves to the job's end day. Asking again for a range already read stores
nothing: the writer keeps a new version only when a value changed.

Quarantined with the page URL and the result's index (``source_file``, ``source_row``): an
element that is not an object; a ticker other than the one asked for; a missing or malformed
date; ``split_from``/``split_to``/``cash_amount`` not a number > 0; a currency other than USD
(an absent ``currency`` is USD: the field is optional in Polygon's reference and the endpoint
lists US tickers); a declaration after the ex-date; an ex-date that is not a session; a split
that changes nothing; and every copy of an ex-date that comes with different values (a
correction cannot be told from a second payment). The same values twice are one action.

A split and a dividend on the same ex-date are one row for the writer (one ``(symbol,
ex_date, source)``): each dataset carries the other's value over from the newest stored
polygon version of that ex-date, known no earlier than that version, so neither erases the
other. A pull reads silver for this, so run the two datasets of one symbol one after the
other (the nightly and the CLI do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from etl.core import clock
from etl.sources.base import Job, Parsed
from etl.sources.vendors.polygon import (
    NY,
    PolygonSource,
    _Bad,
    _Batch,
    _day,
    _iso_date,
    _naive_day,
    _number,
    _text,
)
from etl.storage.actions import check_actions, read_all_versions

ACTION_COLUMNS = ["symbol", "ex_date", "split_ratio", "cash_dividend", "source", "payload", "known_timestamp"]
PARSED = ["ex_date", "split_ratio", "cash_dividend", "known_timestamp"]
LIMIT = "1000"


@dataclass(frozen=True)
class _Dataset:
    path: str
    date_field: str                      # the ex-date's field: the range filter and the sort key
    value: str                           # the column this dataset states
    other: str                           # the column it carries over from the stored version
    parse: Callable[[object, str], dict]


def _element(el: object, symbol: str) -> dict:
    if not isinstance(el, dict):
        raise _Bad(f"result is not an object: {el!r}")
    ticker = _text(el, "ticker")
    if ticker != symbol:
        raise _Bad(f"ticker {ticker!r} is not the requested {symbol!r}")
    return el


def _split(el: object, symbol: str) -> dict:
    el = _element(el, symbol)
    day = _iso_date(el, "execution_date")
    old, new = _number(el, "split_from", above=0), _number(el, "split_to", above=0)
    return {"ex_date": day, "split_ratio": new / old, "cash_dividend": 0.0, "known_timestamp": pd.NaT}


def _dividend(el: object, symbol: str) -> dict:
    el = _element(el, symbol)
    ex = _iso_date(el, "ex_dividend_date")
    cash = _number(el, "cash_amount", above=0)
    currency = _text(el, "currency", required=False)
    if currency is not None and currency != "USD":
        raise _Bad(f"currency {currency!r} is not USD: the amount cannot be applied to USD prices")
    for key in ("record_date", "pay_date"):
        if el.get(key) is not None:
            _iso_date(el, key)
    known = pd.NaT
    if el.get("declaration_date") is not None:
        declared = _iso_date(el, "declaration_date")
        if declared > ex:
            raise _Bad(f"declaration_date {_day(declared)} is after ex_dividend_date {_day(ex)}")
        known = (declared + pd.Timedelta(days=1)).tz_localize(NY).tz_convert("UTC")
    return {"ex_date": ex, "split_ratio": 1.0, "cash_dividend": cash, "known_timestamp": known}


SPLITS = _Dataset("/v3/reference/splits", "execution_date", "split_ratio", "cash_dividend", _split)
DIVIDENDS = _Dataset("/v3/reference/dividends", "ex_dividend_date", "cash_dividend", "split_ratio", _dividend)


def splits(source: PolygonSource, job: Job) -> Parsed:
    """The job's symbol's splits with an execution date from ``job.start`` on."""
    return _pull(source, job, SPLITS)


def dividends(source: PolygonSource, job: Job) -> Parsed:
    """The job's symbol's cash dividends with an ex-date from ``job.start`` on."""
    return _pull(source, job, DIVIDENDS)


def _pull(source: PolygonSource, job: Job, ds: _Dataset) -> Parsed:
    batch = _Batch(job)
    params = {"ticker": job.symbol, f"{ds.date_field}.gte": _day(job.start), "order": "asc", "sort": ds.date_field, "limit": LIMIT}
    for fetched, results in source._pages(ds.path, params, batch):
        batch.take(fetched, results, lambda el: ds.parse(el, job.symbol))
    frame = batch.frame(PARSED)
    frame["payload"] = frame["_payload"]   # the page's sha256: its object in bronze/polygon/objects
    frame["ex_date"] = _naive_day(frame["ex_date"])
    # tz-aware UTC or NaT (splits: all NaT) -> one typed column, no conversion needed
    frame["known_timestamp"] = pd.Series(frame["known_timestamp"].tolist(), index=frame.index, dtype="datetime64[us, UTC]")
    cal = source.settings.calendar
    if len(frame):
        frame["_why"] = check_actions(frame, cal)
        frame = batch.move(frame, frame["_why"].ne("").to_numpy(), lambda b: [f"{_day(d)}: {w}" for d, w in zip(b["ex_date"], b["_why"], strict=True)])
    frame = _one_per_ex_date(batch, frame, ds, cal)
    frame = _carry(source, frame, ds, job.symbol)
    frame["symbol"] = job.symbol
    frame["source"] = source.name
    out = frame.sort_values("ex_date", kind="stable")[ACTION_COLUMNS].astype({"split_ratio": "float64", "cash_dividend": "float64"})
    return batch.parsed("corporate_actions", out, _day(job.end))


def _opens(frame: pd.DataFrame, calendar: str) -> pd.Series:
    return pd.Series(clock.session_opens(pd.DatetimeIndex(frame["ex_date"]), calendar), index=frame.index)


def _known_or_open(frame: pd.DataFrame, calendar: str) -> pd.Series:
    """The stated known time, else the ex-date's open (what the writer uses for NaT)."""
    return frame["known_timestamp"].where(frame["known_timestamp"].notna(), _opens(frame, calendar))


def _one_per_ex_date(batch: _Batch, frame: pd.DataFrame, ds: _Dataset, calendar: str) -> pd.DataFrame:
    """Every copy of an ex-date with different values quarantined; copies with the same value
    kept once (the latest known time of them: never earlier than a copy says)."""
    if frame.empty:
        return frame
    seen = frame.groupby("ex_date")[ds.value].agg(lambda v: sorted(set(v)))
    clash = frame["ex_date"].map(seen.map(len)).to_numpy() > 1
    frame = batch.move(frame, clash, lambda b: [
        f"{_day(d)} appears more than once with different {ds.value} ({', '.join(f'{v:g}' for v in seen[d])}); every copy is quarantined"
        for d in b["ex_date"]])
    if frame.empty:
        return frame
    frame = frame.assign(_eff=_known_or_open(frame, calendar)).sort_values(["ex_date", "_eff"], kind="stable")
    return frame.drop_duplicates("ex_date", keep="last").drop(columns="_eff").reset_index(drop=True)


def _carry(source: PolygonSource, frame: pd.DataFrame, ds: _Dataset, symbol: str) -> pd.DataFrame:
    """The other dataset's value of the same ex-date from the newest stored version of this
    source (module doc), the row known no earlier than that version."""
    old = read_all_versions(source.settings) if len(frame) else None
    if old is None:
        return frame
    old = old[(old["source"] == source.name) & (old["symbol"] == symbol)]
    latest = old.sort_values(["known_timestamp", "created_timestamp"], kind="stable").drop_duplicates("ex_date", keep="last")
    latest = latest.set_index(pd.DatetimeIndex(latest["ex_date"]).astype("datetime64[us]"))
    neutral = 1.0 if ds.other == "split_ratio" else 0.0
    carried = frame["ex_date"].map(latest[ds.other]).astype(float)
    has = (carried.notna() & (carried != neutral)).to_numpy()
    if not has.any():
        return frame
    frame = frame.copy()
    frame.loc[has, ds.other] = carried[has]
    before = frame["ex_date"].map(latest["known_timestamp"])
    own = _known_or_open(frame, source.settings.calendar)
    frame.loc[has, "known_timestamp"] = own.where(own >= before, before)[has]
    return frame
