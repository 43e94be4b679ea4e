"""Prefect flows. Tasks only call into ``etl`` and ``sdk.feast_store``."""
