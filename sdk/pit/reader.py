"""Reading a FileSource window with polars: parallel, lazy, with the time
window (and a small key set) pushed down to the Parquet scan, so only the row
groups and columns a query needs are decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from etl.core.errors import MissingColumnError

INT64_MIN = np.iinfo(np.int64).min
HIDDEN = [".", "_"]  # .tmp- files of an interrupted writer, _SUCCESS markers


def _lazy(path: str) -> pl.LazyFrame:
    p = Path(path)
    if p.is_dir():
        return pl.scan_parquet(p, hive_partitioning=True, hidden_file_prefix=HIDDEN)
    return pl.scan_parquet(path, hidden_file_prefix=HIDDEN)


def _bound(us: int, dtype: pl.DataType) -> pl.Expr:
    tz = getattr(dtype, "time_zone", None)
    unit = getattr(dtype, "time_unit", "us")
    lit = pl.lit(us, dtype=pl.Int64).cast(pl.Datetime("us", time_zone="UTC" if tz else None))
    if tz and tz != "UTC":
        lit = lit.dt.convert_time_zone(tz)
    return lit.cast(pl.Datetime(unit, time_zone=tz))


class Window:
    """One FileSource restricted to ``lo_us <= ts <= hi_us`` (and optionally a key set)."""

    def __init__(self, path: str, ts_col: str, lo_us: int | None, hi_us: int | None, key_col: str | None = None, key_values=None):
        self.lazy = _lazy(path)
        self.schema = self.lazy.collect_schema()
        if ts_col not in self.schema:
            raise MissingColumnError(f"{path} has no column '{ts_col}' (columns: {list(self.schema)})")
        cond = None
        dtype = self.schema[ts_col]
        if isinstance(dtype, pl.Date):
            col = pl.col(ts_col).cast(pl.Datetime("us"))
            dtype = pl.Datetime("us")
        else:
            col = pl.col(ts_col)
        if lo_us is not None:
            cond = col >= _bound(lo_us, dtype)
        if hi_us is not None:
            c = col <= _bound(hi_us, dtype)
            cond = c if cond is None else cond & c
        if key_col is not None and key_values is not None and len(key_values) <= 256:
            c = pl.col(key_col).is_in(list(key_values))
            cond = c if cond is None else cond & c
        self.filtered = self.lazy.filter(cond) if cond is not None else self.lazy

    def read(self, columns: list[str]) -> pl.DataFrame:
        missing = [c for c in columns if c not in self.schema]
        if missing:
            raise MissingColumnError(f"source has no column(s) {missing}")
        return self.filtered.select(columns).collect()

    def rows_upper_bound(self) -> int:
        return int(self.lazy.select(pl.len()).collect().item())


def epoch_us(series: pl.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC; naive read as UTC); nulls -> int64 min."""
    if series.dtype == pl.Date:
        series = series.cast(pl.Datetime("us"))
    return series.dt.epoch("us").fill_null(INT64_MIN).to_numpy()
