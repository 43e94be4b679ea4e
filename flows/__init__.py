"""Prefect flows: thin tasks over ``etl.jobs`` (docs/orchestration.md, docs/architecture.md)."""
