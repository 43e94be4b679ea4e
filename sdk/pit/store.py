"""``AlphaOfflineStore``: a Feast offline store over Parquet, exact and bitemporal.

Select it in ``feature_store.yaml``::

    offline_store:
      type: sdk.pit.store.AlphaOfflineStore
      bitemporal: true        # default; false keeps Feast's plain semantics

Views use Feast's own ``FileSource`` over one Parquet file or a (hive
partitioned) folder of them. For every entity row and view the store returns
the row with the greatest event timestamp <= the entity timestamp and within
the view's TTL; among equal event timestamps the greatest created timestamp;
a remaining tie goes to the row that comes last in the source (see
``engine.py``). Bitemporal by default: rows created after the knowledge time
(the entity timestamp, or ``as_of`` given through :func:`pit_options`) are
not seen. Exactly one output row per entity row, in input order, duplicates
kept. Naive entity timestamps are rejected; naive source timestamps are read
as UTC (as Feast's file store does).

A relative source path is resolved against the home the store serves (the ``home`` option,
else Feast's ``repo_path``): the warehouse registers its sources as ``gold/<view>``, so a
copied or moved home reads its own files. A source of a warehouse's gold is checked against
the parts its builds recorded before it is read (:func:`etl.gold.integrity.check_source`), and
an unreadable file is reported as :class:`~etl.core.errors.GoldDamagedError` naming it and
the command that rebuilds it, never as the Parquet reader's own error.

Only the columns a query needs are read, with the key set and time window
pushed down to the Parquet scan, and feature columns are gathered in batches
straight into the output, so memory stays near the size of the result.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.utils import _get_requested_feature_views_to_features_dict

from etl.core import clock
from etl.core.errors import EmptyInputError, NaiveTimestampError, UnsupportedError
from etl.core.pit import factorize_keys, latest_indices, pit_indices
from sdk.pit.reader import Window, epoch_us

STORE_TYPE = "sdk.pit.store.AlphaOfflineStore"
ENTITY_TS = "event_timestamp"
US = 1_000_000
ONE_SCAN_BYTES = 256 * 2**20


class AlphaOfflineStoreConfig(FeastConfigBaseModel):
    """Config of :class:`AlphaOfflineStore` (``offline_store:`` in feature_store.yaml)."""

    type: Literal["sdk.pit.store.AlphaOfflineStore"] = STORE_TYPE
    bitemporal: bool = True
    """Ignore rows created after the knowledge time (default). False: Feast's plain semantics."""
    column_batch: int = 32
    """Feature columns read and gathered per pass (bounds memory beyond the result)."""
    home: str | None = None
    """The warehouse home relative source paths are resolved against (default: Feast's repo_path)."""
    engine: Literal["local", "spark"] = "local"
    """Where joins run: this process (numpy), or Spark with the home's ``[spark]`` settings
    (``sdk.pit.spark_join``; the same answers). ``pit_options(engine=...)`` overrides it per call."""


# Per-call options (``history(as_of=..., bitemporal=...)``) reach the store through this ContextVar
# because Feast leaves no other channel: ``FeatureStore.get_historical_features`` (0.67) takes
# only ``entity_df, features, full_feature_names, start_date, end_date,
# filter_by_created_timestamp`` and forwards no other keyword to ``OfflineStore.
# get_historical_features``, so an ``as_of`` time or ``bitemporal=False`` cannot be passed as an
# argument. :func:`pit_options` sets it for one call and always resets it (token, ``finally``),
# so nothing leaks into the next query, another thread or another task.
@dataclass(frozen=True)
class _Options:
    as_of: pd.Timestamp | None = None
    bitemporal: bool | None = None
    engine: str | None = None


_OPTIONS: contextvars.ContextVar[_Options] = contextvars.ContextVar("alpha_pit_options", default=_Options())  # noqa: B039 (frozen)


