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

from dataclasses import dataclass, field
from typing import Literal

from etl.core.errors import DeclarationError

Family = Literal["technical", "options", "news", "fundamentals", "macro", "regime"]
FAMILIES: tuple[str, ...] = ("technical", "options", "news", "fundamentals", "macro", "regime")
Dtype = Literal["float64", "float32", "int64", "string", "bool"]


@dataclass(frozen=True)
class Output:
    name: str
    dtype: Dtype = "float64"
    description: str = ""


@dataclass(frozen=True)
class Factor:
    name: str
    family: Family
    view: str
    outputs: tuple[Output, ...]
    inputs: tuple[str, ...]
    warmup: int
    availability: str
    description: str
    entity: Literal["symbol", "market"] = "symbol"
    params: tuple[tuple[str, object], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise DeclarationError(f"factor {self.name}: family must be one of {FAMILIES}, got {self.family!r}")
        if not self.outputs:
            raise DeclarationError(f"factor {self.name}: no outputs")

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]
