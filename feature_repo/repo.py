"""Module-level Feast objects for ``feast apply`` (run from this folder with
``ALPHA_HOME`` exported; the sources point into ``$ALPHA_HOME/gold``)."""

from etl.config import load_settings
from feature_repo.definitions import build_definitions

_defs = build_definitions(load_settings().home)

symbol = _defs.symbol
bars_daily_source = _defs.bars_source
technicals_source = _defs.technicals_source
bars_daily = _defs.bars_daily
technicals = _defs.technicals
daily_v1 = _defs.daily_v1
