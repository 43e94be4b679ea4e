"""The write path of Alpha Warehouse, in layers (docs/architecture.md):

``core`` (errors, config, clock, http, the point-in-time rule) -> ``storage`` (atomic files,
bronze, silver, quarantine, state) -> ``quality`` (validation, health) and ``sources``
(every source as a ``Source``) -> ``factors`` (declarations and pure compute) -> ``gold``
(feature tables built from silver) -> ``serving`` (Feast apply and materialize, the Redis
writer) -> ``jobs`` (the nightly's steps). Each layer imports only the ones below it
(``tests/test_architecture.py``)."""
