"""Where a warehouse lives and how it is configured.

``ALPHA_HOME`` (default: ``.alpha/`` in the project) holds everything one
warehouse owns: the Parquet store, the Feast registry and the SQLite online
store. Two homes never share state. Settings come, in rising priority, from
defaults, ``$ALPHA_HOME/config.toml`` and the environment.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlparse

from etl.core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = PROJECT_ROOT / ".alpha"
#: the exchange calendar when config.toml names none: the only place its name is written
DEFAULT_CALENDAR = "XNYS"


def default_lean_path() -> Path:
    """The Lean data folder: ``$ALPHA_LEAN_DATA`` (an empty value counts as unset), else
    the demo's subset shipped in the project, ``data/demo/quantconnect-lean`` (its
    ``SOURCE.txt`` says which files; the full folder is ``../shared/data/quantconnect-lean``)."""
    return Path(os.environ.get("ALPHA_LEAN_DATA") or PROJECT_ROOT / "data" / "demo" / "quantconnect-lean")


def default_stocknet_path() -> Path:
    """The stocknet folder: ``$ALPHA_STOCKNET_DATA`` (an empty value counts as unset), else
    the demo's subset shipped in the project, ``data/demo/stocknet-tweets-prices`` (the
    tweets of AAPL, BAC, FB and GOOG; the full folder is ``../shared/data/stocknet-tweets-prices``)."""
    return Path(os.environ.get("ALPHA_STOCKNET_DATA") or PROJECT_ROOT / "data" / "demo" / "stocknet-tweets-prices")


DEFAULT_BAR_DELAY_MINUTES = 15
DEFAULT_REDIS_TIMEOUT_SECONDS = 2.0
FEAST_PROJECT = "alpha_warehouse"
DEFAULT_NIGHTLY_MARGIN_MINUTES = 30
DEFAULT_BUILD_CHUNK_SYMBOLS = 512
#: which source's row is canonical when several deliver the same one, per dataset (first wins);
#: sources not listed come after the listed ones, by name. ``[source_priority]`` in config.toml
DEFAULT_SOURCE_PRIORITY = ("lean", "polygon", "csv")
#: two sources' closes of the same bar further apart than this (relative) are a disagreement
DEFAULT_SOURCE_TOLERANCE = 0.005


@dataclass(frozen=True)
class IngestSpec:
    """One ``[[ingest]]`` table of config.toml: a source and dataset the nightly flow
    pulls incrementally (from each symbol's watermark, or ``start`` for a new symbol,
    to the session being closed). ``delay_minutes`` is how long after the close the
    vendor has the session's data; the nightly runs after the longest delay."""

    source: str
    dataset: str
    symbols: tuple[str, ...] = ()
    start: str = "2000-01-01"
    delay_minutes: int | None = None      # None: the warehouse's bar_delay_minutes
    path: str | None = None               # file sources: the folder to read
    actions: bool = True                  # also pull the symbols' corporate actions (COMPANIONS); `actions = false`

    @property
    def label(self) -> str:
        return f"{self.source}.{self.dataset}"

    def pulls(self) -> tuple[IngestSpec, ...]:
        """What the nightly pulls for this table, in order: the datasets it brings along
        (:data:`COMPANIONS`, unless ``actions = false``), then its own. Both land before the
        night's factor build, so an action of the night's session is known from the time its
        source states, not as late (etl/storage/actions.py)."""
        extra = COMPANIONS.get((self.source, self.dataset), ()) if self.actions else ()
        return (*(replace(self, dataset=d) for d in extra), self)


