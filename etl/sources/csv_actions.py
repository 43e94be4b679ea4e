"""The corporate actions of a CSV folder: ``actions.csv`` in the folder, or a file given with
``alpha ingest csv --path FOLDER --actions FILE``.

Format: a header line, then one action per line::

    symbol,ex_date,split_ratio,cash_dividend,known_at
    AAPL,2005-02-28,2,,
    AAPL,2012-08-09,,2.65,2012-07-24
    IBM,1999-05-27,2,,1999-04-27T16:05:00-04:00

- ``symbol``: a symbol with bars: a ``<SYMBOL>.csv`` of the folder, or one already in silver;
- ``ex_date``: the first session at the new scale (a session of the calendar), in the format of
  the file's first ex_date (``2005-02-28``, ``02/28/2005`` ...) as bar files' dates are;
- ``split_ratio``: new shares per old share (``2`` for a 2:1 split, ``0.1`` for 1:10); empty: 1;
- ``cash_dividend``: cash per share, in the raw price of the session before the ex-date; empty: 0;
- ``known_at`` (optional column): when the action was known. A date is the start of that day
  on the calendar's clock (New York for XNYS); a time needs a UTC offset
  (``2005-02-25T16:00:00-05:00``, ``...Z``). Empty: the open of the ex-date. An action that
  reaches a warehouse already holding a bar of its ex-date or later is known only from when it
  was written (:mod:`etl.storage.actions`).

Headers are matched without case or surrounding spaces; any other column is an error. Every
row is checked (the value checks are :func:`etl.storage.actions.check_actions`, the ones every
source's actions pass): a row that fails is returned with its line number and reason, and the
CSV folder, all-or-nothing, quarantines it and writes nothing. Lines identical to an earlier one
(same symbol, ex-date and values) say nothing new and are read once; the same (symbol, ex_date)
with different values is an error on every such line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.quality.bars import resolve_date_format
from etl.sources.base import SYMBOL_RULE, is_symbol
from etl.storage.actions import check_actions

ACTIONS_FILE = "actions.csv"
REQUIRED = ("symbol", "ex_date", "split_ratio", "cash_dividend")
OPTIONAL = ("known_at",)
SOURCE = "csv"
#: the columns of the actions a file gives (what :func:`etl.storage.actions.write_actions` takes)
COLUMNS = ["symbol", "ex_date", "split_ratio", "cash_dividend", "source", "payload", "known_timestamp"]
REJECT_COLUMNS = ["source_file", "source_row", "symbol", "raw", "reason"]

Problem = tuple[str, int | None, str]


def is_actions_file(path: Path) -> bool:
    """Whether ``path`` is a folder's actions file (``actions.csv``, any case), not a bar file."""
    return Path(path).name.lower() == ACTIONS_FILE


@dataclass
class ReadActions:
    """One actions file read: its good actions (:data:`COLUMNS`), its rejected rows (quarantine
    columns) and every problem as ``(file, line, reason)`` (the file's own and its rows')."""

    actions: pd.DataFrame
    rejects: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0                  # data lines read


