"""QuantConnect Lean's datasets beyond daily bars (those are in :mod:`etl.sources.lean.daily`).

They run through :func:`etl.sources.base.run_ingest` like the HTTP vendors: every
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
"""

from __future__ import annotations

import csv
import gzip
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings, default_lean_path
from etl.core.errors import ConfigError, UnknownSymbolError
from etl.sources.base import SYMBOL_RE, Job, Parsed, Source
from etl.sources.lean import formats as lean
from etl.sources.rows import (
    NEW_YORK,
    PRICES,
    Rows,
    check_bar,
    concat,
    data_lines,
    dated_files,
    file_reject,
    file_sha256,
    naive_us,
    not_session,
    read_text,
    split_lines,
)

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
    return pd.Series(clock.to_utc_us(ends.tz_localize(NEW_YORK)), index=dates.index)


# ------------------------------------------------------------------ Lean

class LeanSource(Source):
    """QuantConnect Lean's US equity and option files (see the module doc).

    Daily bars, factor and map files are the all-or-nothing
    :class:`etl.sources.lean.daily.LeanDailySource` (``alpha ingest lean``, dataset
    ``daily``); this source covers the other datasets, row by row. Without
    symbols a dataset covers every symbol that has files.
    """

    name = "lean"
    datasets = ("minute", "coarse_universe", "option_chains", "fine_fundamentals")
    needs_symbols = False

    def __init__(self, settings: Settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
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
            land_files(self.settings, self.name, [(p, str(p.relative_to(self.root))) for p in files], clock.utc_now())

    def _batch_key(self, job: Job, files: list[Path]) -> str:
        return f"lean:{job.dataset}:{job.symbol}:" + ",".join(f"{p.name}:{file_sha256(p)}" for p in files)

    # -------------------------------------------------------------- minute
    def _minute(self, job: Job) -> Parsed:
        folder = self._folder(MINUTE)
        t = job.symbol.lower()
        every = sorted(folder.glob(f"*_{t}_minute_trade.csv"))
        if not every:
            raise UnknownSymbolError(f"no Lean minute trade files for {job.symbol} in {folder} (yyyyMMdd_{t}_minute_trade.csv)")
        files = dated_files(every, job.start, job.end)
        if not files:
            return Parsed(tables={"bars_minute": pd.DataFrame()})
        self._land([p for _, p in files])
        frames, file_rejects = [], []
        for d, p in files:
            try:
                text = read_text(p)
            except (OSError, UnicodeDecodeError) as exc:
                file_rejects.append(file_reject(self.name, p, job.symbol, f"cannot read the file: {exc}"))
                continue
            frames.append(split_lines(p, data_lines(text), MINUTE_COLUMNS, job.symbol, file_date=d))
        raw = concat(frames)
        if raw is None:
            raw = split_lines(folder, [], MINUTE_COLUMNS, job.symbol, file_date=pd.NaT)
        rows = Rows(raw, self.name)
        rows.field_count(MINUTE_COLUMNS)
        ms = rows.number("ms")
        rows.reject((ms % 60_000 != 0) | (ms < 0) | (ms >= 86_400_000),
                    lambda r: [f"time {str(v).strip()} ms is not a minute of the day (0..86340000, whole minutes)" for v in r["ms"]])
        values = {c: rows.number(c) for c in PRICES + ["volume"]}
        check_bar(rows, values)
        dates = pd.to_datetime(rows.f["file_date"])
        not_session(rows, dates, self.settings.calendar)
        local = dates + pd.to_timedelta(ms.where(~rows.bad), unit="ms")
        start = pd.Series(pd.DatetimeIndex(local).tz_localize(NEW_YORK, ambiguous="NaT", nonexistent="NaT"), index=rows.f.index)
        rows.reject(start.isna().to_numpy(), lambda r: ["time does not exist (or exists twice) in New York on that date" for _ in range(len(r))])
        rows.duplicated(pd.DataFrame({"f": rows.f["source_file"], "ms": ms}),
                        lambda r: [f"minute {str(v).strip()} ms appears more than once in the file with different values" for v in r["ms"]])
        good = ~rows.bad
        bar_start = clock.to_utc_us(start[good]).reset_index(drop=True)
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
            rejects=concat([*file_rejects, rows.rejects()]),
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
        files = dated_files([p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz"))], job.start, job.end)
        if not files:
            return Parsed(tables={"universe_membership": pd.DataFrame()})
        self._land([p for _, p in files])
        frames, file_rejects = [], []
        for d, p in files:
            try:
                text = read_text(p)
            except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
                file_rejects.append(file_reject(self.name, p, "ALL", f"cannot read the file: {type(exc).__name__}: {exc}"))
                continue
            frames.append(split_lines(p, data_lines(text), COARSE_COLUMNS, "ALL", file_date=d))
        raw = concat(frames)
        if raw is None:
            raw = split_lines(folder, [], COARSE_COLUMNS, "ALL", file_date=pd.NaT)
        raw["symbol"] = raw["ticker"].astype(str).str.strip()   # label rejects with the ticker as traded
        rows = Rows(raw, self.name)
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
        not_session(rows, dates, self.settings.calendar)
        rows.duplicated(pd.DataFrame({"f": rows.f["source_file"], "sid": sid}),
                        lambda r: [f"security id {str(v).strip()!r} is listed more than once that day with different values; "
                                   "cannot tell which row is right" for v in r["sid"]])
        good = ~rows.bad
        out = pd.DataFrame({
            "universe": COARSE_UNIVERSE,
            "date": naive_us(dates[good]).to_numpy(),
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
            rejects=concat([*file_rejects, rows.rejects()]),
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
        files = dated_files(folder.glob("*.csv"), job.start, job.end)
        if not files:
            return Parsed(tables={"option_quotes": pd.DataFrame()})
        self._land([p for _, p in files])
        frames, file_rejects = [], []
        for d, p in files:
            try:
                lines = data_lines(read_text(p))
            except (OSError, UnicodeDecodeError) as exc:
                file_rejects.append(file_reject(self.name, p, job.symbol, f"cannot read the file: {exc}"))
                continue
            if not lines or not lines[0][1].startswith("#"):
                file_rejects.append(file_reject(self.name, p, job.symbol, "no header row (#expiry,strike,right,...)", lines[0][1] if lines else ""))
                continue
            header = [c.strip().lstrip("#").lower() for c in lines[0][1].split(",")]
            if header != OPTION_COLUMNS:
                file_rejects.append(file_reject(self.name, p, job.symbol, f"header is {header}, expected {OPTION_COLUMNS}", lines[0][1]))
                continue
            frames.append(split_lines(p, lines[1:], OPTION_COLUMNS, job.symbol, file_date=d))
        raw = concat(frames)
        if raw is None:
            raw = split_lines(folder, [], OPTION_COLUMNS, job.symbol, file_date=pd.NaT)
        rows = Rows(raw, self.name)
        rows.field_count(OPTION_COLUMNS)
        dates = pd.to_datetime(rows.f["file_date"])
        not_session(rows, dates, self.settings.calendar)

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
            "date": naive_us(g(dates)),
            "expiry": naive_us(g(expiry)),
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
            rejects=concat([*file_rejects, rows.rejects()]),
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
        files = dated_files(folder.glob("*.json"), job.start, job.end)
        if not files:
            return Parsed(tables={"fundamentals_snapshots": pd.DataFrame()})
        self._land([p for _, p in files])
        records, rejects = [], []
        for d, p in files:
            try:
                text = read_text(p)
                doc = json.loads(text)
            except (OSError, UnicodeDecodeError) as exc:
                rejects.append(file_reject(self.name, p, job.symbol, f"cannot read the file: {exc}"))
                continue
            except json.JSONDecodeError as exc:
                rejects.append(file_reject(self.name, p, job.symbol, f"not valid JSON ({exc}); truncated or not a fine-fundamental file", text))
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("FinancialStatements"), dict):
                rejects.append(file_reject(self.name, p, job.symbol, "not a fine-fundamental snapshot: no FinancialStatements object", text))
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
            "file_date": naive_us(frame["file_date"]),
            "period_end": naive_us(frame["period_end"]),
            "filed": naive_us(frame["filed"]),
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
            rejects=concat(rejects),
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