#: (source, dataset) of an [[ingest]] table -> the datasets of the same source the nightly pulls with
#: it, for the same symbols and start: a vendor's raw daily bars need its splits and dividends
COMPANIONS: dict[tuple[str, str], tuple[str, ...]] = {("polygon", "daily"): ("splits", "dividends")}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one warehouse. Build it with :func:`load_settings`."""

    home: Path
    bar_delay_minutes: int = DEFAULT_BAR_DELAY_MINUTES
    redis_url: str | None = None
    calendar: str = DEFAULT_CALENDAR
    state_url: str | None = None                     # watermarks: SQLite in the home unless set (PostgreSQL)
    registry_url: str | None = None                  # Feast SQL registry (PostgreSQL) shared by several homes; else a file in the home
    vendors: dict = field(default_factory=dict, compare=False, hash=False)  # [vendors.<name>] tables
    # Redis online store: a password from ALPHA_REDIS_PASSWORD wins over one in the URL; TLS files for rediss://
    redis_password: str | None = field(default=None, repr=False)
    redis_ssl_ca_certs: str | None = None
    redis_ssl_certfile: str | None = None
    redis_ssl_keyfile: str | None = None
    redis_timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS
    # what the nightly flow pulls ([[ingest]] tables) and the default universe of backfills
    universe: tuple[str, ...] = ()
    ingest: tuple[IngestSpec, ...] = ()
    nightly_margin_minutes: int = DEFAULT_NIGHTLY_MARGIN_MINUTES
    # a breached health threshold holds the nightly's online push back (the live loop then
    # sees yesterday's values go stale and stops trading those symbols)
    nightly_strict_health: bool = False
    # users' own factor modules (importable names) and folders put on sys.path to import them
    factor_modules: tuple[str, ...] = ()
    factor_paths: tuple[str, ...] = ()
    # entities per chunk of the factor build at most (a chunk is also bounded by its output values)
    build_chunk_symbols: int = DEFAULT_BUILD_CHUNK_SYMBOLS
    # [source_priority]: per dataset (bars_daily, corporate_actions), the sources in the order they win
    source_priority: dict = field(default_factory=dict, compare=False, hash=False)
    # relative difference of two sources' prices of one bar reported as a disagreement
    source_tolerance: float = DEFAULT_SOURCE_TOLERANCE

    def priority(self, dataset: str) -> tuple[str, ...]:
        """The sources of ``dataset`` in the order they win (``[source_priority]``, else the default)."""
        return tuple(self.source_priority.get(dataset, DEFAULT_SOURCE_PRIORITY))

    @property
    def feast_redis_connection(self) -> str:
        """Feast's ``connection_string`` for :attr:`redis_url`, with the same password, TLS files
        and timeouts as our own client (``sdk.online``)."""
        if not self.redis_url:
            raise ConfigError("no redis_url configured (config.toml redis_url or ALPHA_REDIS_URL)")
        return parse_redis_url(
            self.redis_url,
            password=self.redis_password,
            ssl_ca_certs=self.redis_ssl_ca_certs,
            ssl_certfile=self.redis_ssl_certfile,
            ssl_keyfile=self.redis_ssl_keyfile,
            timeout=self.redis_timeout_seconds,
        )

    def vendor(self, name: str) -> dict:
        """Settings of one vendor: ``[vendors.<name>]`` in config.toml, overridden by
        ``ALPHA_<NAME>_BASE_URL`` / ``ALPHA_<NAME>_RATE`` (requests per second)."""
        out = dict(self.vendors.get(name, {}))
        env = name.upper().replace("-", "_")
        if os.environ.get(f"ALPHA_{env}_BASE_URL"):
            out["base_url"] = os.environ[f"ALPHA_{env}_BASE_URL"]
        if os.environ.get(f"ALPHA_{env}_RATE"):
            out["rate"] = float(os.environ[f"ALPHA_{env}_RATE"])
        return out

    # --- the layout of a home; every path of the warehouse is named here ---
    @property
    def bronze(self) -> Path:
        return self.home / "bronze"

    @property
    def silver(self) -> Path:
        return self.home / "silver"

    @property
    def gold(self) -> Path:
        return self.home / "gold"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def registry_path(self) -> Path:
        return self.feast_dir / "registry.db"

    @property
    def online_sqlite_path(self) -> Path:
        return self.feast_dir / "online_store.db"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def online_store_kind(self) -> str:
        return "redis" if self.redis_url else "sqlite"


def _int(value: object, name: str) -> int:
    try:
        out = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number of minutes, got {value!r}") from None
    if out < 0:
        raise ConfigError(f"{name} must be >= 0, got {out}")
    return out


def load_settings(home: str | os.PathLike | None = None) -> Settings:
    """Settings of the warehouse at ``home`` (or ``$ALPHA_HOME``, or the default)."""
    root = Path(home or os.environ.get("ALPHA_HOME") or DEFAULT_HOME).expanduser().resolve()
    file_cfg: dict = {}
    cfg_path = root / "config.toml"
    if cfg_path.exists():
        try:
            file_cfg = tomllib.loads(cfg_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path} is not valid TOML: {exc}") from None
        allowed = {"bar_delay_minutes", "redis_url", "calendar", "state_url", "registry_url", "vendors",
                   "universe", "ingest", "nightly_margin_minutes", "nightly_strict_health", "factor_modules",
                   "factor_paths", "build_chunk_symbols", "source_priority", "source_tolerance", *REDIS_OPTIONS}
        unknown = set(file_cfg) - allowed
        if unknown:
            raise ConfigError(
                f"{cfg_path}: unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
    delay = _int(
        os.environ.get("ALPHA_BAR_DELAY_MINUTES", file_cfg.get("bar_delay_minutes", DEFAULT_BAR_DELAY_MINUTES)),
        "bar_delay_minutes (ALPHA_BAR_DELAY_MINUTES)",
    )
    redis_url = os.environ.get("ALPHA_REDIS_URL") or file_cfg.get("redis_url") or None
    if redis_url:
        parse_redis_url(redis_url)  # fail early on a malformed URL
    redis_opts = _redis_options(file_cfg, cfg_path)
    vendors = file_cfg.get("vendors", {})
    if not isinstance(vendors, dict) or not all(isinstance(v, dict) for v in vendors.values()):
        raise ConfigError(f"{cfg_path}: [vendors.<name>] must be tables, e.g. [vendors.polygon] base_url = \"...\"")
    universe = _symbols(file_cfg.get("universe", []), f"{cfg_path}: universe")
    return Settings(
        home=root,
        universe=universe,
        ingest=_ingest_specs(file_cfg.get("ingest", []), universe, cfg_path),
        nightly_margin_minutes=_int(file_cfg.get("nightly_margin_minutes", DEFAULT_NIGHTLY_MARGIN_MINUTES), "nightly_margin_minutes"),
        nightly_strict_health=_bool(file_cfg.get("nightly_strict_health", False), "nightly_strict_health"),
        bar_delay_minutes=delay,
        redis_url=redis_url,
        calendar=str(file_cfg.get("calendar", DEFAULT_CALENDAR)),
        state_url=os.environ.get("ALPHA_STATE_URL") or file_cfg.get("state_url") or None,
        registry_url=os.environ.get("ALPHA_REGISTRY_URL") or file_cfg.get("registry_url") or None,
        vendors=vendors,
        factor_modules=_names(file_cfg.get("factor_modules", []), f"{cfg_path}: factor_modules"),
        factor_paths=tuple(str((root / Path(p).expanduser()).resolve()) for p in _names(file_cfg.get("factor_paths", []), f"{cfg_path}: factor_paths")),
        build_chunk_symbols=_int(file_cfg.get("build_chunk_symbols", DEFAULT_BUILD_CHUNK_SYMBOLS), "build_chunk_symbols"),
        source_priority=_priorities(file_cfg.get("source_priority", {}), cfg_path),
        source_tolerance=_fraction(file_cfg.get("source_tolerance", DEFAULT_SOURCE_TOLERANCE), f"{cfg_path}: source_tolerance"),
        **redis_opts,
    )


def _priorities(value: object, cfg_path: Path) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{cfg_path}: [source_priority] must be a table, e.g. bars_daily = [\"lean\", \"polygon\", \"csv\"]")
    known = ("bars_daily", "corporate_actions")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(f"{cfg_path}: [source_priority] has unknown dataset(s) {unknown}; allowed: {list(known)}")
    out = {k: _names(v, f"{cfg_path}: [source_priority] {k}") for k, v in value.items()}
    for k, v in out.items():
        if len(set(v)) != len(v):
            raise ConfigError(f"{cfg_path}: [source_priority] {k} names a source twice: {list(v)}")
    return out


def _fraction(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= float(value) < 1):
        raise ConfigError(f"{what} must be a number in [0, 1) (a relative difference, e.g. 0.005), got {value!r}")
    return float(value)


def _names(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{what} must be a list of strings, e.g. [\"mylab.factors\"], got {value!r}")
    return tuple(v.strip() for v in value)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _symbols(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a list of symbols, e.g. [\"AAPL\", \"SPY\"], got {value!r}")
    return tuple(dict.fromkeys(v.strip().upper() for v in value))


def _ingest_specs(value: object, universe: tuple[str, ...], cfg_path: Path) -> tuple[IngestSpec, ...]:
    """``[[ingest]]`` tables: source, dataset, optional symbols (default: universe), start,
    delay_minutes, path, actions (tables with :data:`COMPANIONS` only)."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{cfg_path}: ingest must be [[ingest]] tables with source and dataset")
    allowed = {"source", "dataset", "symbols", "start", "delay_minutes", "path", "actions"}
    out = []
    for i, spec in enumerate(value):
        where = f"{cfg_path}: [[ingest]] #{i + 1}"
        unknown = set(spec) - allowed
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if not spec.get("source") or not spec.get("dataset"):
            raise ConfigError(f"{where}: needs source and dataset, e.g. source = \"polygon\", dataset = \"daily\"")
        start = str(spec.get("start", "2000-01-01"))
        try:
            date.fromisoformat(start)
        except ValueError:
            raise ConfigError(f"{where}: start must be a date YYYY-MM-DD, got {start!r}") from None
        companions = COMPANIONS.get((str(spec["source"]), str(spec["dataset"])))
        if "actions" in spec and not companions:
            with_actions = ", ".join(f"{s}.{d}" for s, d in COMPANIONS)
            raise ConfigError(f"{where}: actions applies only to {with_actions} (their splits and dividends), "
                              f"not to {spec['source']}.{spec['dataset']}")
        out.append(IngestSpec(
            source=str(spec["source"]),
            dataset=str(spec["dataset"]),
            symbols=_symbols(spec["symbols"], f"{where} symbols") if "symbols" in spec else universe,
            start=start,
            delay_minutes=_int(spec["delay_minutes"], f"{where} delay_minutes") if "delay_minutes" in spec else None,
            path=str(spec["path"]) if spec.get("path") else None,
            actions=_bool(spec.get("actions", True), f"{where} actions"),
        ))
    return tuple(out)


