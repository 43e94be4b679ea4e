"""FRED / ALFRED: macro series observations with their vintages.

One job per series id (e.g. ``PAYEMS``), each row a ``macro_observations``
row released at its vintage. The request, the event-time rule, missing
values, paging and clipped real-time periods are in docs/ingestion.md
(FRED / ALFRED).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import date

import pandas as pd

from etl.core import clock
from etl.core.errors import ConfigError, VendorError, VendorPayloadError
from etl.sources.base import Job, Parsed, Source
from etl.storage.atomic import read_parquet_dir
from etl.storage.tables import MACRO

DEFAULT_BASE_URL = "https://api.stlouisfed.org"
DEFAULT_RATE = 2.0
MAX_LIMIT = 100_000
MAX_PAGES = 1_000
NEW_YORK = "America/New_York"
OBSERVATIONS_PATH = "/fred/series/observations"
REJECT_COLUMNS = ["source", "source_file", "source_row", "symbol", "raw", "reason"]
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _release_times(raw) -> dict[str, pd.Timedelta]:
    if not isinstance(raw, dict):
        raise ConfigError('fred: [vendors.fred.release_times] must be a table of SERIES = "HH:MM" (New York), e.g. PAYEMS = "08:30"')
    out = {}
    for series, value in raw.items():
        m = _TIME_RE.match(str(value))
        if not m:
            raise ConfigError(f'fred: release time of {series} must be "HH:MM" in New York time (24 h), got {value!r}')
        out[str(series).upper()] = pd.Timedelta(hours=int(m.group(1)), minutes=int(m.group(2)))
    return out


class FredSource(Source):
    name = "fred"
    default_rate = DEFAULT_RATE
    datasets = ("observations",)

    def __init__(self, settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
        cfg = settings.vendor(self.name)
        try:
            self.page_limit = int(cfg.get("page_limit", MAX_LIMIT))
        except (TypeError, ValueError):
            raise ConfigError(f"fred: page_limit must be a whole number 1..{MAX_LIMIT}, got {cfg.get('page_limit')!r}") from None
        if not 1 <= self.page_limit <= MAX_LIMIT:
            raise ConfigError(f"fred: page_limit must be 1..{MAX_LIMIT} (FRED's maximum), got {self.page_limit}")
        self.release_times = _release_times(cfg.get("release_times", {}))
        self.client = self.http(DEFAULT_BASE_URL, key_env="FRED_API_KEY", key_param="api_key")

    def close(self) -> None:
        self.client.close()

    def fetch_parse(self, job: Job) -> Parsed:
        series = job.symbol
        start, end = job.start.strftime("%Y-%m-%d"), job.end.strftime("%Y-%m-%d")
        params = {"series_id": series, "realtime_start": start, "realtime_end": end,
                  "observation_start": "1776-07-04", "file_type": "json", "limit": str(self.page_limit)}
        items: list[tuple[str, int, object]] = []   # (url, position in the result, element)
        digest = hashlib.sha256()
        offset, count, pages = 0, None, 0
        while True:
            fetched, body = self.get_json(job, OBSERVATIONS_PATH, {**params, "offset": str(offset)})
            digest.update(hashlib.sha256(fetched.body).digest())
            pages += 1
            obs = _observations(body, fetched.url)
            count = body["count"] if count is None else count
            items.extend((fetched.url, offset + i, o) for i, o in enumerate(obs))
            offset += len(obs)
            if offset >= count:
                break
            if not obs:
                raise VendorPayloadError(f"fred: {fetched.url} sent no observations at offset {offset}, but count says {count}")
            if pages >= MAX_PAGES:
                raise VendorError(f"fred: more than {MAX_PAGES} pages for {series}; stopping")
        frame, rejects = parse_observations(items, series, self.release_times.get(series))
        high_water = max(frame["realtime_start"]) if len(frame) else None
        frame = drop_carried_over(frame, self._stored(series), start)
        return Parsed(
            tables={"macro_observations": frame},
            rejects=rejects if len(rejects) else None,
            high_water=high_water,
            rows_fetched=len(items),
            batch_key=f"fred.observations {series} {start}..{end} {digest.hexdigest()[:24]}",
        )

    def _stored(self, series: str) -> pd.DataFrame | None:
        return read_parquet_dir(MACRO.path(self.settings) / f"series_id={series}", columns=["period", "value", "missing", "realtime_start"])


def _observations(body, url: str) -> list:
    if not isinstance(body, dict) or not isinstance(body.get("observations"), list):
        raise VendorPayloadError(f"fred: {url} has no 'observations' list; not a series/observations response: {str(body)[:120]!r}")
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise VendorPayloadError(f"fred: {url} has no valid 'count' (got {count!r}); cannot tell whether pages are missing")
    return body["observations"]


def release_event_times(realtime_start: pd.Series, release_time: pd.Timedelta | None) -> pd.Series:
    """When each vintage became public: its day at the release time in New York, or the
    end of that day (the next midnight in New York) when the release time is unknown."""
    day = pd.to_datetime(realtime_start, format="%Y-%m-%d")
    local = day + (release_time if release_time is not None else pd.Timedelta(days=1))
    return clock.to_utc_us(local.dt.tz_localize(NEW_YORK, nonexistent="shift_forward", ambiguous=False))


def parse_observations(items: list[tuple[str, int, object]], series: str, release_time: pd.Timedelta | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ALFRED observation elements as ``macro_observations`` rows and the rejected ones."""
    good: list[dict] = []
    bad: list[dict] = []
    seen: dict[tuple[str, str], float] = {}
    for url, pos, o in items:
        raw = json.dumps(o, default=str)

        def reject(reason: str, url=url, pos=pos, raw=raw) -> None:
            bad.append({"source": "fred", "source_file": url, "source_row": pos, "symbol": series, "raw": raw, "reason": reason})

        if not isinstance(o, dict):
            reject("observation is not an object")
            continue
        absent = [k for k in ("date", "value", "realtime_start", "realtime_end") if o.get(k) in (None, "")]
        if absent:
            reject(f"missing {', '.join(repr(k) for k in absent)}")
            continue
        dates = {k: str(o[k]) for k in ("date", "realtime_start", "realtime_end")}
        wrong = next((k for k, v in dates.items() if not _DATE_RE.match(v) or not _valid_date(v)), None)
        if wrong:
            reject(f"unparseable {wrong} {dates[wrong]!r}")
            continue
        if dates["realtime_start"] > dates["realtime_end"]:
            reject(f"realtime_start {dates['realtime_start']} is after realtime_end {dates['realtime_end']}")
            continue
        text = str(o["value"]).strip()
        missing = text == "."
        if missing:
            value = math.nan
        else:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                reject(f"non-numeric value {o['value']!r}")
                continue
        key = (dates["date"], dates["realtime_start"])
        if key in seen:
            same = (math.isnan(seen[key]) and math.isnan(value)) or seen[key] == value
            if not same:
                reject(f"{dates['date']} vintage {dates['realtime_start']} appears twice with different values")
            continue
        seen[key] = value
        good.append({"period": dates["date"], "value": value, "missing": missing,
                     "realtime_start": dates["realtime_start"], "realtime_end": dates["realtime_end"]})
    frame = pd.DataFrame(good, columns=["period", "value", "missing", "realtime_start", "realtime_end"])
    frame.insert(0, "series_id", pd.Series([series] * len(frame), dtype=object))
    frame["period"] = pd.to_datetime(frame["period"], format="%Y-%m-%d").astype("datetime64[ns]")
    frame["value"] = frame["value"].astype("float64")
    frame["missing"] = frame["missing"].astype(bool)
    frame["realtime_start"] = frame["realtime_start"].astype(object)
    frame["realtime_end"] = frame["realtime_end"].astype(object)
    frame["source"] = "fred"
    frame["event_timestamp"] = release_event_times(frame["realtime_start"], release_time) if len(frame) else pd.Series(dtype="datetime64[us, UTC]")
    return frame, pd.DataFrame(bad, columns=REJECT_COLUMNS)


def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def drop_carried_over(frame: pd.DataFrame, stored: pd.DataFrame | None, start: str) -> pd.DataFrame:
    """Leave out rows whose ``realtime_start`` is the (clipped) request start when
    silver already holds the same value for the period from an earlier vintage."""
    if stored is None or stored.empty or frame.empty:
        return frame
    earlier = stored[stored["realtime_start"].astype(str) < start]
    if earlier.empty:
        return frame
    latest = earlier.sort_values("realtime_start").drop_duplicates(subset=["period"], keep="last")
    latest = latest.assign(period=pd.to_datetime(latest["period"]).astype("datetime64[ns]")).set_index("period")
    clipped = frame["realtime_start"] == start
    prev_value = frame["period"].map(latest["value"])
    prev_missing = frame["period"].map(latest["missing"])
    same = (prev_value == frame["value"]) | (prev_missing.eq(True) & frame["missing"])
    return frame[~(clipped & same)].reset_index(drop=True)
