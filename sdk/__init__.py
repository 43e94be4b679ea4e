"""Alpha Warehouse SDK.

    from sdk import alpha
    alpha.history(["AAPL", "SPY"], ["technicals:rsi_14"], start="2014-01-01", end="2014-12-31")
    alpha.latest(["AAPL"], "daily_v1")
    other = alpha.connect("/path/to/another/home")

Importing this module does no I/O and does not import Feast.
"""

from etl.core.errors import (
    AlphaError,
    BadInputError,
    ConfigError,
    EmptyInputError,
    GoldDamagedError,
    NaiveTimestampError,
    NotIngestedError,
    OnlineStoreError,
    UnknownFeatureError,
    UnknownSymbolError,
)
from sdk.client import Alpha
from sdk.online import NotMaterializedWarning

#: A ready client for the warehouse at ``$ALPHA_HOME`` (default ``.alpha/`` in the project).
alpha = Alpha()


def connect(home=None) -> Alpha:
    """A client for the warehouse at ``home``."""
    return Alpha(home)


__all__ = [
    "Alpha", "alpha", "connect", "AlphaError", "BadInputError", "ConfigError", "EmptyInputError",
    "GoldDamagedError", "NaiveTimestampError", "NotMaterializedWarning", "NotIngestedError", "OnlineStoreError", "UnknownFeatureError", "UnknownSymbolError",
]
