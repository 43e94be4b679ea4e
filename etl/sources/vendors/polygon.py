"""Polygon.io: daily and minute aggregates, option contracts, option chains, news; splits and
dividends (etl/sources/vendors/polygon_actions.py).

``alpha ingest polygon AAPL,SPY --dataset D --start ... --end ...`` (key
``POLYGON_API_KEY``, settings ``[vendors.polygon]``). Each dataset's
endpoint, silver table and event time, and the payload checks, are in
docs/ingestion.md (Polygon).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import ConfigError, VendorPayloadError
from etl.core.http import Fetched, HttpClient
from etl.sources.base import Job, Parsed, Source

BASE_URL = "https://api.polygon.io"
NY = "America/New_York"
OK_STATUSES = ("OK", "DELAYED")
AGGS_PARAMS = {"adjusted": "false", "sort": "asc", "limit": "50000"}
MAX_PAGES = 10_000
REJECT_COLUMNS = ["source", "source_file", "source_row", "symbol", "raw", "reason"]

DAILY_COLUMNS = ["symbol", "session", "open", "high", "low", "close", "volume", "ticker", "source"]
MINUTE_COLUMNS = ["symbol", "bar_start", "bar_end", "open", "high", "low", "close", "volume", "vwap", "trades", "source", "event_timestamp"]
CONTRACT_COLUMNS = ["contract", "underlying", "expiry", "strike", "right", "style", "shares_per_contract", "as_of", "source", "event_timestamp"]
QUOTE_COLUMNS = [
    "underlying", "date", "contract", "expiry", "strike", "right", "open", "high", "low", "close", "volume", "open_interest",
    "implied_volatility", "delta", "gamma", "vega", "theta", "rho", "underlying_close", "bid", "ask", "source", "event_timestamp",
]
NEWS_COLUMNS = [
    "source", "item_id", "symbol", "tickers", "published_at", "session", "title", "description", "author", "publisher",
    "url", "keywords", "event_timestamp",
]


class _Bad(Exception):
    """A result element failed validation; the message is the reason."""


# ------------------------------------------------------------ element checks

def _number(obj: dict, key: str, where: str = "", *, required: bool = True, above: float | None = None,
            at_least: float | None = None) -> float:
    """A JSON number (not a bool, not a numeric string), finite; NaN when an
    optional field is absent or null."""
    name = f"{where}{key}"
    if obj.get(key) is None:
        if required:
            raise _Bad(f"missing field {name!r}" if key not in obj else f"{name} is null")
        return math.nan
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{name} is not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise _Bad(f"{name} is not finite: {value!r}")
    if above is not None and not value > above:
        raise _Bad(f"{name} must be > {above:g}, got {value:g}")
    if at_least is not None and not value >= at_least:
        raise _Bad(f"{name} must be >= {at_least:g}, got {value:g}")
    return value


def _epoch(obj: dict, key: str, unit: str, where: str = "", *, required: bool = True) -> pd.Timestamp | None:
    """An integer epoch (``unit`` "ms" or "ns") as a UTC timestamp."""
    name = f"{where}{key}"
    value = obj.get(key)
    if value is None:
        if required:
            raise _Bad(f"missing field {name!r}" if key not in obj else f"{name} is null")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise _Bad(f"{name} is not an integer epoch in {unit}: {value!r}")
    try:
        return pd.Timestamp(int(value), unit=unit, tz="UTC")
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        raise _Bad(f"{name} = {value!r} is out of range for an epoch in {unit}") from None


def _text(obj: dict, key: str, where: str = "", *, required: bool = True) -> str | None:
    name = f"{where}{key}"
    value = obj.get(key)
    if value is None or (required and value == ""):
        if required:
            raise _Bad(f"missing field {name!r}" if key not in obj else f"{name} is empty")
        return None
    if not isinstance(value, str):
        raise _Bad(f"{name} is not text: {value!r}")
    return value


def _text_list(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"{key} is not a list of strings: {value!r}")
    return ",".join(value)


def _object(obj: dict, key: str, *, required: bool = False) -> dict:
    value = obj.get(key)
    if value is None:
        if required:
            raise _Bad(f"missing field {key!r}")
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{key} is not an object: {value!r}")
    return value


def _iso_date(obj: dict, key: str, where: str = "") -> pd.Timestamp:
    text = _text(obj, key, where)
    try:
        return pd.Timestamp(pd.to_datetime(text, format="%Y-%m-%d"))
    except (ValueError, TypeError):
        raise _Bad(f"{where}{key} is not a YYYY-MM-DD date: {text!r}") from None


def _bar(el: object) -> dict:
    """The OHLCV of one aggregate result, checked."""
    if not isinstance(el, dict):
        raise _Bad(f"result is not an object: {el!r}")
    t = _epoch(el, "t", "ms")
    prices = {k: _number(el, k, above=0) for k in ("o", "h", "l", "c")}
    volume = _number(el, "v", at_least=0)
    vwap = _number(el, "vw", required=False, above=0)
    trades = _number(el, "n", required=False, at_least=0)
    o, h, lo, c = prices["o"], prices["h"], prices["l"], prices["c"]
    if not (lo <= o <= h and lo <= c <= h):
        raise _Bad(f"inconsistent bar: need low <= open, close <= high (o={o:g} h={h:g} l={lo:g} c={c:g})")
    return {"t": t, "open": o, "high": h, "low": lo, "close": c, "volume": volume, "vwap": vwap, "trades": trades}


def _raw(el: object) -> str:
    return json.dumps(el, sort_keys=True, ensure_ascii=False)


# ------------------------------------------------------------------ a batch

@dataclass
class _Batch:
    """Rows and rejects of one job, with the hash of every page it read; each row keeps the
    sha256 of its page (``_payload``: the name of the page's copy in bronze/polygon/objects)."""

    job: Job
    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    fetched: int = 0
    digest: object = field(default_factory=hashlib.sha256)
    _page: tuple = (None, "")           # (the page last added from, its sha256): one hash per page

    def reject(self, source_file: str, source_row: int, raw: str, reason: str) -> None:
        self.rejects.append({"source": "polygon", "source_file": source_file, "source_row": int(source_row),
                             "symbol": self.job.symbol, "raw": raw, "reason": reason})

    def add(self, fetched: Fetched, i: int, el: object, row: dict) -> None:
        if self._page[0] is not fetched:
            self._page = (fetched, hashlib.sha256(fetched.body).hexdigest())
        self.rows.append({**row, "_file": fetched.url, "_row": i, "_raw": _raw(el), "_fetched_at": fetched.fetched_at,
                          "_payload": self._page[1]})

    def take(self, fetched: Fetched, results: list, parse: Callable[[object], dict]) -> None:
        """Every result of one page through ``parse``: its row added, or, where ``parse`` raises
        ``_Bad``, the result rejected with the reason (page URL and index kept)."""
        for i, el in enumerate(results):
            try:
                row = parse(el)
            except _Bad as exc:
                self.reject(fetched.url, i, _raw(el), str(exc))
                continue
            self.add(fetched, i, el, row)

    def frame(self, columns: list[str]) -> pd.DataFrame:
        helper = ["_file", "_row", "_raw", "_fetched_at", "_payload"]
        return pd.DataFrame(self.rows, columns=[*columns, *helper]) if self.rows else pd.DataFrame(columns=[*columns, *helper])

    def move(self, frame: pd.DataFrame, mask, reasons) -> pd.DataFrame:
        """Quarantine the rows of ``frame`` under ``mask``; return the others."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            bad = frame.loc[mask]
            texts = reasons(bad) if callable(reasons) else [reasons] * len(bad)
            for (_, r), reason in zip(bad.iterrows(), texts, strict=True):
                self.reject(r["_file"], r["_row"], r["_raw"], reason)
        return frame.loc[~mask].reset_index(drop=True)

    def rejects_frame(self) -> pd.DataFrame | None:
        return pd.DataFrame(self.rejects, columns=REJECT_COLUMNS) if self.rejects else None

    def parsed(self, table: str, frame: pd.DataFrame, high_water: str | None) -> Parsed:
        return Parsed(
            tables={table: frame.reset_index(drop=True)},
            rejects=self.rejects_frame(),
            high_water=high_water,
            rows_fetched=self.fetched,
            batch_key=f"{self.job} sha256:{self.digest.hexdigest()}",
        )


def _duplicates(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame.duplicated(columns, keep=False).to_numpy() if len(frame) else np.zeros(0, dtype=bool)


def _utc_us(values) -> pd.Series:
    """Tz-aware times (epochs parsed as UTC, fetch times, session opens) as a UTC microsecond Series."""
    return clock.to_utc_us(pd.Series(values, dtype=object))


def _naive_day(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype=object)).dt.normalize().astype("datetime64[us]")


def _ny_day(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_convert(NY).tz_localize(None).normalize()


def _day(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _complete_through(last_day: pd.Timestamp, fetched_at: pd.Timestamp, tz: str, start: pd.Timestamp) -> str | None:
    """``last_day``, or the day before the fetch day in ``tz`` if that is
    earlier (a day still running may get more data), or None before ``start``."""
    today = fetched_at.tz_convert(tz).tz_localize(None).normalize()
    day = min(pd.Timestamp(last_day).normalize(), today - pd.Timedelta(days=1))
    return _day(day) if day >= start else None


# ----------------------------------------------------------------- the source

class PolygonSource(Source):
    name = "polygon"
    default_rate = 5.0
    datasets = ("daily", "minute", "option_contracts", "option_chain", "news", "splits", "dividends")

    def __init__(self, settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
        # built up front so a missing key fails the command before any job runs
        self._client: HttpClient | None = self.http(BASE_URL, key_env="POLYGON_API_KEY", key_param="apiKey")

    @property
    def client(self) -> HttpClient:
        """The HTTP client (shared by the run's threads)."""
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def fetch_parse(self, job: Job) -> Parsed:
        return getattr(self, f"_{job.dataset}")(job)

    def _splits(self, job: Job) -> Parsed:
        from etl.sources.vendors.polygon_actions import splits  # it imports this module: not at the top

        return splits(self, job)

    def _dividends(self, job: Job) -> Parsed:
        from etl.sources.vendors.polygon_actions import dividends

        return dividends(self, job)

    # ---------------------------------------------------------------- paging

    def _error(self, message: str) -> VendorPayloadError:
        key = self._client.api_key if self._client is not None else None
        return VendorPayloadError(message.replace(key, "***") if key else message)

    def _results(self, fetched: Fetched, body: object) -> list:
        if not isinstance(body, dict):
            raise self._error(f"polygon: {fetched.url} returned a JSON {type(body).__name__}, not the documented object with status and results")
        status = body.get("status")
        if status not in OK_STATUSES:
            detail = body.get("error") or body.get("message")
            raise self._error(
                f"polygon: {fetched.url} answered status {status!r}, expected one of {', '.join(OK_STATUSES)}"
                + (f": {detail}" if detail else "")
            )
        results = body.get("results")
        if results is None:
            count = body.get("resultsCount", body.get("count"))
            if count == 0 and not isinstance(count, bool):
                return []
            raise self._error(f"polygon: {fetched.url} has no results list (status {status}, resultsCount {count!r}): not the documented envelope")
        if not isinstance(results, list):
            raise self._error(f"polygon: {fetched.url} has results of type {type(results).__name__}, expected a list")
        return results

    def _follow(self, fetched: Fetched, next_url: object) -> tuple[str, dict]:
        """``next_url`` as a path and query on the configured base URL (so the
        key is never sent to another host)."""
        if not isinstance(next_url, str) or not urlsplit(next_url).path:
            raise self._error(f"polygon: {fetched.url} has a next_url that is not a URL: {next_url!r}")
        parts = urlsplit(next_url)
        return parts.path, {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "apikey"}

    def _pages(self, path: str, params: dict, batch: _Batch) -> Iterator[tuple[Fetched, list]]:
        """Every page of one request, following ``next_url``."""
        fetched, body = self.get_json(batch.job, path, params)
        seen: set[str] = set()
        while True:
            results = self._results(fetched, body)
            batch.digest.update(fetched.body)
            batch.fetched += len(results)
            yield fetched, results
            next_url = body.get("next_url")
            if not next_url:
                return
            path, params = self._follow(fetched, next_url)
            link = f"{path}?{urlencode(sorted(params.items()))}"
            if link in seen or len(seen) >= MAX_PAGES:
                raise self._error(f"polygon: {fetched.url} links to a page already read or more than {MAX_PAGES} pages; stopping")
            seen.add(link)
            fetched, body = self.get_json(batch.job, path, params)

    # ------------------------------------------------------------ aggregates

    def _aggs(self, job: Job, span: str) -> _Batch:
        batch = _Batch(job)
        path = f"/v2/aggs/ticker/{quote(job.symbol, safe='')}/range/1/{span}/{_day(job.start)}/{_day(job.end)}"

        def parse(el: object) -> dict:
            row = _bar(el)
            if span == "day":
                ny = row["t"].tz_convert(NY)
                if ny != ny.normalize():
                    raise _Bad(f"t = {el['t']} is {ny:%Y-%m-%d %H:%M} New York, not midnight: not the start of a daily bar")
                row["session"] = ny.tz_localize(None).normalize()
            elif int(el["t"]) % 60_000:
                raise _Bad(f"t = {el['t']} is not on a minute boundary")
            return row

        for fetched, results in self._pages(path, AGGS_PARAMS, batch):
            batch.take(fetched, results, parse)
        return batch

    def _daily(self, job: Job) -> Parsed:
        batch = self._aggs(job, "day")
        frame = batch.frame(["t", "session", "open", "high", "low", "close", "volume"])
        cal = self.settings.calendar
        frame["session"] = _naive_day(frame["session"])
        frame = batch.move(frame, ~clock.is_session(pd.DatetimeIndex(frame["session"]), cal),
                           lambda b: [f"{_day(d)} is not an {cal} session" for d in b["session"]])
        if len(frame):
            closes = clock.session_closes(frame["session"], cal)
            fetched_at = pd.DatetimeIndex(_utc_us(frame["_fetched_at"]))
            frame = batch.move(frame, np.asarray(closes > fetched_at),
                               lambda b: [f"session {_day(d)} had not closed when fetched at {f}: the bar is incomplete"
                                          for d, f in zip(b["session"], b["_fetched_at"], strict=True)])
        frame = batch.move(frame, _duplicates(frame, ["session"]),
                           lambda b: [f"session {_day(d)} appears more than once in the answer; every copy is quarantined" for d in b["session"]])
        frame = frame.sort_values("session", kind="stable")
        frame["symbol"] = job.symbol
        frame["ticker"] = job.symbol
        frame["source"] = self.name
        frame["payload"] = frame["_payload"]    # lineage: the page's sha256, its name in bronze/polygon/objects
        out = frame[[*DAILY_COLUMNS, "payload"]].astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})
        high = _day(out["session"].max()) if len(out) else None
        return batch.parsed("bars_daily", out, high)

    def _minute_delay(self) -> pd.Timedelta:
        raw = self.settings.vendor(self.name).get("minute_delay_seconds", 0)
        try:
            seconds = float(raw)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigError(f"[vendors.polygon] minute_delay_seconds must be a number of seconds >= 0, got {raw!r}")
        return pd.Timedelta(seconds=seconds)

    def _minute(self, job: Job) -> Parsed:
        delay = self._minute_delay()
        batch = self._aggs(job, "minute")
        frame = batch.frame(["t", "open", "high", "low", "close", "volume", "vwap", "trades"])
        frame["bar_start"] = _utc_us(frame["t"])
        frame["bar_end"] = frame["bar_start"] + pd.Timedelta(minutes=1)
        fetched_at = _utc_us(frame["_fetched_at"])
        frame = batch.move(frame, (frame["bar_end"] > fetched_at).to_numpy(),
                           lambda b: [f"bar {s} had not ended when fetched at {f}: incomplete" for s, f in zip(b["bar_start"], b["_fetched_at"], strict=True)])
        frame = batch.move(frame, _duplicates(frame, ["bar_start"]),
                           lambda b: [f"bar {s} appears more than once in the answer; every copy is quarantined" for s in b["bar_start"]])
        frame = frame.sort_values("bar_start", kind="stable")
        frame["symbol"] = job.symbol
        frame["source"] = self.name
        frame["event_timestamp"] = frame["bar_end"] + delay
        out = frame[MINUTE_COLUMNS].astype({c: "float64" for c in ("open", "high", "low", "close", "volume", "vwap", "trades")})
        high = None
        if len(out):
            high = _complete_through(_ny_day(out["bar_start"].max()), frame["_fetched_at"].max(), NY, job.start)
        return batch.parsed("bars_minute", out, high)

    # --------------------------------------------------------------- options

    def _option_contracts(self, job: Job) -> Parsed:
        batch = _Batch(job)
        cal = self.settings.calendar
        days = clock.sessions_in_range(job.start, job.end, cal)
        for day in days:
            params = {"underlying_ticker": job.symbol, "as_of": _day(day), "limit": "1000"}
            as_of = _day(day)
            for fetched, results in self._pages("/v3/reference/options/contracts", params, batch):
                batch.take(fetched, results, lambda el, as_of=as_of: {**self._contract(el, job.symbol), "as_of": as_of})
        frame = batch.frame(["contract", "underlying", "expiry", "strike", "right", "style", "shares_per_contract", "as_of"])
        frame = batch.move(frame, _duplicates(frame, ["contract", "as_of"]),
                           lambda b: [f"contract {c} is listed more than once as of {a}; every copy is quarantined" for c, a in zip(b["contract"], b["as_of"], strict=True)])
        frame["expiry"] = _naive_day(frame["expiry"])
        opens = clock.session_opens(pd.DatetimeIndex(pd.to_datetime(frame["as_of"])), cal) if len(frame) else []
        frame["event_timestamp"] = _utc_us(list(opens))
        frame["source"] = self.name
        frame = frame.sort_values(["as_of", "contract"], kind="stable")
        out = frame[CONTRACT_COLUMNS].astype({"strike": "float64", "shares_per_contract": "int64"})
        return batch.parsed("option_contracts", out, _day(days[-1]) if len(days) else None)

    @staticmethod
    def _contract(el: object, symbol: str) -> dict:
        if not isinstance(el, dict):
            raise _Bad(f"result is not an object: {el!r}")
        row = PolygonSource._details(el, "")
        underlying = _text(el, "underlying_ticker")
        if underlying != symbol:
            raise _Bad(f"underlying_ticker {underlying!r} is not the requested {symbol!r}")
        shares = _number(el, "shares_per_contract", above=0)
        if not shares.is_integer():
            raise _Bad(f"shares_per_contract is not a whole number: {shares:g}")
        return {**row, "underlying": symbol, "style": _text(el, "exercise_style", required=False), "shares_per_contract": int(shares)}

    @staticmethod
    def _details(obj: dict, where: str) -> dict:
        contract = _text(obj, "ticker", where)
        if not contract.startswith("O:"):
            raise _Bad(f"{where}ticker {contract!r} is not an option ticker (O:...)")
        kind = _text(obj, "contract_type", where)
        if kind not in ("call", "put"):
            raise _Bad(f"{where}contract_type {kind!r} is neither call nor put")
        return {
            "contract": contract[2:],  # the OCC symbol, as the Lean chains name it (AAPL140621C00090000)
            "expiry": _iso_date(obj, "expiration_date", where),
            "strike": _number(obj, "strike_price", where, above=0),
            "right": "C" if kind == "call" else "P",
        }

    @staticmethod
    def _quote(el: object) -> dict:
        if not isinstance(el, dict):
            raise _Bad(f"result is not an object: {el!r}")
        row = PolygonSource._details(_object(el, "details", required=True), "details.")
        day, last, greeks = _object(el, "day"), _object(el, "last_quote"), _object(el, "greeks")
        for k in ("open", "high", "low", "close"):
            row[k] = _number(day, k, "day.", required=False, above=0)
        o, h, lo, c = row["open"], row["high"], row["low"], row["close"]
        if not any(math.isnan(v) for v in (o, h, lo, c)) and not (lo <= o <= h and lo <= c <= h):
            raise _Bad(f"inconsistent day bar: need low <= open, close <= high (o={o:g} h={h:g} l={lo:g} c={c:g})")
        row["volume"] = _number(day, "volume", "day.", required=False, at_least=0)
        row["bid"] = _number(last, "bid", "last_quote.", required=False, at_least=0)
        row["ask"] = _number(last, "ask", "last_quote.", required=False, at_least=0)
        for k in ("delta", "gamma", "vega", "theta", "rho"):
            row[k] = _number(greeks, k, "greeks.", required=False)
        row["implied_volatility"] = _number(el, "implied_volatility", required=False, at_least=0)
        row["open_interest"] = _number(el, "open_interest", required=False, at_least=0)
        day_time = _epoch(day, "last_updated", "ns", "day.", required=False)
        quote_time = _epoch(last, "last_updated", "ns", "last_quote.", required=False)
        if day_time is None and quote_time is None:
            raise _Bad("no last_quote.last_updated or day.last_updated: cannot tell when this quote was known")
        row["date"] = _ny_day(day_time if day_time is not None else quote_time)
        row["_latest"] = max(t for t in (day_time, quote_time) if t is not None)
        row["_has_day"] = not all(math.isnan(row[k]) for k in ("open", "high", "low", "close", "volume"))
        return row

    def _option_chain(self, job: Job) -> Parsed:
        batch = _Batch(job)
        path = f"/v3/snapshot/options/{quote(job.symbol, safe='')}"
        for fetched, results in self._pages(path, {"limit": "250"}, batch):
            batch.take(fetched, results, self._quote)
        columns = [c for c in QUOTE_COLUMNS if c not in ("underlying", "underlying_close", "source", "event_timestamp")]
        frame = batch.frame([*columns, "_latest", "_has_day"])
        frame = batch.move(frame, _duplicates(frame, ["date", "expiry", "strike", "right"]),
                           lambda b: [f"{r} {s:g} expiring {_day(e)} appears more than once on {_day(d)}; every copy is quarantined"
                                      for r, s, e, d in zip(b["right"], b["strike"], b["expiry"], b["date"], strict=True)])
        frame["date"] = _naive_day(frame["date"])
        frame["expiry"] = _naive_day(frame["expiry"])
        event = _utc_us(frame["_latest"])
        # a day bar's values are complete at the session's close (or were seen at the fetch, if earlier)
        cal = self.settings.calendar
        has_day = frame["_has_day"].astype(bool).to_numpy() & clock.is_session(pd.DatetimeIndex(frame["date"]), cal)
        if has_day.any():
            closes = pd.Series(clock.to_utc_us(clock.session_closes(frame.loc[has_day, "date"], cal)), index=frame.index[has_day])
            fetched = _utc_us(frame.loc[has_day, "_fetched_at"])
            seen = closes.where(closes <= fetched, fetched)
            latest = event.loc[has_day]
            event.loc[has_day] = latest.where(latest >= seen, seen)
        frame["event_timestamp"] = event
        frame["underlying"] = job.symbol
        frame["underlying_close"] = np.nan  # a snapshot has the underlying's last price, not its close
        frame["source"] = self.name
        frame = frame.sort_values(["date", "expiry", "strike", "right"], kind="stable")
        floats = ["strike", "open", "high", "low", "close", "volume", "open_interest", "implied_volatility",
                  "delta", "gamma", "vega", "theta", "rho", "underlying_close", "bid", "ask"]
        out = frame[QUOTE_COLUMNS].astype(dict.fromkeys(floats, "float64"))
        return batch.parsed("option_quotes", out, _day(out["date"].max()) if len(out) else None)

    # ------------------------------------------------------------------ news

    def _news(self, job: Job) -> Parsed:
        batch = _Batch(job)
        params = {
            "ticker": job.symbol,
            "published_utc.gte": f"{_day(job.start)}T00:00:00Z",
            "published_utc.lte": f"{_day(job.end)}T23:59:59Z",
            "order": "asc",
            "sort": "published_utc",
            "limit": "1000",
        }
        last_fetch = None
        for fetched, results in self._pages("/v2/reference/news", params, batch):
            last_fetch = fetched.fetched_at
            batch.take(fetched, results, self._article)
        frame = batch.frame(["item_id", "tickers", "published_at", "title", "description", "author", "publisher", "url", "keywords"])
        frame = frame.drop_duplicates(["_raw"]).reset_index(drop=True)  # the same item twice (pages overlapping) is one item
        frame = batch.move(frame, _duplicates(frame, ["item_id"]),
                           lambda b: [f"id {i!r} appears more than once with different content; every copy is quarantined" for i in b["item_id"]])
        frame["published_at"] = _utc_us(frame["published_at"])
        frame["session"] = self._news_sessions(frame["published_at"])
        frame["source"] = self.name
        frame["symbol"] = job.symbol
        frame["event_timestamp"] = frame["published_at"]
        frame = frame.sort_values(["published_at", "item_id"], kind="stable")
        out = frame[NEWS_COLUMNS]
        high = _complete_through(job.end, last_fetch, "UTC", job.start) if last_fetch is not None else None
        return batch.parsed("news_items", out, high)

    @staticmethod
    def _article(el: object) -> dict:
        if not isinstance(el, dict):
            raise _Bad(f"result is not an object: {el!r}")
        item_id = _text(el, "id")
        text = _text(el, "published_utc")
        try:
            published = pd.Timestamp(text)
        except ValueError:
            raise _Bad(f"published_utc is not a timestamp: {text!r}") from None
        if published.tzinfo is None:
            raise _Bad(f"published_utc has no time zone: {text!r}")
        publisher = _object(el, "publisher")
        return {
            "item_id": item_id,
            "tickers": _text_list(el, "tickers"),
            "published_at": published.tz_convert("UTC"),
            "title": _text(el, "title"),
            "description": _text(el, "description", required=False),
            "author": _text(el, "author", required=False),
            "publisher": _text(publisher, "name", "publisher.", required=False),
            "url": _text(el, "article_url", required=False),
            "keywords": _text_list(el, "keywords"),
        }

    def _news_sessions(self, published: pd.Series) -> pd.Series:
        """The session each item counts for: its New York day if that is a
        session and it came out before the close, else the next session."""
        if published.empty:
            return pd.Series([], dtype="datetime64[us]")
        cal = self.settings.calendar
        day = published.dt.tz_convert(NY).dt.tz_localize(None).dt.normalize()
        is_sess = clock.is_session(pd.DatetimeIndex(day), cal)
        before_close = np.zeros(len(day), dtype=bool)
        if is_sess.any():
            closes = clock.to_utc_us(clock.session_closes(day[is_sess], cal))
            before_close[is_sess] = np.asarray(pd.DatetimeIndex(published[is_sess]) < closes)
        nxt = pd.Series(clock.next_session(pd.DatetimeIndex(day), cal), index=day.index)
        return pd.Series(np.where(before_close, day, nxt), index=day.index).astype("datetime64[us]")
