"""Where a warehouse lives and how it is configured.

``ALPHA_HOME`` (default: ``.alpha/`` in the project) holds everything one
warehouse owns: the Parquet store, the Feast registry and the SQLite online
store. Two homes never share state. Settings come, in rising priority, from
defaults, ``$ALPHA_HOME/config.toml`` and the environment.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
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
#: a close further than this factor from the previous close, with no corporate action between
#: them, is implausible and quarantined (``max_price_jump`` in config.toml)
DEFAULT_MAX_PRICE_JUMP = 20.0
#: [qualification] in config.toml: the gates a run must pass before promotion (docs/research.md).
#: Hard gates refuse promotion; soft evidence is reported beside them.
QUALIFICATION_DEFAULTS: dict[str, float] = {
    "high_vol_max_drawdown": 0.25,    # hard: the worst drawdown of the returns of high-volatility sessions (a fraction)
    "high_vol_max_exposure": 0.90,    # hard: the mean gross exposure over high-volatility sessions
    "min_sessions": 756,              # hard: sessions the run traded (three years)
    "min_high_vol_sessions": 60,      # hard: high-volatility sessions seen, to judge the two gates above
    "min_sharpe_margin": 0.0,         # soft: Sharpe minus the baseline's Sharpe
    "max_sharpe_regression": 0.25,    # soft: Sharpe drop against the experiment's previous qualified run
}
#: seconds Prefect's temporary server may take to start (its own default of 20 s is too little
#: on a loaded 2-core machine); ``prefect_startup_timeout_seconds`` in config.toml
DEFAULT_PREFECT_STARTUP_TIMEOUT_SECONDS = 180.0
#: where the heavy steps run (``engine`` in config.toml, ``ALPHA_ENGINE``): this machine's processes,
#: or Spark (history joins, factor builds, materialization's scan; docs/scale-out.md)
ENGINES = ("local", "spark")
#: ``[spark]`` in config.toml: the session the Spark engine opens (``conf`` is passed through as is)
SPARK_DEFAULTS: dict = {
    "master": "local[2]",          # a cluster: "spark://host:7077", "yarn", "k8s://..."; ALPHA_SPARK_MASTER wins
    "driver_memory": "2g",
    "executor_memory": "2g",       # ignored by local[N] (driver and executors share one JVM)
    "app_name": "alpha-warehouse",
    "ui": True,                    # the Spark UI on port 4040 (or the next free one)
    "conf": {},                    # any other Spark setting, e.g. {"spark.sql.shuffle.partitions" = "64"}
}


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


#: the fields of :class:`Settings` that may carry a secret (a password in a URL, a vendor's key)
_MASKED_FIELDS = ("redis_url", "state_url", "registry_url", "vendors")


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
    # a close more than this factor away from the previous one without a corporate action is quarantined
    max_price_jump: float = DEFAULT_MAX_PRICE_JUMP
    # how long the nightly waits for Prefect's temporary server to start
    prefect_startup_timeout_seconds: float = DEFAULT_PREFECT_STARTUP_TIMEOUT_SECONDS
    # [qualification]: the promotion gates (QUALIFICATION_DEFAULTS, overridden key by key)
    qualification: dict = field(default_factory=lambda: dict(QUALIFICATION_DEFAULTS), compare=False, hash=False)
    # where history joins, factor builds and materialization scans run (ENGINES), and [spark]
    engine: str = "local"
    spark: dict = field(default_factory=lambda: dict(SPARK_DEFAULTS), compare=False, hash=False)

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
        for key in ("base_url", "rate"):
            variable = f"ALPHA_{env}_{key.upper()}"
            if os.environ.get(variable):
                out[key] = VENDOR_KEYS[key](os.environ[variable], f"{variable} (environment)", env=True)
        return out

    def __repr__(self) -> str:
        """The fields as the dataclass shows them, with every secret masked: the password of
        redis_url, state_url and registry_url (:func:`mask_url`), secret-looking keys of the
        ``[vendors.<name>]`` tables; ``redis_password`` is never shown."""
        shown = []
        for f in fields(self):
            if f.repr:
                value = getattr(self, f.name)
                shown.append(f"{f.name}={mask_secrets(value) if f.name in _MASKED_FIELDS else value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

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


def mask_url(url):
    """``url`` with the password of its user info (``scheme://user:***@host``) and the value of any
    secret-looking query parameter (``?password=***``, ``apiKey=***``) hidden: the one way a URL of
    the configuration (redis_url, state_url, registry_url, a vendor's base_url) is shown in a
    message, a log line or a repr. Anything that is not a string is returned unchanged."""
    if not isinstance(url, str):
        return url
    out = url
    scheme, sep, rest = url.partition("://")
    if sep:
        at = rest.rfind("@")
        if at >= 0:
            user, colon, _ = rest[:at].partition(":")
            if colon:
                out = f"{scheme}://{user}:***@{rest[at + 1:]}"
    return _SECRET_PARAM.sub(r"\1***", out)


#: names of settings and query parameters whose values are secrets
_SECRET_NAME = r"(?:[a-z0-9_.-]*(?:key|secret|token|passw(?:or)?d|pwd|credential|signature|auth)[a-z0-9_.-]*)"
_SECRET_PARAM = re.compile(rf"([?&;]{_SECRET_NAME}=)[^&#;]*", re.IGNORECASE)
_SECRET_KEY = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)


def mask_secrets(value):
    """A copy of a settings value (a ``[vendors.<name>]`` table, a list, a URL) safe to show: values of
    secret-looking keys (``api_key``, ``token``, ``password``) become ``***`` and URLs go through
    :func:`mask_url`."""
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and _SECRET_KEY.match(k) and value[k] not in (None, "") else mask_secrets(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_secrets(v) for v in value)
    return mask_url(value)


def require_writable(settings: Settings) -> None:
    """Fail at once, with the reason, when the warehouse home cannot be written (read-only file
    system, no permission, a file where a folder must be, a full disk): what every command that
    writes the home (ingest, the nightly, before Prefect starts its server there) checks first.
    Creates the home if missing; probes it and each of its folders that exists by creating and
    removing a file."""
    home = settings.home
    _require_folder(home)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the warehouse home {home}: {_os_reason(exc)}; {_HOME_HINT}") from None
    for folder in (home, *(home / name for name in HOME_FOLDERS)):
        if folder != home and not (folder.exists() or folder.is_symlink()):
            continue
        if not folder.is_dir():
            raise ConfigError(f"{folder} is a file, not a folder: the warehouse home {home} is damaged; "
                              "move the file away (the warehouse recreates the folder)")
        try:
            fd, probe = tempfile.mkstemp(prefix=".alpha-write-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            where = "the warehouse home" if folder == home else f"{folder.name}/ in the warehouse home"
            raise ConfigError(f"{where} {folder} is not writable: {_os_reason(exc)}; {_HOME_HINT}") from None


#: the folders of a home (see the properties of :class:`Settings`) that :func:`require_writable` probes
HOME_FOLDERS = ("bronze", "silver", "gold", "quarantine", "feast", "reports", "state", "prefect")
_HOME_HINT = ("point ALPHA_HOME (or --home) at a folder you can write, or fix its permissions "
              "(reading a read-only home still works: alpha latest, alpha.history)")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _require_folder(root: Path) -> None:
    """``root`` is a folder, or can become one: no file at it or at any of its parents."""
    for path in (root, *root.parents):
        try:
            if not path.exists():
                continue
        except OSError:
            continue
        if not path.is_dir():
            what = "ALPHA_HOME (or --home)" if path == root else f"ALPHA_HOME (or --home) {root}: its parent"
            raise ConfigError(f"{what} {path} is a file, not a folder; point ALPHA_HOME at a folder "
                              "(a missing one is created)")
        return


# ------------------------------------------------------------------ typed values of config.toml
# Each check names the key (and the environment variable when the value came from there) and the
# type expected; a value from the environment is a string and is parsed, one from config.toml must
# already have the TOML type (``bar_delay_minutes = "15"``, ``= true`` or ``= 15.9`` are refused).

def _int(value: object, name: str, unit: str = "", *, low: int = 0, env: bool = False) -> int:
    """A whole number >= ``low``: a TOML integer (not a boolean, not a float), or from the
    environment (``env``) a string of digits."""
    shown = f"a whole number{unit}"
    if env and isinstance(value, str):
        if not re.fullmatch(r"\s*[+-]?\d+\s*", value):
            raise ConfigError(f"{name} must be {shown}, got {value!r}")
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be {shown} (an integer), got {_kind(value)} {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return value


def _number(value: object, name: str, unit: str = "", *, low: float = 0.0, inclusive: bool = True,
            env: bool = False) -> float:
    """A finite number (a TOML integer or float, not a boolean; from the environment a string)
    >= ``low`` (> ``low`` unless ``inclusive``)."""
    shown = f"a number{unit}"
    if env and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be {shown}, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be {shown}, got {_kind(value)} {value!r}")
    out = float(value)
    if not math.isfinite(out) or out < low or (out == low and not inclusive):
        raise ConfigError(f"{name} must be {'>=' if inclusive else '>'} {low:g}{unit}, got {value!r}")
    return out


def _str(value: object, name: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, e.g. {example}, got {_kind(value)} {mask_secrets(value)!r}")
    return value.strip()


def _db_url(value: object, name: str) -> str | None:
    """A SQLAlchemy database URL (``state_url``, ``registry_url``): a string ``dialect://...``."""
    if value is None or value == "":
        return None
    example = '"postgresql+psycopg://user:password@host:5432/alpha"'
    url = _str(value, name, example)
    if not re.match(r"^[a-z][a-z0-9+.-]*://", url, re.IGNORECASE):
        raise ConfigError(f"{name} must be a database URL like {example}, got {mask_url(url)!r}")
    return url


def _http_url(value: object, name: str) -> str:
    url = _str(value, name, '"https://api.polygon.io"')
    parsed = urlparse(url)
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number: {mask_url(url)!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{name} must be an http(s) URL like \"https://api.polygon.io\", got {mask_url(url)!r}")
    return url


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), f"a {type(value).__name__}")


