"""What an option chain of date t is priced with, as known at t: the rate, the dividend
yield, the corporate actions and the underlying's bars, each with the time it became
knowable. Definitions: docs/factors.md (Options, inputs)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.errors import FactorInputError

DIVIDEND_WINDOW_DAYS = 350   # QuantConnect's DividendYieldProvider window
NEW_YORK = "America/New_York"


def _events(factor_rows: pd.DataFrame | None) -> pd.DataFrame:
    """One row per corporate action: ex_date, split ratio R (new shares per old),
    dividend ratio (1 - D/P), and when it was known."""
    cols = ["ex_date", "split_ratio", "div_ratio", "known"]
    if factor_rows is None or len(factor_rows) == 0:
        return pd.DataFrame(columns=cols)
    f = factor_rows.sort_values("factor_date", kind="stable").reset_index(drop=True)
    split = f["split_factor"].to_numpy(float)
    price = f["price_factor"].to_numpy(float)
    nxt_s = np.append(split[1:], 1.0)
    nxt_p = np.append(price[1:], 1.0)
    if "ex_date" in f:
        ex = pd.to_datetime(f["ex_date"])
        if getattr(ex.dt, "tz", None) is not None:
            ex = ex.dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    else:   # Lean's rule: the row's date is the last session before the ex-date
        ex = pd.Series(clock.next_session(pd.to_datetime(f["factor_date"])))
    if "event_timestamp" in f:
        known = _utc_naive(f["event_timestamp"])
    else:   # known from the ex-date's start in New York
        known = _utc_naive(pd.DatetimeIndex(ex).tz_localize(NEW_YORK))
    return pd.DataFrame({"ex_date": pd.DatetimeIndex(ex).normalize(), "split_ratio": nxt_s / split, "div_ratio": price / nxt_p,
                         "known": known})


def dividend_yield(dates, factor_rows: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Continuous yield at each date from the dividends with ex-date in the 350 days
    up to it: -ln(prod(1 - D/P)); and the latest knowledge time of those rows
    (NaT when none)."""
    dates = pd.DatetimeIndex(dates)
    ev = _events(factor_rows)
    q = np.zeros(len(dates))
    known = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    if ev.empty:
        return q, known
    ev = ev[np.abs(np.log(ev["div_ratio"].to_numpy(float))) > 1e-12]
    ex = ev["ex_date"].to_numpy()
    logs = np.log(ev["div_ratio"].to_numpy(float))
    kn = ev["known"].to_numpy().astype("datetime64[us]")
    for i, d in enumerate(dates.values):
        m = (ex <= d) & (ex > d - np.timedelta64(DIVIDEND_WINDOW_DAYS, "D"))
        if m.any():
            q[i] = -logs[m].sum()
            known[i] = kn[m].max()
    return q, known



def _asof(dates: pd.DatetimeIndex, frame: pd.DataFrame, date_col: str, value_col: str, known_col: str):
    if frame is None or len(frame) == 0:
        return np.full(len(dates), np.nan), np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[us]")
    f = frame.sort_values(date_col, kind="stable")
    pos = np.searchsorted(f[date_col].to_numpy(), dates.values, side="right") - 1
    vals = f[value_col].to_numpy(float)
    kn = f[known_col].to_numpy()
    got = pos >= 0
    out_v = np.where(got, vals[np.maximum(pos, 0)], np.nan)
    out_k = np.where(got, kn[np.maximum(pos, 0)], np.datetime64("NaT"))
    return out_v, out_k.astype("datetime64[us]")


def _normal_rates(rates: pd.DataFrame | None) -> pd.DataFrame:
    if rates is None or len(rates) == 0:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[us]"), "rate": pd.Series(dtype=float), "known": pd.Series(dtype="datetime64[us]")})
    missing = {"date", "rate"} - set(rates.columns)
    if missing:
        raise FactorInputError(f"options: rates needs columns date and rate (decimal, e.g. 0.0075); missing {sorted(missing)}")
    d = pd.to_datetime(rates["date"])
    if getattr(d.dt, "tz", None) is not None:
        d = d.dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    d = d.dt.normalize()
    if "event_timestamp" in rates:
        known = _utc_naive(rates["event_timestamp"])
    else:   # an effective date is known from its start in New York
        known = _utc_naive(d.dt.tz_localize(NEW_YORK))
    out = pd.DataFrame({"date": d.to_numpy(), "rate": rates["rate"].to_numpy(float), "known": known})
    return out[np.isfinite(out["rate"])].reset_index(drop=True)


def _utc_naive(values) -> np.ndarray:
    """Tz-aware times as naive UTC ``datetime64[us]`` (numpy's max and fmax compare them)."""
    return clock.epoch_us(values).view("datetime64[us]")



def _prepare_bars(bars: pd.DataFrame | None) -> pd.DataFrame:
    cols = ["session", "open", "high", "low", "close", "known"]
    if bars is None or len(bars) == 0:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us]" if c in ("session", "known") else float) for c in cols})
    b = bars.copy()
    b["session"] = pd.to_datetime(b["session"]).dt.normalize()
    known = _utc_naive(b["event_timestamp"])
    if "known_timestamp" in b:
        known = np.maximum(known, _utc_naive(b["known_timestamp"]))
    b["known"] = known
    b = b.sort_values(["session", "known"], kind="stable").drop_duplicates("session", keep="first")
    for c in ("open", "high", "low", "close"):
        b[c] = pd.to_numeric(b[c], errors="coerce").astype(float)
    return b[cols].reset_index(drop=True)




def rates_from_lean(frame: pd.DataFrame) -> pd.DataFrame:
    """Lean's ``interest_rate_usa/interest-rate.csv`` (``DATE``, ``PCREDIT8`` in
    percent, by effective date) as ``date``, ``rate`` (decimal), ``event_timestamp``
    (the effective date's start in New York)."""
    d = pd.to_datetime(frame["DATE"]).dt.normalize()
    return pd.DataFrame({
        "date": d.astype("datetime64[us]"),
        "rate": pd.to_numeric(frame["PCREDIT8"], errors="coerce").astype(float) / 100.0,
        "event_timestamp": d.dt.tz_localize(NEW_YORK).dt.tz_convert("UTC").astype("datetime64[us, UTC]"),
    })
