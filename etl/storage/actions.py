"""Corporate actions in silver, bitemporal, from every source; and the symbol map (Lean map files).

One row per version of one action of one source (docs/corporate-actions.md):

- ``symbol``, ``ex_date`` (naive session date), ``source``;
- ``split_ratio``: new shares per old share (2.0 for a 2:1 split, 0.1 for a 1:10 reverse
  split; 1.0 for none);
- ``cash_dividend``: cash per share, in the raw price of the session before the ex-date
  (0.0 for none);
- ``dividend_factor``: what prices before the ex-date are multiplied by, where the source
  states it (Lean factor files); otherwise NaN and computed as ``1 - cash / close`` from the
  raw close of the session before the ex-date;
- ``reference_price``: that close where the source states it (Lean), else NaN;
- ``payload``: the sha256 of the bronze file the row came from ('' where none);
- ``event_timestamp``: the open of the ex-date (when the action takes effect);
- ``known_timestamp``: when this version became knowable (below);
- ``created_timestamp``: when we wrote it.

**When an action is known.** The time the source states (a ``known_at`` column of a CSV
folder's ``actions.csv``, a dividend's declaration date at Polygon) or, where it states none,
the open of the ex-date (the exchange trades at the new scale from then: every vendor's history
of past actions says at least that). But an action that arrives after the warehouse already
published features of a session on or after its ex-date (a late split, a corrected dividend;
the factor builder records what it published, :func:`record_published`) is known only from
when it was received: the rows already published are never rewritten into the past, and a
rebuild from nothing reproduces what the nights published, since the time is stored.

**Versions.** A row whose values (split, cash, factor) equal the newest stored version of the
same ``(symbol, ex_date, source)`` within :data:`SAME_RTOL` is not stored again (restated Lean
factor files, re-rounded to 7 digits, change nothing); a different one is a new version. Readers choose per ``(symbol, ex_date)`` the
first source in the configured priority (``[source_priority] corporate_actions``), then its
newest version known at the time asked for (:func:`resolve`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from etl.core import clock
from etl.core.actions import factor_rows, priority_rank, resolve
from etl.core.config import Settings
from etl.core.errors import ArgumentError
from etl.storage.atomic import atomic_write_frame

__all__ = ["ACTION_COLUMNS", "actions_from_factor_rows", "check_actions", "current_events", "factor_rows", "priority_rank",
           "read_actions", "read_all_versions", "read_corporate_actions", "resolve", "write_actions",
           "write_corporate_actions", "write_symbol_map"]

ACTION_COLUMNS = ["symbol", "ex_date", "split_ratio", "cash_dividend", "dividend_factor", "reference_price", "source",
                  "payload", "event_timestamp", "known_timestamp", "created_timestamp"]
VALUE_COLUMNS = ["split_ratio", "cash_dividend", "dividend_factor"]
#: values this close (relative) to the stored version's are the same action, not a new version
SAME_RTOL = 1e-6


def actions_path(settings: Settings) -> Path:
    return settings.silver / "corporate_actions" / "data.parquet"


# ------------------------------------------------------------------ Lean factor files


def actions_from_factor_rows(factors: pd.DataFrame, source: str = "lean") -> pd.DataFrame:
    """Lean factor-file rows (``factor_date, price_factor, split_factor, reference_price,
    ex_date``) as actions. Row i applies to sessions up to its date, the next row (or factors
    of 1 after the last) from its ex-date, the next session, on: the action there splits
    ``split_factor[i+1] / split_factor[i]`` and multiplies earlier prices by
    ``price_factor[i] / price_factor[i+1]``. Rows without a change are no action."""
    out = []
    for symbol, g in factors.sort_values(["symbol", "factor_date"], kind="stable").groupby("symbol", sort=True):
        sf = g["split_factor"].to_numpy(float)
        pf = g["price_factor"].to_numpy(float)
        ratio = np.append(sf[1:], 1.0) / sf
        dfac = pf / np.append(pf[1:], 1.0)
        ref = g["reference_price"].to_numpy(float)
        ex = pd.to_datetime(g["ex_date"]).to_numpy()
        frame = pd.DataFrame({"symbol": symbol, "ex_date": ex, "split_ratio": ratio,
                              "cash_dividend": np.where(dfac < 1.0, ref * (1.0 - dfac), 0.0),
                              "dividend_factor": dfac, "reference_price": ref})
        keep = ((ratio != 1.0) | (dfac != 1.0)) & pd.notna(ex)
        out.append(frame.loc[keep])
    if not out:
        return pd.DataFrame(columns=["symbol", "ex_date", *VALUE_COLUMNS, "reference_price", "source"])
    frame = pd.concat(out, ignore_index=True)
    frame["source"] = source
    return frame


def _from_legacy(frame: pd.DataFrame) -> pd.DataFrame:
    """A table written before actions were bitemporal (Lean factor rows): its actions, known
    from their ex-dates' opens, written when the rows were."""
    latest = frame.sort_values("created_timestamp", kind="stable").drop_duplicates(["symbol", "factor_date"], keep="last")
    acts = actions_from_factor_rows(latest)
    created = latest.groupby("symbol")["created_timestamp"].min()
    opens = latest.drop_duplicates(["symbol", "ex_date"]).set_index(["symbol", "ex_date"])["event_timestamp"]
    acts["payload"] = ""
    acts["event_timestamp"] = opens.reindex(pd.MultiIndex.from_frame(acts[["symbol", "ex_date"]])).to_numpy()
    acts["known_timestamp"] = acts["event_timestamp"]
    acts["created_timestamp"] = created.reindex(acts["symbol"]).to_numpy()
    return _typed(acts)