def _from(key: str, env_name: str, file_cfg: dict, cfg_path: Path, default=None) -> tuple[object, str, bool]:
    """``(value, name to show, from the environment?)`` of a setting overridable by ``env_name``
    (an empty variable counts as unset)."""
    if os.environ.get(env_name):
        return os.environ[env_name], f"{env_name} (environment)", True
    return file_cfg.get(key, default), f"{cfg_path}: {key}", False


def load_settings(home: str | os.PathLike | None = None) -> Settings:
    """Settings of the warehouse at ``home`` (or ``$ALPHA_HOME``, or the default). Every value is
    type-checked: a wrong one raises ConfigError naming the key and the type expected."""
    root = Path(home or os.environ.get("ALPHA_HOME") or DEFAULT_HOME).expanduser().resolve()
    _require_folder(root)
    file_cfg: dict = {}
    cfg_path = root / "config.toml"
    if cfg_path.exists():
        try:
            file_cfg = tomllib.loads(cfg_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path} is not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = _os_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read {cfg_path}: {reason}") from None
        allowed = {"bar_delay_minutes", "redis_url", "calendar", "state_url", "registry_url", "vendors",
                   "universe", "ingest", "nightly_margin_minutes", "nightly_strict_health", "factor_modules",
                   "factor_paths", "build_chunk_symbols", "source_priority", "source_tolerance", "max_price_jump",
                   "prefect_startup_timeout_seconds", "qualification", "engine", "spark", *REDIS_OPTIONS}
        unknown = set(file_cfg) - allowed
        if unknown:
            raise ConfigError(
                f"{cfg_path}: unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
    value, name, env = _from("bar_delay_minutes", "ALPHA_BAR_DELAY_MINUTES", file_cfg, cfg_path, DEFAULT_BAR_DELAY_MINUTES)
    delay = _int(value, name, " of minutes", env=env)
    value, name, _ = _from("redis_url", "ALPHA_REDIS_URL", file_cfg, cfg_path)
    redis_url = None
    if value not in (None, ""):
        redis_url = _str(value, name, '"redis://localhost:6379/0"')
        parse_redis_url(redis_url, name=name)  # fail early on a malformed URL
    redis_opts = _redis_options(file_cfg, cfg_path)
    if redis_url:
        parse_redis_url(redis_url, name=name, ssl_ca_certs=redis_opts.get("redis_ssl_ca_certs"),
                        ssl_certfile=redis_opts.get("redis_ssl_certfile"), ssl_keyfile=redis_opts.get("redis_ssl_keyfile"))
    state_url = _db_url(*_from("state_url", "ALPHA_STATE_URL", file_cfg, cfg_path)[:2])
    registry_url = _db_url(*_from("registry_url", "ALPHA_REGISTRY_URL", file_cfg, cfg_path)[:2])
    calendar = _str(file_cfg.get("calendar", DEFAULT_CALENDAR), f"{cfg_path}: calendar", f'"{DEFAULT_CALENDAR}"')
    vendors = _vendor_tables(file_cfg.get("vendors", {}), cfg_path)
    universe = _symbols(file_cfg.get("universe", []), f"{cfg_path}: universe")
    return Settings(
        home=root,
        universe=universe,
        ingest=_ingest_specs(file_cfg.get("ingest", []), universe, cfg_path),
        nightly_margin_minutes=_int(file_cfg.get("nightly_margin_minutes", DEFAULT_NIGHTLY_MARGIN_MINUTES),
                                    f"{cfg_path}: nightly_margin_minutes", " of minutes"),
        nightly_strict_health=_bool(file_cfg.get("nightly_strict_health", False), f"{cfg_path}: nightly_strict_health"),
        bar_delay_minutes=delay,
        redis_url=redis_url,
        calendar=calendar,
        state_url=state_url,
        registry_url=registry_url,
        vendors=vendors,
        factor_modules=_names(file_cfg.get("factor_modules", []), f"{cfg_path}: factor_modules"),
        factor_paths=tuple(str((root / Path(p).expanduser()).resolve()) for p in _names(file_cfg.get("factor_paths", []), f"{cfg_path}: factor_paths")),
        build_chunk_symbols=_int(file_cfg.get("build_chunk_symbols", DEFAULT_BUILD_CHUNK_SYMBOLS),
                                 f"{cfg_path}: build_chunk_symbols", " of symbols", low=1),
        source_priority=_priorities(file_cfg.get("source_priority", {}), cfg_path),
        source_tolerance=_fraction(file_cfg.get("source_tolerance", DEFAULT_SOURCE_TOLERANCE), f"{cfg_path}: source_tolerance"),
        max_price_jump=_above(file_cfg.get("max_price_jump", DEFAULT_MAX_PRICE_JUMP), 1.0, f"{cfg_path}: max_price_jump"),
        prefect_startup_timeout_seconds=_above(
            file_cfg.get("prefect_startup_timeout_seconds", DEFAULT_PREFECT_STARTUP_TIMEOUT_SECONDS), 0.0,
            f"{cfg_path}: prefect_startup_timeout_seconds"),
        qualification=_qualification(file_cfg.get("qualification", {}), cfg_path),
        engine=check_engine(*_from("engine", "ALPHA_ENGINE", file_cfg, cfg_path, "local")[:2]),
        spark=_spark(file_cfg.get("spark", {}), cfg_path),
        **redis_opts,
    )


#: the keys of a ``[vendors.<name>]`` table every vendor client reads (etl.sources.base), and their
#: checks; a vendor's own keys (polygon's minute_delay_seconds, edgar's user_agent) it checks itself
VENDOR_KEYS = {
    "base_url": lambda v, n, env=False: _http_url(v, n),
    "rate": lambda v, n, env=False: _number(v, n, " of requests per second", inclusive=False, env=env),
    "burst": lambda v, n, env=False: _int(v, n, " of requests", low=1, env=env),
    "max_retries": lambda v, n, env=False: _int(v, n, " of retries", env=env),
    "backoff": lambda v, n, env=False: _number(v, n, " of seconds", env=env),
    "timeout": lambda v, n, env=False: _number(v, n, " of seconds", inclusive=False, env=env),
}


def _vendor_tables(value: object, cfg_path: Path) -> dict:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{cfg_path}: [vendors.<name>] must be tables, e.g. [vendors.polygon] base_url = \"...\"")
    out = {}
    for vendor, table in value.items():
        checked = dict(table)
        for key, check in VENDOR_KEYS.items():
            if key in table:
                checked[key] = check(table[key], f"{cfg_path}: [vendors.{vendor}] {key}")
        out[vendor] = checked
    return out


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
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not (0 <= float(value) < 1)):
        raise ConfigError(f"{what} must be a number in [0, 1) (a relative difference, e.g. 0.005), got {value!r}")
    return float(value)


