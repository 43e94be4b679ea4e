"""Where one feature value came from: gold row -> silver bars -> bronze files.

``alpha features lineage VIEW:FEATURE SYMBOL SESSION`` (and ``alpha features describe NAME
--symbol S --session D``) trace one value of a bar-driven feature (its family computes from
one symbol's daily bars with a declared warm-up):

1. **gold**: every row of the view for the symbol at the session's event time (part file,
   event / known / written time, value), and the one in force (the newest known, or the
   newest known at ``as_of``);
2. **silver**: the canonical bar versions that row was computed from, as the build saw them
   (known and written no later than the gold row): the session's own bar and the warm-up
   window before it (the factor's declared ``warmup``; a ``_lag1`` view's value is the
   previous session's), each with its source and payload; the other sources' bars of that
   session, which the features do not use; and, for a factor in the price scale traded at the
   session, the versions of the corporate actions whose ex-date falls in the window, known by
   then;
3. **bronze**: each payload's file (``bronze/<source>/files/<sha[:2]>/<sha>-<name>`` for
   archive files, ``bronze/<source>/objects/<sha[:2]>/<sha>`` for vendor responses), its
   sha256 recomputed and compared with its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.config import Settings
from etl.core.errors import ArgumentError, NotIngestedError, UnknownFeatureError
from etl.factors import registry

BAR_FIELDS = ["open", "high", "low", "close", "volume"]


def _feature(name: str) -> tuple[registry.FeatureInfo, registry.View]:
    view_name, _, feat = name.rpartition(":")
    features = registry.features()
    if feat not in features:
        raise UnknownFeatureError(f"unknown feature {name!r}; `alpha features list` shows them all")
    info = features[feat]
    if view_name and view_name != info.view:
        raise UnknownFeatureError(f"feature {feat!r} is in view {info.view!r}, not {view_name!r}")
    return info, registry.views()[info.view]


def _gold_rows(settings: Settings, view: registry.View, feature: str, symbol: str, event: pd.Timestamp) -> pd.DataFrame:
    """Every row of ``view`` for ``symbol`` at ``event``, with the part file it is in."""
    import pyarrow.dataset as ds

    from etl.gold.layout import parts

    cols = [view.entity, "event_timestamp", "known_timestamp", "created_timestamp", feature]
    filt = (ds.field(view.entity) == symbol) & (ds.field("event_timestamp") == event.to_pydatetime())
    frames = []
    for path in parts(settings, view.name):
        table = ds.dataset(str(path), format="parquet").to_table(columns=cols, filter=filt)
        if table.num_rows:
            frames.append(table.to_pandas().assign(part=str(path.relative_to(settings.home))))
    if not frames:
        return pd.DataFrame(columns=[*cols, "part"])
    return pd.concat(frames, ignore_index=True).sort_values(["known_timestamp", "created_timestamp"], kind="stable")


def _bronze_file(settings: Settings, sha: str) -> Path | None:
    """The bronze file named by ``sha``: an archive file's copy or a vendor response."""
    if not settings.bronze.is_dir():
        return None
    for source_dir in sorted(p for p in settings.bronze.iterdir() if p.is_dir()):
        obj = source_dir / "objects" / sha[:2] / sha
        if obj.is_file():
            return obj
        hits = sorted((source_dir / "files" / sha[:2]).glob(f"{sha}-*"))
        if hits:
            return hits[0]
    return None


def _bronze(settings: Settings, rows: pd.DataFrame, what: str = "bars", day_col: str = "session") -> list[dict]:
    from etl.storage.bronze import sha256_of

    out = []
    for (source, sha), g in rows.groupby(["source", "payload"], sort=True):
        entry = {"source": source, "sha256": sha, "of": what, "rows": len(g),
                 "dates": f"{_day(g[day_col].min())}..{_day(g[day_col].max())}"}
        if not sha:
            entry.update(path=None, status="unknown: written before payloads were recorded")
        else:
            path = _bronze_file(settings, sha)
            if path is None:
                entry.update(path=None, status="missing from bronze")
            else:
                actual = sha256_of(path)
                entry.update(path=str(path.relative_to(settings.home)), bytes=path.stat().st_size, sha256_recomputed=actual,
                             status="ok: sha256 matches its name" if actual == sha else "CORRUPT: sha256 differs from its name")
        out.append(entry)
    return out