def read_actions(path: Path, data: bytes, calendar: str, symbols_with_bars: Callable[[set[str]], set[str]],
                 payload: str, date_format: str | None = None, how: str = "") -> ReadActions:
    """The actions of the file ``path`` whose bytes are ``data`` (module doc). ``symbols_with_bars``
    says which of the symbols it is given have bars (in the folder or in silver); ``payload`` is
    the sha256 of ``data``, kept on every action; ``date_format``: the folder's declared format
    of dates that are not year-first (ambiguous ex_dates are refused without it, saying ``how``
    to declare it: :func:`etl.quality.bars.resolve_date_format`)."""
    name = str(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _failed(name, None, f"not UTF-8 text: {exc}")
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    records: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if row and any(v.strip() for v in row):   # blank lines are skipped, as pandas does
                records.append((reader.line_num, row))
    except csv.Error as exc:
        return _failed(name, reader.line_num, f"cannot parse as CSV: {exc}")
    if not records:
        return _failed(name, None, f"empty file; the first line must be the header {','.join(REQUIRED)}[,known_at]")
    head_line, header = records[0]
    names = [c.strip().lower() for c in header]
    problem = _header_problem(names)
    if problem:
        return _failed(name, head_line, problem)
    raw = _raw_frame(name, names, records[1:])
    reasons = _check(raw, len(names), calendar, symbols_with_bars, date_format, how)
    bad = reasons != ""
    rejects = pd.DataFrame({c: raw.loc[bad, c].to_numpy() for c in REJECT_COLUMNS[:-1]})
    rejects["reason"] = reasons[bad]
    problems = [(name, int(r), str(why)) for r, why in zip(rejects["source_row"], rejects["reason"], strict=True)]
    good = raw.loc[~bad]
    actions = pd.DataFrame({
        "symbol": good["symbol"].to_numpy(object),
        "ex_date": pd.DatetimeIndex(good["_ex"]).astype("datetime64[ns]"),
        "split_ratio": good["_split"].to_numpy(float),
        "cash_dividend": good["_cash"].to_numpy(float),
        "source": SOURCE,
        "payload": payload,
        "known_timestamp": pd.DatetimeIndex(good["_known"]),
    }, columns=COLUMNS)
    actions = actions.drop_duplicates(["symbol", "ex_date"], keep="first").reset_index(drop=True)
    return ReadActions(actions, rejects.astype({"source_row": "int64"}), problems, rows=len(raw))


def _failed(name: str, line: int | None, reason: str) -> ReadActions:
    return ReadActions(pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=REJECT_COLUMNS), [(name, line, reason)])


def _header_problem(names: list[str]) -> str | None:
    allowed = (*REQUIRED, *OPTIONAL)
    twice = sorted({n for n in names if names.count(n) > 1})
    unknown = [n for n in names if n not in allowed]
    missing = [c for c in REQUIRED if c not in names]
    expected = f"the columns are {', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}"
    if twice:
        return f"column(s) {twice} appear more than once; {expected}"
    if unknown:
        return f"unknown column(s) {unknown}; {expected}"
    if missing:
        return f"missing column(s) {missing}; {expected}, found {names}"
    return None


def _raw_frame(name: str, names: list[str], records: list[tuple[int, list[str]]]) -> pd.DataFrame:
    """The data lines as stripped strings per column (``''`` where a line is short), with
    ``source_file``, ``source_row`` (the line number), ``raw`` (the line's fields) and
    ``_fields`` (how many the line has)."""
    cols: dict[str, list] = {c: [] for c in (*REQUIRED, *OPTIONAL)}
    for _line, row in records:
        for c in cols:
            i = names.index(c) if c in names else -1
            cols[c].append(row[i].strip() if 0 <= i < len(row) else "")
    frame = pd.DataFrame(cols, dtype=object)
    frame["symbol"] = frame["symbol"].str.upper()
    frame["source_file"] = name
    frame["source_row"] = np.array([line for line, _ in records], dtype="int64")
    frame["raw"] = [",".join(row) for _, row in records]
    frame["_fields"] = [len(row) for _, row in records]
    return frame


