"""Feast definitions of Alpha Warehouse (see ``definitions.py``)."""
