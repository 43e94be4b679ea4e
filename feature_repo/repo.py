"""The warehouse's Feast objects as module attributes, for the ``feast`` CLI.

    cd feature_repo && ALPHA_HOME=/path/to/home feast apply

``feast apply`` imports every ``.py`` here and collects the Feast objects it
finds with ``dir(module)``. The objects are the ones the SDK and the nightly
flow register (:func:`feature_repo.definitions.build_definitions`, pure
constructors over the factor declarations), for the warehouse named by the
``ALPHA_HOME`` the user exported (sources point into ``$ALPHA_HOME/gold``).
Nothing here writes, connects or sets the environment; each object is listed
under ``<kind>_<name>`` (``view_technicals``, ``service_daily_v1``) by
:pep:`562` ``__getattr__`` / ``__dir__``.
"""

from __future__ import annotations

from etl.core.config import load_settings
from feature_repo.definitions import build_definitions

#: every entity, source, feature view and feature service of the warehouse at $ALPHA_HOME
DEFINITIONS = build_definitions(load_settings().home)

#: the objects by attribute name, ``<kind>_<name>``
OBJECTS = {
    f"{kind}_{name}": obj
    for kind, group in (("entity", DEFINITIONS.entities), ("source", DEFINITIONS.sources),
                        ("view", DEFINITIONS.views), ("service", DEFINITIONS.services))
    for name, obj in group.items()
}


def __getattr__(name: str):
    if name in OBJECTS:
        return OBJECTS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *OBJECTS})
