"""The stocknet tweets as news items: a file source until a news vendor is configured.

``alpha ingest stocknet AAPL,FB --dataset tweets`` lands each tweet that
mentions ``$TICKER`` as a ``news_items`` row. The column mapping, the session
rule, quarantine and duplicates are in docs/ingestion.md (Stocknet tweets).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR, Settings, default_stocknet_path
from etl.core.errors import BadInputError, ConfigError, UnknownSymbolError
from etl.sources.base import Job, Parsed, Source

FILE_NAME = "tweets_raw_extract.csv.gz"
HEADER = ["ticker", "created_at_utc", "tweet_id", "user_id", "user_followers", "retweet_count", "lang", "text", "file_date"]
NEWS_COLUMNS = [
    "source", "item_id", "symbol", "tickers", "published_at", "session", "title", "description", "author", "publisher",
    "url", "keywords", "event_timestamp",
]
REJECT_COLUMNS = ["source", "source_file", "source_row", "symbol", "raw", "reason"]
NEW_YORK = "America/New_York"
_CASHTAG = re.compile(r"\$([A-Za-z][A-Za-z0-9]{0,9}(?:[.\-][A-Za-z]{1,2})?)(?![A-Za-z0-9])")
_ZONE = re.compile(r"(?:Z|[+\-]\d\d:?\d\d)$")
_DIGITS = re.compile(r"^\d+$")


def cashtags(text: str, symbol: str) -> str:
    """The ``$TICKER`` tags of a text, upper case, in order of first use, ``symbol`` first if missing."""
    tags = list(dict.fromkeys(t.upper() for t in _CASHTAG.findall(text)))
    if symbol not in tags:
        tags.insert(0, symbol)
    return ",".join(tags)


def news_sessions(published: pd.Series, calendar: str = DEFAULT_CALENDAR) -> pd.Series:
    """The session each item counts for (naive date, us): the first session whose
    close is strictly after the item's publication time, i.e. its New York day if
    that is a session and it came out before the close, else the next session."""
    if published.empty:
        return pd.Series([], index=published.index, dtype="datetime64[us]")
    utc = pd.DatetimeIndex(published.dt.tz_convert("UTC"))
    first_day = utc.min().tz_convert(NEW_YORK).tz_localize(None).normalize() - pd.Timedelta(days=1)
    last_day = utc.max().tz_convert(NEW_YORK).tz_localize(None).normalize() + pd.Timedelta(days=10)
    sessions = clock.sessions_in_range(first_day, last_day, calendar)
    closes = clock.to_utc_us(clock.session_closes(sessions, calendar))
    idx = np.searchsorted(closes.asi8, clock.to_utc_us(utc).asi8, side="right")
    if (idx >= len(sessions)).any():
        raise ConfigError(f"the {calendar} calendar ends before the session of an item published {utc.max()}")
    return pd.Series(sessions.values[idx], index=published.index).astype("datetime64[us]")


class StocknetSource(Source):
    """Tweets that mention ``$TICKER`` (stocknet dataset) as ``news_items``; see the module doc."""

    name = "stocknet"
    datasets = ("tweets",)

    def __init__(self, settings: Settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
        self.root = (Path(path) if path else default_stocknet_path()).resolve()
        self._lock = threading.Lock()
        self._lines: list[str] | None = None
        self._digest: str | None = None

    # -------------------------------------------------------------- the file
    def file(self) -> Path:
        path = self.root / FILE_NAME
        if not path.is_file():
            raise ConfigError(f"no {FILE_NAME} in {self.root}; pass --path to the stocknet-tweets-prices folder")
        return path

    def _read(self) -> tuple[list[str], str]:
        """Every line of the file (read once per source, shared by its jobs) and its sha256;
        the file is landed in bronze first."""
        with self._lock:
            if self._lines is None:
                from etl.storage.bronze import land_files

                path = self.file()
                land_files(self.settings, self.name, [(path, path.name)], clock.utc_now())
                data = path.read_bytes()
                self._digest = hashlib.sha256(data).hexdigest()
                try:
                    text = gzip.decompress(data).decode("utf-8-sig")
                except (OSError, EOFError, UnicodeDecodeError) as exc:
                    raise BadInputError([(str(path), None, f"cannot read the file: {exc}")]) from None
                lines = text.splitlines()
                header = next(csv.reader([lines[0]])) if lines else []
                if [h.strip().lower() for h in header] != HEADER:
                    raise BadInputError([(str(path), 1, f"expected the header {','.join(HEADER)}; found {','.join(header) or 'nothing'}")])
                self._lines = lines
            return self._lines, self._digest

    # -------------------------------------------------------------- one job
    def fetch_parse(self, job: Job) -> Parsed:
        lines, digest = self._read()
        path = str(self.file())
        sym = job.symbol
        prefixes = (f"{sym},", f'"{sym}",')
        picked = [(n, line) for n, line in enumerate(lines[1:], start=2) if line.startswith(prefixes)]
        if not picked:
            known = sorted({line.split(",", 1)[0].strip('"') for line in lines[1:]})
            raise UnknownSymbolError(f"no tweets of {sym} in {path}; it has {len(known)} tickers: {', '.join(known)}")
        width = len(HEADER)
        fields = [next(csv.reader([line])) for _, line in picked]
        frame = pd.DataFrame([(f + [""] * width)[:width] for f in fields], columns=HEADER, dtype=object)
        if frame.empty:
            frame = pd.DataFrame({c: pd.Series(dtype=object) for c in HEADER})
        frame["n_fields"] = np.array([len(f) for f in fields], dtype=np.int64)
        frame["line"] = np.array([n for n, _ in picked], dtype=np.int64)
        frame["raw"] = [line for _, line in picked]
        for c in ("created_at_utc", "tweet_id", "user_id", "file_date"):
            frame[c] = frame[c].astype(str).str.strip()

        reasons = pd.Series(pd.NA, index=frame.index, dtype=object)

        def reject(mask, reason) -> None:
            m = np.asarray(mask, dtype=bool) & reasons.isna().to_numpy()
            if m.any():
                reasons[m] = reason(frame.loc[m]) if callable(reason) else reason

        reject(frame["n_fields"].to_numpy() != width, lambda r: [f"expected {width} fields like the header, got {k}" for k in r["n_fields"]])
        t = frame["created_at_utc"]
        reject((t == "").to_numpy(), "missing created_at_utc")
        reject(~t.str.contains(_ZONE).to_numpy(),
               lambda r: [f"created_at_utc {v!r} has no time zone; the warehouse never guesses one" for v in r["created_at_utc"]])
        published = pd.to_datetime(t.where(reasons.isna()), utc=True, errors="coerce", format="ISO8601")
        reject(published.isna().to_numpy(), lambda r: [f"unparseable created_at_utc {v!r}" for v in r["created_at_utc"]])
        reject((frame["tweet_id"] == "").to_numpy(), "missing tweet_id")
        reject(~frame["tweet_id"].str.match(_DIGITS).to_numpy(), lambda r: [f"tweet_id {v!r} is not a numeric id" for v in r["tweet_id"]])
        reject((frame["text"].astype(str).str.strip() == "").to_numpy(), "empty text")

        # the job covers the UTC days start..end; a row whose time is unreadable is placed by its file_date
        lo = pd.Timestamp(job.start).tz_localize("UTC")
        hi = pd.Timestamp(job.end).tz_localize("UTC") + pd.Timedelta(days=1)
        good_time = published.notna().to_numpy()
        in_range = ((published >= lo) & (published < hi)).to_numpy()
        filed = pd.to_datetime(frame["file_date"], format="%Y-%m-%d", errors="coerce")
        by_file = filed.isna().to_numpy() | ((filed >= job.start) & (filed <= job.end)).to_numpy()
        keep = np.where(good_time, in_range, by_file)
        frame, reasons, published = frame.loc[keep], reasons.loc[keep], published.loc[keep]

        # one id: exact copies are one item; copies that disagree are all quarantined
        ok = reasons.isna().to_numpy()
        content = frame["created_at_utc"] + "\x1f" + frame["user_id"] + "\x1f" + frame["text"].astype(str)
        ids = frame["tweet_id"].where(ok)
        variants = content.where(ok).groupby(ids).transform("nunique")
        conflict = ok & (variants.fillna(1).to_numpy() > 1)
        reject_idx = frame.index[conflict]
        reasons.loc[reject_idx] = [f"tweet_id {v} appears more than once with different content; every copy is quarantined"
                                   for v in frame.loc[reject_idx, "tweet_id"]]
        ok = reasons.isna().to_numpy()
        first_copy = ~frame.loc[ok, "tweet_id"].duplicated(keep="first").to_numpy()

        good = frame.loc[ok].loc[first_copy]
        published = published.loc[good.index].astype("datetime64[us, UTC]")
        out = pd.DataFrame({
            "source": self.name,
            "item_id": good["tweet_id"].astype(str),
            "symbol": sym,
            "tickers": [cashtags(str(x), sym) for x in good["text"]],
            "published_at": published,
            "session": news_sessions(published, self.settings.calendar),
            "title": "",
            "description": good["text"].astype(str),
            "author": good["user_id"].where(good["user_id"] != "", None),
            "publisher": "twitter",
            "url": "",
            "keywords": "",
            "event_timestamp": published,
        }, index=good.index)
        out = out.sort_values(["published_at", "item_id"], kind="stable").reset_index(drop=True)[NEWS_COLUMNS]

        bad = reasons.notna().to_numpy()
        rejects = None
        if bad.any():
            rows = frame.loc[bad]
            rejects = pd.DataFrame({
                "source": self.name, "source_file": path, "source_row": rows["line"].to_numpy(),
                "symbol": sym, "raw": rows["raw"].to_numpy(), "reason": reasons[bad].to_numpy(),
            }, columns=REJECT_COLUMNS)
        return Parsed(
            tables={"news_items": out},
            rejects=rejects,
            high_water=pd.Timestamp(job.end).strftime("%Y-%m-%d"),
            rows_fetched=int(len(frame)),
            batch_key=f"stocknet:tweets:{sym}:{job.start:%Y-%m-%d}..{job.end:%Y-%m-%d}:sha256:{digest}",
        )
