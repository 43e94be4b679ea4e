"""Macro factors by vintage, on the market-wide entity (``market = "US"``).

Pure: frames in, frames out (``macro_observations`` in, one row per session
of view ``macro_daily`` out). The point-in-time rule and the level, change,
surprise, revision and age outputs are in docs/factors.md (Macro).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import DEFAULT_CALENDAR
from etl.core.errors import FactorInputError
from etl.factors.spec import Factor, Output

VIEW = "macro_daily"
FAMILY = "macro"
ENTITY = "market"
MARKET = "US"
DAY_US = 86_400 * 10**6
FORECAST_CHANGES = 3
_AVAILABILITY = "session close + bar delay; uses every vintage released (event_timestamp) by then"
_INPUTS = ("macro_observations.value", "macro_observations.period", "macro_observations.missing", "macro_observations.event_timestamp")


@dataclass(frozen=True)
class Series:
    id: str
    name: str
    frequency: str          # "m" monthly, "q" quarterly
    transformation: str     # "chg", "pch", "pca", "lin" (FRBNY nowcast spec)
    units: str

    @property
    def step(self) -> int:
        """Months between consecutive periods."""
        return 3 if self.frequency == "q" else 1

    @property
    def per_year(self) -> int:
        return 4 if self.frequency == "q" else 12

    @property
    def additive(self) -> bool:
        return self.transformation in ("chg", "lin")

    @property
    def key(self) -> str:
        return self.id.lower()


#: The FRBNY nowcast panel (Spec_US_example.xls, see
#: /work/shared/data/frbny-nowcast-macro-vintages/series_spec.csv).
SERIES: tuple[Series, ...] = (
    Series("PAYEMS", "Payroll Employment", "m", "chg", "Thousands of Persons"),
    Series("JTSJOL", "Job Openings", "m", "chg", "Thousands"),
    Series("GDPC1", "Real Gross Domestic Product", "q", "pca", "Chained $, Billions"),
    Series("CPIAUCSL", "Consumer Price Index", "m", "pch", "Index"),
    Series("DGORDER", "Durable Goods Orders", "m", "pch", "$, Millions"),
    Series("HSN1F", "New Home Sales", "m", "pch", "Thousands"),
    Series("RSAFS", "Retail Sales", "m", "pch", "$, Millions"),
    Series("UNRATE", "Unemployment Rate", "m", "chg", "%"),
    Series("HOUST", "Housing Starts", "m", "pch", "Thousands of Units"),
    Series("INDPRO", "Industrial Production", "m", "pch", "Index"),
    Series("PPIFIS", "Producer Price Index", "m", "pch", "Index"),
    Series("DSPIC96", "Personal Income", "m", "pch", "Chained $, Billions"),
    Series("BOPTEXP", "Exports", "m", "pch", "$, Millions"),
    Series("BOPTIMP", "Imports", "m", "pch", "$, Millions"),
    Series("WHLSLRIMSA", "Wholesale Inventories", "m", "pch", "$, Millions"),
    Series("TTLCONS", "Construction Spending", "m", "pch", "$, Millions"),
    Series("IR", "Import Price Index", "m", "pch", "Index"),
    Series("CPILFESL", "Core Consumer Price Index", "m", "pch", "Index"),
    Series("PCEPILFE", "Core PCE Price Index", "m", "pch", "Index"),
    Series("PCEPI", "PCE Price Index", "m", "pch", "Index"),
    Series("PERMIT", "Building Permits", "m", "chg", "Thousands of Units"),
    Series("TCU", "Capacity Utilization Rate", "m", "chg", "%"),
    Series("BUSINV", "Business Inventories", "m", "pch", "$, Millions"),
    Series("ULCNFB", "Unit Labor Cost", "q", "pca", "Index"),
    Series("IQ", "Export Price Index", "m", "pch", "Index"),
    Series("GACDISA066MSFRBNY", "Empire State Mfg Index", "m", "lin", "Index"),
    Series("PCEC96", "Real Consumption Spending", "m", "pch", "Chained $, Billions"),
    Series("A261RX1Q020SBEA", "Real Gross Domestic Income", "q", "pca", "Chained $, Billions"),
    Series("GACDFSA066MSFRBPHI", "Philadelphia Fed Mfg Index", "m", "lin", "Index"),
)
SERIES_BY_ID: dict[str, Series] = {s.id: s for s in SERIES}
SUFFIXES = ("level", "chg", "surprise", "revision", "age_days")

_CHG_TEXT = {
    "chg": "change vs the previous period ({units})",
    "lin": "change vs the previous period ({units})",
    "pch": "percent change vs the previous period (100 * (x / x_prev - 1))",
    "pca": "compounded annual rate of change vs the previous quarter (100 * ((x / x_prev) ** 4 - 1))",
}
_SURPRISE_TEXT = {
    True: "first print minus naive forecast (previous value + mean of the 3 previous changes, known before the release), {units}",
    False: "first print vs naive forecast (previous value x geometric mean growth of the 3 previous periods, known before the release), same units as _chg",
}


def column(series_id: str, suffix: str) -> str:
    return f"macro_{series_id.lower()}_{suffix}"


def _factor(s: Series) -> Factor:
    period = "quarter" if s.frequency == "q" else "month"
    return Factor(
        name=f"macro_{s.key}",
        family=FAMILY,
        view=VIEW,
        entity=ENTITY,
        outputs=(
            Output(column(s.id, "level"), "float64", f"{s.name}: latest {period}'s value in the latest vintage released by the session's time ({s.units})"),
            Output(column(s.id, "chg"), "float64", f"{s.name}: latest {period}'s " + _CHG_TEXT[s.transformation].format(units=s.units) + ", as known then"),
            Output(column(s.id, "surprise"), "float64", f"{s.name}: " + _SURPRISE_TEXT[s.additive].format(units=s.units)),
            Output(column(s.id, "revision"), "float64", f"{s.name}: previous {period}'s value known now minus its first print ({s.units})"),
            Output(column(s.id, "age_days"), "float64", f"{s.name}: days since the release that first printed the latest {period}"),
        ),
        inputs=_INPUTS,
        warmup=0,
        availability=_AVAILABILITY,
        description=f"{s.name} ({s.id}) by vintage: level, change, surprise vs a naive forecast, revision, age.",
        params=(("series_id", s.id), ("frequency", s.frequency), ("transformation", s.transformation)),
    )


FACTORS: tuple[Factor, ...] = tuple(_factor(s) for s in SERIES)
OUTPUTS: tuple[str, ...] = tuple(o.name for f in FACTORS for o in f.outputs)


# ------------------------------------------------------------------ arithmetic

def change(x: float, prev: float, series: Series) -> float:
    """``x`` vs ``prev`` in the series' transformation (NaN when undefined)."""
    if math.isnan(x) or math.isnan(prev):
        return math.nan
    if series.additive:
        return x - prev
    if prev <= 0 or x < 0:
        return math.nan
    ratio = x / prev
    if series.transformation == "pca":
        return 100.0 * (ratio ** series.per_year - 1.0)
    return 100.0 * (ratio - 1.0)


