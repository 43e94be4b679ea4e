"""What a run depends on, as fingerprints: the data it read, the feature definitions behind that
data, and the code that computed it.

- **Data**: :class:`RecordingClient` wraps the SDK client; every frame ``alpha.history`` (and
  ``alpha.universe``) returns is hashed in the order it was read (columns, dtypes, index and
  every value), so the fingerprint is of the gold values the run actually saw, not of file
  names: one changed value anywhere in what was read changes it, a new session outside the
  period does not.
- **Feature definitions**: for each view read, its description (outputs, dtypes, TTL) and its
  family's declaration fingerprint (the one that rebuilds gold when it changes).
- **Code**: the sha256 of this project's Python sources, the strategy's own source file (a
  user's plugin outside the repo), the versions of the libraries that compute results, and the
  git commit when there is one (for people; the hashes are what verify compares).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from etl.core.config import Settings

PACKAGES = ("etl", "sdk", "research", "strategy", "lifecycle")
LIBRARIES = ("pandas", "numpy", "vectorbt", "scikit-learn", "feast", "ta-lib", "scipy")
ROOT = Path(__file__).resolve().parents[1]


def frame_sha256(frame: pd.DataFrame) -> str:
    """sha256 of a frame's columns, dtypes, index and values (NaN-stable, order-sensitive)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame.index, index=False).to_numpy().tobytes())
    for column in frame.columns:
        h.update(pd.util.hash_pandas_object(frame[column], index=False).to_numpy().tobytes())
    return h.hexdigest()


class RecordingClient:
    """The SDK client with a log of what was read: ``reads`` holds (what, rows, sha256) per call,
    in order. Everything else passes through to the client."""

    def __init__(self, client):
        self._client = client
        self.reads: list[tuple[str, int, str]] = []
        self.views: set[str] = set()

    def __getattr__(self, item):
        return getattr(self._client, item)

    def _record(self, what: str, frame: pd.DataFrame) -> pd.DataFrame:
        self.reads.append((what, len(frame), frame_sha256(frame)))
        return frame

    def history(self, entities=None, features=None, **kwargs) -> pd.DataFrame:
        refs = [features] if isinstance(features, str) else list(features or [])
        self.views |= {r.split(":", 1)[0] for r in refs if ":" in r}
        out = self._client.history(entities, features, **kwargs)
        return self._record(f"history {','.join(refs)}", out)

    def universe(self, name, start, end, **kwargs) -> pd.DataFrame:
        return self._record(f"universe {name}", self._client.universe(name, start, end, **kwargs))

    def universe_entity_frame(self, name, start, end) -> pd.DataFrame:
        return self._record(f"universe {name}", self._client.universe_entity_frame(name, start, end))

    def data_fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.reads).encode()).hexdigest()


def features_fingerprint(settings: Settings, views) -> tuple[str, dict[str, str]]:
    """The fingerprint of the definitions behind ``views`` (and each view's own)."""
    from etl.factors import registry
    from etl.gold.builder import fingerprint as family_fingerprint

    registry.activate(settings)
    known = registry.views()
    each = {}
    for view in sorted(views):
        info = known.get(view)
        if info is None:
            each[view] = "unknown"
            continue
        fam = registry.family_of_view(view)
        each[view] = hashlib.sha256((repr(info) + "|" + family_fingerprint(settings, fam)).encode()).hexdigest()[:16]
    return hashlib.sha256(json.dumps(each, sort_keys=True).encode()).hexdigest(), each


def source_tree_sha256() -> str:
    """sha256 over this project's Python sources (path and content, sorted)."""
    h = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def code_version(strategy) -> dict:
    """The code a run ran: the project's sources, the strategy's file, the libraries."""
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {"source_sha256": source_tree_sha256(), "strategy_sha256": strategy.source_sha256, "strategy_ref": strategy.ref,
            "libraries": libs, "git_commit": git_commit()}


def code_fingerprint(version: dict) -> str:
    """What verify compares of the code: everything but the commit (a commit says nothing of an
    uncommitted change; the source hash does)."""
    keep = {k: v for k, v in version.items() if k != "git_commit"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()
