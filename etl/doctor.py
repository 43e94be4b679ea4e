"""``alpha doctor``: check one warehouse end to end and say what to run to fix what is wrong.

Each check is a :class:`Check` (name, ok, problems, each problem a sentence naming the command
that fixes it). The checks read and never write: the home (present, a folder, writable, no
crashed writers' temp files), silver (every Parquet footer readable), gold (every part of every
committed run present with its recorded size and a readable footer; ``deep``: checksums), the
Feast registry (readable, its sources inside this home, applied definitions current), the online
store (reachable, not empty, every symbol of gold present, written in UTC), the SQL state
(watermarks, ledger: reachable and readable) and Prefect (the server of ``PREFECT_API_URL``
answering, else the home's own Prefect database intact).

``alpha nightly`` repairs what the checks find in gold and the online store (it does not trust
its own records over the files); ``alpha doctor --repair`` also removes crashed writers' temp files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from etl.core.config import Settings


@dataclass
class Check:
    """One check of :func:`run`: ``problems`` empty when healthy."""

    name: str
    problems: list[str] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _home(settings: Settings) -> list[str]:
    from etl.storage.atomic import stale_temp_files

    home = settings.home
    if not home.exists():
        return [f"{home} does not exist: ingest data first (`alpha ingest lean` or `alpha demo`)"]
    if not home.is_dir():
        return [f"{home} is not a folder: point ALPHA_HOME (or --home) at a warehouse folder"]
    out = []
    if not os.access(home, os.W_OK | os.X_OK):
        out.append(f"{home} is not writable by this user: fix its permissions (ingest and nightly write there)")
    leftovers = list(stale_temp_files(home))
    if leftovers:
        out.append(f"{len(leftovers)} temp file(s) of crashed writers (e.g. {leftovers[0].relative_to(home)}): "
                   "harmless to readers; `alpha doctor --repair` removes them")
    return out


def _silver(settings: Settings) -> list[str]:
    from etl.gold.integrity import footer
    from etl.storage.atomic import TMP_PREFIX

    out = []
    root = settings.silver
    if not root.exists():
        return []
    for path in sorted(root.rglob("*.parquet")):
        if path.name.startswith((TMP_PREFIX, ".")):
            continue
        err = footer(path)[1]
        if err is not None:
            out.append(f"silver file {path.relative_to(settings.home)} is unreadable ({err}); "
                       "restore it from a backup or re-ingest its source (`alpha ingest ...` of that dataset)")
    return out


def _sqlite_problems(path, what: str, fix: str) -> list[str]:
    """``PRAGMA quick_check`` of a SQLite file opened read-only."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            result = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return [f"{what} {path} is unreadable ({exc}): {fix}"]
    return [] if result == "ok" else [f"{what} {path} is damaged ({result}): {fix}"]


def _state(settings: Settings) -> list[str]:
    if settings.state_url:
        import sqlalchemy as sa

        from etl.storage.state import display_url

        try:
            engine = sa.create_engine(settings.state_url)
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                    tables = set(sa.inspect(conn).get_table_names())
            finally:
                engine.dispose()
        except (sa.exc.SQLAlchemyError, ModuleNotFoundError) as exc:
            return [f"the SQL state at {display_url(settings.state_url)} (state_url) does not answer: "
                    f"{getattr(exc, 'orig', exc)}; start the database or fix state_url"]
        if "alpha_watermarks" not in tables:
            return [f"the SQL state at {display_url(settings.state_url)} has no watermarks table: the next "
                    "`alpha ingest` creates it (incremental pulls start from their configured start)"]
        return []
    out = []
    for name, what in (("state.db", "the watermark store"), ("ledger.db", "the live ledger")):
        path = settings.home / "state" / name
        if path.exists():
            out += _sqlite_problems(path, what, "restore it from a backup (watermarks: the next ingest then re-pulls "
                                    "from each source's start; silver stays idempotent)")
    return out


def _prefect(settings: Settings) -> list[str]:
    url = os.environ.get("PREFECT_API_URL")
    if url:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5) as resp:
                if resp.status != 200:
                    return [f"the Prefect server at {url} answers {resp.status} to /health: check the server "
                            "(`prefect server start`, or docker compose up prefect)"]
        except (urllib.error.URLError, OSError) as exc:
            return [f"the Prefect server at {url} (PREFECT_API_URL) does not answer ({exc}): start it, or unset "
                    "PREFECT_API_URL to run flows on a temporary server"]
        return []
    db = settings.home / "prefect" / "prefect.db"
    if not db.exists():
        return []
    return _sqlite_problems(db, "the home's Prefect database", "remove the home's prefect/ folder (only run history is lost)")


def _gold(settings: Settings, deep: bool) -> list[str]:
    from etl.gold.integrity import gold_problems

    return gold_problems(settings, deep=deep)


def _registry(settings: Settings) -> list[str]:
    from etl.gold.integrity import registry_problems

    return registry_problems(settings)


def _online(settings: Settings) -> list[str]:
    from etl.serving.online_check import online_problems

    return online_problems(settings)


def _engine(settings: Settings) -> list[str]:
    """With ``engine = "spark"``: pyspark and Java present (the session itself is not opened:
    a cluster may be busy or far away; its first job says so)."""
    if settings.engine != "spark":
        return []
    from etl.core import spark

    reason = spark.available()
    return [f'engine = "spark" but {reason}'] if reason else []


def checks(deep: bool = False) -> list[tuple[str, Callable[[Settings], list[str]], str]]:
    """(name, function, what it covers) of every check, in the order they run."""
    return [
        ("home", _home, "the folder, its permissions, crashed writers' temp files"),
        ("silver", _silver, "every silver Parquet footer"),
        ("gold", lambda s: _gold(s, deep), "every committed part: present, size, footer" + (", checksum" if deep else "")),
        ("registry", _registry, "the Feast registry: readable, sources inside this home, definitions applied"),
        ("online", _online, "the online store: reachable, filled, every gold symbol present, UTC times"),
        ("state", _state, "the SQL state: watermarks and the live ledger"),
        ("prefect", _prefect, "Prefect: the server of PREFECT_API_URL, else the home's own database"),
        ("engine", _engine, "the Spark engine's packages (pyspark, Java 17) when engine = \"spark\""),
    ]


def run(settings: Settings, deep: bool = False, progress: Callable[[str], None] | None = None) -> list[Check]:
    """Every check on ``settings``' home; a check that fails unexpectedly is itself a problem."""
    from etl.core.errors import AlphaError

    out = []
    for name, fn, what in checks(deep):
        if progress is not None:
            progress(name)
        t0 = time.perf_counter()
        check = Check(name=name, detail=what)
        if name != "home" and not settings.home.is_dir():
            check.problems.append("skipped: the home is missing")
        else:
            try:
                check.problems.extend(fn(settings))
            except AlphaError as exc:
                check.problems.append(str(exc))
            except Exception as exc:  # noqa: BLE001 -- a check that cannot finish is itself a finding
                check.problems.append(f"the check could not finish ({type(exc).__name__}: {exc})")
        check.seconds = round(time.perf_counter() - t0, 3)
        out.append(check)
    return out


def repair(settings: Settings) -> int:
    """What ``--repair`` does without running a build: remove crashed writers' temp files."""
    from etl.storage.atomic import remove_stale_temp_files

    return remove_stale_temp_files(settings.home) if settings.home.is_dir() else 0
