"""Market-data vendor adapters: real HTTP sources run by :mod:`etl.pipeline`.

Each module holds one :class:`etl.pipeline.Source` (registered in
``etl.pipeline.REGISTRY``). Nothing here does I/O at import.
"""
