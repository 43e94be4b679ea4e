"""File sources: QuantConnect Lean's formats beyond daily bars, and folders of FX bars.

Both run through :func:`etl.pipeline.run_ingest` like the HTTP vendors: every
file read is landed in bronze as it is, each row is validated, a row that
cannot be trusted goes to quarantine with a reason (never coerced, never
dropped), and the good rows are appended to silver.

Lean (``alpha ingest lean --dataset D [SYMBOLS] --path ROOT``; formats in the
root's ``SOURCE.txt`` and Lean's ``Data/equity/readme.md``):

- ``minute``: ``equity_usa_minute/yyyyMMdd_<t>_minute_trade.csv``, no header,
  ``ms after midnight New York,open,high,low,close,volume`` (deci-cents)
  -> ``bars_minute``; a bar is knowable at its end (start + 1 minute).
- ``coarse_universe``: ``equity_usa_coarse_universe/yyyyMMdd.csv.gz``, every US
  equity that day, delisted ones included -> ``universe_membership``
  (universe ``us_equity_coarse``); each row is knowable at that session's
  close + delay. ``symbol`` is the warehouse symbol: the Lean map file whose
  history the security's id and ticker match (a 2014 ``GOOG`` row of today's
  GOOGL is symbol ``GOOGL``), else the ticker.
- ``option_chains``: ``option_usa_universes/<und>/yyyyMMdd.csv`` -> ``option_quotes``,
  knowable at the session's close + delay.
- ``fine_fundamentals``: ``equity_usa_fine_fundamentals/<t>/yyyyMMdd.json``
  (Morningstar snapshots keyed by numeric codes) -> ``fundamentals_snapshots``,
  one row per field and period; knowable at the end (midnight New York) of the
  filing's FileDate, and never before the end of the snapshot's own date.

FX (``alpha ingest fx --path FOLDER``): ``<PAIR>.csv`` with a tz-aware
``datetime`` (or ``date``) column holding each bar's START time and
open/high/low/close[/volume], at any interval up to daily, aggregated into
24x5 session bars -> ``fx_bars_daily``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings, default_lean_path
from etl.core.errors import BadInputError, ConfigError, UnknownSymbolError
from etl.sources.base import SYMBOL_RE, Job, Parsed, Source
from etl.sources.lean import formats as lean

NEW_YORK = "America/New_York"
MINUTE = "equity_usa_minute"
COARSE = "equity_usa_coarse_universe"
OPTIONS = "option_usa_universes"
FINE = "equity_usa_fine_fundamentals"
COARSE_UNIVERSE = "us_equity_coarse"
MINUTE_COLUMNS = ["ms", "open", "high", "low", "close", "volume"]
COARSE_COLUMNS = ["sid", "ticker", "close", "volume", "dollar_volume", "has_fundamental_data", "price_factor", "split_factor"]
OPTION_COLUMNS = ["expiry", "strike", "right", "open", "high", "low", "close", "volume", "open_interest",
                  "implied_volatility", "delta", "gamma", "vega", "theta", "rho"]
GREEKS = ["delta", "gamma", "vega", "theta", "rho"]
PRICES = ["open", "high", "low", "close"]
_DATED = re.compile(r"^(\d{8})(?:[._]|$)")


# ------------------------------------------------------------------ helpers

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_date(path: Path) -> pd.Timestamp | None:
    m = _DATED.match(path.name)
    if not m:
        return None
    try:
        return pd.Timestamp(pd.to_datetime(m.group(1), format="%Y%m%d"))
    except ValueError:
        return None


def _dated_files(paths, start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, Path]]:
    out = []
    for p in paths:
        d = _file_date(p)
        if d is not None and start <= d <= end:
            out.append((d, p))
    return sorted(out, key=lambda x: (x[0], x[1].name))


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")


def _file_reject(source: str, path: Path, symbol: str, reason: str, raw: str = "") -> pd.DataFrame:
    return pd.DataFrame({"source": [source], "source_file": [str(path)], "source_row": [pd.NA],
                         "symbol": [symbol], "raw": [raw], "reason": [reason]})


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)


def _split_lines(path: Path, lines: list[tuple[int, str]], columns: list[str], symbol: str, **extra) -> pd.DataFrame:
    """One row of string fields per input line, with where it came from."""
    fields = [line.split(",") for _, line in lines]
    width = len(columns)
    frame = pd.DataFrame([(f + [""] * width)[:width] for f in fields], columns=columns, dtype=object)
    if not len(frame):
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame["n_fields"] = np.array([len(f) for f in fields], dtype=np.int64)
    frame["source_file"] = str(path)
    frame["source_row"] = np.array([n for n, _ in lines], dtype=np.int64)
    frame["symbol"] = symbol
    frame["raw"] = [line for _, line in lines]
    for k, v in extra.items():
        frame[k] = v
    return frame


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, text) of every non-blank line."""
    return [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


class _Rows:
    """Raw string rows of one batch and the rows rejected so far: each row is
    rejected once, with the first reason found (as :func:`etl.bars.validate_bars`)."""

    def __init__(self, frame: pd.DataFrame, source: str):
        self.f = frame.reset_index(drop=True)
        self.source = source
        self.bad = np.zeros(len(self.f), dtype=bool)
        self._parts: list[pd.DataFrame] = []

    def __len__(self) -> int:
        return len(self.f)

    def reject(self, mask, reason: str | Callable[[pd.DataFrame], list[str]]) -> None:
        m = np.asarray(mask, dtype=bool) & ~self.bad
        if not m.any():
            return
        rows = self.f.loc[m]
        reasons = list(reason(rows)) if callable(reason) else [reason] * len(rows)
        self._parts.append(pd.DataFrame({
            "source": self.source,
            "source_file": rows["source_file"].to_numpy(),
            "source_row": rows["source_row"].to_numpy(),
            "symbol": rows["symbol"].to_numpy(),
            "raw": rows["raw"].to_numpy(),
            "reason": reasons,
        }))
        self.bad |= m

    def field_count(self, columns: list[str]) -> None:
        n = len(columns)
        self.reject(self.f["n_fields"].to_numpy() != n,
                    lambda r: [f"expected {n} comma-separated fields ({','.join(columns)}), got {k}" for k in r["n_fields"]])

    def number(self, col: str, *, required: bool = True) -> pd.Series:
        """A column as float64: missing (if required), non-numeric and non-finite values rejected;
        an empty optional value is NaN."""
        text = self.f[col].astype(str).str.strip()
        empty = (text == "").to_numpy()
        num = pd.to_numeric(text.where(~empty), errors="coerce").astype("float64")
        if required:
            self.reject(empty, f"missing {col}")
        nonnum = ~empty & num.isna().to_numpy()
        self.reject(nonnum, lambda r: [f"non-numeric {col} {str(v).strip()!r}" for v in r[col]])
        self.reject(~empty & ~nonnum & ~np.isfinite(num.to_numpy()), lambda r: [f"non-finite {col} {str(v).strip()!r}" for v in r[col]])
        return num

    def duplicated(self, keys: list[str] | pd.DataFrame, what: Callable[[pd.DataFrame], list[str]]) -> None:
        """Rows sharing a key: a line repeated exactly is kept once (each further copy
        is rejected as a copy); rows that disagree are all rejected, since we cannot
        know which one is right. ``keys`` should include the file."""
        frame = (self.f[keys] if isinstance(keys, list) else keys).reset_index(drop=True)
        dup = frame.duplicated(keep=False).to_numpy() & ~self.bad
        if not dup.any():
            return
        cols = [f"k{i}" for i in range(frame.shape[1])]
        sub = frame.loc[dup].set_axis(cols, axis=1)
        sub["raw"] = self.f.loc[dup, "raw"].astype(str).str.strip().to_numpy()
        sub["line"] = self.f.loc[dup, "source_row"].to_numpy()
        groups = sub.groupby(cols, dropna=False, sort=False)
        exact = (groups["raw"].transform("nunique") == 1).to_numpy()
        first = groups["line"].transform("min").to_numpy()
        copy = np.zeros(len(self.f), dtype=bool)
        copy[np.flatnonzero(dup)[exact & (sub["line"].to_numpy() != first)]] = True
        first_of = dict(zip(np.flatnonzero(dup), first, strict=True))
        self.reject(copy, lambda r: [f"exact copy of line {first_of[i]}" for i in r.index])
        conflict = np.zeros(len(self.f), dtype=bool)
        conflict[np.flatnonzero(dup)[~exact]] = True
        self.reject(conflict, what)

    def rejects(self) -> pd.DataFrame | None:
        out = _concat(self._parts)
        if out is None:
            return None
        return out.sort_values(["source_file", "source_row"], kind="stable").reset_index(drop=True)


def _not_session(rows: _Rows, dates: pd.Series, calendar: str) -> None:
    ok = clock.is_session(pd.DatetimeIndex(dates), calendar)
    rows.reject(~ok, lambda r: [f"file date is not a {calendar} session" for _ in range(len(r))])


def _close_plus_delay(dates: pd.Series, settings: Settings) -> pd.Series:
    """Availability of a daily value: the session's close + the bar delay (UTC, us)."""
    if not len(dates):
        return pd.Series(pd.DatetimeIndex([], tz="UTC").astype("datetime64[us, UTC]"), index=dates.index)
    codes, unique = pd.factorize(pd.DatetimeIndex(dates))
    times = clock.availability_times(unique, settings.bar_delay_minutes, settings.calendar)
    return pd.Series(times.take(codes), index=dates.index)


def _end_of_day_new_york(dates: pd.Series) -> pd.Series:
    """Midnight New York at the end of each (naive) date, in UTC."""
    ends = pd.DatetimeIndex(dates) + pd.Timedelta(days=1)
    return pd.Series(ends.tz_localize(NEW_YORK).tz_convert("UTC").astype("datetime64[us, UTC]"), index=dates.index)


def _us(values) -> pd.Series:
    return pd.to_datetime(values).astype("datetime64[us]")


# ------------------------------------------------------------------ Lean

class LeanSource(Source):
    """QuantConnect Lean's US equity and option files (see the module doc).

    Daily bars, factor and map files are ingested by :func:`etl.ingest.ingest_lean`
    (``alpha ingest lean``); this source covers the other datasets. Without
    symbols a dataset covers every symbol that has files.
    """

    name = "lean"
    datasets = ("minute", "coarse_universe", "option_chains", "fine_fundamentals")
    needs_symbols = False

    def __init__(self, settings: Settings, path: str | None = None):
        super().__init__(settings, path)
        self.root = (Path(path) if path else default_lean_path()).resolve()
        self._lock = threading.Lock()
        self._maps: dict[str, list[tuple[str, np.datetime64, np.ndarray, np.ndarray]]] | None = None
        self._codes: dict[str, list[tuple[str, str]]] | None = None

    # -------------------------------------------------------------- planning
    def _folder(self, sub: str) -> Path:
        if not self.root.is_dir():
            raise ConfigError(f"Lean data folder {self.root} does not exist; pass --path or set ALPHA_LEAN_DATA")
        folder = self.root / sub
        if not folder.is_dir():
            raise ConfigError(f"{self.root} has no {sub}/ folder; is it a Lean data folder?")
        return folder

    def available(self, dataset: str) -> list[str]:
        """Every symbol with files of ``dataset``."""
        if dataset == "minute":
            names = {p.name.split("_")[1].upper() for p in self._folder(MINUTE).glob("*_minute_trade.csv") if p.name.count("_") >= 3}
        elif dataset == "option_chains":
            names = {p.name.upper() for p in self._folder(OPTIONS).iterdir() if p.is_dir()}
        elif dataset == "fine_fundamentals":
            names = {p.name.upper() for p in self._folder(FINE).iterdir() if p.is_dir()}
        else:
            return ["ALL"]
        return sorted(names)

    def jobs(self, dataset: str, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> list[Job]:
        if dataset == "coarse_universe":
            if symbols and symbols != ["ALL"]:
                raise ConfigError(f"lean.coarse_universe covers every US equity; give no symbols (got {symbols})")
            self._folder(COARSE)
            return [Job(self.name, dataset, "ALL", start, end)]
        symbols = symbols or self.available(dataset)
        if not symbols:
            raise ConfigError(f"no Lean {dataset} files under {self.root}")
        return [Job(self.name, dataset, s, start, end) for s in symbols]

    def fetch_parse(self, job: Job) -> Parsed:
        parse = {
            "minute": self._minute,
            "coarse_universe": self._coarse,
            "option_chains": self._options,
            "fine_fundamentals": self._fundamentals,
        }[job.dataset]
        return parse(job)

    def _land(self, files: list[Path]) -> None:
        from etl.storage.bronze import land_files

        with self._lock:  # the bronze manifest is read-modify-write; workers share this source
            land_files(self.settings, self.name, [(p, str(p.relative_to(self.root))) for p in files], pd.Timestamp.now(tz="UTC"))

    def _batch_key(self, job: Job, files: list[Path]) -> str:
        return f"lean:{job.dataset}:{job.symbol}:" + ",".join(f"{p.name}:{_sha256(p)}" for p in files)

    # -------------------------------------------------------------- minute
    def _minute(self, job: Job) -> Parsed:
        folder = self._folder(MINUTE)
        t = job.symbol.lower()
        every = sorted(folder.glob(f"*_{t}_minute_trade.csv"))
        if not every:
            raise UnknownSymbolError(f"no Lean minute trade files for {job.symbol} in {folder} (yyyyMMdd_{t}_minute_trade.csv)")
        files = _dated_files(every, job.start, job.end)
        if not files:
            return Parsed(tables={"bars_minute": pd.DataFrame()})
        self._land([p for _, p in files])
        frames, file_rejects = [], []
        for d, p in files:
            try:
                text = _read_text(p)
            except (OSError, UnicodeDecodeError) as exc:
                file_rejects.append(_file_reject(self.name, p, job.symbol, f"cannot read the file: {exc}"))
                continue
            frames.append(_split_lines(p, _data_lines(text), MINUTE_COLUMNS, job.symbol, file_date=d))
        raw = _concat(frames)
        if raw is None:
            raw = _split_lines(folder, [], MINUTE_COLUMNS, job.symbol, file_date=pd.NaT)
        rows = _Rows(raw, self.name)
        rows.field_count(MINUTE_COLUMNS)
        ms = rows.number("ms")
        rows.reject((ms % 60_000 != 0) | (ms < 0) | (ms >= 86_400_000),
                    lambda r: [f"time {str(v).strip()} ms is not a minute of the day (0..86340000, whole minutes)" for v in r["ms"]])
        values = {c: rows.number(c) for c in PRICES + ["volume"]}
        _check_bar(rows, values)
        dates = pd.to_datetime(rows.f["file_date"])
        _not_session(rows, dates, self.settings.calendar)
        local = dates + pd.to_timedelta(ms.where(~rows.bad), unit="ms")
        start = pd.Series(pd.DatetimeIndex(local).tz_localize(NEW_YORK, ambiguous="NaT", nonexistent="NaT"), index=rows.f.index)
        rows.reject(start.isna().to_numpy(), lambda r: ["time does not exist (or exists twice) in New York on that date" for _ in range(len(r))])
        rows.duplicated(pd.DataFrame({"f": rows.f["source_file"], "ms": ms}),
                        lambda r: [f"minute {str(v).strip()} ms appears more than once in the file with different values" for v in r["ms"]])
        good = ~rows.bad
        bar_start = start[good].dt.tz_convert("UTC").astype("datetime64[us, UTC]").reset_index(drop=True)
        out = pd.DataFrame({
            "symbol": job.symbol,
            "bar_start": bar_start,
            "bar_end": (bar_start + pd.Timedelta(minutes=1)).astype("datetime64[us, UTC]"),
            **{c: (values[c][good] / lean.PRICE_DIVISOR).astype("float64").reset_index(drop=True) for c in PRICES},
            "volume": values["volume"][good].astype("float64").reset_index(drop=True),
            "vwap": np.nan,     # not in Lean's trade bars
            "trades": np.nan,   # not in Lean's trade bars
            "source": self.name,
        })
        out["event_timestamp"] = out["bar_end"]
        out = out.sort_values("bar_start", kind="stable").reset_index(drop=True)
        return Parsed(
            tables={"bars_minute": out},
            rejects=_concat([*file_rejects, rows.rejects()]),
            high_water=files[-1][0].strftime("%Y-%m-%d"),
            rows_fetched=len(rows),
            batch_key=self._batch_key(job, [p for _, p in files]),
        )

    # -------------------------------------------------------------- coarse universe
    def symbol_maps(self) -> dict[str, list[tuple[str, np.datetime64, np.ndarray, np.ndarray]]]:
        """First ticker -> [(warehouse symbol, first date, last dates, tickers)] from the map files."""
        with self._lock:
            if self._maps is None:
                maps: dict[str, list] = {}
                folder = self.root / lean.MAPS
                for p in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
                    m = lean.read_map_file(p)
                    if m.empty or m["last_date"].isna().any():
                        continue
                    # each row is the LAST date of its ticker; the first row is the listing date
                    maps.setdefault(m["ticker"].iloc[0], []).append(
                        (p.stem.upper(), m["last_date"].to_numpy()[0], m["last_date"].to_numpy(), m["ticker"].to_numpy(dtype=object))
                    )
                self._maps = maps
            return self._maps

    def warehouse_symbols(self, sids: pd.Series, dates: pd.Series, tickers: pd.Series) -> np.ndarray:
        """The warehouse symbol of each (security id, date, ticker as traded).

        A Lean security id starts with the security's FIRST ticker; a map file
        matches a row when its first ticker is that one, the date lies within
        its history and the ticker it gives for that date is the row's ticker.
        Rows no map file matches keep their ticker."""
        out = tickers.to_numpy(dtype=object).copy()
        roots = sids.str.split(" ", n=1).str[0].str.upper().to_numpy(dtype=object)
        day = pd.DatetimeIndex(dates).to_numpy()
        tick = tickers.str.upper().to_numpy(dtype=object)
        for first, candidates in self.symbol_maps().items():
            idx = np.flatnonzero(roots == first)
            if not len(idx):
                continue
            found = np.zeros(len(idx), dtype=bool)
            for symbol, listed, last_dates, map_tickers in candidates:
                d = day[idx]
                pos = np.searchsorted(last_dates, d, side="left")
                inside = (d >= listed) & (pos < len(last_dates))
                traded = map_tickers[np.minimum(pos, len(last_dates) - 1)]
                hit = inside & (traded == tick[idx]) & ~found
                out[idx[hit]] = symbol
                found |= hit
        return out

    def _coarse(self, job: Job) -> Parsed:
        folder = self._folder(COARSE)
        files = _dated_files([p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz"))], job.start, job.end)
        if not files:
            return Parsed(tables={"universe_membership": pd.DataFrame()})
        self._land([p for _, p in files])
        frames, file_rejects = [], []
        for d, p in files:
            try:
                text = _read_text(p)
            except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
                file_rejects.append(_file_reject(self.name, p, "ALL", f"cannot read the file: {type(exc).__name__}: {exc}"))
                continue
            frames.append(_split_lines(p, _data_lines(text), COARSE_COLUMNS, "ALL", file_date=d))
        raw = _concat(frames)
        if raw is None:
            raw = _split_lines(folder, [], COARSE_COLUMNS, "ALL", file_date=pd.NaT)
        raw["symbol"] = raw["ticker"].astype(str).str.strip()   # label rejects with the ticker as traded
        rows = _Rows(raw, self.name)
        rows.field_count(COARSE_COLUMNS)
        sid = rows.f["sid"].astype(str).str.strip()
        ticker = rows.f["ticker"].astype(str).str.strip()
        rows.reject(~sid.str.match(r"^[A-Z0-9][A-Z0-9.\-]* [0-9A-Z]+$").to_numpy(),
                    lambda r: [f"security id {str(v).strip()!r} is not '<FIRST TICKER> <code>'" for v in r["sid"]])
        rows.reject(~ticker.str.match(SYMBOL_RE).to_numpy(), lambda r: [f"ticker {str(v).strip()!r} is not a valid symbol" for v in r["ticker"]])
        close = rows.number("close")
        rows.reject((close <= 0).to_numpy(), lambda r: [f"close must be > 0, got {str(v).strip()}" for v in r["close"]])
        volume = rows.number("volume")
        dollar_volume = rows.number("dollar_volume")
        for name, s in (("volume", volume), ("dollar_volume", dollar_volume)):
            rows.reject((s < 0).to_numpy(), lambda r, c=name: [f"negative {c} {str(v).strip()}" for v in r[c]])
        flag = rows.f["has_fundamental_data"].astype(str).str.strip().str.lower()
        rows.reject(~flag.isin(["true", "false"]).to_numpy(),
                    lambda r: [f"has_fundamental_data must be True or False, got {str(v).strip()!r}" for v in r["has_fundamental_data"]])
        factors = {c: rows.number(c) for c in ("price_factor", "split_factor")}
        for name, s in factors.items():
            rows.reject((s <= 0).to_numpy(), lambda r, c=name: [f"{c} must be > 0, got {str(v).strip()}" for v in r[c]])
        dates = pd.to_datetime(rows.f["file_date"])
        _not_session(rows, dates, self.settings.calendar)
        rows.duplicated(pd.DataFrame({"f": rows.f["source_file"], "sid": sid}),
                        lambda r: [f"security id {str(v).strip()!r} is listed more than once that day with different values; "
                                   "cannot tell which row is right" for v in r["sid"]])
        good = ~rows.bad
        out = pd.DataFrame({
            "universe": COARSE_UNIVERSE,
            "date": _us(dates[good]).to_numpy(),
            "sid": sid[good].to_numpy(dtype=object),
            "ticker": ticker[good].to_numpy(dtype=object),
            "symbol": self.warehouse_symbols(sid[good], dates[good], ticker[good]) if good.any() else np.array([], dtype=object),
            "close": close[good].to_numpy(dtype="float64"),
            "volume": volume[good].to_numpy(dtype="float64"),
            "dollar_volume": dollar_volume[good].to_numpy(dtype="float64"),
            "has_fundamental_data": (flag[good] == "true").to_numpy(dtype=bool),
            "price_factor": factors["price_factor"][good].to_numpy(dtype="float64"),
            "split_factor": factors["split_factor"][good].to_numpy(dtype="float64"),
            "source": self.name,
        })
        out["event_timestamp"] = _close_plus_delay(out["date"], self.settings)
        out = out.sort_values(["date", "sid"], kind="stable").reset_index(drop=True)
        return Parsed(
            tables={"universe_membership": out},
            rejects=_concat([*file_rejects, rows.rejects()]),
            high_water=files[-1][0].strftime("%Y-%m-%d"),
            rows_fetched=len(rows),
            batch_key=self._batch_key(job, [p for _, p in files]),
        )

    # -------------------------------------------------------------- option chains
    def _options(self, job: Job) -> Parsed:
        """One day's chain per file. The vendor writes 0 for what it does not have:
        a contract whose open, high, low and close are all 0 did not trade (prices
        NaN), an implied volatility of 0 was not computed (NaN), and when it was
        not computed greeks that are all 0 are NaN too."""
        base = self._folder(OPTIONS)
        folder = base / job.symbol.lower()
        if not folder.is_dir():
            raise UnknownSymbolError(f"no Lean option chains for {job.symbol} in {base} ({job.symbol.lower()}/yyyyMMdd.csv)")
        files = _dated_files(folder.glob("*.csv"), job.start, job.end)
        if not files:
            return Parsed(tables={"option_quotes": pd.DataFrame()})
        self._land([p for _, p in files])
        frames, file_rejects = [], []
        for d, p in files:
            try:
                lines = _data_lines(_read_text(p))
            except (OSError, UnicodeDecodeError) as exc:
                file_rejects.append(_file_reject(self.name, p, job.symbol, f"cannot read the file: {exc}"))
                continue
            if not lines or not lines[0][1].startswith("#"):
                file_rejects.append(_file_reject(self.name, p, job.symbol, "no header row (#expiry,strike,right,...)", lines[0][1] if lines else ""))
                continue
            header = [c.strip().lstrip("#").lower() for c in lines[0][1].split(",")]
            if header != OPTION_COLUMNS:
                file_rejects.append(_file_reject(self.name, p, job.symbol, f"header is {header}, expected {OPTION_COLUMNS}", lines[0][1]))
                continue
            frames.append(_split_lines(p, lines[1:], OPTION_COLUMNS, job.symbol, file_date=d))
        raw = _concat(frames)
        if raw is None:
            raw = _split_lines(folder, [], OPTION_COLUMNS, job.symbol, file_date=pd.NaT)
        rows = _Rows(raw, self.name)
        rows.field_count(OPTION_COLUMNS)
        dates = pd.to_datetime(rows.f["file_date"])
        _not_session(rows, dates, self.settings.calendar)

        # the underlying's own row: empty expiry, strike and right; keep its close
        contract_cols = rows.f[["expiry", "strike", "right"]].apply(lambda s: s.astype(str).str.strip())
        is_under = (contract_cols == "").all(axis=1).to_numpy()
        under_close = pd.to_numeric(rows.f["close"].astype(str).str.strip(), errors="coerce")
        first_under = is_under & ~pd.Series(rows.f["source_file"]).where(is_under).duplicated().to_numpy()
        rows.reject(is_under & ~first_under, "a second underlying row (empty expiry, strike and right) in the file")
        bad_under = first_under & ~(under_close > 0).to_numpy()
        rows.reject(bad_under, lambda r: [f"underlying close must be a number > 0, got {str(v).strip()!r}" for v in r["close"]])
        per_file = pd.Series(under_close.to_numpy()[first_under & ~bad_under], index=rows.f["source_file"].to_numpy()[first_under & ~bad_under])
        underlying_close = rows.f["source_file"].map(per_file).astype("float64")
        rows.bad |= is_under   # not a contract row: nothing more to check or store

        expiry = pd.to_datetime(contract_cols["expiry"], format="%Y%m%d", errors="coerce")
        rows.reject(expiry.isna().to_numpy(), lambda r: [f"expiry {str(v).strip()!r} is not a yyyyMMdd date" for v in r["expiry"]])
        rows.reject((expiry < dates).to_numpy(), lambda r: [f"expiry {str(v).strip()} is before the chain's date" for v in r["expiry"]])
        strike = rows.number("strike")
        rows.reject((strike <= 0).to_numpy(), lambda r: [f"strike must be > 0, got {str(v).strip()}" for v in r["strike"]])
        milli = (strike * 1000).round()
        rows.reject((abs(strike * 1000 - milli) > 1e-6).to_numpy(), lambda r: [f"strike {str(v).strip()} has more than 3 decimals" for v in r["strike"]])
        right = contract_cols["right"].str.upper()
        rows.reject(~right.isin(["C", "P"]).to_numpy(), lambda r: [f"right must be C or P, got {str(v).strip()!r}" for v in r["right"]])
        values = {c: rows.number(c) for c in PRICES + ["volume"]}
        for c in PRICES:
            rows.reject((values[c] < 0).to_numpy(), lambda r, c=c: [f"{c} must be >= 0, got {str(v).strip()}" for v in r[c]])
        rows.reject((values["volume"] < 0).to_numpy(), lambda r: [f"negative volume {str(v).strip()}" for v in r["volume"]])
        lo, hi = values["low"], values["high"]
        rows.reject(((lo > hi) | (values["open"] > hi) | (values["close"] > hi) | (values["open"] < lo) | (values["close"] < lo)).to_numpy(),
                    "inconsistent bar: need low <= open, close <= high")
        optional = {c: rows.number(c, required=False) for c in ["open_interest", "implied_volatility", *GREEKS]}
        rows.reject((optional["open_interest"] < 0).to_numpy(), lambda r: [f"negative open_interest {str(v).strip()}" for v in r["open_interest"]])
        rows.reject((optional["implied_volatility"] < 0).to_numpy(), lambda r: [f"negative implied_volatility {str(v).strip()}" for v in r["implied_volatility"]])
        rows.duplicated(pd.DataFrame({"f": rows.f["source_file"], "e": contract_cols["expiry"], "k": strike, "r": right}),
                        lambda r: [f"contract {str(e).strip()} {str(k).strip()} {str(x).strip()} appears more than once in the file with different values"
                                   for e, k, x in zip(r["expiry"], r["strike"], r["right"], strict=True)])

        good = ~rows.bad
        g = lambda s: s[good].reset_index(drop=True)  # noqa: E731
        out = pd.DataFrame({
            "underlying": job.symbol,
            "date": _us(g(dates)),
            "expiry": _us(g(expiry)),
            "strike": g(strike).astype("float64"),
            "right": g(right).astype(object),
            **{c: g(values[c]).astype("float64") for c in PRICES + ["volume"]},
            **{c: g(optional[c]).astype("float64") for c in optional},
            "underlying_close": g(underlying_close),
            "bid": np.nan,   # not in this file
            "ask": np.nan,
            "source": self.name,
        })
        no_trade = (out[PRICES] == 0).all(axis=1)
        out.loc[no_trade, PRICES] = np.nan
        no_iv = out["implied_volatility"] == 0
        no_greeks = no_iv & (out[GREEKS] == 0).all(axis=1)
        out.loc[no_iv, "implied_volatility"] = np.nan
        out.loc[no_greeks, GREEKS] = np.nan
        out.insert(2, "contract", [
            f"{job.symbol}{e:%y%m%d}{r}{int(round(k * 1000)):08d}" for e, r, k in zip(out["expiry"], out["right"], out["strike"], strict=True)
        ])
        out["event_timestamp"] = _close_plus_delay(out["date"], self.settings)
        out = out.sort_values(["date", "expiry", "strike", "right"], kind="stable").reset_index(drop=True)
        return Parsed(
            tables={"option_quotes": out},
            rejects=_concat([*file_rejects, rows.rejects()]),
            high_water=files[-1][0].strftime("%Y-%m-%d"),
            rows_fetched=len(rows),
            batch_key=self._batch_key(job, [p for _, p in files]),
        )

    # -------------------------------------------------------------- fine fundamentals
    def code_map(self) -> dict[str, list[tuple[str, str]]]:
        """JSON code -> [(Lean class, property)] from ``json_code_map.csv`` (empty when absent)."""
        with self._lock:
            if self._codes is None:
                path = self.root / FINE / "json_code_map.csv"
                codes: dict[str, list[tuple[str, str]]] = {}
                if path.exists():
                    for row in csv.DictReader(path.read_text().splitlines()):
                        codes.setdefault(row["json_code"].strip(), []).append((row["lean_class"].strip(), row["property"].strip()))
                self._codes = codes
            return self._codes

    def _field(self, path: tuple[str, ...], code: str) -> str:
        """``Section[.Statement].Property``: the code's Lean property (the one of the
        enclosing class when a code is shared), qualified by where it sits."""
        options = self.code_map().get(code, [])
        prop = next((p for cls, p in options if cls == path[-1]), options[0][1] if options else code)
        return ".".join((*path, prop))

    def _fundamentals(self, job: Job) -> Parsed:
        base = self._folder(FINE)
        folder = base / job.symbol.lower()
        if not folder.is_dir():
            raise UnknownSymbolError(f"no Lean fine fundamentals for {job.symbol} in {base} ({job.symbol.lower()}/yyyyMMdd.json)")
        files = _dated_files(folder.glob("*.json"), job.start, job.end)
        if not files:
            return Parsed(tables={"fundamentals_snapshots": pd.DataFrame()})
        self._land([p for _, p in files])
        records, rejects = [], []
        for d, p in files:
            try:
                text = _read_text(p)
                doc = json.loads(text)
            except (OSError, UnicodeDecodeError) as exc:
                rejects.append(_file_reject(self.name, p, job.symbol, f"cannot read the file: {exc}"))
                continue
            except json.JSONDecodeError as exc:
                rejects.append(_file_reject(self.name, p, job.symbol, f"not valid JSON ({exc}); truncated or not a fine-fundamental file", text))
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("FinancialStatements"), dict):
                rejects.append(_file_reject(self.name, p, job.symbol, "not a fine-fundamental snapshot: no FinancialStatements object", text))
                continue
            fs = doc["FinancialStatements"]
            filing = {
                "period_end": pd.to_datetime(fs.get("20001"), format="%Y-%m-%d", errors="coerce"),
                "filed": pd.to_datetime(fs.get("20002"), format="%Y-%m-%d", errors="coerce"),
                "form": str(fs.get("20004", "")),
                "accession": str(fs.get("20003", "")),
            }
            # DataType, Time (= the file date) and Symbol describe the file, not the company
            for section, body in doc.items():
                if isinstance(body, dict) and section != "Symbol":
                    self._walk(body, (section,), records, d, filing)
        frame = pd.DataFrame.from_records(records, columns=["file_date", "field", "period", "value", "text", "period_end", "filed", "form", "accession"])
        out = pd.DataFrame({
            "symbol": job.symbol,
            "file_date": _us(frame["file_date"]),
            "period_end": _us(frame["period_end"]),
            "filed": _us(frame["filed"]),
            "form": frame["form"].astype(object),
            "accession": frame["accession"].astype(object),
            "field": frame["field"].astype(object),
            "period": frame["period"].astype(object),
            "value": frame["value"].astype("float64"),
            "text": frame["text"].astype(object),
            "source": self.name,
        })
        # knowable at the end of the filing's FileDate, and never before the end of the snapshot's date
        known = out["filed"].where(out["filed"] > out["file_date"], out["file_date"])
        out["event_timestamp"] = _end_of_day_new_york(known) if len(out) else pd.Series([], dtype="datetime64[us, UTC]")
        out = out.sort_values(["file_date", "field", "period"], kind="stable").reset_index(drop=True)
        return Parsed(
            tables={"fundamentals_snapshots": out},
            rejects=_concat(rejects),
            high_water=files[-1][0].strftime("%Y-%m-%d"),
            rows_fetched=len(out) + len(rejects),
            batch_key=self._batch_key(job, [p for _, p in files]),
        )

    def _walk(self, body: dict, path: tuple[str, ...], records: list, file_date: pd.Timestamp, filing: dict) -> None:
        for key, value in body.items():
            if isinstance(value, dict) and any(k.isdigit() for k in value):   # a nested statement
                self._walk(value, (*path, key), records, file_date, filing)
            elif isinstance(value, dict):   # {"3M": .., "12M": .., "HasValue": ..}
                field = self._field(path, key)
                for period, v in value.items():
                    if period != "HasValue":
                        records.append((file_date, field, period, *_value(v), *filing.values()))
            else:
                records.append((file_date, self._field(path, key), "", *_value(value), *filing.values()))


def _value(v) -> tuple[float, str | None]:
    """(number, text): numbers as float64, anything else as text with value NaN."""
    if isinstance(v, bool) or v is None:
        return np.nan, None if v is None else str(v)
    if isinstance(v, (int, float)):
        return float(v), None
    if isinstance(v, str):
        return np.nan, v
    return np.nan, json.dumps(v, sort_keys=True)


def _check_bar(rows: _Rows, values: dict[str, pd.Series]) -> None:
    """Prices > 0, volume >= 0, low <= open, close <= high (as daily bars)."""
    for c in PRICES:
        rows.reject((values[c] <= 0).to_numpy(), lambda r, c=c: [f"{c} must be > 0, got {str(v).strip()}" for v in r[c]])
    rows.reject((values["volume"] < 0).to_numpy(), lambda r: [f"negative volume {str(v).strip()}" for v in r["volume"]])
    lo, hi = values["low"], values["high"]
    rows.reject(((lo > hi) | (values["open"] > hi) | (values["close"] > hi) | (values["open"] < lo) | (values["close"] < lo)).to_numpy(),
                "inconsistent bar: need low <= open, close <= high")


# ------------------------------------------------------------------ FX

_ZONE = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)   # a trailing UTC offset (after the time)
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FX_SESSION_END_HOUR = 17   # an FX session D runs from 17:00 New York on D-1 to 17:00 New York on D


def fx_sessions(times: pd.Series) -> pd.Series:
    """The 24x5 session (naive date) of each bar START time (tz-aware): the
    New York date of ``time + 7 h`` (17:00 New York starts the next session;
    daylight saving honoured)."""
    local = times.dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    return (local + pd.Timedelta(hours=24 - FX_SESSION_END_HOUR)).dt.normalize()


def fx_session_bounds(sessions: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(start, end) of each session, UTC: 17:00 New York on D-1 and on D."""
    idx = pd.DatetimeIndex(sessions) + pd.Timedelta(hours=FX_SESSION_END_HOUR)
    end = idx.tz_localize(NEW_YORK).tz_convert("UTC")
    start = (idx - pd.Timedelta(days=1)).tz_localize(NEW_YORK).tz_convert("UTC")
    return pd.Series(start, index=sessions.index), pd.Series(end, index=sessions.index)


class FxCsvSource(Source):
    """A folder of ``<PAIR>.csv`` FX bars aggregated into 24x5 daily session bars.

    Each row's time is the START of its bar and must carry a time zone (a naive
    time is rejected, never guessed). A session D runs from 17:00 New York on
    D-1 to 17:00 on D, Monday to Friday; a bar starting in the weekend (Friday
    17:00 to Sunday 17:00 New York) is rejected. A session cut by the start or
    end of the file (its first bar starts a bar interval or more after the
    session opens, or its last bar ends before it closes) would give a wrong
    daily bar: its rows are rejected with that reason, so a longer file later
    writes the session once, whole. The session bar is knowable at 17:00 New
    York on D + the bar delay.
    """

    name = "fx"
    datasets = ("bars",)
    needs_symbols = False

    def __init__(self, settings: Settings, path: str | None = None):
        super().__init__(settings, path)
        self._lock = threading.Lock()

    def folder(self) -> Path:
        if not self.path:
            raise ConfigError("fx reads a folder of <PAIR>.csv files: pass --path FOLDER")
        folder = Path(self.path).resolve()
        if not folder.is_dir():
            raise ConfigError(f"fx: {folder} is not a folder of <PAIR>.csv files")
        return folder

    def files(self) -> dict[str, Path]:
        return {p.stem.upper(): p for p in sorted(self.folder().iterdir()) if p.is_file() and p.suffix.lower() == ".csv"}

    def jobs(self, dataset: str, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> list[Job]:
        pairs = symbols or sorted(self.files())
        if not pairs:
            raise ConfigError(f"no <PAIR>.csv files in {self.folder()}")
        return [Job(self.name, dataset, p, start, end) for p in pairs]

    def fetch_parse(self, job: Job) -> Parsed:
        files = self.files()
        if job.symbol not in files:
            raise UnknownSymbolError(f"no {job.symbol}.csv in {self.folder()}; it has: {', '.join(sorted(files)) or 'nothing'}")
        path = files[job.symbol]
        if not SYMBOL_RE.match(job.symbol):
            raise BadInputError([(str(path), None, f"file name {path.name!r} is not a pair name (letters and digits, e.g. EURUSD.csv)")])
        from etl.storage.bronze import land_files

        with self._lock:
            land_files(self.settings, self.name, [(path, f"{self.folder().name}/{path.name}")], pd.Timestamp.now(tz="UTC"))
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError([(str(path), None, f"cannot read the file: {exc}")]) from None
        lines = _data_lines(text)
        if not lines:
            raise BadInputError([(str(path), None, "empty file")])
        header = [c.strip().lower() for c in next(csv.reader([lines[0][1]]))]
        time_col = next((c for c in ("datetime", "date") if c in header), None)
        missing = [c for c in PRICES if c not in header]
        if time_col is None or missing:
            need = ([] if time_col else ["datetime (or date)"]) + missing
            raise BadInputError([(str(path), lines[0][0], f"missing column(s) {need}; found {header}")])
        columns = [time_col, *PRICES] + (["volume"] if "volume" in header else [])
        width = len(header)
        parsed_lines = [next(csv.reader([line])) for _, line in lines[1:]]
        frame = pd.DataFrame([(f + [""] * width)[:width] for f in parsed_lines], columns=header, dtype=object)
        if not len(frame):
            frame = pd.DataFrame({c: pd.Series(dtype=object) for c in header})
        frame = frame[columns].rename(columns={time_col: "time"})
        frame["n_fields"] = np.array([len(f) for f in parsed_lines], dtype=np.int64)
        frame["source_file"] = str(path)
        frame["source_row"] = np.array([n for n, _ in lines[1:]], dtype=np.int64)
        frame["symbol"] = job.symbol
        frame["raw"] = [line for _, line in lines[1:]]
        rows = _Rows(frame, self.name)
        rows.reject(rows.f["n_fields"].to_numpy() != width, lambda r: [f"expected {width} fields like the header, got {k}" for k in r["n_fields"]])

        text_time = rows.f["time"].astype(str).str.strip()
        rows.reject((text_time == "").to_numpy(), "missing time")
        bare = text_time.str.match(_BARE_DATE).to_numpy()
        naive = bare | ~text_time.str.contains(_ZONE).to_numpy()
        rows.reject(bare,
                    lambda r: [f"bare date {str(v).strip()!r} does not say when the bar started; give a time with its zone, "
                               "e.g. 2017-10-15T21:00:00+00:00" for v in r["time"]])
        rows.reject(naive, lambda r: [f"naive time {str(v).strip()!r}: no time zone, and the warehouse never guesses one; "
                                      "write it with its UTC offset, e.g. 2017-10-15 21:00:00+00:00" for v in r["time"]])
        times = pd.to_datetime(text_time.where(~rows.bad), utc=True, errors="coerce", format="ISO8601")
        rows.reject(times.isna().to_numpy(), lambda r: [f"unparseable time {str(v).strip()!r}" for v in r["time"]])
        values = {c: rows.number(c) for c in PRICES}
        values["volume"] = rows.number("volume", required=False) if "volume" in columns else pd.Series(np.nan, index=rows.f.index)
        _check_bar(rows, values)
        rows.duplicated(pd.DataFrame({"t": times}), lambda r: [f"time {str(v).strip()} appears more than once with different values" for v in r["time"]])
        sessions = pd.Series(pd.NaT, index=rows.f.index, dtype="datetime64[ns]")
        ok = ~rows.bad
        sessions[ok] = fx_sessions(times[ok])
        weekend = ok & (sessions.dt.dayofweek >= 5).to_numpy()
        rows.reject(weekend, lambda r: [f"{str(v).strip()} starts in the FX weekend (Friday 17:00 to Sunday 17:00 New York), "
                                        "outside the 24x5 calendar" for v in r["time"]])
        self._reject_cut_sessions(rows, times, sessions)

        good = ~rows.bad
        in_range = good & (sessions >= job.start).to_numpy() & (sessions <= job.end).to_numpy()
        bars = pd.DataFrame({"session": sessions[in_range], "time": times[in_range],
                             **{c: values[c][in_range] for c in [*PRICES, "volume"]}}).sort_values("time", kind="stable")
        g = bars.groupby("session", sort=True)
        out = pd.DataFrame({
            "open": g["open"].first(), "high": g["high"].max(), "low": g["low"].min(), "close": g["close"].last(),
            "volume": g["volume"].sum(min_count=1).where(g["volume"].count() == g.size()),   # NaN when any bar lacks it
            "bars": g.size().astype("int64"),
        })
        out.index.name = "session"
        out = out.reset_index()
        out.insert(0, "pair", job.symbol)
        out["session"] = _us(out["session"])
        out["source"] = self.name
        _, end = fx_session_bounds(out["session"])
        out["event_timestamp"] = (end + pd.Timedelta(minutes=self.settings.bar_delay_minutes)).astype("datetime64[us, UTC]")
        for c in [*PRICES, "volume"]:
            out[c] = out[c].astype("float64")
        return Parsed(
            tables={"fx_bars_daily": out},
            rejects=rows.rejects(),
            high_water=out["session"].max().strftime("%Y-%m-%d") if len(out) else None,
            rows_fetched=len(rows),
            batch_key=f"fx:{job.symbol}:{_sha256(path)}",
        )

    @staticmethod
    def _reject_cut_sessions(rows: _Rows, times: pd.Series, sessions: pd.Series) -> None:
        """Reject the rows of the file's first and last session when the file cuts them."""
        ok = ~rows.bad
        if ok.sum() < 2:
            return
        t = times[ok].sort_values()
        step = t.diff().dropna()
        step = step[step > pd.Timedelta(0)].min()   # the bar interval
        s = sessions[ok]
        first, last = s.min(), s.max()
        start, _ = fx_session_bounds(pd.Series([first]))
        _, end = fx_session_bounds(pd.Series([last]))
        if t.iloc[0] >= start.iloc[0] + step:
            rows.reject(ok & (sessions == first).to_numpy(),
                        f"session {first:%Y-%m-%d} is cut by the start of the file (first bar {t.iloc[0]:%Y-%m-%d %H:%M} UTC, "
                        f"session opened {start.iloc[0]:%Y-%m-%d %H:%M} UTC): a daily bar from part of it would be wrong")
        if t.iloc[-1] + step < end.iloc[0]:
            rows.reject(ok & (sessions == last).to_numpy(),
                        f"session {last:%Y-%m-%d} is cut by the end of the file (last bar {t.iloc[-1]:%Y-%m-%d %H:%M} UTC, "
                        f"session closes {end.iloc[0]:%Y-%m-%d %H:%M} UTC): a daily bar from part of it would be wrong")