# ------------------------------------------------------------------ writing


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["symbol"] = out["symbol"].astype(str)
    out["ex_date"] = pd.to_datetime(out["ex_date"]).dt.normalize().astype("datetime64[us]")
    for c, default in (("split_ratio", 1.0), ("cash_dividend", 0.0), ("dividend_factor", np.nan), ("reference_price", np.nan)):
        out[c] = pd.to_numeric(out[c], errors="raise").astype(float) if c in out else default
        out[c] = out[c].fillna(default) if c in ("split_ratio", "cash_dividend") else out[c]
    out["source"] = out["source"].astype(str)
    out["payload"] = out["payload"].fillna("").astype(str) if "payload" in out else ""
    for c in ("event_timestamp", "known_timestamp", "created_timestamp"):
        if c in out:
            out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[us, UTC]")
    return out


def check_actions(frame: pd.DataFrame, calendar: str | None = None) -> list[str]:
    """Why each row is not a valid action ('' where it is): the checks every source's rows pass
    before they are written (sources quarantine the rows that fail). With ``calendar``, an
    ex-date must be one of its sessions."""
    n = len(frame)
    reasons = np.full(n, "", dtype=object)

    def fail(mask, text):
        mask = np.asarray(mask, dtype=bool) & (reasons == "")
        reasons[mask] = text

    split = pd.to_numeric(frame.get("split_ratio", pd.Series(1.0, index=frame.index)), errors="coerce").to_numpy(float)
    cash = pd.to_numeric(frame.get("cash_dividend", pd.Series(0.0, index=frame.index)), errors="coerce").to_numpy(float)
    split = np.where(np.isnan(split) & frame.get("split_ratio", pd.Series(np.nan, index=frame.index)).isna().to_numpy(), 1.0, split)
    cash = np.where(np.isnan(cash) & frame.get("cash_dividend", pd.Series(np.nan, index=frame.index)).isna().to_numpy(), 0.0, cash)
    f = (pd.to_numeric(frame["dividend_factor"], errors="coerce").to_numpy(float) if "dividend_factor" in frame
         else np.full(n, np.nan))
    fail(pd.isna(frame["ex_date"]).to_numpy(), "no ex_date")
    if calendar is not None:
        ex = pd.to_datetime(frame["ex_date"], errors="coerce")
        ok = ex.notna().to_numpy()
        is_sess = np.zeros(n, dtype=bool)
        if ok.any():
            is_sess[ok] = clock.is_session(pd.DatetimeIndex(ex[ok]), calendar)
        fail(ok & ~is_sess, f"ex_date is not a {calendar} session")
    fail(~np.isfinite(split) | (split <= 0), "split_ratio must be a number > 0 (new shares per old share)")
    fail(~np.isfinite(cash) | (cash < 0), "cash_dividend must be a number >= 0")
    fail(~np.isnan(f) & ~((f > 0) & (f <= 1)), "dividend_factor must be in (0, 1]")
    fail((split == 1.0) & (cash == 0.0) & (np.isnan(f) | (f == 1.0)), "neither a split (split_ratio 1) nor a dividend (cash_dividend 0)")
    return reasons.tolist()


