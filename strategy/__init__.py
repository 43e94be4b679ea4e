"""Strategies written once as pure functions, run by the vectorbt backtester
and the live loop on the same SDK calls."""
