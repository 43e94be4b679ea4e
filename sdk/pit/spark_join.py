"""The point-in-time join on Spark: the rule of ``etl.core.pit.pit_indices``, as Spark SQL.

Used by :class:`sdk.pit.store.AlphaOfflineStore` when its engine is ``"spark"`` (config.toml
``engine = "spark"``, or ``pit_options(engine="spark")`` for one call). The answer is the local
engine's, exactly (tests/test_spark_history.py):

* eligible rows have ``event <= t`` and, bitemporal, ``created <= K`` (K = the entity time, or
  one fixed ``as_of``); a row becomes visible at ``vf = max(event, created)`` (``event`` when
  ``as_of`` is fixed, after the created filter, or when not bitemporal);
* the winner is the eligible row with the greatest event, then created time, then the row that
  comes last in the source (file path order, then row order in the file: Parquet's
  ``_metadata.file_path`` and ``_metadata.row_index``, the order polars reads a folder in);
* no value unless the winner's event lies within the view's TTL (``event >= t - ttl``).

How, without a range join (which would pair every entity row with every older source row of
its key): each source row becomes one struct ordered as the rule orders rows (event, created,
path, row in file, then the features); source rows (at ``vf``) and entity rows (at ``t``) are put
in one frame, ordered per key by time with a source row before an entity row of the same time,
and a running maximum of the struct over that order gives, at each entity row, the best row
visible by then, its features included. That is the numpy engine's algorithm (a sort per key
and one pass): one shuffle by key, no join.

The entity frame goes to Spark as a Parquet file (row number, keys, time in UTC microseconds),
and the answer comes back the same way: Spark writes it, each row with its entity row number,
into a scratch folder of the home, and the driver reads it a batch of columns at a time,
scattered into place. Neither direction passes the data through the JVM driver's memory, so a
2 GB driver serves a history of millions of rows x 100 features.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROW = "__alpha_row"
TIME = "__alpha_t"


class EntityTable:
    """The entity frame written once per query for every view's join (keys as given, the
    entity time in UTC microseconds, the row number)."""

    def __init__(self, scratch: Path, entity_df: pd.DataFrame, entity_us: np.ndarray, key_columns: list[str]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.folder = scratch / f"q-{uuid.uuid4().hex}"
        self.folder.mkdir(parents=True)
        cols = {ROW: pa.array(np.arange(len(entity_df), dtype=np.int64)), TIME: pa.array(entity_us.astype(np.int64))}
        for k in key_columns:
            if k in entity_df.columns:
                cols[k] = pa.array(entity_df[k].to_numpy(), from_pandas=True)
        pq.write_table(pa.table(cols), self.folder / "entities.parquet")
        self.rows = len(entity_df)

    def frame(self, spark):
        return spark.read.parquet(str(self.folder / "entities.parquet"))

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def join_view(spark, entities: EntityTable, path: str, *, entity_keys: list[str], source_keys: list[str], ts_col: str,
              created_col: str | None, features: list[str], src_names: list[str], ttl_us: int | None, bitemporal: bool,
              as_of_us: int | None, lo_us: int | None, hi_us: int, out_names: list[str], batch: int, sink) -> None:
    """Join one view on Spark and hand each output column to ``sink(name, values)`` as the local
    engine's ``_join_view_read`` does (float features as float64 with NaN where no value; other
    types as the local engine returns them)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    src = spark.read.parquet(path)
    ts_type = dict(src.dtypes).get(ts_col)
    ev_expr = F.col(ts_col).cast("timestamp") if ts_type == "date" else F.col(ts_col)
    src = src.select(
        *[F.col(s).alias(f"__k{i}") for i, s in enumerate(source_keys)],
        F.unix_micros(ev_expr).alias("__ev"),
        (F.unix_micros(F.col(created_col)) if created_col else F.lit(0).cast("long")).alias("__cr"),
        F.col("_metadata.file_path").alias("__file"),
        F.col("_metadata.row_index").alias("__pos"),
        *[F.col(n).alias(f"__f{j}") for j, n in enumerate(src_names)],
    ).where(F.col("__ev").isNotNull())
    if lo_us is not None:
        src = src.where(F.col("__ev") >= F.lit(lo_us))
    src = src.where(F.col("__ev") <= F.lit(hi_us))
    if bitemporal and as_of_us is not None:
        src = src.where(F.col("__cr") <= F.lit(as_of_us)).withColumn("__vf", F.col("__ev"))
    elif bitemporal:
        src = src.withColumn("__vf", F.greatest("__ev", "__cr"))
    else:
        src = src.withColumn("__vf", F.col("__ev"))

    ent = entities.frame(spark).select(
        F.col(ROW), F.col(TIME), *[F.col(e).alias(f"__k{i}") for i, e in enumerate(entity_keys)])
    keys = [f"__k{i}" for i in range(len(source_keys))]
    if keys:  # only the keys asked for (a broadcast semi-join: a few symbols of a large universe read little)
        src = src.join(F.broadcast(ent.select(*keys).distinct()), on=keys, how="left_semi")
    # a source row as one struct whose order is the winner's order: event, created, file, row in file
    fields = ["__ev", "__cr", "__file", "__pos", *[f"__f{j}" for j in range(len(src_names))]]
    events = src.select(*keys, F.col("__vf").alias("__time"), F.lit(0).alias("__kind"),
                        F.lit(None).cast("long").alias(ROW), F.struct(*fields).alias("__w"))
    asks = ent.select(*keys, F.col(TIME).alias("__time"), F.lit(1).alias("__kind"), F.col(ROW),
                      F.lit(None).cast(events.schema["__w"].dataType).alias("__w"))
    part = [F.col(k) for k in keys] or [F.lit(0)]
    # the running best: at each entity row, the greatest row visible by its time (a source row of
    # the same time first); one shuffle by key and a sort per key, no range join
    running = Window.partitionBy(*part).orderBy("__time", "__kind").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    best = (events.unionByName(asks).withColumn("__best", F.max("__w").over(running))
            .where(F.col("__kind") == 1))
    hit = F.col("__best.__ev").isNotNull()
    if ttl_us is not None:
        hit = hit & (F.col("__best.__ev") >= F.col("__time") - F.lit(ttl_us))
    result = best.select(F.col(ROW), *[F.when(hit, F.col(f"__best.__f{j}")).alias(f"__f{j}") for j in range(len(src_names))])
    out = entities.folder / f"view-{uuid.uuid4().hex}"
    try:
        result.write.parquet(str(out))
        _emit(out, entities.rows, src_names, out_names, batch, sink)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _emit(folder: Path, m: int, src_names: list[str], out_names: list[str], batch: int, sink) -> None:
    """Read Spark's answer (files in any order, each row carrying its entity row number) back a
    batch of columns at a time, scattered into place, and hand each column to ``sink``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(folder.glob("part-*.parquet"))
    rows = [pq.read_table(f, columns=[ROW]).column(ROW).to_numpy() for f in files]
    seen = np.bincount(np.concatenate(rows), minlength=m) if rows else np.zeros(m, dtype=np.int64)
    if sum(len(r) for r in rows) != m or (m and not (seen == 1).all()):
        from etl.core.errors import AlphaError

        raise AlphaError(f"the Spark join returned {sum(len(r) for r in rows)} rows for {m} entity rows (rows lost or "
                         "repeated); this is a bug: report it with the query")
    for start in range(0, len(src_names), max(1, batch)):
        idx = list(range(start, min(start + batch, len(src_names))))
        cols: dict[int, np.ndarray] = {}
        kinds: dict[int, pa.DataType] = {}
        for f, r in zip(files, rows, strict=True):
            table = pq.read_table(f, columns=[f"__f{j}" for j in idx])
            for j in idx:
                col = table.column(f"__f{j}").combine_chunks()
                kinds.setdefault(j, col.type)
                if pa.types.is_floating(col.type):
                    values = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
                    target = cols.setdefault(j, np.full(m, np.nan))
                else:
                    values = np.array(col.to_pylist(), dtype=object)
                    target = cols.setdefault(j, np.full(m, None, dtype=object))
                target[r] = values
            del table
        for j in idx:
            sink(out_names[j], _values(cols.get(j, np.full(m, np.nan)), kinds.get(j)))
        del cols


def _values(values: np.ndarray, kind):
    """An answer column as the local engine returns it: float features as float64 (NaN where no
    value); integers and booleans in their own dtype when every row has one, else objects with None."""
    import pyarrow as pa

    if values.dtype == np.float64:
        return values
    if kind is not None and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and not any(v is None for v in values):
        return pd.Series(values.tolist(), dtype="bool" if pa.types.is_boolean(kind) else "int64")
    return pd.Series(values, dtype=object)
