"""Module-level Feast objects for ``feast apply`` (run from this folder with
``ALPHA_HOME`` exported; the sources point into ``$ALPHA_HOME/gold``).

Feast discovers objects by scanning module globals, so every generated entity,
source, view and service is bound here under a unique name."""

from etl.core.config import load_settings
from feature_repo.definitions import build_definitions

_defs = build_definitions(load_settings().home)

for _kind, _group in (("entity", _defs.entities), ("source", _defs.sources), ("view", _defs.views), ("service", _defs.services)):
    for _name, _obj in _group.items():
        globals()[f"{_kind}_{_name}"] = _obj
