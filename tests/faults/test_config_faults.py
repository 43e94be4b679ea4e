"""Faults of the configuration and of the inputs a user types (issue 16, "Tracebacks instead of
errors" and "Secrets"): each reproduced as reported, each now a clear AlphaError (one red line
and exit 1 on the command line, no traceback), with nothing lost; secrets never shown."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from etl.core.config import load_settings, mask_url, require_writable
from etl.core.errors import AlphaError, ArgumentError, ConfigError, NaiveTimestampError, NotASessionError

ALPHA = str(Path(sys.executable).parent / "alpha")


def _home(tmp_path: Path, toml: str) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(toml)
    return home


def _alpha(home: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``alpha`` command on ``home``, as a user runs it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHA_", "PREFECT_"))}
    environ.update(ALPHA_HOME=str(home), **(env or {}))
    return subprocess.run([ALPHA, *args], env=environ, capture_output=True, text=True, timeout=timeout)


def _clear_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1, one ``error:`` line naming what is wrong, no traceback."""
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text, text
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _csv_folder(tmp_path: Path, rows: str) -> Path:
    folder = tmp_path / "csv"
    folder.mkdir(exist_ok=True)
    (folder / "AAPL.csv").write_text("date,open,high,low,close,volume\n" + rows)
    return folder


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ tracebacks -> clear errors
@pytest.mark.slow
def test_redis_url_not_a_string(tmp_path):
    """``redis_url = 5`` in config.toml was an AttributeError ('int' has no 'decode')."""
    home = _home(tmp_path, "redis_url = 5\n")
    with pytest.raises(ConfigError, match=r"redis_url must be a non-empty string.*got an integer 5"):
        load_settings(home)
    _clear_error(_alpha(home, "watermarks"), "redis_url", "string")


@pytest.mark.slow
def test_redis_url_port_not_a_number(tmp_path):
    """``redis://localhost:abc/0`` was a ValueError from urllib ('Port could not be cast')."""
    home = _home(tmp_path, 'redis_url = "redis://:hunter2@localhost:abc/0"\n')
    with pytest.raises(ConfigError, match="redis_url has a port that is not a number") as exc:
        load_settings(home)
    assert "hunter2" not in str(exc.value)  # the URL is shown with its password masked
    line = _clear_error(_alpha(home, "watermarks"), "redis_url", "port")
    assert "hunter2" not in line
    _clear_error(_alpha(tmp_path / "other", "watermarks", env={"ALPHA_REDIS_URL": "redis://localhost:abc/0"}),
                 "ALPHA_REDIS_URL (environment)", "port")


@pytest.mark.slow
def test_unknown_calendar(tmp_path):
    """``calendar = "NOPE"`` was exchange_calendars' InvalidCalendarName traceback at the first use."""
    from etl.core import clock

    home = _home(tmp_path, 'calendar = "NOPE"\n')
    with pytest.raises(ConfigError, match="calendar 'NOPE'.*not an exchange calendar.*XNYS"):
        clock.get_calendar(load_settings(home).calendar)
    folder = _csv_folder(tmp_path, "2021-03-31,1,2,0.5,1.5,100\n")
    _clear_error(_alpha(home, "ingest", "csv", "--path", str(folder)), "calendar 'NOPE'", "exchange calendar")
    assert not (home / "silver").exists()  # nothing half-written
    with pytest.raises(ConfigError, match="calendar must be a non-empty string"):
        load_settings(_home(tmp_path, "calendar = 5\n"))


@pytest.mark.slow
def test_alpha_home_is_a_file(tmp_path):
    """``ALPHA_HOME`` pointing at a file was a NotADirectoryError/FileExistsError traceback."""
    afile = tmp_path / "notes.txt"
    afile.write_text("not a warehouse\n")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_settings(afile)
    _clear_error(_alpha(afile, "watermarks"), str(afile), "is a file, not a folder")
    _clear_error(_alpha(afile / "home", "ingest", "lean"), "its parent", "is a file, not a folder")
    assert afile.read_text() == "not a warehouse\n"