@contextlib.contextmanager
def pit_options(as_of=None, bitemporal: bool | None = None, engine: str | None = None) -> Iterator[None]:
    """Per-call options for the store: a fixed knowledge time, bitemporal on/off, the engine
    (``"local"`` or ``"spark"``; None: the store's config)."""
    if engine is not None and engine not in ("local", "spark"):
        raise UnsupportedError(f"engine must be 'local' or 'spark', got {engine!r}")
    if as_of is not None:
        as_of = pd.Timestamp(as_of)
        if as_of.tzinfo is None:
            raise NaiveTimestampError(f"as_of={as_of} has no time zone; pass e.g. pd.Timestamp('{as_of}', tz='UTC')")
    token = _OPTIONS.set(_Options(as_of=as_of, bitemporal=bitemporal, engine=engine))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


# ----------------------------------------------------------------- reading
def _reverse_map(source: DataSource) -> dict[str, str]:
    return {v: k for k, v in (source.field_mapping or {}).items()}


def _home(config: RepoConfig):
    home = getattr(config.offline_store, "home", None)
    return home if home and "${" not in home else config.repo_path


def _source_path(source: DataSource, config: RepoConfig) -> str:
    """Where a FileSource's files are: a relative path under the home. A warehouse source
    registered with an absolute path by an older version (``<old home>/gold/<view>``, named
    ``<view>_source``) is re-bound to this home's ``gold/<view>`` when that exists, so a
    copy of such a home does not read the original's files."""
    if not isinstance(source, FileSource):
        raise UnsupportedError(f"AlphaOfflineStore reads Feast FileSources only, got {type(source).__name__} ({source.name})")
    home = _home(config)
    uri = source.path
    p = Path(uri)
    if home is not None and "://" not in uri and p.is_absolute() and p.parent.name == "gold" and source.name == f"{p.name}_source":
        own = Path(home) / "gold" / p.name
        if own != p and own.is_dir():
            return str(own)
    return FileSource.get_uri_for_file_path(repo_path=home, uri=uri)


@contextlib.contextmanager
def _reading(path: str, view: str) -> Iterator[None]:
    """Check a warehouse view's parts against its build records, then turn any error of the
    Parquet reader into a GoldDamagedError naming the file (and what to run)."""
    import polars as pl

    from etl.gold.integrity import check_source, source_error

    check_source(path)
    try:
        yield
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        raise source_error(path, view, exc) from exc
    except Exception as exc:
        if _spark_read_error(exc):
            raise source_error(path, view, exc) from exc
        raise


#: Spark's error classes of a file it could not read (a damaged or vanished part)
SPARK_READ_ERRORS = ("FAILED_READ_FILE", "PATH_NOT_FOUND", "CANNOT_READ_FILE_FOOTER", "ParquetDecodingException")


def _spark_read_error(exc: Exception) -> bool:
    import sys

    if "pyspark" not in sys.modules:
        return False
    from pyspark.errors import PySparkException

    text = str(exc)
    return (isinstance(exc, PySparkException) or type(exc).__name__ == "Py4JJavaError") and any(e in text for e in SPARK_READ_ERRORS)


@contextlib.contextmanager
def _engine(config: RepoConfig, engine: str, entity_df: pd.DataFrame, entity_us: np.ndarray, fv_to_features: dict):
    """None for the local engine; on Spark, the session (opened with the home's ``[spark]``
    settings) and the entity frame written once for every view's join, removed afterwards."""
    if engine != "spark":
        yield None
        return
    from etl.core import spark as engine_spark
    from etl.core.config import load_settings
    from sdk.pit.spark_join import EntityTable

    home = Path(_home(config))
    settings = load_settings(home)
    session = engine_spark.session(settings)
    keys = sorted({k for fv in fv_to_features for k in _view_columns(fv, entity_df).entity_keys})
    scratch = home / "spark" / "scratch"   # on a cluster, the home is where driver and executors both see files
    try:
        scratch.mkdir(parents=True, exist_ok=True)
    except OSError:                          # a read-only home: this machine's temp folder (local masters)
        import tempfile

        scratch = Path(tempfile.gettempdir()) / "alpha-spark-scratch"
    entities = EntityTable(scratch, entity_df, entity_us, keys)
    try:
        yield session, entities
    finally:
        entities.close()


