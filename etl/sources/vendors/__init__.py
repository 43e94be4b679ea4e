"""Market-data vendor adapters: real HTTP sources run by :mod:`etl.sources.base`.

Each module holds one :class:`etl.sources.base.Source` (registered in
``etl.sources.base.REGISTRY``). Nothing here does I/O at import.
"""