@contextlib.contextmanager
def _read_only(path: Path):
    """``path`` not writable for this process. As a user: ``chmod a-w``. As root (CI containers),
    where permissions do not stop writes, a read-only bind mount of the folder onto itself (EROFS:
    the 'read-only file system' of the report); skipped if the container may not mount."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield "chmod a-w"
        finally:
            path.chmod(mode)
        return
    bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if bind.returncode:
        pytest.skip(f"running as root and cannot bind-mount read-only: {bind.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, text=True)
        if ro.returncode:
            pytest.skip(f"running as root and cannot remount read-only: {ro.stderr.strip()}")
        yield "read-only bind mount"
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.slow
def test_ingest_and_nightly_into_read_only_home_fail_at_once(tmp_path, capsys):
    """Ingest into a read-only home was a raw OSError; the nightly there failed after 29 s with
    "Timed out ... ephemeral Prefect API server". Both now stop at once, before Prefect starts,
    saying the home is not writable; nothing in the home changes."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("bar_delay_minutes = 15\n")
    folder = _csv_folder(tmp_path, "2021-03-31,1,2,0.5,1.5,100\n")
    before = _listing(home)
    with _read_only(home) as how:
        with pytest.raises(ConfigError, match="is not writable"):
            require_writable(load_settings(home))
        t0 = time.perf_counter()
        ingest = _alpha(home, "ingest", "csv", "--path", str(folder))
        t_ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        nightly = _alpha(home, "nightly", timeout=120)
        t_nightly = time.perf_counter() - t0
        for out in (ingest, nightly):
            _clear_error(out, str(home), "not writable")
            assert "Prefect" not in out.stdout + out.stderr
        assert _listing(home) == before
    assert not (home / "prefect").exists()
    with capsys.disabled():
        print(f"\n    read-only home ({how}): ingest failed in {t_ingest:.2f} s, nightly in {t_nightly:.2f} s")


@pytest.mark.slow
def test_home_folder_replaced_by_a_file(tmp_path):
    """A home whose ``silver/`` is a file (a damaged or hand-edited home): the writer commands say
    which path is wrong instead of a NotADirectoryError traceback deep in the ingest."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "silver").write_text("oops\n")
    folder = _csv_folder(tmp_path, "2021-03-31,1,2,0.5,1.5,100\n")
    _clear_error(_alpha(home, "ingest", "csv", "--path", str(folder)), str(home / "silver"), "is a file, not a folder")
    assert (home / "silver").read_text() == "oops\n"


def test_cli_os_errors_are_one_line_but_bugs_keep_their_traceback(tmp_path, monkeypatch):
    """An OSError of the environment (no permission, read-only or full disk) met by any command
    is one line naming the path; a real bug (any other exception) still shows its traceback."""
    from cli.common import friendly

    target = tmp_path / "locked" / "file"
    app = typer.Typer()

    @app.command("denied")
    @friendly
    def denied():
        raise PermissionError(13, "Permission denied", str(target))

    @app.command("bug")
    @friendly
    def bug():
        return {}["missing"]

    @app.command("enoent")
    @friendly
    def enoent():
        raise FileNotFoundError(2, "No such file or directory", str(target))

    runner = CliRunner()
    out = runner.invoke(app, ["denied"])
    assert out.exit_code == 1
    assert "Permission denied" in out.output and str(target) in out.output and "Traceback" not in out.output
    out = runner.invoke(app, ["bug"])
    assert isinstance(out.exception, KeyError)  # not swallowed: the traceback is the user's bug report
    out = runner.invoke(app, ["enoent"])
    assert isinstance(out.exception, FileNotFoundError)  # not an environment error of the home: a bug
    monkeypatch.setenv("ALPHA_DEBUG", "1")
    out = runner.invoke(app, ["denied"])
    assert out.exit_code == 1 and "Traceback" in out.output  # ALPHA_DEBUG=1 shows where


@pytest.mark.slow
def test_pre_1990_bars_name_the_calendar_range(tmp_path):
    """Pre-1990 sessions were refused as "not a XNYS session", as if they were holidays: the
    message now says the warehouse's calendar starts on 1990-01-02."""
    from etl.core import clock

    folder = _csv_folder(tmp_path, "1989-06-01,1,2,0.5,1.5,100\n1989-06-02,1,2,0.5,1.5,100\n")
    out = _alpha(tmp_path / "home", "ingest", "csv", "--path", str(folder))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "1989-06-01 is not a XNYS session: the XNYS calendar of the warehouse starts on 1990-01-02" in out.stderr
    with pytest.raises(NotASessionError, match=r"outside the calendar's range.*covers 1990-01-02 to"):
        clock.session_closes(pd.DatetimeIndex(["1989-06-01"]))
    assert clock.off_calendar_reasons(["2021-01-01"]) == ["2021-01-01 is not a XNYS session"]  # a holiday stays one