def _bound_us(value: datetime | None, name: str) -> int | None:
    """A time bound Feast hands to ``pull_*_from_table_or_query`` as UTC microseconds.

    Feast 0.67 makes these bounds tz-aware itself on its own paths (``FeatureStore.materialize``
    and ``materialize_incremental``, ``retrieve_saved_dataset``: ``feast.utils.make_tzaware``), but
    its contract for the offline store is "a naive datetime is UTC" (``make_tzaware``: "We assume
    tz-naive datetimes are UTC"), and other callers (the offline server, a compute engine) may pass
    naive ones. So Feast's own rule is applied first, explicitly, and then the warehouse's one
    conversion (which refuses naive times everywhere else)."""
    if value is None:
        return None
    from feast.utils import make_tzaware

    return clock.instant_us(make_tzaware(value), name)


# ----------------------------------------------------------------- the job
class AlphaRetrievalJob(RetrievalJob):
    def __init__(self, evaluate, full_feature_names: bool, on_demand_feature_views=None, metadata=None):
        self._evaluate = evaluate
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views or []
        self._metadata = metadata

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._on_demand_feature_views

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def to_df(self, validation_reference=None, timeout: int | None = None) -> pd.DataFrame:
        """The result as pandas, built directly (no round trip through Arrow)."""
        if validation_reference is not None or self._on_demand_feature_views:
            return super().to_df(validation_reference=validation_reference, timeout=timeout)
        return self._to_df_internal(timeout)

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        out = self._evaluate()
        return out.to_pandas() if isinstance(out, pa.Table) else out

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        out = self._evaluate()
        return out if isinstance(out, pa.Table) else pa.Table.from_pandas(out, preserve_index=False)

    def persist(self, storage, allow_overwrite: bool | None = False, timeout: int | None = None):
        raise UnsupportedError("AlphaOfflineStore does not persist saved datasets; write the DataFrame yourself")


def _entity_timestamps(entity_df: pd.DataFrame) -> tuple[str, np.ndarray]:
    col = ENTITY_TS
    if col not in entity_df.columns:
        dt_cols = [c for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])]
        if len(dt_cols) != 1:
            raise EmptyInputError(f"the entity frame needs a column named '{ENTITY_TS}' with the time of each row")
        col = dt_cols[0]
    return col, clock.epoch_us(clock.require_utc(entity_df[col], col))


def _join_view(
    config: RepoConfig,
    fv: FeatureView,
    features: list[str],
    entity_df: pd.DataFrame,
    entity_us: np.ndarray,
    bitemporal: bool,
    as_of_us: int | None,
    full_feature_names: bool,
    batch: int,
    sink,
    spark=None,
) -> None:
    """Join one view and hand each output column to ``sink(name, values)``; on Spark when
    ``spark`` is a ``(session, EntityTable)`` pair."""
    path = _source_path(fv.batch_source, config)
    with _reading(path, fv.name):
        if spark is None:
            _join_view_read(path, fv, features, entity_df, entity_us, bitemporal, as_of_us, full_feature_names, batch, sink)
        else:
            _join_view_spark(*spark, path, fv, features, entity_df, entity_us, bitemporal, as_of_us, full_feature_names,
                             batch, sink)


@dataclass(frozen=True)
class _ViewColumns:
    """How one view's source is joined: its time columns, join keys and TTL."""

    rev: dict
    ts_col: str
    created_col: str | None
    entity_keys: list
    source_keys: list
    ttl_us: int | None


