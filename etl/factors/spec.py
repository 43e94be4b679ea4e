"""How a factor is declared.

One :class:`Factor` per factor: its family, the feature view it lands in,
the entity it describes, the silver inputs it reads, its warm-up window, when
its value becomes knowable, its outputs (name, dtype, description) and a
one-line description. The feature repo generates Feast views and services
from these declarations; ``alpha features list`` prints them; the ETL loads
``warmup`` sessions of history before the first session it must produce.

Family modules (``etl/factors/<family>.py``, or a package ``etl/factors/<family>/``
whose ``__init__`` re-exports ``FACTORS``) hold the pure compute functions:
frames in, frames out, no I/O. A family's compute returns one row per entity
and time with

- the entity key (``symbol``, or ``market`` for market-wide factors),
- ``event_timestamp``: when the row's values became knowable (never before
  every input they use was knowable),
- ``known_timestamp``: when this version became knowable (>= event time; a
  revision or restatement is a new row with a later known time),

followed by the output columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from etl.core.errors import DeclarationError

#: the built-in families; a user's module declares its own family name
FAMILIES: tuple[str, ...] = ("technical", "options", "news", "fundamentals", "macro", "regime")
Dtype = Literal["float64", "float32", "int64", "string", "bool"]
DTYPES: tuple[str, ...] = ("float64", "float32", "int64", "string", "bool")
#: the input tables a family may declare (what the generic builder knows how to read)
INPUT_TABLES: tuple[str, ...] = ("bars", "corporate_actions", "option_quotes", "news", "fundamentals", "macro", "rates")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Output:
    name: str
    dtype: Dtype = "float64"
    description: str = ""


@dataclass(frozen=True)
class Factor:
    name: str
    family: str
    view: str
    outputs: tuple[Output, ...]
    inputs: tuple[str, ...]
    warmup: int
    availability: str
    description: str
    entity: Literal["symbol", "market"] = "symbol"
    params: tuple[tuple[str, object], ...] = field(default=())
    #: a bar factor's own compute: ``compute(bars) -> {output: array}`` on one symbol's bars in
    #: the point-in-time price scale (see :class:`Family`); None when its family computes it
    compute: Callable | None = field(default=None, compare=False)
    #: bump to recompute the factor's view (the declaration's fingerprint includes it)
    version: str = "1"

    def __post_init__(self) -> None:
        if not NAME_RE.match(str(self.name)):
            raise DeclarationError(f"factor {self.name!r}: a name is lower case letters, digits and _, starting with a letter")
        if not self.family or not NAME_RE.match(str(self.family)):
            raise DeclarationError(f"factor {self.name}: family {self.family!r} is not a valid name")
        if not NAME_RE.match(str(self.view)):
            raise DeclarationError(f"factor {self.name}: view {self.view!r} is not a valid name")
        if not self.outputs:
            raise DeclarationError(f"factor {self.name}: no outputs")
        for o in self.outputs:
            if not isinstance(o, Output):
                raise DeclarationError(f"factor {self.name}: outputs must be Output(...) objects, got {o!r}")
            if o.dtype not in DTYPES:
                raise DeclarationError(f"factor {self.name}: output {o.name} has dtype {o.dtype!r}; one of {DTYPES}")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise DeclarationError(f"factor {self.name}: warmup must be a whole number of sessions >= 0, got {self.warmup!r}")
        if not str(self.availability).strip():
            raise DeclarationError(f"factor {self.name}: say when its value becomes knowable (availability)")

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


@dataclass(frozen=True)
class Inputs:
    """What the generic builder hands a family's compute for ONE entity.

    - ``entity``: the symbol (or ``"US"`` for market-wide families);
    - ``bars``: the symbol's daily bars as known at the step being built, one row per session,
      sorted (symbol, session, ticker, open, high, low, close, volume, event_timestamp,
      known_timestamp, created_timestamp), raw prices; for a family with a warm-up, only the
      ``warmup`` sessions before ``start`` and the sessions from ``start`` on;
    - ``start``: the first session whose rows are wanted (None: every session);
    - ``tables``: every other declared input table, this entity's rows (corporate actions,
      option quotes, news, fundamentals; macro observations and rates whole);
    - ``calendar``, ``delay_minutes``: the home's exchange calendar and bar delay.
    """

    entity: str
    bars: pd.DataFrame | None
    start: pd.Timestamp | None
    tables: dict[str, pd.DataFrame | None]
    calendar: str
    delay_minutes: int

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def split_factors(self):
        """The split factor in force at each bar (1 without corporate actions): multiply raw
        prices by it for a series without split jumps; divide a price-level result by it to
        get back to the scale traded at each session."""
        from etl.factors.core import cumulative_factors

        split, _ = cumulative_factors(self.bars["session"], self.factor_rows())
        return split

    def factor_rows(self):
        """The ``corporate_actions`` input as known at this step -- one version per action, the
        configured source first (``etl.storage.actions.resolve``) -- as cumulative factor rows
        (``factor_date, split_factor, price_factor, reference_price``: what raw prices up to each
        date are multiplied by), or None without actions. Cash dividends become factors with the
        close of the bar before their ex-date."""
        from etl.core.actions import factor_rows, resolve

        acts = self.table("corporate_actions")
        if acts is None or len(acts) == 0:
            return None
        if "factor_date" in acts.columns:  # already factor rows (a caller's own frame)
            return acts
        return factor_rows(resolve(acts), self.bars, self.calendar)

    def adjusted(self, prices: Literal["split", "total"] = "split") -> pd.DataFrame:
        """The bars with split- (or split- and dividend-) adjusted prices and volumes: ratios
        of them across a split are what a trader saw; needs the ``corporate_actions`` input
        (without it the prices stay raw)."""
        from etl.factors.core import cumulative_factors

        split, price = cumulative_factors(self.bars["session"], self.factor_rows())
        mult = split * price if prices == "total" else split
        out = self.bars.copy()
        for c in ("open", "high", "low", "close"):
            out[c] = out[c].to_numpy(dtype=float) * mult
        out["volume"] = out["volume"].to_numpy(dtype=float) / split
        return out

    def asof(self, table: str, column: str, where: dict | None = None):
        """For each bar, ``column`` of the latest row of input ``table`` (optionally only rows
        whose columns equal ``where``'s values) whose ``event_timestamp`` -- when it was
        knowable -- is at or before the bar's: never a value before it was known. NaN before
        the first."""
        import numpy as np

        from etl.core import clock

        rows = self.table(table)
        n = len(self.bars)
        if rows is None or rows.empty:
            return np.full(n, np.nan)
        for k, v in (where or {}).items():
            rows = rows[rows[k] == v]
        rows = rows.sort_values([c for c in ("event_timestamp", "created_timestamp") if c in rows.columns], kind="stable")
        if rows.empty:
            return np.full(n, np.nan)
        at = np.searchsorted(clock.epoch_us(rows["event_timestamp"]), clock.epoch_us(self.bars["event_timestamp"]), side="right") - 1
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
        return np.where(at >= 0, values[np.maximum(at, 0)], np.nan)


@dataclass(frozen=True)
class Family:
    """How the generic builder computes a set of declared factors (docs/factors.md).

    ``compute(inputs) -> frame``: pure (no I/O, no clock); one row per entity and event time
    with ``event_timestamp``, ``known_timestamp`` and every output of ``factors``.

    ``warmup`` set (sessions): the family is driven by one symbol's bars: the builder passes
    only that many sessions before ``start`` and keeps the rows from ``start`` on; a new session
    computes only that session, a revised bar recomputes from the revised session on (each
    version known from when it was knowable). ``warmup=None``: the compute needs an entity's
    whole history; the builder recomputes an entity whose inputs changed and appends the rows
    that are new.
    """

    name: str
    factors: tuple[Factor, ...]
    inputs: tuple[str, ...]
    compute: Callable[[Inputs], pd.DataFrame] = field(compare=False)
    warmup: int | None
    availability: str
    entity: Literal["symbol", "market"] = "symbol"
    #: market families: which symbol's bars they read (e.g. SPY for the regime)
    proxy: str | None = None
    version: str = "1"
    user: bool = False
    #: "running": a row is known from the newest version of any bar up to it (indicators);
    #: "row": from its own bar's version (the bars themselves)
    known_rule: Literal["running", "row"] = "running"

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise DeclarationError(f"family {self.name!r}: not a valid name")
        unknown = [t for t in self.inputs if t not in INPUT_TABLES]
        if unknown:
            raise DeclarationError(f"family {self.name}: unknown input table(s) {unknown}; the builder reads {list(INPUT_TABLES)}")
        if self.warmup is not None and "bars" not in self.inputs:
            raise DeclarationError(f"family {self.name}: a warm-up counts sessions of bars, so it needs the 'bars' input")
        if not self.factors:
            raise DeclarationError(f"family {self.name}: no factors")

    @property
    def views(self) -> list[str]:
        return list(dict.fromkeys(f.view for f in self.factors))

    def outputs(self, view: str | None = None) -> list[Output]:
        return [o for f in self.factors if view is None or f.view == view for o in f.outputs]

    def fingerprint(self) -> str:
        """What, if changed, recomputes this family's views: its declarations and versions."""
        import hashlib

        parts = [self.name, self.version, repr(self.inputs), repr(self.warmup), self.entity, repr(self.proxy)]
        for f in self.factors:
            parts.append(repr((f.name, f.view, f.outputs, f.inputs, f.warmup, f.params, f.version, f.entity)))
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
