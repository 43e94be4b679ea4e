"""FX bars from a folder of CSV files (``alpha ingest fx --path FOLDER``).

``<PAIR>.csv`` with a tz-aware ``datetime`` (or ``date``) column holding each
bar's START time and open/high/low/close[/volume], at any interval up to daily,
aggregated into 24x5 session bars -> ``fx_bars_daily``. Runs through
:func:`etl.sources.base.run_ingest` like the HTTP vendors: the file is landed
in bronze as it is, each row is validated, a row that cannot be trusted goes to
quarantine with a reason (never coerced, never dropped), and the good rows are
appended to silver.
"""

from __future__ import annotations

import csv
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import BadInputError, ConfigError, UnknownSymbolError
from etl.sources.base import Job, Parsed, Source, is_symbol
from etl.sources.rows import NEW_YORK, PRICES, Rows, check_bar, data_lines, file_sha256, naive_us

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

    def __init__(self, settings: Settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
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
        if not is_symbol(job.symbol):
            raise BadInputError([(str(path), None, f"file name {path.name!r} is not a pair name (letters and digits, e.g. EURUSD.csv)")])
        from etl.storage.bronze import land_files

        with self._lock:
            land_files(self.settings, self.name, [(path, f"{self.folder().name}/{path.name}")], clock.utc_now())
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError([(str(path), None, f"cannot read the file: {exc}")]) from None
        lines = data_lines(text)
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
        rows = Rows(frame, self.name)
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
        check_bar(rows, values)
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
        out["session"] = naive_us(out["session"])
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
            batch_key=f"fx:{job.symbol}:{file_sha256(path)}",
        )

    @staticmethod
    def _reject_cut_sessions(rows: Rows, times: pd.Series, sessions: pd.Series) -> None:
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
