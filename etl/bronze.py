"""Bronze: source files kept exactly as received, with a content hash.

Each landed file is copied atomically under ``bronze/<source>/`` and listed
in ``bronze/<source>/manifest.parquet`` (path, sha256, size, landed time). A
file already landed with the same hash is not copied again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from etl.config import Settings
from etl.store import atomic_copy, atomic_write_frame


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def land_files(settings: Settings, source: str, files: list[tuple[Path, str]], now: pd.Timestamp) -> pd.DataFrame:
    """Copy ``(path, relative_name)`` pairs into bronze; return the manifest rows."""
    root = settings.bronze / source
    manifest_path = root / "manifest.parquet"
    manifest = pd.read_parquet(manifest_path) if manifest_path.exists() else pd.DataFrame(
        columns=["relpath", "sha256", "bytes", "origin", "landed_at"]
    )
    known = set(zip(manifest["relpath"], manifest["sha256"], strict=True))
    rows = []
    for path, rel in files:
        digest = sha256_of(path)
        if (rel, digest) in known:
            continue
        atomic_copy(path, root / "files" / digest[:2] / f"{digest}-{Path(rel).name}")
        rows.append({"relpath": rel, "sha256": digest, "bytes": path.stat().st_size, "origin": str(path), "landed_at": now})
    if rows:
        new = pd.DataFrame(rows)
        manifest = pd.concat([manifest, new], ignore_index=True) if len(manifest) else new
        manifest["landed_at"] = pd.to_datetime(manifest["landed_at"], utc=True).astype("datetime64[us, UTC]")
        atomic_write_frame(manifest, manifest_path)
    return manifest