def _day(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    out = []
    for r in frame[columns].to_dict("records"):
        out.append({k: (_day(v) if k in ("session", "ex_date") else v.isoformat() if isinstance(v, pd.Timestamp) else
                        None if isinstance(v, float) and np.isnan(v) else v.item() if isinstance(v, np.generic) else v)
                    for k, v in r.items()})
    return out


def trace_lineage(settings: Settings, feature: str, symbol: str, session, as_of=None) -> dict:
    """The chain of one feature value (module doc) as a JSON-ready dict."""
    from etl.storage.bars import read_silver_bars

    registry.activate(settings)
    info, view = _feature(feature)
    family = registry.family_of_view(view.name)
    if view.entity != "symbol" or family.warmup is None or "bars" not in family.inputs:
        raise ArgumentError(f"{info.view}:{info.name} is not computed from one symbol's daily bars (family {family.name}); "
                            "lineage to bronze covers bar-driven features (bars, technicals, the TA-Lib grid, user factors)")
    day = pd.Timestamp(session).normalize()
    if not clock.is_session(pd.DatetimeIndex([day]), settings.calendar)[0]:
        raise ArgumentError(f"{_day(day)} is not a {settings.calendar} session")
    event = clock.availability_times(pd.DatetimeIndex([day]), settings.bar_delay_minutes, settings.calendar)[0]
    gold = _gold_rows(settings, view, info.name, symbol, event)
    if gold.empty:
        raise NotIngestedError(f"gold holds no {view.name} row of {symbol} at {_day(day)} (event {event.isoformat()}); "
                               "is the session ingested and the factors built (`alpha features build`)?")
    chosen = gold
    if as_of is not None:
        chosen = gold[clock.epoch_us(gold["known_timestamp"]) <= clock.instant_us(as_of, "as_of")]
        if chosen.empty:
            raise NotIngestedError(f"no {view.name} row of {symbol} at {_day(day)} was known at {pd.Timestamp(as_of).isoformat()}")
    row = chosen.iloc[-1]
    warmup = registry.factor(info.factor).warmup if info.factor else 0
    value_day = clock.previous_session(pd.DatetimeIndex([day]), settings.calendar)[0] if view.lag_of else day

    versions = read_silver_bars(settings, [symbol], versions="all", end=value_day, payload=True)
    seen = versions[(clock.epoch_us(versions["known_timestamp"]) <= clock.instant_us(row["known_timestamp"], "known"))
                    & (clock.epoch_us(versions["created_timestamp"]) <= clock.instant_us(row["created_timestamp"], "created"))]
    state = seen.sort_values(["session", "known_timestamp", "created_timestamp"], kind="stable").drop_duplicates("session", keep="last")
    if state.empty or state["session"].iloc[-1] != value_day:
        raise NotIngestedError(f"silver holds no bar of {symbol} on {_day(value_day)} known when the gold row was "
                               f"({pd.Timestamp(row['known_timestamp']).isoformat()})")
    window = state.iloc[-(warmup + 1):]
    others = read_silver_bars(settings, [symbol], versions="all", start=value_day, end=value_day, sources="all", payload=True)
    canonical_source = window["source"].iloc[-1]
    others = others[others["source"] != canonical_source]
    actions = _actions(settings, symbol, window, clock.instant_us(row["known_timestamp"], "known")) if any(i.startswith("corporate_actions") for i in _inputs(info)) else None
    bar_cols = ["session", "source", "payload", *BAR_FIELDS, "event_timestamp", "known_timestamp", "created_timestamp"]
    gold_cols = ["part", "event_timestamp", "known_timestamp", "created_timestamp", info.name]
    return {
        "feature": f"{view.name}:{info.name}",
        "symbol": symbol,
        "session": _day(day),
        "gold": {"rows": _records(gold, gold_cols),
                 "in_force": _records(chosen.iloc[[-1]], gold_cols)[0],
                 "as_of": None if as_of is None else pd.Timestamp(as_of).isoformat()},
        "silver": {
            "value_session": _day(value_day),
            "warmup": warmup,
            "bars": len(window),
            "earlier_bars": len(window) - 1,
            "first_session": _day(window["session"].iloc[0]),
            "session_bar": _records(window.iloc[[-1]], bar_cols)[0],
            "window": _records(window, bar_cols),
            "other_sources": _records(others, bar_cols),
        },
        "corporate_actions": None if actions is None else _records(actions, list(actions.columns)),
        "bronze": _bronze(settings, window) + ([] if actions is None or actions.empty else
                                                _bronze(settings, actions, "corporate actions", "ex_date")),
    }


def _inputs(info: registry.FeatureInfo) -> tuple[str, ...]:
    return registry.factor(info.factor).inputs if info.factor else ()


def _actions(settings: Settings, symbol: str, window: pd.DataFrame, known_us: int) -> pd.DataFrame:
    """Every stored version of the symbol's corporate actions whose ex-date falls in the window
    and that was known by ``known_us`` (the gold row's known time)."""
    from etl.storage.actions import read_all_versions

    cols = ["ex_date", "split_ratio", "cash_dividend", "source", "payload", "known_timestamp", "created_timestamp"]
    acts = read_all_versions(settings)
    if acts is None or acts.empty:
        return pd.DataFrame(columns=cols)
    ex = pd.to_datetime(acts["ex_date"])
    keep = (acts["symbol"] == symbol) & (ex > window["session"].iloc[0]) & (ex <= window["session"].iloc[-1])
    if "known_timestamp" in acts:
        keep &= clock.epoch_us(acts["known_timestamp"]) <= known_us
    mine = acts[keep]
    mine = mine.assign(payload=mine["payload"].fillna("").astype(str) if "payload" in mine else "",
                       source=mine["source"].astype(str) if "source" in mine else "")
    return mine[[c for c in cols if c in mine.columns]].sort_values("ex_date", kind="stable").reset_index(drop=True)


def lineage_text(doc: dict) -> str:
    """:func:`trace_lineage`'s dict as the CLI prints it."""
    g, s = doc["gold"], doc["silver"]
    name = doc["feature"].split(":", 1)[1]
    lines = [f"{doc['feature']} of {doc['symbol']} on {doc['session']}", "gold:"]
    for r in g["rows"]:
        mark = "*" if r == g["in_force"] else " "
        lines.append(f"  {mark} {r['part']}  event {r['event_timestamp']}  known {r['known_timestamp']}  "
                     f"written {r['created_timestamp']}  {name} = {r[name]}")
    lines.append("  (* the row in force" + (f" as of {g['as_of']})" if g["as_of"] else ")"))
    b = s["session_bar"]
    lines.append(f"silver: the {s['value_session']} bar and {s['earlier_bars']} earlier one(s) from {s['first_session']} "
                 f"(warm-up {s['warmup']}), canonical versions as the build saw them:")
    lines.append(f"  {b['session']}  {b['source']}  close {b['close']}  known {b['known_timestamp']}  "
                 f"written {b['created_timestamp']}  payload {b['payload'] or '(unknown)'}")
    for o in s["other_sources"]:
        lines.append(f"  not used: {o['source']}  close {o['close']}  known {o['known_timestamp']}  payload {o['payload'] or '(unknown)'}")
    for a in doc.get("corporate_actions") or []:
        lines.append(f"  corporate action in the window: ex-date {a['ex_date']}  split {a.get('split_ratio')}  "
                     f"cash {a.get('cash_dividend')}  {a.get('source')}  known {a.get('known_timestamp')}  "
                     f"payload {a.get('payload') or '(unknown)'}")
    lines.append("bronze:")
    for f in doc["bronze"]:
        lines.append(f"  {f['source']}  {f['sha256'] or '(no payload)'}  {f['rows']} row(s) of {f['of']} {f['dates']}  "
                     f"{f.get('path') or ''}  {f['status']}")
    return "\n".join(lines)
