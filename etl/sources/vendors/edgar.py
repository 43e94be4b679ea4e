"""SEC EDGAR: the filing index (submissions) and XBRL company facts.

Two datasets, one job per ticker:

- ``submissions``: ``GET /submissions/CIK##########.json`` → silver
  ``filings`` (one row per accession in ``filings.recent``);
  ``event_timestamp`` = the filing's acceptance time (``acceptanceDateTime``,
  UTC).
- ``companyfacts``: ``GET /api/xbrl/companyfacts/CIK##########.json`` →
  silver ``fundamentals_facts``, one row per (taxonomy, tag, unit, period,
  accession): a later filing that repeats a period (the comparative columns
  of a 10-K, an amendment) is its own row with its own availability. The job
  also fetches the submissions index (and reads the ``filings`` already in
  silver) to learn each accession's acceptance time; ``event_timestamp`` is
  that acceptance time, or, when the accession is not known there, the END
  of the filed date (the next midnight in New York), never the period end.
  The fetched filings are written to ``filings`` as well.

A job's ``start``/``end`` select rows by filing date (``filed`` /
``filingDate``); the watermark is the latest filing date written. SEC needs
no key but asks every client to name itself in the ``User-Agent`` header
("Company Name admin@company.com"): set ``user_agent`` under
``[vendors.edgar]`` in config.toml or ``EDGAR_USER_AGENT``. Tickers map to
CIKs through the built-in map below plus ``[vendors.edgar.ciks]``; a job
whose symbol is all digits is taken as a CIK.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

import pandas as pd

from etl.core import clock
from etl.core.errors import ConfigError, VendorPayloadError
from etl.core.http import secret
from etl.sources.base import Job, Parsed, Source
from etl.storage.atomic import read_parquet_dir
from etl.storage.tables import FILINGS

DEFAULT_BASE_URL = "https://data.sec.gov"
DEFAULT_RATE = 8.0     # SEC allows 10 requests/s per client
NEW_YORK = "America/New_York"

#: ticker -> CIK for the companies in the shared data; extend with [vendors.edgar.ciks]
BUILTIN_CIKS = {
    "AAPL": 320193,
    "NVDA": 1045810,
    "GOOGL": 1652044,
    "MRVL": 1835632,
    "SNOW": 1640147,
    "TSLA": 1318605,
    "LPA": 1997711,
}

_USER_AGENT_RE = re.compile(r"\S+.*\s\S+@\S+\.\S+")
_DATE_FMT = "%Y-%m-%d"
REJECT_COLUMNS = ["source", "source_file", "source_row", "symbol", "raw", "reason"]


class EdgarSource(Source):
    name = "edgar"
    default_rate = DEFAULT_RATE
    datasets = ("companyfacts", "submissions")

    def __init__(self, settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
        cfg = settings.vendor(self.name)
        agent = str(cfg.get("user_agent") or secret("EDGAR_USER_AGENT", settings.home) or "").strip()
        if not _USER_AGENT_RE.fullmatch(agent):
            shown = f" (got {agent!r})" if agent else ""
            raise ConfigError(
                "edgar: SEC requires a User-Agent naming you and a contact email, e.g. "
                "'Example Research admin@example.com'; set user_agent under [vendors.edgar] in config.toml "
                f"or EDGAR_USER_AGENT in the environment or .env{shown}"
            )
        extra = cfg.get("ciks", {})
        if not isinstance(extra, dict):
            raise ConfigError("edgar: [vendors.edgar.ciks] must be a table of TICKER = CIK, e.g. MSFT = 789019")
        self.ciks = dict(BUILTIN_CIKS)
        for ticker, cik in extra.items():
            try:
                self.ciks[str(ticker).upper()] = int(cik)
            except (TypeError, ValueError):
                raise ConfigError(f"edgar: [vendors.edgar.ciks] {ticker} = {cik!r} is not a CIK number") from None
        self.client = self.http(DEFAULT_BASE_URL, headers={"User-Agent": agent, "Accept": "application/json"})

    def close(self) -> None:
        self.client.close()

    def cik(self, symbol: str) -> int:
        if symbol.isdigit():
            return int(symbol)
        if symbol not in self.ciks:
            raise ConfigError(
                f"edgar: no CIK known for ticker {symbol!r}; add it under [vendors.edgar.ciks] in config.toml "
                f"(e.g. {symbol} = 123456, from https://www.sec.gov/files/company_tickers.json) or pass the CIK itself"
            )
        return self.ciks[symbol]

    # ------------------------------------------------------------------ jobs

    def fetch_parse(self, job: Job) -> Parsed:
        cik = self.cik(job.symbol)
        sub_fetched, sub_obj = self.get_json(job, f"/submissions/CIK{cik:010d}.json")
        filings, filing_rejects, n_filings = parse_submissions(sub_obj, job.symbol, cik, sub_fetched.url)
        in_range = filings[filings["filing_date"].between(job.start, job.end)].reset_index(drop=True)
        if job.dataset == "submissions":
            return Parsed(
                tables={"filings": in_range},
                rejects=_combine(filing_rejects),
                high_water=_latest_date(in_range["filing_date"]),
                rows_fetched=n_filings,
                batch_key=_batch_key(job, sub_fetched.body),
            )
        facts_fetched, facts_obj = self.get_json(job, f"/api/xbrl/companyfacts/CIK{cik:010d}.json")
        facts, fact_rejects, n_facts = parse_companyfacts(facts_obj, job.symbol, cik, facts_fetched.url)
        accepted = acceptance_times(pd.concat([self._stored_filings(job.symbol, cik), filings], ignore_index=True))
        facts = with_availability(facts, accepted)
        facts = facts[facts["filed"].between(job.start, job.end)].reset_index(drop=True)
        return Parsed(
            tables={"fundamentals_facts": facts, "filings": in_range},
            rejects=_combine(fact_rejects, filing_rejects),
            high_water=_latest_date(facts["filed"]),
            rows_fetched=n_facts,
            batch_key=_batch_key(job, sub_fetched.body, facts_fetched.body),
        )

    def _stored_filings(self, symbol: str, cik: int) -> pd.DataFrame:
        """Filings of this symbol already in silver (older accessions may have left SEC's recent list)."""
        stored = read_parquet_dir(FILINGS.path(self.settings) / f"symbol={symbol}", columns=["cik", "accn", "acceptance_time"])
        if stored is None:
            return pd.DataFrame({"cik": pd.Series(dtype="int64"), "accn": pd.Series(dtype=object),
                                 "acceptance_time": pd.Series(dtype="datetime64[us, UTC]")})
        return stored[stored["cik"] == cik]


# -------------------------------------------------------------------- parsing

def _batch_key(job: Job, *bodies: bytes) -> str:
    h = hashlib.sha256()
    for b in bodies:
        h.update(hashlib.sha256(b).digest())
    return f"edgar.{job.dataset} {job.symbol} {h.hexdigest()[:24]}"


def _combine(*rejects: pd.DataFrame) -> pd.DataFrame | None:
    found = [r for r in rejects if len(r)]
    return pd.concat(found, ignore_index=True) if found else None


def _latest_date(dates: pd.Series) -> str | None:
    return None if dates.dropna().empty else dates.max().strftime(_DATE_FMT)


def _text(values: list) -> pd.Series:
    return pd.Series(values, dtype=object)


def _rejects(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=REJECT_COLUMNS)


def _parse_dates(values: list[str]) -> pd.Series:
    """Strict ``YYYY-MM-DD`` (naive midnight); anything else becomes NaT."""
    s = pd.Series(values, dtype=object)
    ok = s.map(lambda v: isinstance(v, str) and len(v) == 10)
    out = pd.to_datetime(s.where(ok), format=_DATE_FMT, errors="coerce")
    return out.astype("datetime64[ns]")


def end_of_day_utc(dates: pd.Series) -> pd.Series:
    """The end of each (naive) date in New York: the next midnight there, in UTC (us)."""
    nxt = (pd.to_datetime(dates) + pd.Timedelta(days=1)).dt.tz_localize(NEW_YORK)
    return clock.to_utc_us(nxt)


def _check_cik(obj: dict, cik: int, url: str) -> None:
    got = obj.get("cik")
    if got is not None and str(got).lstrip("0") != str(cik):
        raise VendorPayloadError(f"edgar: {url} answered for CIK {got!r}, not the requested {cik}")


def parse_submissions(obj, symbol: str, cik: int, url: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """``filings.recent`` (parallel arrays, newest first) as ``filings`` rows, the rows
    that cannot be trusted (with a reason) and the number of filings sent."""
    recent = obj.get("filings", {}).get("recent") if isinstance(obj, dict) and isinstance(obj.get("filings"), dict) else None
    if not isinstance(recent, dict):
        raise VendorPayloadError(f"edgar: {url} has no filings.recent object; not a submissions response: {str(obj)[:120]!r}")
    _check_cik(obj, cik, url)
    required = ("accessionNumber", "filingDate", "acceptanceDateTime", "form")
    missing = [k for k in required if not isinstance(recent.get(k), list)]
    if missing:
        raise VendorPayloadError(f"edgar: {url} filings.recent lacks the array(s) {missing}")
    n = len(recent["accessionNumber"])
    arrays = {k: v for k, v in recent.items() if isinstance(v, list)}
    uneven = sorted(k for k, v in arrays.items() if len(v) != n)
    if uneven:
        raise VendorPayloadError(f"edgar: {url} filings.recent arrays differ in length ({n} accessions; {uneven} differ)")
    col = {k: arrays.get(k, [""] * n) for k in ("accessionNumber", "filingDate", "reportDate", "acceptanceDateTime", "form", "primaryDocument")}
    filing_date = _parse_dates(col["filingDate"])
    report_date = _parse_dates(col["reportDate"])
    accepted = pd.to_datetime(pd.Series(col["acceptanceDateTime"], dtype=object), utc=True, format="ISO8601", errors="coerce")
    good, bad = [], []
    for i in range(n):
        accn, rep = col["accessionNumber"][i], col["reportDate"][i]
        reason = None
        if not isinstance(accn, str) or not accn.strip():
            reason = "missing accessionNumber"
        elif pd.isna(filing_date.iloc[i]):
            reason = f"unparseable filingDate {col['filingDate'][i]!r}"
        elif pd.isna(accepted.iloc[i]):
            reason = f"unparseable acceptanceDateTime {col['acceptanceDateTime'][i]!r}"
        elif rep not in ("", None) and pd.isna(report_date.iloc[i]):
            reason = f"unparseable reportDate {rep!r}"
        if reason:
            raw = json.dumps({k: v[i] for k, v in arrays.items()}, default=str)
            bad.append({"source": "edgar", "source_file": url, "source_row": i, "symbol": symbol, "raw": raw, "reason": reason})
        else:
            good.append(i)
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "cik": pd.Series([cik] * len(good), dtype="int64"),
            "accn": _text([col["accessionNumber"][i] for i in good]),
            "form": _text([str(col["form"][i] or "") for i in good]),
            "filing_date": filing_date.iloc[good].reset_index(drop=True),
            "report_date": report_date.iloc[good].reset_index(drop=True),
            "acceptance_time": accepted.iloc[good].reset_index(drop=True).astype("datetime64[us, UTC]"),
            "primary_document": _text([str(col["primaryDocument"][i] or "") for i in good]),
        }
    )
    frame["event_timestamp"] = frame["acceptance_time"]
    frame = frame.drop_duplicates(subset=["cik", "accn"], keep="first").reset_index(drop=True)
    return frame, _rejects(bad), n


