"""Lean daily bars with their factor and map files, all-or-nothing.

``alpha ingest lean`` (dataset ``daily``) reads ``equity_usa_daily/<t>.csv``
(formats in :mod:`etl.sources.lean.formats`) as one batch: every row of every
file is validated before anything is written. One rejected row stops the whole
ingest: the rejected rows go to the bars quarantine, :class:`BadInputError`
names each file and row, and silver is left exactly as it was. A good batch is
landed in bronze (daily, factor and map files), then the corporate actions,
the symbol map and the bars (each session with the ticker it traded under,
and as ``payload`` the sha256 of the daily file it came from: the name of its
copy in ``bronze/lean/files/``) are written.

The write is atomic as a whole (:func:`etl.storage.silver.staged_publication`): a run
killed at any point leaves either nothing of it visible to readers or all of it, and
running it again completes it (the same store as a run never interrupted).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from etl.core.config import Settings, default_lean_path
from etl.core.errors import BadInputError
from etl.quality.bars import validate_bars
from etl.sources.base import BarArchiveSource, IngestReport, Job, Parsed, ingest_archive
from etl.sources.lean import formats as lean
from etl.storage.bronze import sha256_of


class LeanDailySource(BarArchiveSource):
    """Lean daily bars, factor and map files as one all-or-nothing job (see the module doc).
    Without symbols the job covers every daily file."""

    name = "lean"

    def __init__(self, settings: Settings, path: str | None = None, limiter=None):
        super().__init__(settings, path, limiter)
        self.root = (Path(path) if path else default_lean_path()).resolve()

    def jobs(self, dataset: str, symbols: list[str], start: pd.Timestamp, end: pd.Timestamp) -> list[Job]:
        files = lean.daily_files(self.root, symbols or None)
        if not files:
            raise BadInputError([(str(self.root / lean.DAILY), None, "no Lean daily files found")])
        return [Job(self.name, dataset, "ALL", start, end, files=tuple(str(p) for p in files))]

    def fetch_parse(self, job: Job) -> Parsed:
        files = [Path(f) for f in job.files]
        raw = pd.concat([lean.read_daily_raw(p) for p in files], ignore_index=True)
        validated = validate_bars(raw, self.settings.calendar, date_format=lean.DATE_FORMAT, price_divisor=lean.PRICE_DIVISOR,
                                  delay_minutes=self.settings.bar_delay_minutes)   # a future bar says so
        batch_key = "lean:" + ",".join(f"{p.name}:{p.stat().st_size}" for p in files)
        if len(validated.rejects):
            return Parsed(rejects=validated.rejects, problems=validated.problems, rows_fetched=len(raw), batch_key=batch_key)

        land: list[tuple[Path, str]] = []
        factor_frames, map_frames = [], []
        for p in files:
            ff = self.root / lean.FACTORS / p.name
            mf = self.root / lean.MAPS / p.name
            if ff.exists():
                # lineage: the factor file's digest, the name of its copy in bronze/lean/files
                factor_frames.append(lean.read_factor_file(ff, self.settings.calendar).assign(payload=sha256_of(ff)))
                land.append((ff, f"{lean.FACTORS}/{ff.name}"))
            if mf.exists():
                map_frames.append(lean.read_map_file(mf))
                land.append((mf, f"{lean.MAPS}/{mf.name}"))

        good = validated.good
        # lineage: each bar names the landed file it came from (bronze/lean/files/<sha[:2]>/<sha>-<name>)
        digests = {str(p): sha256_of(p) for p in files}
        good = good.assign(payload=good["source_file"].astype(str).map(digests))
        maps = pd.concat(map_frames, ignore_index=True) if map_frames else pd.DataFrame(columns=["symbol", "last_date", "ticker", "exchange"])
        tickers = []
        for sym, g in good.groupby("symbol", sort=False):
            tickers.append(pd.Series(lean.ticker_as_traded(g["session"], maps[maps["symbol"] == sym], sym), index=g.index))
        good = good.assign(ticker=pd.concat(tickers), source=self.name)
        tables: dict[str, pd.DataFrame] = {}
        if factor_frames:
            tables["corporate_actions"] = pd.concat(factor_frames, ignore_index=True)
        if map_frames:
            tables["symbol_map"] = maps
        tables["bars_daily"] = good
        return Parsed(
            tables=tables,
            rows_fetched=len(raw),
            batch_key=batch_key,
            land=[(p, f"{lean.DAILY}/{p.name}") for p in files] + land,
            symbols=sorted(good["symbol"].unique()),
        )


#: the silver tables a Lean daily ingest writes, published together
LEAN_TABLES = ("bars_daily", "corporate_actions", "symbol_map")


def ingest_lean(settings: Settings, root: str | Path, symbols: list[str] | None = None, now: pd.Timestamp | None = None) -> IngestReport:
    """Ingest Lean daily bars with their factor and map files (all-or-nothing:
    one rejected row stops the whole ingest before anything is written; a kill
    leaves nothing of it visible, or all of it: see the module doc)."""
    from etl.storage.silver import staged_publication

    with staged_publication(settings, LEAN_TABLES) as stage:
        try:
            return ingest_archive(stage.settings, "lean", root, symbols, now)
        except BadInputError as exc:   # name the quarantine file where it stays, in the live home
            raise BadInputError(exc.problems, stage.live_path(exc.quarantine_path)) from None