def _above(value: object, low: float, what: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not float(value) > low):
        raise ConfigError(f"{what} must be a number above {low:g}, got {value!r}")
    return float(value)


def _qualification(value: object, cfg_path: Path) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{cfg_path}: [qualification] must be a table of numbers, got {value!r}")
    unknown = sorted(set(value) - set(QUALIFICATION_DEFAULTS))
    if unknown:
        raise ConfigError(f"{cfg_path}: [qualification] has unknown key(s) {unknown}; allowed: {sorted(QUALIFICATION_DEFAULTS)}")
    out = dict(QUALIFICATION_DEFAULTS)
    for key, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{cfg_path}: [qualification] {key} must be a number >= 0, got {v!r}")
        out[key] = float(v)
    return out


def check_engine(value: object, name: str) -> str:
    """``value`` as one of :data:`ENGINES` (case and spaces ignored), else a ConfigError naming
    ``name`` (the config key, the environment variable, a command's option or an argument)."""
    if not isinstance(value, str) or value.strip().lower() not in ENGINES:
        raise ConfigError(f"{name} must be one of {list(ENGINES)}, got {value!r}")
    return value.strip().lower()


def _spark(value: object, cfg_path: Path) -> dict:
    """``[spark]``: master, driver_memory, executor_memory, app_name (strings), ui (bool), conf (a
    table of Spark settings, values as strings); ``ALPHA_SPARK_MASTER`` overrides master."""
    if not isinstance(value, dict):
        raise ConfigError(f"{cfg_path}: [spark] must be a table, e.g. master = \"local[2]\"")
    unknown = sorted(set(value) - set(SPARK_DEFAULTS))
    if unknown:
        raise ConfigError(f"{cfg_path}: [spark] has unknown key(s) {unknown}; allowed: {sorted(SPARK_DEFAULTS)}")
    out = {**SPARK_DEFAULTS, "conf": {}}
    for key in ("master", "driver_memory", "executor_memory", "app_name"):
        if key in value:
            out[key] = _str(value[key], f"{cfg_path}: [spark] {key}", f'"{SPARK_DEFAULTS[key]}"')
    if "ui" in value:
        out["ui"] = _bool(value["ui"], f"{cfg_path}: [spark] ui")
    conf = value.get("conf", {})
    if not isinstance(conf, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in conf.items()):
        raise ConfigError(f"{cfg_path}: [spark] conf must be a table of Spark settings, e.g. "
                          f"conf = {{ \"spark.sql.shuffle.partitions\" = \"64\" }}, got {conf!r}")
    out["conf"] = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in conf.items()}
    if os.environ.get("ALPHA_SPARK_MASTER"):
        out["master"] = os.environ["ALPHA_SPARK_MASTER"]
    return out