def published_path(settings: Settings) -> Path:
    return settings.silver / "corporate_actions" / "_published.parquet"


def record_published(settings: Settings, last: pd.DataFrame) -> None:
    """The factor builder's record, per symbol, of the last session whose features it has
    published (``symbol, last``): what makes an action arriving later for an ex-date up to it
    late (module doc). Kept beside the actions, so a copied store takes it along."""
    frame = pd.DataFrame({"symbol": last["symbol"].astype(str).to_numpy(),
                          "last": pd.to_datetime(last["last"]).astype("datetime64[us]").to_numpy()})
    path = published_path(settings)
    if path.exists():
        frame = pd.concat([pd.read_parquet(path), frame], ignore_index=True)
        frame = frame.groupby("symbol", as_index=False)["last"].max()
    atomic_write_frame(frame.sort_values("symbol").reset_index(drop=True), path)


def _published(settings: Settings, symbols: list[str]) -> dict[str, np.datetime64]:
    """Per symbol, the last session whose features the warehouse has published."""
    path = published_path(settings)
    if not path.exists() or not symbols:
        return {}
    frame = pd.read_parquet(path)
    frame = frame[frame["symbol"].isin(symbols)]
    return dict(zip(frame["symbol"], frame["last"].to_numpy().astype("datetime64[us]"), strict=True))


def read_all_versions(settings: Settings) -> pd.DataFrame | None:
    """Every stored version of every action (``ACTION_COLUMNS``), or None. A Lean ingest killed
    while publishing its staged silver is finished first (``silver.settle``)."""
    from etl.storage.silver import settle

    settle(settings.silver)
    path = actions_path(settings)
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    if "factor_date" in frame.columns:
        frame = _from_legacy(frame)
    return frame[ACTION_COLUMNS]


def write_actions(settings: Settings, frame: pd.DataFrame, now: pd.Timestamp) -> dict[str, int]:
    """Store new actions and new versions (module doc); returns ``{new, revised, unchanged}``.

    ``frame``: ``symbol, ex_date, source`` and any of ``split_ratio, cash_dividend,
    dividend_factor, reference_price, payload, known_timestamp`` (the time the source states,
    NaT where it states none). Rows must pass :func:`check_actions`."""
    if frame.empty:
        return {"new": 0, "revised": 0, "unchanged": 0}
    bad = [r for r in check_actions(frame, settings.calendar) if r]
    if bad:
        raise ArgumentError(f"corporate actions: {len(bad)} invalid row(s), e.g. {bad[0]}; sources must quarantine them")
    new = _typed(frame)
    stated = pd.to_datetime(new["known_timestamp"], utc=True) if "known_timestamp" in new else pd.Series(pd.NaT, index=new.index)
    new = new.drop(columns=["known_timestamp"], errors="ignore")
    new["event_timestamp"] = clock.session_opens(pd.DatetimeIndex(new["ex_date"]), settings.calendar)
    new["_stated"] = stated.to_numpy()
    new = new.drop_duplicates(["symbol", "ex_date", "source", *VALUE_COLUMNS], keep="last")
    old = read_all_versions(settings)
    key = ["symbol", "ex_date", "source"]
    unchanged = revised = 0
    if old is not None and len(old):
        latest = old.sort_values(["known_timestamp", "created_timestamp"], kind="stable").drop_duplicates(key, keep="last")
        m = new.merge(latest[key + VALUE_COLUMNS], on=key, how="left", suffixes=("", "_old"), indicator=True)
        same = m["_merge"].eq("both").to_numpy()
        for c in VALUE_COLUMNS:
            a, b = m[c].to_numpy(float), m[c + "_old"].to_numpy(float)
            # within Lean's rounding: a factor file restated after a new dividend rescales and
            # re-rounds every earlier factor (7 digits), which is no new information
            same &= np.isclose(a, b, rtol=SAME_RTOL, atol=0.0) | (np.isnan(a) & np.isnan(b))
        unchanged = int(same.sum())
        revised = int((m["_merge"].eq("both").to_numpy() & ~same).sum())
        new = new.loc[~same].reset_index(drop=True)
    if new.empty:
        return {"new": 0, "revised": 0, "unchanged": unchanged}
    now = pd.Timestamp(now)
    base = new["_stated"].where(new["_stated"].notna(), new["event_timestamp"])
    held = _published(settings, sorted(new["symbol"].unique()))
    last = new["symbol"].map(held)
    late = last.notna().to_numpy() & (pd.to_datetime(last).to_numpy() >= new["ex_date"].to_numpy())
    known = pd.to_datetime(base, utc=True)
    known = known.where(~late | (known > now), now)
    new["known_timestamp"] = known
    new["created_timestamp"] = now
    new = _typed(new.drop(columns=["_stated"]))
    merged = pd.concat([old, new[ACTION_COLUMNS]], ignore_index=True) if old is not None and len(old) else new[ACTION_COLUMNS]
    merged = merged.sort_values(["symbol", "ex_date", "known_timestamp", "created_timestamp"], kind="stable").reset_index(drop=True)
    atomic_write_frame(merged, actions_path(settings))
    return {"new": len(new) - revised, "revised": revised, "unchanged": unchanged}