def _view_columns(fv: FeatureView, entity_df: pd.DataFrame) -> _ViewColumns:
    source = fv.batch_source
    rev = _reverse_map(source)
    ts_col = rev.get(source.timestamp_field, source.timestamp_field)
    created_col = rev.get(source.created_timestamp_column, source.created_timestamp_column) or None
    entity_keys, source_keys = [], []
    for ent in fv.entity_columns:
        if ent.name == DUMMY_ENTITY_ID:
            continue
        entity_keys.append(fv.projection.join_key_map.get(ent.name, ent.name))
        source_keys.append(rev.get(ent.name, ent.name))
    missing = [k for k in entity_keys if k not in entity_df.columns]
    if missing:
        raise EmptyInputError(f"the entity frame lacks join key column(s) {missing} needed by feature view '{fv.name}'")
    ttl_us = int(fv.ttl.total_seconds() * US) if fv.ttl and fv.ttl.total_seconds() > 0 else None
    return _ViewColumns(rev, ts_col, created_col, entity_keys, source_keys, ttl_us)


def _join_view_spark(spark, entities, path, fv, features, entity_df, entity_us, bitemporal, as_of_us, full_feature_names,
                     batch, sink) -> None:
    """:func:`_join_view_read` on Spark (``sdk.pit.spark_join``): the same rule, the same answer."""
    from sdk.pit import spark_join

    vc = _view_columns(fv, entity_df)
    lo = int(entity_us.min()) - vc.ttl_us if vc.ttl_us is not None else None
    spark_join.join_view(
        spark, entities, path, entity_keys=vc.entity_keys, source_keys=vc.source_keys, ts_col=vc.ts_col,
        created_col=vc.created_col, features=features, src_names=[vc.rev.get(f, f) for f in features], ttl_us=vc.ttl_us,
        bitemporal=bitemporal, as_of_us=as_of_us, lo_us=lo, hi_us=int(entity_us.max()),
        out_names=[_out_column(fv, f, full_feature_names) for f in features], batch=batch, sink=sink)


def _join_view_read(path, fv, features, entity_df, entity_us, bitemporal, as_of_us, full_feature_names, batch, sink) -> None:
    vc = _view_columns(fv, entity_df)
    rev, ts_col, created_col, ttl_us = vc.rev, vc.ts_col, vc.created_col, vc.ttl_us
    entity_keys, source_keys = vc.entity_keys, vc.source_keys
    lo = int(entity_us.min()) - ttl_us if ttl_us is not None else None
    hi = int(entity_us.max())
    key_values = pd.unique(entity_df[entity_keys[0]]) if len(entity_keys) == 1 else None
    window = Window(path, ts_col, lo, hi, source_keys[0] if len(source_keys) == 1 else None, key_values)
    index_cols = list(dict.fromkeys(source_keys + [ts_col] + ([created_col] if created_col else [])))
    src_names = [rev.get(f, f) for f in features]
    # one scan when the features are small; else the index first and the features in
    # column batches, so what is held beyond the result is one batch of source columns
    scan_once = window.rows_upper_bound() * max(1, len(src_names)) * 8 <= ONE_SCAN_BYTES
    index = window.read(list(dict.fromkeys(index_cols + src_names)) if scan_once else index_cols)

    m = len(entity_df)
    if source_keys:
        e_codes, s_codes = factorize_keys(
            [entity_df[k].to_numpy() for k in entity_keys],
            [index[k].to_numpy() for k in source_keys],
        )
    else:
        e_codes, s_codes = np.zeros(m, dtype=np.int64), np.zeros(index.height, dtype=np.int64)
    s_event = epoch_us(index[ts_col])
    s_created = epoch_us(index[created_col]) if created_col else None
    valid = s_event != np.iinfo(np.int64).min
    keep = None
    if not valid.all():  # rows without an event time can never be placed
        keep = np.flatnonzero(valid)
        s_codes, s_event = s_codes[keep], s_event[keep]
        s_created = s_created[keep] if s_created is not None else None
    winner = pit_indices(e_codes, entity_us, s_codes, s_event, s_created, ttl=ttl_us, bitemporal=bitemporal, as_of=as_of_us)
    if keep is not None:
        winner = np.where(winner >= 0, keep[np.maximum(winner, 0)], -1)
    miss = winner < 0
    any_miss = bool(miss.any())
    take = np.where(miss, 0, winner)
    if not scan_once:
        del index
    step = max(1, len(src_names)) if scan_once else batch
    for start in range(0, len(src_names), step):
        names = src_names[start : start + step]
        table = index if scan_once else window.read(names)
        for feat, name in zip(features[start : start + len(names)], names, strict=True):
            col = table[name]
            if table.height == 0:
                sink(_out_column(fv, feat, full_feature_names), np.full(m, np.nan))
            elif col.dtype.is_float():
                values = col.to_numpy().astype(np.float64, copy=False)[take]
                if any_miss:
                    values[miss] = np.nan
                sink(_out_column(fv, feat, full_feature_names), values)
            else:
                source_values = col.to_pandas()
                values = source_values.to_numpy(dtype=object)[take]
                if any_miss:
                    values[miss] = None
                dtype = source_values.dtype if col.dtype.is_numeric() and not any_miss else object
                sink(_out_column(fv, feat, full_feature_names), pd.Series(values, dtype=dtype))
        del table