def _names(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{what} must be a list of strings, e.g. [\"mylab.factors\"], got {value!r}")
    return tuple(v.strip() for v in value)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {_kind(value)} {value!r}")
    return value


def _symbols(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
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
        if "source" not in spec or "dataset" not in spec:
            raise ConfigError(f"{where}: needs source and dataset, e.g. source = \"polygon\", dataset = \"daily\"")
        source = _str(spec["source"], f"{where} source", '"polygon"')
        dataset = _str(spec["dataset"], f"{where} dataset", '"daily"')
        start = spec.get("start", "2000-01-01")
        if isinstance(start, date) and not isinstance(start, datetime):  # TOML's bare date: start = 2020-01-01
            start = start.isoformat()
        if not isinstance(start, str):
            raise ConfigError(f"{where} start must be a date YYYY-MM-DD, got {_kind(start)} {start!r}")
        try:
            date.fromisoformat(start)
        except ValueError:
            raise ConfigError(f"{where}: start must be a date YYYY-MM-DD, got {start!r}") from None
        companions = COMPANIONS.get((source, dataset))
        if "actions" in spec and not companions:
            with_actions = ", ".join(f"{s}.{d}" for s, d in COMPANIONS)
            raise ConfigError(f"{where}: actions applies only to {with_actions} (their splits and dividends), "
                              f"not to {source}.{dataset}")
        path = spec.get("path")
        out.append(IngestSpec(
            source=source,
            dataset=dataset,
            symbols=_symbols(spec["symbols"], f"{where} symbols") if "symbols" in spec else universe,
            start=start,
            delay_minutes=_int(spec["delay_minutes"], f"{where} delay_minutes", " of minutes") if "delay_minutes" in spec else None,
            path=_str(path, f"{where} path", '"/data/lean"') if path is not None else None,
            actions=_bool(spec.get("actions", True), f"{where} actions"),
        ))
    return tuple(out)


#: Redis settings in config.toml, each overridable by ``ALPHA_<KEY upper>``; the password only
#: from ``ALPHA_REDIS_PASSWORD`` or the URL, so it need not sit in a file
REDIS_OPTIONS = ("redis_ssl_ca_certs", "redis_ssl_certfile", "redis_ssl_keyfile", "redis_timeout_seconds")


def _redis_options(file_cfg: dict, cfg_path: Path) -> dict:
    out: dict = {}
    for key in REDIS_OPTIONS:
        value, name, env = _from(key, f"ALPHA_{key.upper()}", file_cfg, cfg_path)
        if value is None or value == "":
            continue
        if key == "redis_timeout_seconds":
            value = _number(value, name, " of seconds", inclusive=False, env=env)
        else:
            value = str(Path(_str(value, name, '"/etc/ssl/redis-ca.pem"')).expanduser())
            if not Path(value).is_file():
                raise ConfigError(f"{name}: no such file {value!r}")
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
    name: str = "redis_url",
) -> str:
    """Turn ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS) into Feast's
    connection string; ``password`` (e.g. from ALPHA_REDIS_PASSWORD) replaces the URL's.
    Errors name the setting (``name``) and show the URL with its password masked."""
    if not isinstance(url, str):
        raise ConfigError(f"{name} must be a string like \"redis://localhost:6379/0\", got {_kind(url)} {url!r}")
    shown = mask_url(url)
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConfigError(
            f"{name} must look like redis://[:password@]host:port[/db], got {shown!r}"
        )
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number from 0 to 65535 in {shown!r}; "
                          "write it like redis://localhost:6379/0") from None
    parts = [f"{parsed.hostname}:{port or 6379}"]
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
            raise ConfigError(f"{name} database must be a number, got {db!r} in {shown!r}")
        parts.append(f"db={db}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
        for key, value in (("ssl_ca_certs", ssl_ca_certs), ("ssl_certfile", ssl_certfile), ("ssl_keyfile", ssl_keyfile)):
            if value:
                if "," in value:
                    raise ConfigError(f"{key} path cannot contain ',': {value!r}")
                parts.append(f"{key}={value}")
    elif any((ssl_ca_certs, ssl_certfile, ssl_keyfile)):
        raise ConfigError(f"TLS files are set (redis_ssl_*) but {name} {shown!r} is not rediss://; use rediss://host:port")
    if timeout is not None:
        parts.append(f"socket_timeout={float(timeout)}")
        parts.append(f"socket_connect_timeout={float(timeout)}")
    return ",".join(parts)