def naive_forecast(prev: float, prev4: float, series: Series) -> float:
    """The previous value carried forward by the mean of the 3 previous changes
    (additive series) or by their geometric mean growth (ratio series)."""
    if math.isnan(prev) or math.isnan(prev4):
        return math.nan
    if series.additive:
        return prev + (prev - prev4) / FORECAST_CHANGES
    if prev <= 0 or prev4 <= 0:
        return math.nan
    return prev * (prev / prev4) ** (1.0 / FORECAST_CHANGES)


# ------------------------------------------------------------------ checks

def _check_sessions(sessions, calendar: str) -> pd.DatetimeIndex:
    s = pd.DatetimeIndex(sessions)
    if s.tz is not None:
        raise FactorInputError("macro: sessions must be naive session dates (e.g. 2016-07-08), not tz-aware times")
    if not (s == s.normalize()).all() or not s.is_monotonic_increasing or s.has_duplicates:
        raise FactorInputError("macro: sessions must be sorted, unique dates at midnight")
    bad = s[~clock.is_session(s, calendar)]
    if len(bad):
        raise FactorInputError(f"macro: not {calendar} sessions: {[d.strftime('%Y-%m-%d') for d in bad[:5]]}")
    return s


def _check_obs(obs: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("series_id", "period", "value", "event_timestamp") if c not in obs.columns]
    if missing:
        raise FactorInputError(f"macro: observations lack column(s) {missing}; pass macro_observations rows")
    frame = obs.copy()
    if len(frame) == 0:
        return frame
    ts = frame["event_timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(ts) or getattr(ts.dt, "tz", None) is None:
        raise FactorInputError("macro: event_timestamp must be tz-aware datetimes (macro_observations hold UTC release times)")
    if ts.isna().any():
        raise FactorInputError(f"macro: event_timestamp is missing in {int(ts.isna().sum())} row(s): a value with no release time cannot be placed in time")
    if frame["period"].isna().any():
        raise FactorInputError(f"macro: period is missing in {int(frame['period'].isna().sum())} row(s)")
    frame["series_id"] = frame["series_id"].astype(str)
    frame["event_us"] = clock.epoch_us(ts)
    period = pd.to_datetime(frame["period"])
    frame["month"] = (period.dt.year * 12 + period.dt.month - 1).astype("int64")
    value = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    if "missing" in frame.columns:
        value = value.where(~frame["missing"].fillna(False).astype(bool))
    frame["value"] = value
    return frame


# ------------------------------------------------------------------ compute

def _releases(rows: pd.DataFrame, series: Series) -> tuple[np.ndarray, np.ndarray]:
    """Per release time of one series (ascending), the outputs as of that time:
    returns (release times in us, array of shape (releases, 5))."""
    order = ["event_us", "created_timestamp"] if "created_timestamp" in rows.columns else ["event_us"]
    rows = rows.sort_values(order, kind="stable")
    step = series.step
    state: dict[int, float] = {}         # period (months since year 0) -> value known now
    first: dict[int, float] = {}         # period -> first stored value
    first_at: dict[int, int] = {}        # period -> release time of that first value
    surprise: dict[int, float] = {}      # period -> surprise of its first print
    latest = None
    times, values = [], []
    for event, g in rows.groupby("event_us", sort=True):
        months = g["month"].to_numpy()
        vals = g["value"].to_numpy()
        top = int(months.max())
        if latest is None or top > latest:
            # a new latest period: forecast it with what was known just before this release
            forecast = naive_forecast(state.get(top - step, math.nan), state.get(top - 4 * step, math.nan), series)
            first_print = float(vals[months == top][-1])
            surprise[top] = change(first_print, forecast, series)
        for m, v in zip(months.tolist(), vals.tolist(), strict=True):
            state[m] = v
            if m not in first:
                first[m], first_at[m] = v, int(event)
        latest = top if latest is None else max(latest, top)
        level = state[latest]
        prev = state.get(latest - step, math.nan)
        revision = prev - first[latest - step] if latest - step in first else math.nan
        times.append(int(event))
        values.append((level, change(level, prev, series), surprise.get(latest, math.nan), revision, float(first_at[latest])))
    return np.asarray(times, dtype="int64"), np.asarray(values, dtype="float64").reshape(-1, 5)


def compute_macro(obs: pd.DataFrame, sessions: pd.DatetimeIndex, delay_minutes: int = 15, calendar: str = DEFAULT_CALENDAR) -> pd.DataFrame:
    """Macro outputs for each session, from the vintages released by the session's
    close + ``delay_minutes``: columns ``market``, ``event_timestamp``,
    ``known_timestamp``, then :data:`OUTPUTS` (float64, NaN when unknown)."""
    sessions = _check_sessions(sessions, calendar)
    frame = _check_obs(obs)
    times = clock.availability_times(sessions, delay_minutes, calendar) if len(sessions) else pd.DatetimeIndex([], tz="UTC").astype("datetime64[us, UTC]")
    t_us = np.asarray(times.asi8, dtype="int64")
    out = pd.DataFrame({ENTITY: pd.Series([MARKET] * len(sessions), dtype=object)})
    out["event_timestamp"] = pd.Series(times, dtype="datetime64[us, UTC]")
    out["known_timestamp"] = out["event_timestamp"]
    data = np.full((len(sessions), len(OUTPUTS)), np.nan)
    present = set(frame["series_id"].unique()) if len(frame) else set()
    for i, series in enumerate(SERIES):
        if series.id not in present or not len(sessions):
            continue
        rows = frame[frame["series_id"] == series.id]
        release_us, values = _releases(rows, series)
        idx = np.searchsorted(release_us, t_us, side="right") - 1
        known = idx >= 0
        block = np.full((len(sessions), 5), np.nan)
        block[known] = values[idx[known]]
        block[known, 4] = (t_us[known] - block[known, 4]) / DAY_US
        data[:, i * 5:(i + 1) * 5] = block
    out = pd.concat([out, pd.DataFrame(data, columns=list(OUTPUTS))], axis=1)
    return out