def _check(raw: pd.DataFrame, width: int, calendar: str, symbols_with_bars: Callable[[set[str]], set[str]],
           date_format: str | None = None, how: str = "") -> np.ndarray:
    """Each line's first reason ('' where it is a good action; the header has ``width``
    fields); fills ``_ex``, ``_split``, ``_cash`` and ``_known`` (the parsed values) in ``raw``."""
    n = len(raw)
    reasons = np.full(n, "", dtype=object)

    def fail(mask, why) -> None:
        mask = np.asarray(mask, dtype=bool) & (reasons == "")
        if mask.any():
            reasons[mask] = [why(i) for i in np.flatnonzero(mask)] if callable(why) else why

    fields = raw["_fields"].to_numpy(int)
    fail(fields != width, lambda i: f"{fields[i]} field(s), the header has {width}")
    sym = raw["symbol"].to_numpy(object)
    fail(sym == "", "no symbol")
    valid = np.array([is_symbol(s) for s in sym], dtype=bool)
    fail(~valid, lambda i: f"symbol {sym[i]!r} is not a valid symbol ({SYMBOL_RULE})")
    with_bars = symbols_with_bars({s for s, ok in zip(sym, valid & (reasons == ""), strict=True) if ok})
    fail(~np.isin(sym, list(with_bars)),
         lambda i: f"no bars of {sym[i]}: no {sym[i]}.csv in the folder and none in silver")

    text = raw["ex_date"].to_numpy(object)
    fail(text == "", "no ex_date")
    fmt, ambiguous = resolve_date_format([t for t, r in zip(text, reasons, strict=True) if r == ""], date_format, how)
    if ambiguous:
        fail(np.ones(n, dtype=bool), ambiguous)
    ex = pd.to_datetime(pd.Series(text, dtype=object), format=fmt, errors="coerce")
    fail(ex.isna().to_numpy(), lambda i: f"unparseable ex_date {text[i]!r}" + (f" (the file's dates are {fmt})" if fmt else ""))
    fail((ex.notna() & (ex != ex.dt.normalize())).to_numpy(), lambda i: f"ex_date {text[i]!r} has a time; give the session's date")
    raw["_ex"] = ex.dt.normalize()

    split_text = raw["split_ratio"].to_numpy(object)
    cash_text = raw["cash_dividend"].to_numpy(object)
    values = pd.DataFrame({"symbol": sym, "ex_date": raw["_ex"],
                           "split_ratio": np.where(split_text == "", None, split_text),   # empty: no split
                           "cash_dividend": np.where(cash_text == "", None, cash_text)})   # empty: no dividend
    checked = reasons == ""
    if checked.any():
        why = np.array(check_actions(values.loc[checked].reset_index(drop=True), calendar), dtype=object)
        detail = np.full(n, "", dtype=object)
        detail[checked] = why
        fail(detail != "", lambda i: _with_value(detail[i], raw, i))
    raw["_split"] = pd.to_numeric(pd.Series(np.where(split_text == "", "1", split_text)), errors="coerce").to_numpy(float)
    raw["_cash"] = pd.to_numeric(pd.Series(np.where(cash_text == "", "0", cash_text)), errors="coerce").to_numpy(float)

    tz = str(clock.get_calendar(calendar).tz)
    known = [_known_at(t, tz) for t in raw["known_at"]]
    fail([isinstance(k, str) for k in known], lambda i: known[i])
    raw["_known"] = pd.to_datetime([pd.NaT if isinstance(k, str) else k for k in known], utc=True)

    _fail_conflicts(raw, reasons)
    return reasons


def _with_value(reason: str, raw: pd.DataFrame, i: int) -> str:
    """``check_actions``' reason with the text of the field it is about."""
    for col in ("split_ratio", "cash_dividend"):
        if reason.startswith(col):
            return f"{reason}, got {raw[col].iloc[i]!r}"
    if reason.startswith("ex_date"):
        return f"{reason}: {raw['ex_date'].iloc[i]!r}"
    return reason


def _known_at(text: str, tz: str):
    """The UTC time ``known_at`` says (NaT when empty), or the reason it says none."""
    if text == "":
        return pd.NaT
    try:
        return pd.Timestamp(date.fromisoformat(text)).tz_localize(tz).tz_convert("UTC")   # a date: its start
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return (f"unparseable known_at {text!r}: give a date (2005-02-25) or an ISO time with a UTC offset "
                "(2005-02-25T16:00:00-05:00)")
    if t.tzinfo is None:
        return f"known_at {text!r} has a time but no UTC offset: write it as 2005-02-25T16:00:00-05:00 (or ...Z for UTC)"
    return pd.Timestamp(t).tz_convert("UTC")


def _fail_conflicts(raw: pd.DataFrame, reasons: np.ndarray) -> None:
    """Reject every line of a (symbol, ex_date) given more than once with different values."""
    ok = reasons == ""
    if ok.sum() < 2:
        return
    g = pd.DataFrame({"symbol": raw["symbol"], "ex": raw["_ex"], "split": raw["_split"], "cash": raw["_cash"],
                      "known": raw["_known"], "line": raw["source_row"]}).loc[ok]
    versions = g.drop_duplicates(["symbol", "ex", "split", "cash", "known"]).groupby(["symbol", "ex"]).size()
    clash = versions[versions > 1]
    if clash.empty:
        return
    for (symbol, ex), _ in clash.items():
        rows = g[(g["symbol"] == symbol) & (g["ex"] == ex)]
        lines = ", ".join(str(x) for x in rows["line"])
        idx = rows.index.to_numpy()
        reasons[idx] = f"{symbol} {ex:%Y-%m-%d} is given with different values on lines {lines}"
