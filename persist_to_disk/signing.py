"""Signatures of entries in a shared object store: file modes mean nothing in a bucket.

An object in the store is the entry file byte for byte, followed by a trailer::

    "PTDS" | HMAC-SHA256 (32 bytes)

The HMAC, keyed with the team secret from ``PTD_SECRET_KEY``, covers the entry's key in the
store and its header region, which holds the payload's xxh3-128 checksum: the payload
itself is checked against that checksum before it is unpickled, so one HMAC over a few
hundred bytes vouches for an entry of any size. An entry moved to another key, signed
with another secret, or unsigned is refused before a byte of it reaches ``pickle``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from .errors import UntrustedCacheError
from .entryfile import ALIGN, FIXED, PREFIX, CorruptEntry, header_region

__all__ = ["SECRET_ENV", "entry_length", "secret", "sign", "unsigned", "verify"]

SECRET_ENV = "PTD_SECRET_KEY"
TRAILER_MAGIC = b"PTDS"
TRAILER_SIZE = len(TRAILER_MAGIC) + hashlib.sha256().digest_size
_CONTEXT = b"persist_to_disk entry signature 1\x00"


def secret() -> bytes | None:
    """The team secret, or None when ``PTD_SECRET_KEY`` is unset or empty."""
    value = os.environ.get(SECRET_ENV)
    return value.encode("utf-8") if value else None


def entry_length(blob: bytes | memoryview) -> int:
    """The length of the entry at the start of ``blob`` (prefix, header, padding, payload)."""
    region = header_region(blob)
    try:
        payload_size = FIXED.unpack_from(region)[0]
    except struct.error:
        raise CorruptEntry("header shorter than its fixed block") from None
    head = PREFIX.size + len(region)
    return head + (-head) % ALIGN + payload_size


def _mac(key: bytes, name: str, blob: bytes | memoryview) -> bytes:
    message = _CONTEXT + name.encode("utf-8") + b"\x00" + header_region(blob)
    return hmac.new(key, message, hashlib.sha256).digest()


def sign(entry: bytes, name: str, key: bytes) -> bytes:
    """The object to upload for an entry stored under ``name``: the entry and its trailer."""
    return entry + TRAILER_MAGIC + _mac(key, name, entry)


def unsigned(entry: bytes) -> bytes:
    """The object to upload when no secret is set (readable only where ``trust_shared`` is on)."""
    return entry


def verify(head: bytes, trailer: bytes, name: str, url: str, *, key: bytes | None, trust_shared: bool) -> None:
    """Check the signature of a downloaded object; UntrustedCacheError saying why and what to do.

    ``head``: the object's first bytes, at least its prefix and header region (the payload is not
    needed: the header holds its checksum); ``trailer``: what follows the entry (``entry_length``).
    CorruptEntry when the object is not an entry at all (a miss, as for a local file).
    """
    if trust_shared:
        return
    if len(trailer) == 0:
        why = "it is not signed"
    elif len(trailer) != TRAILER_SIZE or trailer[: len(TRAILER_MAGIC)] != TRAILER_MAGIC:
        why = "its signature trailer is malformed"
    elif key is None:
        why = f"it is signed, but {SECRET_ENV} is not set here to check the signature"
    elif not hmac.compare_digest(bytes(trailer[len(TRAILER_MAGIC) :]), _mac(key, name, head)):
        why = "its signature does not match this machine's secret (signed with another key, or altered)"
    else:
        return
    raise UntrustedCacheError(
        f"refusing to load {url}: {why}. Loading it would unpickle data anyone with write access to the "
        f"bucket may have written. Set {SECRET_ENV} to your team's shared secret on every machine (entries "
        "written without it, or with another, are recomputed once the secret is set: delete them with "
        "`f.cache.clear()`), or, only for a bucket where you trust every writer, set trust_shared = true",
        path=url,
    )
