"""Identifiers: time-ordered UUIDs, content digests and IRIs under one base.

Records made by capture get client-side UUIDv7 ids so that a retried send never
duplicates anything; data gets its identity from its content (or from an explicit
reference to the store holding it); everything is an IRI under ``PROVML_BASE_IRI``.

Imports: standard library only (capture imports this).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from urllib.parse import quote

DEFAULT_BASE_IRI = "https://provml.local/"
#: Files larger than this are digested from a sample (recorded as ``provml:sampled``).
SAMPLE_THRESHOLD = 256 * 1024 * 1024
_SAMPLE_CHUNK = 4 * 1024 * 1024
_SAMPLES = 16
#: SHA-256: the digest other tools (OCI, RO-Crate, Git's SHA-256 mode) name data by, and
#: with the SHA extensions of current x86 and Arm cores 2-3x faster here than BLAKE2b.
DIGEST_ALGORITHM = "sha256"
_READ_SIZE = 1 << 20

_last_ms = 0
_seq = 0


def uuid7() -> uuid.UUID:
    """A UUID version 7 (RFC 9562): 48-bit Unix milliseconds, then random bits.

    Monotonic within the process: ids made in the same millisecond get increasing
    12-bit counters, so sorting ids sorts records by creation.
    """
    global _last_ms, _seq
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        ms = _last_ms
        _seq += 1
        if _seq > 0xFFF:  # counter exhausted: borrow the next millisecond
            ms += 1
            _seq = 0
    else:
        _seq = 0
    _last_ms = ms
    rand = int.from_bytes(secrets.token_bytes(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (_seq << 64) | (0b10 << 62) | rand
    return uuid.UUID(int=value)


def base_iri() -> str:
    """The configured base IRI (``PROVML_BASE_IRI``), always ending in ``/`` or ``#``."""
    base = os.environ.get("PROVML_BASE_IRI", DEFAULT_BASE_IRI)
    return base if base.endswith(("/", "#")) else base + "/"


#: A path segment that quoting leaves as it is (RFC 3986 unreserved characters).
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def _segment(part: str | int) -> str:
    text = str(part)
    # Most segments (names, digests, UUIDs) need no quoting; quote() costs ~1 µs each.
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe="-._~")


def iri(*parts: str | int, base: str | None = None) -> str:
    """``iri("model", "seismic-unet", "v", 3)`` → ``<base>model/seismic-unet/v/3``."""
    return (base or base_iri()) + "/".join(_segment(p) for p in parts)


def new_iri(kind: str, base: str | None = None) -> str:
    """A fresh IRI for a new activity, bundle or relation: ``<base><kind>/<uuid7>``."""
    return iri(kind, str(uuid7()), base=base)


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """``"sha256:<hex>"`` of the bytes."""
    return f"{DIGEST_ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def digest_file(path: str | os.PathLike[str], size: int | None = None) -> tuple[str, bool]:
    """The digest of a file's content and whether it was sampled.

    Files above :data:`SAMPLE_THRESHOLD` are digested from their size and evenly spaced
    chunks, so a multi-terabyte cube costs a few reads; the caller records the sampling.
    ``size``, when the caller has just stat'ed the file, saves a second ``stat``.
    """
    with open(path, "rb", buffering=0) as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        h = hashlib.sha256()
        if size <= SAMPLE_THRESHOLD:
            buffer = bytearray(min(max(size, 1), _READ_SIZE))
            view = memoryview(buffer)
            while n := f.readinto(buffer):
                h.update(view[:n])
            return f"{DIGEST_ALGORITHM}:{h.hexdigest()}", False
        h.update(size.to_bytes(8, "big"))
        step = (size - _SAMPLE_CHUNK) // (_SAMPLES - 1)
        for i in range(_SAMPLES):
            f.seek(i * step)
            h.update(f.read(_SAMPLE_CHUNK))
    return f"{DIGEST_ALGORITHM}-sampled:{h.hexdigest()}", True


def digest_directory(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """The digest of a directory tree: relative paths and file digests, in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    sampled = False
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        file_digest, was_sampled = digest_file(file)
        sampled |= was_sampled
        h.update(file.relative_to(root).as_posix().encode() + b"\0" + file_digest.encode() + b"\n")
    return f"{DIGEST_ALGORITHM}{'-sampled' if sampled else ''}:{h.hexdigest()}", sampled


def data_iri(digest: str, base: str | None = None) -> str:
    """The IRI of data identified by content: the same bytes give the same entity anywhere."""
    return iri("data", digest.replace(":", "-"), base=base)


def reference_iri(data_store: str, reference: str, base: str | None = None) -> str:
    """The IRI of data known by reference (a URI inside a named data store), as ProvLake does."""
    key = hashlib.blake2b(f"{data_store}\n{reference}".encode(), digest_size=16).hexdigest()
    return iri("data", f"ref-{key}", base=base)