# ------------------------------------------------------------------ every value type-checked
@pytest.mark.slow
def test_bar_delay_bool_and_float_refused(tmp_path, monkeypatch):
    """``bar_delay_minutes = true`` silently became 1 and ``15.9`` became 15."""
    for value, kind in (("true", "a boolean True"), ("15.9", "a float 15.9"), ('"15"', "a string '15'")):
        with pytest.raises(ConfigError, match=f"bar_delay_minutes must be a whole number of minutes.*got {kind}"):
            load_settings(_home(tmp_path, f"bar_delay_minutes = {value}\n"))
    for value in ("true", "15.9", "15 minutes"):
        monkeypatch.setenv("ALPHA_BAR_DELAY_MINUTES", value)
        with pytest.raises(ConfigError, match=r"ALPHA_BAR_DELAY_MINUTES \(environment\) must be a whole number"):
            load_settings(tmp_path / "other")
    monkeypatch.setenv("ALPHA_BAR_DELAY_MINUTES", "20")
    assert load_settings(_home(tmp_path, "bar_delay_minutes = 30\n")).bar_delay_minutes == 20  # env wins
    monkeypatch.delenv("ALPHA_BAR_DELAY_MINUTES")
    assert load_settings(_home(tmp_path, "bar_delay_minutes = 30\n")).bar_delay_minutes == 30
    _clear_error(_alpha(_home(tmp_path, "bar_delay_minutes = true\n"), "watermarks"), "bar_delay_minutes", "whole number")


BAD_VALUES = [
    # (config.toml, the key named, the type named)
    ("nightly_margin_minutes = 1.5", "nightly_margin_minutes", "whole number"),
    ("nightly_strict_health = 1", "nightly_strict_health", "true or false"),
    ("build_chunk_symbols = true", "build_chunk_symbols", "whole number"),
    ("build_chunk_symbols = 0", "build_chunk_symbols", ">= 1"),
    ("state_url = 3", "state_url", "string"),
    ('state_url = "just-a-name"', "state_url", "database URL"),
    ("registry_url = true", "registry_url", "string"),
    ('redis_url = "http://localhost:6379"', "redis_url", "redis://"),
    ('redis_url = "redis://localhost:6379/zero"', "redis_url database", "number"),
    ("redis_timeout_seconds = true", "redis_timeout_seconds", "number of seconds"),
    ('redis_timeout_seconds = "2"', "redis_timeout_seconds", "number of seconds"),
    ("redis_timeout_seconds = 0", "redis_timeout_seconds", "> 0"),
    ("redis_ssl_ca_certs = 5", "redis_ssl_ca_certs", "string"),
    ("universe = [1, 2]", "universe", "list of symbols"),
    ('universe = ["AAPL", ""]', "universe", "list of symbols"),
    ('factor_modules = "mylab"', "factor_modules", "list of strings"),
    ("source_tolerance = true", "source_tolerance", "number in [0, 1)"),
    ("max_price_jump = 1", "max_price_jump", "above 1"),
    ('prefect_startup_timeout_seconds = "x"', "prefect_startup_timeout_seconds", "number"),
    ("vendors = 3", "[vendors.<name>]", "tables"),
    ('[vendors.polygon]\nrate = "fast"', "[vendors.polygon] rate", "number of requests per second"),
    ("[vendors.polygon]\nrate = 0", "[vendors.polygon] rate", "> 0"),
    ("[vendors.polygon]\nburst = 1.5", "[vendors.polygon] burst", "whole number"),
    ("[vendors.polygon]\nmax_retries = true", "[vendors.polygon] max_retries", "whole number"),
    ("[vendors.polygon]\ntimeout = -1", "[vendors.polygon] timeout", "> 0"),
    ("[vendors.polygon]\nbase_url = 5", "[vendors.polygon] base_url", "string"),
    ('[vendors.polygon]\nbase_url = "ftp://x"', "[vendors.polygon] base_url", "http(s) URL"),
    ('[[ingest]]\nsource = 5\ndataset = "daily"', "[[ingest]] #1 source", "string"),
    ('[[ingest]]\nsource = "lean"\ndataset = ["daily"]', "[[ingest]] #1 dataset", "string"),
    ('[[ingest]]\nsource = "lean"\ndataset = "daily"\nstart = 2020', "[[ingest]] #1 start", "date YYYY-MM-DD"),
    ('[[ingest]]\nsource = "lean"\ndataset = "daily"\ndelay_minutes = 15.5', "[[ingest]] #1 delay_minutes", "whole number"),
    ('[[ingest]]\nsource = "lean"\ndataset = "daily"\npath = 5', "[[ingest]] #1 path", "string"),
    ('[[ingest]]\nsource = "polygon"\ndataset = "daily"\nactions = "no"', "[[ingest]] #1 actions", "true or false"),
    ('[[ingest]]\nsource = "lean"\ndataset = "daily"\nsymbols = "AAPL,,"\nstart = 1', "[[ingest]] #1 start", "date"),
]


