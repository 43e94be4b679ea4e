"""The all-or-nothing ingest entry points of archives of files (kept here for callers).

Both run on the one ingest machinery (:func:`etl.sources.base.run_ingest`) as
sources with ``all_or_nothing``: every input is read and validated before
anything is written to silver. If any row is rejected, the rejected rows go to
the quarantine table with their reasons, :class:`BadInputError` names each file
and row, and the silver store is left exactly as it was.

- :func:`ingest_lean`: Lean daily bars with their factor and map files
  (:mod:`etl.sources.lean.daily`);
- :func:`ingest_csv_folder`: a folder of ``<SYMBOL>.csv`` daily bars
  (:mod:`etl.sources.csv_folder`).
"""

from __future__ import annotations

from etl.sources.base import IngestReport
from etl.sources.csv_folder import ingest_csv_folder
from etl.sources.lean.daily import ingest_lean

__all__ = ["IngestReport", "ingest_csv_folder", "ingest_lean"]
