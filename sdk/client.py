"""The Alpha facade: one API for backtests (offline, point-in-time) and live
bots (online store).

``history`` goes through Feast's ``get_historical_features``; ``latest``
through ``get_online_features``. Both speak Feast's vocabulary (entity
``symbol``, feature refs ``"view:feature"``, feature services) and raise only
:class:`~etl.core.errors.AlphaError` subclasses for bad input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from etl.core import clock
from etl.core.config import Settings, load_settings
from etl.core.errors import (
    AlphaError,
    ArgumentError,
    EmptyInputError,
    NotIngestedError,
    OnlineStoreError,
    UnknownSymbolError,
)

ENTITY = "symbol"
#: the market-wide entity of macro and regime views, and its one value for US equities
MARKET_KEY, MARKET = "market", "US"
TS = "event_timestamp"
TS_SUFFIX = "__ts"
STALE_SUFFIX = "__stale"


class Alpha:
    """A client for the warehouse at ``home`` (default ``$ALPHA_HOME``).

    Creating one does no I/O; the settings, registry and Feast are loaded on
    first use.
    """

    def __init__(self, home: str | Path | None = None, settings: Settings | None = None):
        self._home = home
        self._settings = settings
        self._store = None
        self._catalog_cache: tuple[float, dict] | None = None
        self._manifest_cache: tuple[int, dict] | None = None
        self._redis = None

    # ------------------------------------------------------------ plumbing
    def connect(self, home: str | Path | None = None) -> Alpha:
        """A client for another warehouse (or a fresh one for ``$ALPHA_HOME``)."""
        return Alpha(home)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._home)
        return self._settings

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def store(self):
        if self._store is None:
            from etl.serving.feast_store import feature_store

            if not self.settings.registry_url and not self.settings.registry_path.exists():
                raise NotIngestedError(
                    f"no feature registry at {self.settings.registry_path}; run `alpha nightly` "
                    f"(ALPHA_HOME={self.home}) after ingesting data"
                )
            self._store = feature_store(self.settings)
        return self._store

    def __repr__(self) -> str:
        """The home and, once the settings are loaded, the online store (its URL with any password
        masked, :func:`~etl.core.config.mask_url`); never a secret."""
        if self._settings is None:
            return f"Alpha(home={str(self._home or '$ALPHA_HOME')!r})"
        from etl.core.config import mask_url

        online = mask_url(self._settings.redis_url) if self._settings.redis_url else "sqlite"
        return f"Alpha(home={str(self._settings.home)!r}, online={online!r})"

    # ------------------------------------------------------------ catalog
    def symbols(self) -> list[str]:
        """Every symbol with gold features in this warehouse."""
        return list(self._symbol_set())

    def _symbol_set(self) -> dict:
        """The gold manifest's symbols (read directly, cached per file version: ``etl.gold``
        imports every factor family, too slow for ``latest``)."""
        import json

        path = self.settings.gold / "symbols.json"
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise NotIngestedError(f"no features built in {self.home}; run `alpha ingest ...` then `alpha nightly`") from None
        if self._manifest_cache is None or self._manifest_cache[0] != mtime:
            self._manifest_cache = (mtime, dict.fromkeys(json.loads(path.read_text())["symbols"]))
        return self._manifest_cache[1]

    def features(self) -> dict[str, list[str]]:
        """Registered feature views and services: ``{"view:feature": ..., service: [refs]}``."""
        return {**self._view_features(), **self._services()}

    #: seconds the client keeps the registry's catalog (Feast's own registry cache is 60 s);
    #: decoding 46 views with ~3,000 fields takes ~0.5 s, too slow to repeat per call
    CATALOG_TTL = 60.0

    def _catalog(self) -> dict:
        import time

        now = time.monotonic()
        if self._catalog_cache is None or now - self._catalog_cache[0] > self.CATALOG_TTL:
            from etl.serving.feast_store import quiet_feast

            with quiet_feast():
                views = self.store.list_feature_views()
                services = self.store.list_feature_services()
            catalog = {
                "entities": {fv.name: list(fv.entities) for fv in views},
                # the shape of etl.serving.catalog's, so one resolve_refs serves both backends
                "views": {fv.name: {"features": [f.name for f in fv.features]} for fv in views},
                "services": {
                    svc.name: [f"{p.name}:{f.name}" for p in svc.feature_view_projections for f in p.features]
                    for svc in services
                },
            }
            self._catalog_cache = (now, catalog)
        return self._catalog_cache[1]

    def _view_features(self) -> dict[str, list[str]]:
        return {name: info["features"] for name, info in self._catalog()["views"].items()}

    def _needs_market(self, refs: list[str]) -> bool:
        """Whether any ref lives in a market-wide view (macro, regime): those join on ``market``."""
        entities = self._catalog()["entities"]
        return any(MARKET_KEY in entities.get(r.partition(":")[0], ()) for r in refs)

    def _services(self) -> dict[str, list[str]]:
        return self._catalog()["services"]

    def _resolve(self, features: str | Sequence[str]) -> tuple[object, list[str]]:
        """Feast's ``features`` argument and the flat list of refs it stands for, by the one rule
        of :func:`etl.serving.catalog.resolve_refs` over the views and services Feast has applied."""
        from etl.serving.catalog import is_service, resolve_refs

        refs = resolve_refs(self._catalog(), features)
        return (self.store.get_feature_service(features) if is_service(features) else refs), refs

    def _check_symbols(self, symbols: Iterable[str]) -> None:
        known = self._symbol_set()
        unknown = sorted(s for s in set(symbols) if s not in known)
        if unknown:
            raise UnknownSymbolError(
                f"unknown symbol(s) {unknown[:20]}; this warehouse ({self.home}) has {len(known)}: {sorted(known)[:30]}"
            )

    # ------------------------------------------------------------ history
    def entity_frame(self, symbols: Sequence[str] | str, start, end) -> pd.DataFrame:
        """One row per symbol per session in [start, end], at the session's availability time."""
        symbols = _symbol_list(symbols)
        if start is None or end is None:
            raise EmptyInputError("pass start= and end= (dates) with a list of symbols, or an entity frame")
        for name, value in (("start", start), ("end", end)):
            try:
                clock.naive_date(value)
            except (ValueError, TypeError, OverflowError):
                raise ArgumentError(f"{name}={value!r} is not a date; pass e.g. {name}='2021-03-31'") from None
        sessions = clock.sessions_in_range(start, end, self.settings.calendar)
        if len(sessions) == 0:
            cal = clock.get_calendar(self.settings.calendar)
            raise EmptyInputError(f"no {self.settings.calendar} sessions between {start} and {end}; the warehouse's "
                                  f"{self.settings.calendar} calendar covers {cal.first_session:%Y-%m-%d} to "
                                  f"{cal.last_session:%Y-%m-%d}")
        times = clock.availability_times(sessions, self.settings.bar_delay_minutes, self.settings.calendar)
        frame = pd.DataFrame(
            {
                ENTITY: [s for s in symbols for _ in range(len(times))],
                TS: list(times) * len(symbols),
            }
        )
        frame[TS] = pd.to_datetime(frame[TS], utc=True)
        return frame.sort_values([TS, ENTITY], kind="stable").reset_index(drop=True)

    def history(
        self,
        entities: pd.DataFrame | Sequence[str] | str | None = None,
        features: str | Sequence[str] | None = None,
        *,
        universe: str | None = None,
        start=None,
        end=None,
        as_of=None,
        bitemporal: bool = True,
        full_feature_names: bool = False,
        engine: str | None = None,
    ) -> pd.DataFrame:
        """Point-in-time feature values.

        ``entities`` is either a frame with ``symbol`` and a tz-aware
        ``event_timestamp`` (the time of each decision), or a list of symbols
        with ``start``/``end`` dates (one row per symbol per session, at the
        session's availability time). Returns one row per entity row, in input
        order (duplicates and the frame's index kept), each value the newest
        one with event time <= the row's time within its view's TTL, else
        missing (NaN/None).

        ``universe=`` a name (e.g. ``"us_equity_coarse"``) instead of
        ``entities``: survivorship-free, every security that was a member on
        each session in [start, end] (names delisted or renamed later
        included, under their warehouse symbol), at the time its membership
        became known; the rows also carry ``ticker`` (as traded that day) and
        ``sid``. Members without features get missing values.

        Bitemporal by default: a value is seen only if it was knowable at the
        row's time (a revision only from when it was received). ``as_of=`` a
        tz-aware time uses that knowledge time for every row instead (what did
        we know then about all these dates?); ``bitemporal=False`` ignores
        knowledge times altogether (Feast's plain semantics).

        ``engine=`` ``"spark"`` runs the joins on Spark (the home's ``[spark]`` settings),
        ``"local"`` in this process; default: the home's ``engine`` setting. The answer is
        the same (docs/scale-out.md).
        """
        from sdk.pit.store import pit_options

        if universe is not None:
            if entities is not None:
                raise AlphaError("pass either entities (a frame or symbols) or universe=, not both")
            frame = self.universe_entity_frame(universe, start, end)
        elif entities is None:
            raise EmptyInputError("no entities: pass an entity frame, a list of symbols with start=/end=, or universe=")
        elif isinstance(entities, pd.DataFrame):
            frame = _check_entity_frame(entities)
        else:
            frame = self.entity_frame(entities, start, end)
        feast_features, refs = self._resolve(features)
        if universe is None:
            self._check_symbols(frame[ENTITY].unique())
        frame[TS] = clock.to_utc_us(frame[TS])
        add_market = MARKET_KEY not in frame.columns and self._needs_market(refs)
        if add_market:  # macro and regime values are the same for every symbol: join them on the market
            frame = frame.assign(**{MARKET_KEY: MARKET})
        from etl.serving.feast_store import quiet_feast

        with pit_options(as_of=as_of, bitemporal=bitemporal, engine=engine), quiet_feast():
            job = self.store.get_historical_features(entity_df=frame, features=feast_features, full_feature_names=full_feature_names)
            out = job.to_df()
        if add_market:
            out = out.drop(columns=[MARKET_KEY])
        out.index = frame.index
        return out

    # ------------------------------------------------------------ universes
    def universe(self, name: str, start, end, *, as_of=None) -> pd.DataFrame:
        """Members of universe ``name`` on each date in [start, end] (dates).

        One row per member per date: ``date``, ``symbol`` (the warehouse
        symbol), ``ticker`` (as traded that day), ``sid`` (the security id) and
        ``event_timestamp``, when the membership became known (that session's
        close + the bar delay). Delisted and later-renamed securities are
        included: no survivorship bias. ``as_of=`` a tz-aware time keeps only
        what was known by then. A membership restated later keeps its first
        version.
        """
        from etl.storage import silver
        from etl.storage.tables import UNIVERSE

        if start is None or end is None:
            raise EmptyInputError("pass start= and end= (dates) with a universe")
        first, last = clock.naive_date(start), clock.naive_date(end)
        known = _known_universes(self.settings)
        if name not in known:
            raise NotIngestedError(
                f"no universe {name!r} in {self.home} (it has: {', '.join(known) or 'none'}); "
                "run `alpha ingest lean --dataset coarse_universe` (universe 'us_equity_coarse') first"
            )
        columns = ["date", "sid", "ticker", "symbol", "event_timestamp", "created_timestamp"]
        frame = silver.read(self.settings, UNIVERSE, filters=_universe_filter(name, first, last), columns=columns)
        if frame.empty:
            frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).astype(
                {"date": "datetime64[us]", "event_timestamp": "datetime64[us, UTC]", "created_timestamp": "datetime64[us, UTC]"})
        frame = frame.sort_values(["date", "sid", "created_timestamp"], kind="stable").drop_duplicates(["date", "sid"], keep="first")
        if as_of is not None:
            cutoff = clock.require_utc(pd.Series([as_of]), "as_of").iloc[0]
            frame = frame[frame[TS] <= cutoff]
        out = frame[["date", ENTITY, "ticker", "sid", TS]].sort_values(["date", ENTITY, "sid"], kind="stable").reset_index(drop=True)
        out[TS] = clock.to_utc_us(out[TS])
        return out

    def universe_entity_frame(self, name: str, start, end) -> pd.DataFrame:
        """The entity frame of a universe: ``symbol``, ``event_timestamp`` (when each
        membership became known), ``ticker`` and ``sid``, one row per member per session."""
        members = self.universe(name, start, end)
        if members.empty:
            raise EmptyInputError(f"universe {name!r} has no members between {start} and {end}")
        frame = members[[ENTITY, TS, "ticker", "sid"]]
        return frame.sort_values([TS, ENTITY, "sid"], kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------ latest
    def latest(
        self,
        symbols: Sequence[str] | str,
        features: str | Sequence[str],
        *,
        max_age=None,
        allow_stale: bool = False,
        now=None,
        full_feature_names: bool = False,
    ) -> pd.DataFrame:
        """The newest value of each feature per symbol, from the online store.

        One row per symbol (in the order given); for each feature ``f`` a
        column ``f`` and ``f__ts``, the event timestamp of that value (UTC).
        A value older than its view's TTL (10 days), or than ``max_age``
        (``"2D"``, a ``pd.Timedelta``) when tighter, at ``now`` is missing
        (NaN/None; ``f__ts`` still says when it was). ``now`` defaults to the
        wall clock, so a pipeline that stopped shows as missing values, never
        as silently old ones; ``now="warehouse"`` uses the newest bar's
        availability time (``latest`` then equals ``history`` at that time:
        research on a warehouse of past data), or pass a tz-aware time.
        ``allow_stale=True`` returns old values with a boolean ``f__stale``
        column instead.

        Both online stores are read in Feast's layout directly (``sdk.online``,
        no ``import feast``): Redis with one pipeline, the SQLite default with
        sqlite3, in UTC whatever the machine's time zone. A store that holds
        nothing (emptied, Redis restarted without persistence) raises
        OnlineStoreError naming the fix; symbols the store has no entry for
        come back missing with a ``sdk.online.NotMaterializedWarning``.
        """
        symbols = _symbol_list(symbols)
        from etl.serving.catalog import load_catalog, resolve_refs
        from sdk import online

        catalog = load_catalog(self.settings)
        refs = resolve_refs(catalog, features)
        self._check_symbols(symbols)
        if self.settings.redis_url and self._redis is None:
            from etl.serving import redis_conn

            self._redis = redis_conn.redis_client(self.settings)
        return online.read_latest(self.settings, symbols, refs, max_age=max_age, allow_stale=allow_stale, now=now,
                                  client=self._redis, catalog=catalog, full_feature_names=full_feature_names)

    def _latest_feast(self, symbols, features, *, max_age, allow_stale, now, full_feature_names) -> pd.DataFrame:
        """``latest`` through Feast's ``get_online_features`` (the same frame and freshness rule as
        :meth:`latest`; kept as the reference the direct readers are tested against)."""
        from sdk import online

        symbols = _symbol_list(symbols)

        feast_features, refs = self._resolve(features)
        self._check_symbols(symbols)
        extra = {MARKET_KEY: MARKET} if self._needs_market(refs) else {}
        try:
            from etl.serving.feast_store import quiet_feast

            with quiet_feast():
                response = self.store.get_online_features(
                    features=feast_features, entity_rows=[{ENTITY: s, **extra} for s in symbols],
                    full_feature_names=full_feature_names,
                )
                raw = response.to_dict(include_event_timestamps=True)
        except Exception as exc:
            from etl.serving.redis_conn import store_errors  # not before an error: redis is imported only then

            if isinstance(exc, store_errors()):
                raise OnlineStoreError(f"cannot read the online store ({self.settings.online_store_kind}): {exc}") from exc
            raise
        columns: dict[str, object] = {ENTITY: symbols}   # one frame at the end (no column-by-column inserts)
        for ref in refs:
            name = _out_name(ref, full_feature_names)
            columns[name] = raw[name]
            seconds = pd.Series(raw[name + "_event_timestamp"] if name + "_event_timestamp" in raw else raw.get(name + TS_SUFFIX), dtype="float64")
            ts = pd.to_datetime(seconds, unit="s", utc=True)
            ts[seconds <= 0] = pd.NaT  # Feast reports 0 for a value it does not have
            columns[name + TS_SUFFIX] = clock.to_utc_us(ts)
        return _mask_stale(pd.DataFrame(columns), refs, online, self.settings, max_age=max_age, allow_stale=allow_stale,
                           now=now, full_feature_names=full_feature_names)


def _mask_stale(out: pd.DataFrame, refs: list[str], online, settings: Settings, *, max_age, allow_stale, now,
                full_feature_names) -> pd.DataFrame:
    """The freshness rule of ``sdk.online.read_latest`` (its :func:`~sdk.online.stale_mask`) on a
    frame read through Feast."""
    import numpy as np

    from etl.serving import catalog

    views = catalog.load_catalog(settings)["views"]
    now_us = online.now_us(settings, now)
    age = online.parse_max_age(max_age)
    stales: dict[str, object] = {}
    for ref in refs:
        view = ref.partition(":")[0]
        name = _out_name(ref, full_feature_names)
        ts = clock.epoch_us(out[name + TS_SUFFIX])
        stale, hide = online.stale_mask(ts, online.limit_us(views[view]["ttl_seconds"], age), now_us, allow_stale)
        if hide.any():
            col = out[name].astype(object) if out[name].dtype.kind not in "fc" else out[name]
            out[name] = col.where(~hide, np.nan if col.dtype.kind in "fc" else None)
        if allow_stale:
            stales[name] = stale
    if stales:   # each __stale column right after its __ts, built once
        order = [c for col in out.columns for c in ([col, col[:-len(TS_SUFFIX)] + STALE_SUFFIX]
                 if col.endswith(TS_SUFFIX) and col[:-len(TS_SUFFIX)] in stales else [col])]
        out = pd.concat([out, pd.DataFrame({n + STALE_SUFFIX: v for n, v in stales.items()}, index=out.index)], axis=1)[order]
    return out


def _out_name(ref: str, full: bool) -> str:
    view, _, name = ref.partition(":")
    return f"{view}__{name}" if full else name


def _symbol_list(symbols) -> list[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    symbols = list(symbols) if symbols is not None else []
    if not symbols:
        raise EmptyInputError("no symbols given")
    if any(not isinstance(s, str) or not s for s in symbols):
        raise UnknownSymbolError(f"symbols must be non-empty strings, got {symbols[:10]}")
    if len(set(symbols)) != len(symbols):
        raise UnknownSymbolError(f"a symbol is listed twice: {symbols}")
    return symbols


def _universe_filter(name: str, first: pd.Timestamp, last: pd.Timestamp):
    import pyarrow as pa
    import pyarrow.dataset as ds

    day = pa.timestamp("us")
    return ((ds.field("universe") == str(name)) & (ds.field("date") >= pa.scalar(first.to_pydatetime(), day))
            & (ds.field("date") <= pa.scalar(last.to_pydatetime(), day)))


def _known_universes(settings: Settings) -> list[str]:
    from etl.storage.tables import UNIVERSE

    root = UNIVERSE.path(settings)
    return sorted(p.name.split("=", 1)[1] for p in root.glob("universe=*") if p.is_dir()) if root.exists() else []


def _check_entity_frame(entities: pd.DataFrame) -> pd.DataFrame:
    """The entity frame as ``history`` joins it (``event_timestamp`` tz-aware UTC), or a clear
    AlphaError naming the column and the problem: an empty frame, a missing or duplicated column,
    times without a zone or outside what pandas holds (after 2262-04-11), missing symbols."""
    if len(entities) == 0:
        raise EmptyInputError("the entity frame is empty; it needs rows with 'symbol' and 'event_timestamp'")
    missing = [c for c in (ENTITY, TS) if c not in entities.columns]
    if missing:
        raise EmptyInputError(f"the entity frame lacks column(s) {missing}; it needs 'symbol' and 'event_timestamp'")
    twice = sorted({str(c) for c in entities.columns[entities.columns.duplicated()]})
    if twice:
        raise ArgumentError(f"the entity frame has the column(s) {twice} more than once; keep one of each, "
                            "e.g. entities.loc[:, ~entities.columns.duplicated()]")
    ts = clock.require_utc(entities[TS], TS)
    clock.require_in_range(ts, TS)
    symbols = entities[ENTITY]
    if symbols.isna().any():
        raise EmptyInputError(f"symbol is missing in {int(symbols.isna().sum())} row(s)")
    frame = entities.copy()
    frame[TS] = ts
    return frame
