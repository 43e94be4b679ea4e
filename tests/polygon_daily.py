"""Polygon's daily aggregates endpoint over local HTTP, answering any date range
from the recorded responses (AAPL, SPY: 2014-05-01..2014-07-31, raw prices), and
its splits and dividends endpoints (the nightly pulls them with the daily bars):
the recorded actions of the ticker from the date asked for on, in one page.

The recorded bodies are cut to the requested ``{start}/{end}`` the way Polygon
does, so incremental pulls (watermark + 1 .. session) get exactly the new
sessions. ``aliases`` serve one recording under more tickers (only where a test
is about pacing or fan-out, not about the values).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd

from tests.vendor_server import FIXTURES, ReplayServer, Reply

API_KEY = "test-polygon-key"
PREFIX = "/v2/aggs/ticker/"
RECORDED = {"AAPL": ["aggs_day_AAPL_p1.json", "aggs_day_AAPL_p2.json"], "SPY": ["aggs_day_SPY.json"]}
ACTIONS = {"splits": ("execution_date", ["splits_AAPL_p1.json", "splits_AAPL_p2.json", "splits_TSLA.json"]),
           "dividends": ("ex_dividend_date", ["dividends_AAPL.json", "dividends_TSLA.json"])}


def recorded_bars() -> dict[str, list[dict]]:
    folder = FIXTURES / "polygon"
    return {sym: [r for f in files for r in json.loads((folder / f).read_text())["results"]] for sym, files in RECORDED.items()}


def session_of(bar: dict) -> str:
    return pd.Timestamp(bar["t"], unit="ms", tz="UTC").tz_convert("America/New_York").strftime("%Y-%m-%d")


class PolygonDaily:
    """``server.url`` is Polygon's base URL. ``delays[ticker]`` holds a response;
    ``statuses[ticker]`` = list of statuses served first (e.g. [503], [403]);
    ``arrivals`` logs ``(monotonic time, ticker)`` of every aggregate request."""

    def __init__(self, aliases: dict[str, str] | None = None):
        self.bars = recorded_bars()
        self.aliases = dict(aliases or {})
        self.delays: dict[str, float] = {}
        self.statuses: dict[str, list[int]] = {}
        self.arrivals: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.server = ReplayServer(api_key=API_KEY)
        self.server.add_handler(PREFIX, self._answer)
        self.server.add_handler("/v3/reference/", self._actions)

    def __enter__(self) -> PolygonDaily:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def requests_for(self, ticker: str) -> int:
        return sum(1 for _, t in self.arrivals if t == ticker)

    def _answer(self, path: str, query: dict) -> Reply:
        # /v2/aggs/ticker/{T}/range/1/day/{start}/{end}
        parts = path[len(PREFIX):].split("/")
        ticker, start, end = parts[0], parts[4], parts[5]
        with self._lock:
            self.arrivals.append((time.monotonic(), ticker))
            queued = self.statuses.get(ticker)
            status = queued.pop(0) if queued else 200
        if status != 200:
            return Reply(status, json.dumps({"status": "ERROR", "error": f"status {status} for {ticker}"}).encode())
        source = self.aliases.get(ticker, ticker)
        rows = [b for b in self.bars.get(source, []) if start <= session_of(b) <= end]
        body = {"ticker": ticker, "status": "OK", "adjusted": False, "queryCount": len(rows), "resultsCount": len(rows),
                "request_id": f"req-{ticker}-{start}-{end}", "results": rows}
        if not rows:
            body.pop("results")
        return Reply(200, json.dumps(body).encode(), delay=self.delays.get(ticker, 0.0))

    def _actions(self, path: str, query: dict) -> Reply:
        # /v3/reference/{splits|dividends}?ticker=T&{field}.gte=D: no page, no rate or status games
        field, files = ACTIONS[path.rsplit("/", 1)[-1]]
        folder = FIXTURES / "polygon"
        rows = [r for f in files for r in json.loads((folder / f).read_text())["results"]
                if r["ticker"] == query.get("ticker") and r[field] >= query.get(f"{field}.gte", "")]
        return Reply(200, json.dumps({"results": rows, "status": "OK", "request_id": f"req-{path}-{query.get('ticker')}"}).encode())


def sessions(ticker: str = "SPY") -> list[str]:
    return sorted({session_of(b) for b in recorded_bars()[ticker]})


def write_config(home: Path, redis_url: str | None, symbols=("AAPL", "SPY"), start: str = "2014-05-01", extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    lines = [f'universe = {json.dumps(list(symbols))}']
    if redis_url:
        lines.append(f'redis_url = "{redis_url}"')
    lines += ["", "[[ingest]]", 'source = "polygon"', 'dataset = "daily"', f'start = "{start}"', extra]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
