"""Bronze: source files kept exactly as received, with a content hash.

Each landed file is copied atomically under ``bronze/<source>/`` and listed
in ``bronze/<source>/manifest.parquet`` (path, sha256, size, landed time). A
file already landed with the same hash is not copied again.

Vendor responses are kept as the HTTP client hands them over: as received,
except that the secrets the process knows (the vendor's key, secret-looking
environment variables, the home's configured secrets) are masked as ``***``
(:func:`etl.core.http.scrub`), so a vendor that echoes the request URL never
puts a key in bronze; their fetch records hold the redacted URL and parameters.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from etl.core.config import Settings
from etl.storage.atomic import atomic_copy, atomic_write_frame


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


# ------------------------------------------------------------ vendor payloads

def _atomic_bytes(data: bytes, path: Path) -> None:
    import os
    import tempfile

    from etl.storage.atomic import temp_prefix

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def land_payload(settings: Settings, fetched, dataset: str) -> Path:
    """Keep one vendor response exactly as received.

    The body is stored once per content hash under
    ``bronze/<source>/objects/<sha[:2]>/<sha>``; every fetch adds a record
    ``bronze/<source>/fetches/<dataset>/<yyyy-mm-dd>/<fetched_at>-<sha[:16]>.json``
    with the (redacted) request, status, content type, fetch time and hash.
    Both are written atomically and never modified. Returns the body's path.
    """
    import json

    digest = hashlib.sha256(fetched.body).hexdigest()
    root = settings.bronze / fetched.source
    obj = root / "objects" / digest[:2] / digest
    if not obj.exists():
        _atomic_bytes(fetched.body, obj)
    stamp = fetched.fetched_at.strftime("%Y%m%dT%H%M%S%fZ")
    record = {
        "source": fetched.source,
        "dataset": dataset,
        "url": fetched.url,
        "params": fetched.params,
        "status": fetched.status,
        "content_type": fetched.content_type,
        "fetched_at": fetched.fetched_at.isoformat(),
        "attempts": fetched.attempts,
        "sha256": digest,
        "bytes": len(fetched.body),
        "object": str(obj.relative_to(settings.home)),
    }
    rec = root / "fetches" / dataset / fetched.fetched_at.strftime("%Y-%m-%d") / f"{stamp}-{digest[:16]}.json"
    _atomic_bytes(json.dumps(record, sort_keys=True, indent=1).encode(), rec)
    return obj


def read_fetch_log(settings: Settings, source: str | None = None) -> pd.DataFrame:
    """Every fetch record in bronze (optionally of one source), oldest first."""
    import json

    roots = [settings.bronze / source] if source else [p for p in settings.bronze.glob("*") if p.is_dir()]
    rows = [json.loads(p.read_text()) for r in roots for p in sorted((r / "fetches").rglob("*.json")) if not p.name.startswith(".")]
    return pd.DataFrame(rows)
