"""Raw string rows of file sources, validated row by row.

The shared helpers of the file sources (:mod:`etl.sources.lean.datasets`,
:mod:`etl.sources.fx`): read a file's lines, split them into string fields
that keep their file and line number, and reject each row that cannot be
trusted once, with the first reason found (:class:`Rows`), so it goes to
quarantine as received.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock

NEW_YORK = "America/New_York"
PRICES = ["open", "high", "low", "close"]
_DATED = re.compile(r"^(\d{8})(?:[._]|$)")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def date_of_file(path: Path) -> pd.Timestamp | None:
    m = _DATED.match(path.name)
    if not m:
        return None
    try:
        return pd.Timestamp(pd.to_datetime(m.group(1), format="%Y%m%d"))
    except ValueError:
        return None


def dated_files(paths, start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, Path]]:
    out = []
    for p in paths:
        d = date_of_file(p)
        if d is not None and start <= d <= end:
            out.append((d, p))
    return sorted(out, key=lambda x: (x[0], x[1].name))


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")


def file_reject(source: str, path: Path, symbol: str, reason: str, raw: str = "") -> pd.DataFrame:
    return pd.DataFrame({"source": [source], "source_file": [str(path)], "source_row": [pd.NA],
                         "symbol": [symbol], "raw": [raw], "reason": [reason]})


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)


def split_lines(path: Path, lines: list[tuple[int, str]], columns: list[str], symbol: str, **extra) -> pd.DataFrame:
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


def data_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, text) of every non-blank line."""
    return [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


class Rows:
    """Raw string rows of one batch and the rows rejected so far: each row is
    rejected once, with the first reason found (as :func:`etl.quality.bars.validate_bars`)."""

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
        out = concat(self._parts)
        if out is None:
            return None
        return out.sort_values(["source_file", "source_row"], kind="stable").reset_index(drop=True)


def not_session(rows: Rows, dates: pd.Series, calendar: str) -> None:
    ok = clock.is_session(pd.DatetimeIndex(dates), calendar)
    rows.reject(~ok, lambda r: [f"file date is not a {calendar} session" for _ in range(len(r))])


def naive_us(values) -> pd.Series:
    """Naive dates or times (no time zone: session and file dates) as ``datetime64[us]``."""
    return pd.to_datetime(values).astype("datetime64[us]")


def check_bar(rows: Rows, values: dict[str, pd.Series]) -> None:
    """Prices > 0, volume >= 0, low <= open, close <= high (as daily bars)."""
    for c in PRICES:
        rows.reject((values[c] <= 0).to_numpy(), lambda r, c=c: [f"{c} must be > 0, got {str(v).strip()}" for v in r[c]])
    rows.reject((values["volume"] < 0).to_numpy(), lambda r: [f"negative volume {str(v).strip()}" for v in r["volume"]])
    lo, hi = values["low"], values["high"]
    rows.reject(((lo > hi) | (values["open"] > hi) | (values["close"] > hi) | (values["open"] < lo) | (values["close"] < lo)).to_numpy(),
                "inconsistent bar: need low <= open, close <= high")