@pytest.mark.parametrize("toml,key,expected", BAD_VALUES, ids=[b[0].replace("\n", " ") for b in BAD_VALUES])
def test_every_config_value_is_type_checked(tmp_path, toml, key, expected):
    """Each key with a value of the wrong type (or out of range) is a ConfigError naming the key,
    the file and the type expected, never a silent coercion or a traceback later."""
    home = _home(tmp_path, toml + "\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(home)
    assert key in str(exc.value) and expected in str(exc.value) and str(home / "config.toml") in str(exc.value)


@pytest.mark.parametrize("variable,value,expected", [
    ("ALPHA_REDIS_TIMEOUT_SECONDS", "soon", "number of seconds"),
    ("ALPHA_REDIS_URL", "localhost:6379", "redis://"),
    ("ALPHA_STATE_URL", "postgres-at-home", "database URL"),
    ("ALPHA_REGISTRY_URL", "nowhere", "database URL"),
])
def test_environment_overrides_are_type_checked(tmp_path, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"{variable} \(environment\).*{expected}|{variable}.*{expected}"):
        load_settings(tmp_path / "home")


def test_vendor_environment_overrides_are_type_checked(tmp_path, monkeypatch):
    """``ALPHA_POLYGON_RATE=abc`` was a ValueError when the vendor was first used."""
    settings = load_settings(_home(tmp_path, "[vendors.polygon]\nrate = 2\n"))
    assert settings.vendor("polygon")["rate"] == 2.0
    monkeypatch.setenv("ALPHA_POLYGON_RATE", "abc")
    with pytest.raises(ConfigError, match=r"ALPHA_POLYGON_RATE \(environment\) must be a number"):
        settings.vendor("polygon")
    monkeypatch.setenv("ALPHA_POLYGON_RATE", "5")
    monkeypatch.setenv("ALPHA_POLYGON_BASE_URL", "api.polygon.io")
    with pytest.raises(ConfigError, match=r"ALPHA_POLYGON_BASE_URL \(environment\) must be an http\(s\) URL"):
        settings.vendor("polygon")
    monkeypatch.setenv("ALPHA_POLYGON_BASE_URL", "http://127.0.0.1:8080")
    assert settings.vendor("polygon") == {"rate": 5.0, "base_url": "http://127.0.0.1:8080"}


def test_a_valid_config_loads_unchanged(tmp_path, monkeypatch):
    """Nothing lost: every key of a valid config.toml keeps its value and type."""
    monkeypatch.delenv("ALPHA_BAR_DELAY_MINUTES", raising=False)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    home = _home(tmp_path, f"""
bar_delay_minutes = 20
redis_url = "rediss://:pw@localhost:6380/2"
redis_ssl_ca_certs = "{ca}"
redis_timeout_seconds = 3
calendar = "XNYS"
state_url = "postgresql+psycopg://u:p@localhost:5432/alpha"
universe = ["aapl", "SPY"]
nightly_margin_minutes = 45
nightly_strict_health = true
build_chunk_symbols = 256
source_tolerance = 0.01
max_price_jump = 25
[vendors.polygon]
rate = 5
burst = 2
base_url = "http://127.0.0.1:9/"
minute_delay_seconds = 900
[[ingest]]
source = "polygon"
dataset = "daily"
start = 2020-01-02
delay_minutes = 60
actions = false
""")
    s = load_settings(home)
    assert (s.bar_delay_minutes, s.redis_timeout_seconds, s.calendar, s.universe) == (20, 3.0, "XNYS", ("AAPL", "SPY"))
    assert (s.nightly_margin_minutes, s.nightly_strict_health, s.build_chunk_symbols) == (45, True, 256)
    assert (s.source_tolerance, s.max_price_jump, s.redis_ssl_ca_certs) == (0.01, 25.0, str(ca))
    assert s.vendors == {"polygon": {"rate": 5.0, "burst": 2, "base_url": "http://127.0.0.1:9/", "minute_delay_seconds": 900}}
    (spec,) = s.ingest
    assert (spec.start, spec.delay_minutes, spec.actions, spec.symbols) == ("2020-01-02", 60, False, ("AAPL", "SPY"))
    assert "password=pw" in s.feast_redis_connection and "ssl_ca_certs=" in s.feast_redis_connection


# ------------------------------------------------------------------ alpha.history inputs
def _frame(times, symbols=None) -> pd.DataFrame:
    return pd.DataFrame({"symbol": symbols or ["AAPL"] * len(times), "event_timestamp": times})


@pytest.mark.slow
def test_history_entity_time_beyond_2262(tmp_home):
    """An entity time of 2262-06-01 (beyond pandas' nanosecond range) was an OutOfBoundsDatetime
    or OverflowError traceback from inside Feast's join."""
    from sdk import Alpha

    alpha = Alpha(tmp_home.home)
    late = pd.Series(pd.array([pd.Timestamp("2021-03-31 20:15", tz="UTC"), pd.Timestamp("2262-06-01", tz="UTC")],
                              dtype="datetime64[us, UTC]"))
    for times in (late, [pd.Timestamp("2262-06-01", tz="UTC")], ["2262-06-01T00:00Z"]):
        with pytest.raises(ArgumentError, match=r"event_timestamp has .*time.* outside 1677-09-22 to 2262-04-11"):
            alpha.history(_frame(times), "technicals:rsi_14")


@pytest.mark.slow
def test_history_duplicated_symbol_column(tmp_home):
    """A frame with two ``symbol`` columns was "truth value of a DataFrame is ambiguous"."""
    from sdk import Alpha

    frame = pd.concat([_frame([pd.Timestamp("2021-03-31 20:15", tz="UTC")]), pd.DataFrame({"symbol": ["SPY"]})], axis=1)
    with pytest.raises(ArgumentError, match=r"column\(s\) \['symbol'\] more than once"):
        Alpha(tmp_home.home).history(frame, "technicals:rsi_14")


def test_history_mixed_offset_time_strings(warehouse):
    """Mixed-offset strings (New York times across a DST change: -05:00 and -04:00) were an
    AttributeError ('Can only use .dt accessor'). Each carries its offset, so each is one instant:
    they are converted to UTC and give the values of the same UTC times. A column mixing times
    with and without an offset is refused, naming the column (the warehouse never guesses)."""
    from sdk import connect

    alpha = connect(warehouse["settings"].home)
    local = ["2021-01-04 16:15-05:00", "2021-03-31 16:15-04:00"]
    utc = [pd.Timestamp("2021-01-04 21:15", tz="UTC"), pd.Timestamp("2021-03-31 20:15", tz="UTC")]
    got = alpha.history(_frame(local), ["technicals:rsi_14", "bars_daily:close"])
    want = alpha.history(_frame(utc), ["technicals:rsi_14", "bars_daily:close"])
    assert list(got["event_timestamp"]) == utc
    pd.testing.assert_frame_equal(got, want)
    assert got["close"].notna().all()
    with pytest.raises(NaiveTimestampError, match="event_timestamp mixes times with and without a time zone"):
        alpha.history(_frame(["2021-01-04 16:15-05:00", "2021-03-31 16:15"]), "technicals:rsi_14")
    with pytest.raises(NaiveTimestampError, match="event_timestamp is not a column of times"):
        alpha.history(_frame(["yesterday", "today"]), "technicals:rsi_14")


@pytest.mark.slow
def test_history_dates_before_the_calendar(tmp_home):
    """``alpha.history(symbols, start=..., end=...)`` before 1990 and unparsable dates: clear errors
    that name the calendar's range and the argument."""
    from etl.core.errors import EmptyInputError
    from sdk import Alpha

    alpha = Alpha(tmp_home.home)
    with pytest.raises(EmptyInputError, match="calendar covers 1990-01-02 to"):
        alpha.history(["AAPL"], "technicals:rsi_14", start="1985-01-01", end="1989-12-31")
    with pytest.raises(ArgumentError, match="start='the ides of march' is not a date"):
        alpha.history(["AAPL"], "technicals:rsi_14", start="the ides of march", end="2000-01-31")


# ------------------------------------------------------------------ secrets
def test_settings_repr_masks_secrets(tmp_path, monkeypatch):
    """``repr(alpha.settings)`` showed the Redis password inside redis_url."""
    from sdk import Alpha

    monkeypatch.setenv("ALPHA_REDIS_PASSWORD", "envsecret")
    home = _home(tmp_path, """
redis_url = "redis://:hunter2@localhost:6379/0"
state_url = "postgresql+psycopg://alpha:dbsecret@db:5432/alpha"
registry_url = "postgresql+psycopg://alpha:regsecret@db:5432/registry"
[vendors.polygon]
api_key = "vendorsecret"
base_url = "https://api.polygon.io/?apiKey=querysecret"
""")
    alpha = Alpha(home)
    shown = [repr(alpha.settings), str(alpha.settings), repr(alpha), f"{alpha.settings}"]
    for text in shown:
        for secret in ("hunter2", "envsecret", "dbsecret", "regsecret", "vendorsecret", "querysecret"):
            assert secret not in text, text
    assert "redis://:***@localhost:6379/0" in shown[0] and "alpha:***@db:5432" in shown[0]
    # the values themselves are intact: only their display is masked
    assert alpha.settings.redis_url == "redis://:hunter2@localhost:6379/0"
    assert alpha.settings.vendors["polygon"]["api_key"] == "vendorsecret"
    assert "password=envsecret" in alpha.settings.feast_redis_connection


@pytest.mark.parametrize("url,shown", [
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("rediss://user:pw@h:6380", "rediss://user:***@h:6380"),
    ("postgresql+psycopg://u:p%40ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
    ("redis://:p@ss/word@h:6379", "redis://:***@h:6379"),
    ("redis://h:6379/0?password=pw", "redis://h:6379/0?password=***"),
    ("https://api.x/v2?apiKey=k&limit=5", "https://api.x/v2?apiKey=***&limit=5"),
    ("sqlite:////srv/alpha/state.db", "sqlite:////srv/alpha/state.db"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_messages_with_urls_mask_passwords(tmp_path, monkeypatch):
    """Errors that quote a configured URL show it masked (redis_url, state_url)."""
    from etl.storage.state import open_engine

    for toml in ('redis_url = "redis://:hunter2@localhost:6379/zero"', 'redis_url = "http://:hunter2@localhost"'):
        with pytest.raises(ConfigError) as exc:
            load_settings(_home(tmp_path, toml + "\n"))
        assert "hunter2" not in str(exc.value) and ":***@" in str(exc.value)
    import sqlalchemy as sa

    with pytest.raises(ConfigError) as exc:
        open_engine("nosuchdialect://alpha:dbsecret@db/alpha", sa.MetaData(), setting="state_url", store="watermark store")
    assert "dbsecret" not in str(exc.value) and "state_url" in str(exc.value)


def test_errors_are_alpha_errors():
    """Every error above is an AlphaError: ``except AlphaError`` catches them all."""
    assert all(issubclass(e, AlphaError) for e in (ConfigError, ArgumentError, NaiveTimestampError, NotASessionError))
