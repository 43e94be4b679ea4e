"""Strategies written once as pure functions, run by the vectorbt backtester
and the live loop on the same SDK calls."""

from strategy import trend_rsi

#: strategies by name, for `alpha live --strategy NAME` and `alpha replay --strategy NAME`
STRATEGIES = {trend_rsi.NAME: trend_rsi}


def get_strategy(name: str):
    """The strategy module registered as ``name``, or a clear error listing the known ones."""
    from etl.core.errors import AlphaError

    if name not in STRATEGIES:
        raise AlphaError(f"unknown strategy {name!r}; registered: {', '.join(sorted(STRATEGIES))} (see strategy/__init__.py)")
    return STRATEGIES[name]
