"""The Redis online store's layout and value codec: Feast 0.67's own key and value format.

Layout (``feast/infra/online_stores/redis.py``, ``entity_key_serialization_version=3``):

* key: the serialized entity key (``<I`` count 1, ``<I`` type STRING, ``<I`` len, the join
  key, ``<I`` type STRING, ``<I`` len, the value) followed by the project name;
* one hash per key, shared by every view of that entity; per feature the field
  ``mmh3_32("view:feature")`` (4 bytes, little endian) holds a serialized ``feast.types.Value``,
  and ``_ts:<view>`` the view's event time as a ``google.protobuf.Timestamp``; our writer adds
  ``_dg:<view>``, the digest of what it wrote (Feast ignores other fields);
* ``alpha:online:<project>``: a marker hash written after each complete materialize.

The Value and Timestamp messages are encoded and decoded here on the wire format (a tag byte,
then a fixed-width or varint payload) rather than with ``feast.protos``: importing those runs
``feast/__init__`` (3+ s), and the read path must answer a cold process in well under a second.
Only scalar types are used by our views (float64, float32, int64, bool, string).
"""

from __future__ import annotations

import struct

from etl.core.config import FEAST_PROJECT
from etl.core.errors import (
    OnlineStoreError,
)

#: Feast's ValueType.STRING: the type tag of our (string) join keys
_STRING = 2
STATE_PREFIX = "alpha:online_state:"
TS_SUFFIX, STALE_SUFFIX = "__ts", "__stale"
MARKET_KEY, MARKET = "market", "US"
_EPOCH_NS = None  # filled lazily (pandas)

# wire tags of feast.types.Value's scalar oneof members
_T_STRING, _T_INT32, _T_INT64, _T_DOUBLE, _T_FLOAT, _T_BOOL = 0x12, 0x18, 0x20, 0x29, 0x35, 0x38
_DTYPE_TAG = {"float64": _T_DOUBLE, "float32": _T_FLOAT, "int64": _T_INT64, "bool": _T_BOOL, "string": _T_STRING}


# ------------------------------------------------------------------ layout
def entity_key(join_key: str, value: str, project: str = FEAST_PROJECT) -> bytes:
    """Feast's Redis key of one entity (serialization version 3) + project."""
    k, v = join_key.encode("utf8"), value.encode("utf8")
    return struct.pack("<III", 1, _STRING, len(k)) + k + struct.pack("<II", _STRING, len(v)) + v + project.encode("utf8")


def field_key(view: str, feature: str) -> bytes:
    """Feast's hash field of one feature: murmur3_32 of ``view:feature``, 4 bytes little endian."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def ts_key(view: str) -> bytes:
    return f"_ts:{view}".encode()


def state_key(view: str, project: str = FEAST_PROJECT) -> str:
    """The per-view record of digests of versions before issue 16 (deleted by the writer now)."""
    return f"{STATE_PREFIX}{project}:{view}"


def digest_key(view: str) -> bytes:
    """The hash field beside ``_ts:<view>`` in each entity's hash holding the digest of what was
    written for that view: digest and data live and die together (a deleted or evicted key
    takes its digest with it, so the next materialize rewrites it)."""
    return f"_dg:{view}".encode()


def marker_key(project: str = FEAST_PROJECT) -> str:
    """A small hash written after every complete materialize: its absence with no entity key
    present means the store lost everything (a restart without persistence, a flush)."""
    return f"alpha:online:{project}"


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def encode_timestamp(us: int) -> bytes:
    """A ``google.protobuf.Timestamp`` of ``us`` microseconds since the epoch, as Feast writes it."""
    seconds, micros = divmod(int(us), 1_000_000)
    out = b""
    if seconds:
        out += b"\x08" + _varint(seconds)
    if micros:
        out += b"\x10" + _varint(micros * 1000)
    return out


def decode_timestamp(raw: bytes | None) -> int | None:
    """Microseconds since the epoch of a serialized Timestamp; None when absent or zero (Feast's 'no value')."""
    if not raw:
        return None
    seconds = nanos = 0
    i, n = 0, len(raw)
    while i < n:
        tag = raw[i]
        value, i = _read_varint(raw, i + 1)
        if tag == 0x08:
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif tag == 0x10:
            nanos = value
        else:
            raise OnlineStoreError(f"unexpected field (tag {tag:#x}) in a stored event timestamp {raw!r}")
    us = seconds * 1_000_000 + nanos // 1000
    return us or None


def decode_value(raw: bytes | None):
    """One serialized ``feast.types.Value`` (scalar) to a Python value; None for a missing value."""
    if not raw:
        return None
    tag = raw[0]
    if tag == _T_DOUBLE:
        return struct.unpack_from("<d", raw, 1)[0]
    if tag == _T_FLOAT:
        return struct.unpack_from("<f", raw, 1)[0]
    if tag in (_T_INT64, _T_INT32):
        value = _read_varint(raw, 1)[0]
        return value - (1 << 64) if value >= 1 << 63 else value
    if tag == _T_BOOL:
        return bool(raw[1])
    if tag == _T_STRING:
        length, i = _read_varint(raw, 1)
        return raw[i:i + length].decode("utf8")
    raise OnlineStoreError(f"unsupported value encoding (wire tag {tag:#x}) in the online store: {raw[:16]!r}")


def encode_column(values, dtype: str) -> list[bytes]:
    """Serialized ``feast.types.Value`` per element, exactly as Feast's materialize writes them
    (a missing value, NaN included, is an empty Value: ``b""``)."""
    import numpy as np
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values)
    missing = series.isna().to_numpy()
    n = len(series)
    if dtype in ("float64", "float32"):
        width, fmt = (8, "<f8") if dtype == "float64" else (4, "<f4")
        arr = np.empty(n, dtype=[("t", "u1"), ("v", fmt)])
        arr["t"] = _DTYPE_TAG[dtype]
        arr["v"] = series.to_numpy(dtype="float64", na_value=np.nan)
        out = arr.view(f"V{1 + width}").tolist()
    elif dtype == "int64":
        out = [b"" if m else b"\x20" + _varint(int(v)) for v, m in zip(series.tolist(), missing, strict=False)]
    elif dtype == "bool":
        out = [b"" if m else (b"\x38\x01" if v else b"\x38\x00") for v, m in zip(series.tolist(), missing, strict=False)]
    elif dtype == "string":
        out = []
        for v, m in zip(series.tolist(), missing, strict=False):
            if m:
                out.append(b"")
            else:
                data = str(v).encode("utf8")
                out.append(b"\x12" + _varint(len(data)) + data)
    else:
        raise OnlineStoreError(f"dtype {dtype!r} cannot be written to the online store")
    if missing.any():
        for i in np.flatnonzero(missing):
            out[i] = b""
    return out