#: Redis settings in config.toml, each overridable by ``ALPHA_<KEY upper>``; the password only
#: from ``ALPHA_REDIS_PASSWORD`` or the URL, so it need not sit in a file
REDIS_OPTIONS = ("redis_ssl_ca_certs", "redis_ssl_certfile", "redis_ssl_keyfile", "redis_timeout_seconds")


def _redis_options(file_cfg: dict, cfg_path: Path) -> dict:
    out: dict = {}
    for key in REDIS_OPTIONS:
        value = os.environ.get(f"ALPHA_{key.upper()}") or file_cfg.get(key)
        if value in (None, ""):
            continue
        if key == "redis_timeout_seconds":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{key} (ALPHA_{key.upper()}) must be a number of seconds, got {value!r}") from None
            if not value > 0:
                raise ConfigError(f"{key} (ALPHA_{key.upper()}) must be > 0 seconds, got {value}")
        else:
            value = str(Path(str(value)).expanduser())
            if not Path(value).is_file():
                raise ConfigError(f"{key} (ALPHA_{key.upper()}): no such file {value!r} (in {cfg_path} or the environment)")
        out[key] = value
    if os.environ.get("ALPHA_REDIS_PASSWORD"):
        out["redis_password"] = os.environ["ALPHA_REDIS_PASSWORD"]
    return out