def write_corporate_actions(settings: Settings, factors: pd.DataFrame, now: pd.Timestamp) -> dict[str, int]:
    """Lean factor-file rows, as actions (each known from its ex-date's open unless late)."""
    acts = actions_from_factor_rows(factors, source=str(factors["source"].iloc[0]) if "source" in factors and len(factors) else "lean")
    if "payload" in factors:
        acts["payload"] = acts["symbol"].map(factors.drop_duplicates("symbol").set_index("symbol")["payload"])
    return write_actions(settings, acts, now)


# ------------------------------------------------------------------ reading


def read_actions(settings: Settings, priority: tuple[str, ...] | None = None) -> pd.DataFrame | None:
    """Every action as known now, one per ``(symbol, ex_date)``, by the configured priority."""
    return resolve(read_all_versions(settings), settings.priority("corporate_actions") if priority is None else priority)


def read_corporate_actions(settings: Settings, bars: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The actions as known now as cumulative factor rows (:func:`factor_rows`), the form the
    factor computations take; ``bars`` (raw, any symbols) give cash dividends their closes."""
    return factor_rows(read_actions(settings), bars, settings.calendar)


def current_events(settings: Settings) -> pd.DataFrame:
    """The actions as known now, in the form the health checks read: ``symbol, ex_date,
    split, dividend`` (new shares per old, cash per share)."""
    acts = read_actions(settings)
    if acts is None:
        return pd.DataFrame(columns=["symbol", "ex_date", "split", "dividend"])
    # every source gives the cash (Lean's: reference price x (1 - dividend factor), actions_from_factor_rows)
    return pd.DataFrame({"symbol": acts["symbol"].astype(str), "ex_date": pd.to_datetime(acts["ex_date"]),
                         "split": np.round(acts["split_ratio"].to_numpy(float), 4),
                         "dividend": np.round(acts["cash_dividend"].to_numpy(float), 5)})


# ------------------------------------------------------------------ the symbol map


def write_symbol_map(settings: Settings, maps: pd.DataFrame, now: pd.Timestamp) -> None:
    """Lean map-file rows; rows already stored keep the time we first wrote them."""
    path = settings.silver / "symbol_map" / "data.parquet"
    m = maps[["symbol", "last_date", "ticker", "exchange"]].copy()
    m["last_date"] = m["last_date"].astype("datetime64[us]")
    m["created_timestamp"] = now
    if path.exists():
        old = pd.read_parquet(path)
        merged = pd.concat([old, m], ignore_index=True).drop_duplicates(["symbol", "last_date", "ticker", "exchange"], keep="first")
    else:
        merged = m
    merged["created_timestamp"] = pd.to_datetime(merged["created_timestamp"], utc=True).astype("datetime64[us, UTC]")
    merged = merged.sort_values(["symbol", "last_date", "created_timestamp"], kind="stable").reset_index(drop=True)
    atomic_write_frame(merged, path)
