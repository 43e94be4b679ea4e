"""Materialization's scan of gold on Spark: each entity's winner as known at ``now``.

:func:`read_view_rows` is the Spark engine's twin of ``redis_writer._read_view_rows`` and returns
the same tuple, element for element and in the same order: (entity values, event times in UTC
microseconds, encoded feature values per entity, digests, the first build run holding rows known
after ``now``). ``redis_writer.materialize`` calls it when the engine is ``"spark"``; what follows
the scan (the digests compared with Redis, the pipelined HSETs, the marker, the catalog) is the
same code for both engines, so Redis ends up byte for byte the same.

The rule is ``etl.core.pit.winners_at``'s: among the rows with ``event <= now`` and ``known <=
now``, the greatest event time, then known time, then created time, then the row that comes
last: the later part file in name order (``etl.gold.layout.parts``), then the later row in the
file (``_metadata.file_name`` and ``_metadata.row_index``). Spark finds it in two queries:

1. on the times only, the maximum of ``struct(event, known, created, file, row)`` per entity
   (a maximum aggregates on each executor before the shuffle, so the history is never shuffled,
   as a window's ranking would); one row per entity comes back to the driver;
2. the winners' feature values, read from the part files holding a winner only (after a night,
   its new parts) and joined with the winners' (file, row); again one row per entity.

The driver never holds more than one row per entity; it encodes the values with
``redis_codec.encode_column`` and digests them with ``redis_writer.row_digest``, as the local
reader does. The entities come out in the local reader's order too (by the winner's file, then
the order in which the local reader first met the entity: the first file holding a row of it
known at ``now``, its first row there): nothing in Redis depends on it, but the two readers are
then equal as tuples. Times are taken with ``unix_micros`` in Spark SQL (an instant, whatever the
session's time zone), never through Python datetimes.
"""

from __future__ import annotations

from contextlib import contextmanager

from etl.core.config import Settings
from etl.core.errors import OnlineStoreError


def read_view_rows(settings: Settings, name: str, info: dict, now_us: int, since_run: int = 0):
    """The winners of view ``name`` (catalog entry ``info``: ``entity``, ``features`` ->
    dtype) among the part files of runs after ``since_run``, as known at ``now_us``: the
    tuple of ``redis_writer._read_view_rows``. Refuses what it refuses (no gold, missing columns,
    naive or missing times); a Spark read failure on a damaged part is a GoldDamagedError."""
    import numpy as np
    import pyarrow as pa

    from etl.serving.redis_writer import _us, scan_plan

    files, created_col, schema = scan_plan(settings, name, info, since_run)
    if not files:
        return [], np.array([], dtype=np.int64), [], [], None
    for col in ("event_timestamp", "known_timestamp", *([created_col] if created_col else [])):
        _us(pa.array([], type=schema.field(col).type))   # the local reader's refusals: not a time, naive
    winners = _collect_winners(settings, name, info, files, created_col, now_us)
    return _encode(name, info, winners)


def _name(column: str) -> str:
    """A column name in Spark SQL (backquoted)."""
    return "`" + column.replace("`", "``") + "`"


def _text(value: str) -> str:
    """A string literal in Spark SQL."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _collect_winners(settings: Settings, name: str, info: dict, files: list, created_col: str | None, now_us: int):
    """Two Spark queries over the view's parts, each one SQL statement (one round trip to the JVM
    rather than one per column expression). The first, on the times only: per entity its
    winner's times and (file, row), where the local reader first met it, the first run with rows
    known after ``now`` and whether a time is missing. The second: the winners' values, read from
    the parts holding a winner only, joined with those (file, row) pairs (sent back as a local
    relation). Both are collected as Arrow tables of one row per entity."""
    import uuid

    from etl.core import spark as engine
    from etl.gold.layout import part_run

    spark = engine.session(settings)     # refuses first, with what to install, without pyspark or Java
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    tag = uuid.uuid4().hex
    src, winners_view, held = f"alpha_mat_src_{tag}", f"alpha_mat_keys_{tag}", f"alpha_mat_held_{tag}"
    now = int(now_us)
    file_k = "element_at(map(" + ", ".join(f"{_text(path.name)}, {k}" for k, path in enumerate(files)) + "), __alpha_file)"
    runs = "array(" + ", ".join(str(part_run(path)) for path in files) + ")"
    created = f"unix_micros({_name(created_col)})" if created_col else "CAST(0 AS BIGINT)"
    keys_sql = f"""
        WITH t AS (
            SELECT {_name(info["entity"])} AS e, unix_micros({_name("event_timestamp")}) AS ev, unix_micros({_name("known_timestamp")}) AS kn,
                   {created} AS cr, {file_k} AS k, __alpha_row AS i
            FROM {src}),
        per_file AS (   -- per (entity, file): the file's winner, the entity's first row there
            SELECT e, k,
                   max(CASE WHEN ev <= {now} AND kn <= {now} THEN named_struct('ev', ev, 'kn', kn, 'cr', cr, 'k', k, 'i', i) END) AS w,
                   min(i) AS first_row,
                   min(CASE WHEN kn > {now} THEN element_at({runs}, k + 1) END) AS future,
                   max(CAST(ev IS NULL OR kn IS NULL OR cr IS NULL AS INT)) AS missing
            FROM t GROUP BY e, k),
        per_entity AS (
            SELECT e, max(w) AS w, min(CASE WHEN w IS NOT NULL THEN named_struct('k', k, 'row', first_row) END) AS met,
                   min(future) AS future, max(missing) AS missing
            FROM per_file GROUP BY e)
        SELECT e, future, missing, met.k AS met_file, met.row AS met_row, w.ev AS ev, w.kn AS kn, w.cr AS cr, w.k AS k, w.i AS i
        FROM per_entity"""
    features = list(info["features"])
    values = ", ".join(f"{_name(f)} AS v{j}" for j, f in enumerate(features))
    try:
        _parts_view(spark, files, src)
        winners = spark.sql(keys_sql).toArrow()   # a maximum aggregates on each executor before the shuffle
        # the values are read only from the parts holding a winner (a night's new parts, mostly)
        holding = sorted({k for k in winners.column("k").to_pylist() if k is not None})
        found = None     # no winner (every row known after now): nothing to read
        if holding:
            import pyarrow.compute as pc

            picked = winners.filter(pc.is_valid(winners.column("ev"))).select(["e", "k", "i"])
            spark.createDataFrame(picked).createOrReplaceTempView(winners_view)    # a local relation, broadcast
            _parts_view(spark, [files[k] for k in holding], held)
            with _wide(spark, len(features)):
                found = spark.sql(f"""
                    SELECT w.e{", " if values else ""}{", ".join(f"s.v{j}" for j in range(len(features)))}
                    FROM (SELECT {file_k} AS k, __alpha_row AS i{", " if values else ""}{values} FROM {held}) s
                    JOIN {winners_view} w ON s.k = w.k AND s.i = w.i""").toArrow()
    except (PySparkException, Py4JJavaError) as exc:
        raise _spark_error(settings, name, files, exc) from exc
    finally:
        for view in (src, winners_view, held):
            spark.catalog.dropTempView(view)
    return winners, found


def _parts_view(spark, files: list, view: str) -> None:
    """The part files as a temporary view, with each row's file name and row index in the file."""
    from pyspark.sql import functions as F

    (spark.read.parquet(*[str(path) for path in files])
     .select("*", F.col("_metadata.file_name").alias("__alpha_file"), F.col("_metadata.row_index").alias("__alpha_row"))
     .createOrReplaceTempView(view))