class AlphaOfflineStore(OfflineStore):
    """Exact, bitemporal point-in-time joins over Parquet FileSources (see module doc)."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        if entity_df is None:
            raise EmptyInputError("AlphaOfflineStore needs an entity frame (symbol + event_timestamp rows)")
        if not isinstance(entity_df, pd.DataFrame):
            raise UnsupportedError(f"AlphaOfflineStore takes a pandas entity frame, not {type(entity_df).__name__} (SQL is not supported)")
        store_cfg = config.offline_store
        opts = _OPTIONS.get()
        bitemporal = opts.bitemporal if opts.bitemporal is not None else (store_cfg.bitemporal or filter_by_created_timestamp)
        as_of_us = None if opts.as_of is None else clock.instant_us(opts.as_of, "as_of")
        fv_to_features, _ = _get_requested_feature_views_to_features_dict(feature_refs, feature_views, [])
        ts_col, entity_us = _entity_timestamps(entity_df) if len(entity_df) else (ENTITY_TS, np.empty(0, np.int64))
        batch = max(1, int(store_cfg.column_batch))
        engine = opts.engine or getattr(store_cfg, "engine", "local")

        def evaluate() -> pd.DataFrame:
            left = entity_df.reset_index(drop=True)
            names = _requested_columns(fv_to_features, full_feature_names)
            float_names = [_out_column(fv, f, full_feature_names) for fv, feats in fv_to_features.items() for f in feats if _is_float(fv, f)]
            slot = {n: i for i, n in enumerate(float_names)}
            # float features go straight into one preallocated block: the result is built once
            block = np.empty((len(float_names), len(left)), dtype=np.float64)
            others: dict[str, pd.Series] = {}

            def sink(name: str, values) -> None:
                if name in slot and isinstance(values, np.ndarray) and values.dtype == np.float64:
                    block[slot[name]] = values
                else:
                    if name in slot:  # declared float, source held something else
                        block[slot.pop(name)] = np.nan
                    others[name] = values

            if len(left):
                with _engine(config, engine, left, entity_us, fv_to_features) as spark:
                    for fv, feats in fv_to_features.items():
                        _join_view(config, fv, feats, left, entity_us, bitemporal, as_of_us, full_feature_names, batch, sink, spark)
            parts = [left]
            if float_names:
                parts.append(pd.DataFrame(block.T, columns=float_names, copy=False))
            if others:
                parts.append(pd.DataFrame({k: (v.to_numpy() if hasattr(v, "to_numpy") else v) for k, v in others.items()}))
            result = pd.concat(parts, axis=1, copy=False)
            # reorder or drop columns only when needed: each would copy the whole result
            if result.columns.duplicated().any():
                result = result.loc[:, ~result.columns.duplicated(keep="last")]
            order = list(left.columns) + [n for n in names if n not in left.columns]
            if list(result.columns) != order:
                result = result[order]
            return result

        return AlphaRetrievalJob(evaluate, full_feature_names)

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        def evaluate() -> pa.Table:
            # pass 1: keys and times only; pass 2: the winning rows' features, streamed (memory is
            # bounded by the keys and times of the window, not by its feature values)
            path = _source_path(data_source, config)
            with _reading(path, data_source.name):
                return _latest(path, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column,
                               start_date, end_date)

        return AlphaRetrievalJob(evaluate, full_feature_names=False)

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        def evaluate() -> pa.Table:
            return _to_arrow(_read_range(config, data_source, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date))

        return AlphaRetrievalJob(evaluate, full_feature_names=False)


def _latest(path, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date) -> pa.Table:
    """The newest row per key in the window: pass 1 keys and times only; pass 2 the winning rows'
    features, streamed (memory is bounded by the keys and times of the window, not by its values)."""
    import polars as pl

    window = Window(path, timestamp_field, _bound_us(start_date, "start_date"), _bound_us(end_date, "end_date"))
    times = list(dict.fromkeys(join_key_columns + [timestamp_field] + ([created_timestamp_column] if created_timestamp_column else [])))
    frame = window.read(times)
    if join_key_columns:
        _, codes = factorize_keys(
            [np.empty(0, dtype=object) for _ in join_key_columns],
            [frame[k].to_numpy() for k in join_key_columns],
        )
    else:
        codes = np.zeros(frame.height, dtype=np.int64)
    created = epoch_us(frame[created_timestamp_column]) if created_timestamp_column else None
    idx = np.sort(latest_indices(codes, epoch_us(frame[timestamp_field]), created))
    del frame, codes
    cols = list(dict.fromkeys(join_key_columns + feature_name_columns + times))
    picked = (window.filtered.with_row_index("__row").filter(pl.col("__row").is_in(pl.Series(idx, dtype=pl.UInt32)))
              .select(cols).collect(engine="streaming"))
    out = _to_arrow(picked)
    if not join_key_columns:
        out = out.append_column(DUMMY_ENTITY_ID, pa.array([DUMMY_ENTITY_VAL] * out.num_rows))
    return out


def _is_float(fv: FeatureView, feature: str) -> bool:
    from feast.types import Float32, Float64

    for field in fv.features:
        if field.name == feature:
            return field.dtype in (Float32, Float64)
    return False


def _out_column(fv: FeatureView, feature: str, full: bool) -> str:
    return f"{fv.projection.name_to_use()}__{feature}" if full else feature


def _requested_columns(fv_to_features: dict, full: bool) -> list[str]:
    return [_out_column(fv, f, full) for fv, feats in fv_to_features.items() for f in feats]


def _read_range(config, data_source, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date):
    """Rows with start_date <= event time <= end_date, only the named columns (a polars frame)."""
    path = _source_path(data_source, config)
    with _reading(path, data_source.name):
        window = Window(path, timestamp_field, _bound_us(start_date, "start_date"), _bound_us(end_date, "end_date"))
        cols = list(dict.fromkeys(join_key_columns + feature_name_columns + [timestamp_field] + ([created_timestamp_column] if created_timestamp_column else [])))
        return window.read(cols)


def _to_arrow(frame) -> pa.Table:
    """Arrow with the plain types Feast's materialization maps (string, timestamp[us, tz])."""
    return pa.Table.from_pandas(frame.to_pandas(), preserve_index=False)