def acceptance_times(filings: pd.DataFrame) -> pd.Series:
    """accession -> acceptance time (UTC), the first one known."""
    f = filings.dropna(subset=["acceptance_time"]).drop_duplicates(subset=["accn"], keep="first")
    return pd.Series(pd.to_datetime(f["acceptance_time"], utc=True).astype("datetime64[us, UTC]").to_numpy(),
                     index=f["accn"].to_numpy(), dtype="datetime64[us, UTC]")


def parse_companyfacts(obj, symbol: str, cik: int, url: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Every fact of ``facts.<taxonomy>.<Tag>.units.<unit>[]`` as one row (without
    availability yet), the facts that cannot be trusted, and how many facts were sent.
    ``source_row`` of a reject is the fact's position in the payload (document order)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("facts"), dict):
        raise VendorPayloadError(f"edgar: {url} has no 'facts' object; not a companyfacts response: {str(obj)[:120]!r}")
    _check_cik(obj, cik, url)
    rows: dict[str, list] = {k: [] for k in ("pos", "taxonomy", "tag", "unit", "start", "end", "val", "accn", "fy", "fp", "form", "filed", "frame")}
    raws: list[str] = []
    bad: list[dict] = []
    pos = -1

    def reject(p: int, raw: str, reason: str) -> None:
        bad.append({"source": "edgar", "source_file": url, "source_row": p, "symbol": symbol, "raw": raw, "reason": reason})

    for taxonomy, tags in obj["facts"].items():
        if not isinstance(tags, dict):
            raise VendorPayloadError(f"edgar: {url} facts.{taxonomy} is not an object")
        for tag, spec in tags.items():
            units = spec.get("units") if isinstance(spec, dict) else None
            if not isinstance(units, dict):
                raise VendorPayloadError(f"edgar: {url} facts.{taxonomy}.{tag} has no 'units' object")
            for unit, facts in units.items():
                if not isinstance(facts, list):
                    raise VendorPayloadError(f"edgar: {url} facts.{taxonomy}.{tag}.units.{unit} is not a list")
                for fact in facts:
                    pos += 1
                    raw = json.dumps({"taxonomy": taxonomy, "tag": tag, "unit": unit, "fact": fact}, default=str)
                    if not isinstance(fact, dict):
                        reject(pos, raw, "fact is not an object")
                        continue
                    absent = [k for k in ("end", "accn", "filed") if fact.get(k) in (None, "")]
                    if absent:
                        reject(pos, raw, f"missing {', '.join(repr(k) for k in absent)}")
                        continue
                    val = fact.get("val")
                    if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val):
                        reject(pos, raw, f"non-numeric value {val!r}")
                        continue
                    fy = fact.get("fy")
                    if fy is not None and (isinstance(fy, bool) or not isinstance(fy, int)):
                        reject(pos, raw, f"fiscal year fy={fy!r} is not a whole number")
                        continue
                    for k, v in (("pos", pos), ("taxonomy", taxonomy), ("tag", tag), ("unit", unit), ("start", fact.get("start") or ""),
                                 ("end", fact["end"]), ("val", float(val)), ("accn", str(fact["accn"])), ("fy", fy),
                                 ("fp", str(fact.get("fp") or "")), ("form", str(fact.get("form") or "")),
                                 ("filed", fact["filed"]), ("frame", str(fact.get("frame") or ""))):
                        rows[k].append(v)
                    raws.append(raw)
    n = pos + 1
    start, end, filed = _parse_dates(rows["start"]), _parse_dates(rows["end"]), _parse_dates(rows["filed"])
    keep = []
    for i in range(len(rows["pos"])):
        reason = None
        if rows["start"][i] and pd.isna(start.iloc[i]):
            reason = f"unparseable start date {rows['start'][i]!r}"
        elif pd.isna(end.iloc[i]):
            reason = f"unparseable end date {rows['end'][i]!r}"
        elif pd.isna(filed.iloc[i]):
            reason = f"unparseable filed date {rows['filed'][i]!r}"
        elif rows["start"][i] and start.iloc[i] > end.iloc[i]:
            reason = f"period start {rows['start'][i]} is after its end {rows['end'][i]}"
        if reason:
            reject(rows["pos"][i], raws[i], reason)
        else:
            keep.append(i)
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "cik": pd.Series([cik] * len(keep), dtype="int64"),
            "taxonomy": _text([rows["taxonomy"][i] for i in keep]),
            "tag": _text([rows["tag"][i] for i in keep]),
            "unit": _text([rows["unit"][i] for i in keep]),
            "period_start": _text([rows["start"][i] for i in keep]),
            "period_end": _text([rows["end"][i] for i in keep]),
            "value": pd.Series([rows["val"][i] for i in keep], dtype="float64"),
            "accn": _text([rows["accn"][i] for i in keep]),
            "fy": pd.array([rows["fy"][i] for i in keep], dtype="Int64"),
            "fp": _text([rows["fp"][i] for i in keep]),
            "form": _text([rows["form"][i] for i in keep]),
            "filed": filed.iloc[keep].reset_index(drop=True),
            "frame": _text([rows["frame"][i] for i in keep]),
        }
    )
    frame["filed"] = frame["filed"].astype("datetime64[ns]")
    # the same fact twice: identical copies collapse; copies that disagree are all rejected
    key = ["taxonomy", "tag", "unit", "period_start", "period_end", "accn"]
    frame["_pos"] = [rows["pos"][i] for i in keep]
    frame = frame.drop_duplicates(subset=[c for c in frame.columns if c != "_pos"], keep="first")
    clash = frame.duplicated(subset=key, keep=False)
    for i in frame.index[clash]:
        reject(int(frame.at[i, "_pos"]), raws[keep[i]], "the same fact (tag, unit, period, accession) appears with different values")
    frame = frame[~clash].drop(columns="_pos").reset_index(drop=True)
    rejects = _rejects(sorted(bad, key=lambda r: r["source_row"]))
    return frame, rejects, n


def with_availability(facts: pd.DataFrame, accepted: pd.Series) -> pd.DataFrame:
    """Add ``acceptance_time`` (NaT when the accession is unknown) and
    ``event_timestamp``: the acceptance time, else the end of the filed date."""
    out = facts.copy()
    out["acceptance_time"] = pd.Series(out["accn"].map(accepted), index=out.index, dtype="datetime64[us, UTC]")
    fallback = end_of_day_utc(out["filed"]) if len(out) else pd.Series(dtype="datetime64[us, UTC]")
    out["event_timestamp"] = out["acceptance_time"].where(out["acceptance_time"].notna(), fallback).astype("datetime64[us, UTC]")
    return out