@contextmanager
def _wide(spark, columns: int):
    """Spark plans a scan of more than ``spark.sql.codegen.maxFields`` (100) columns without its
    vectorized Parquet reader and without generated code (several times slower: a TA-Lib view
    has up to 1,021 features); raised for the values' job of a wide view, then restored."""
    key = "spark.sql.codegen.maxFields"
    before = spark.conf.get(key)
    wanted = columns + 16
    if int(before) >= wanted:
        yield
        return
    spark.conf.set(key, str(wanted))
    try:
        yield
    finally:
        spark.conf.set(key, before)


def _spark_error(settings: Settings, name: str, files: list, exc: Exception) -> Exception:
    """A damaged part (a footer that does not read, or Spark's failure naming one of the view's
    files) is the local reader's GoldDamagedError; any other failure a SparkJobError."""
    from etl.core.spark import SparkJobError, _python_error
    from etl.gold import integrity

    text = str(exc)
    named = [path.name for path in files if path.name in text]
    if any(integrity.footer(path)[1] for path in files) or named:
        # the Java error's root cause ("Caused by: ..."), not Py4J's "An error occurred while calling"
        causes = [line.strip()[len("Caused by:"):].strip() for line in text.splitlines() if line.strip().startswith("Caused by:")]
        reason = causes[-1] if causes else (text.splitlines() or [type(exc).__name__])[0]
        return integrity.source_error(settings.gold / name, name,
                                      SparkJobError(f"{reason} (reading {named[0]})" if named else reason))
    return SparkJobError(f"materializing view {name} on Spark failed: {_python_error(exc)}; "
                         f"`alpha materialize --engine local` reads gold in this process instead")


def _encode(name: str, info: dict, collected):
    """The collected winners as the local reader's tuple, in its order."""
    import numpy as np
    import pyarrow.compute as pc

    from etl.serving.redis_codec import encode_column
    from etl.serving.redis_writer import row_digest

    winners, found = collected
    if winners.num_rows and pc.max(winners.column("missing")).as_py():
        raise OnlineStoreError("a gold timestamp column has missing values")
    futures = winners.column("future").drop_null()
    future = int(pc.min(futures).as_py()) if len(futures) else None
    won = winners.filter(pc.is_valid(winners.column("ev")))
    if won.num_rows == 0:
        return [], np.array([], dtype=np.int64), [], [], future
    won = won.take(np.lexsort((won.column("met_row").to_numpy(), won.column("met_file").to_numpy(),
                               won.column("k").to_numpy())))
    at = pc.index_in(won.column("e"), value_set=found.column("e"))
    if found.num_rows != won.num_rows or at.null_count:
        raise OnlineStoreError(f"the gold of view {name} changed while it was read (a build or a compaction ran); "
                               f"run the materialization again")
    found = found.take(at)
    ev, kn, cr = (won.column(c).to_numpy() for c in ("ev", "kn", "cr"))
    encoded = [encode_column(found.column(f"v{j}").to_pandas(), dtype) for j, dtype in enumerate(info["features"].values())]
    rows = list(zip(*encoded, strict=True)) if encoded else [()] * won.num_rows
    entities = [str(e) for e in won.column("e").to_pylist()]
    digests = [row_digest(int(e), int(k), int(c), row) for e, k, c, row in zip(ev, kn, cr, rows, strict=True)]
    return entities, np.asarray(ev, dtype=np.int64), rows, digests, future
