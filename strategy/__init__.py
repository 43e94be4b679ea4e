"""Strategies written once as pure functions, run by the vectorbt backtester and the live loop on
the same SDK calls. Built-ins and the user's own strategies load through one protocol
(:mod:`strategy.protocol`)."""

from __future__ import annotations

from strategy.protocol import BUILTINS

#: built-in strategies by name, for `alpha live --strategy NAME` and `alpha replay --strategy NAME`
STRATEGIES = BUILTINS


def get_strategy(name: str, params=None, paths=()):
    """The strategy ``name`` names (a built-in name or ``package.module:object``), checked against
    the protocol; a clear error says what is wrong with it."""
    from strategy.protocol import load_strategy

    return load_strategy(name, params, paths)