def parse_redis_url(
    url: str,
    *,
    password: str | None = None,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    timeout: float | None = None,
) -> str:
    """Turn ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS) into Feast's
    connection string; ``password`` (e.g. from ALPHA_REDIS_PASSWORD) replaces the URL's."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConfigError(
            f"redis_url must look like redis://[:password@]host:port[/db], got {url!r}"
        )
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    if parsed.username and parsed.password:
        parts.append(f"username={unquote(parsed.username)}")
    secret = password or (unquote(parsed.password) if parsed.password else None)
    if secret:
        if "," in secret:
            raise ConfigError("the Redis password cannot contain ',' (Feast's connection string cannot carry it)")
        parts.append(f"password={secret}")
    db = (parsed.path or "/").lstrip("/")
    if db:
        if not db.isdigit():
            raise ConfigError(f"redis_url database must be a number, got {db!r} in {url!r}")
        parts.append(f"db={db}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
        for name, value in (("ssl_ca_certs", ssl_ca_certs), ("ssl_certfile", ssl_certfile), ("ssl_keyfile", ssl_keyfile)):
            if value:
                if "," in value:
                    raise ConfigError(f"{name} path cannot contain ',': {value!r}")
                parts.append(f"{name}={value}")
    elif any((ssl_ca_certs, ssl_certfile, ssl_keyfile)):
        raise ConfigError(f"TLS files are set (redis_ssl_*) but redis_url {url!r} is not rediss://; use rediss://host:port")
    if timeout is not None:
        parts.append(f"socket_timeout={float(timeout)}")
        parts.append(f"socket_connect_timeout={float(timeout)}")
    return ",".join(parts)
