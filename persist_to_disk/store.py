"""The store: one file per entry, written atomically, checked on every read.

An entry file is::

    "PTDE" | format u16 | flags u16 | header length u32 | header xxh32 u32   (16 bytes)
    header: UTF-8 JSON (arguments in readable form, times, sizes, checksum, code version)
    zero padding to a 64-byte boundary
    payload: the pickle (protocol 5), then each out-of-band buffer, each 64-byte aligned

The header can be read without touching the payload, so listing 50,000 entries
never unpickles a value. The payload's xxh3-128 checksum is verified before
unpickling: a torn, truncated or bit-flipped file is a miss, never a wrong value.
Large numpy arrays travel as out-of-band pickle buffers: written straight from
the array's memory and, on load, the array's memory is the single buffer the file
is read into (no second copy).

Writers write a temp file in the entry's folder and ``os.replace`` it into place,
so readers see the old entry or the new one, never a mix. The decorator, the cell
magic, the browser and the CLI all go through this module.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import struct
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from .errors import CacheWarning

logger = logging.getLogger("persist_to_disk")

MAGIC = b"PTDE"
FORMAT_VERSION = 1
PICKLE_PROTOCOL = 5
ALIGN = 64
ENTRY_SUFFIX = ".ptd"
TMP_SUFFIX = ".tmp"
_PREFIX = struct.Struct("<4sHHII")
_HEADER_PEEK = 8192
_TOUCH_AFTER = 60.0  # seconds: how stale "last read" (the file's mtime) may get
_HOST = socket.gethostname().replace(".", "_")


class _Missing:
    """The sentinel for "not cached": functions really do return None."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ENOVAL"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ENOVAL"


ENOVAL = _Missing()


class CorruptEntry(Exception):
    """An entry file failed a check; it is treated as a miss."""


@dataclass
class Entry:
    """A loaded entry: the value and its header."""

    value: Any
    header: dict[str, Any]


@dataclass
class EntryInfo:
    """What a listing knows of an entry without loading its value."""

    key: str  # path relative to the store root, with the .ptd suffix
    path: Path
    size: int
    last_read: float  # the file's mtime: set when written, refreshed on reads
    header: dict[str, Any] | None = None
    error: str | None = None  # why the header could not be read (corrupt, foreign, vanished)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.path.name[: -len(ENTRY_SUFFIX)]


def _pad(n: int) -> int:
    return (-n) % ALIGN


def encode(value: Any, header: dict[str, Any]) -> tuple[bytes, list[memoryview | bytes], dict[str, Any]]:
    """Pickle a value; return (prefix+header+padding, payload chunks, the final header)."""
    buffers: list[pickle.PickleBuffer] = []
    main = pickle.dumps(value, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append)
    chunks: list[memoryview | bytes] = [main]
    layout: list[list[int]] = []
    offset = len(main)
    hasher = xxhash.xxh3_128()
    hasher.update(main)
    for buf in buffers:
        raw = buf.raw()
        pad = _pad(offset)
        if pad:
            chunks.append(bytes(pad))
            hasher.update(bytes(pad))
            offset += pad
        chunks.append(raw)
        hasher.update(raw)
        layout.append([offset, raw.nbytes])
        offset += raw.nbytes
    header = dict(header)
    header.update(
        format=FORMAT_VERSION,
        pickle_size=len(main),
        buffers=layout,
        payload_size=offset,
        checksum=hasher.hexdigest(),
    )
    header_bytes = json.dumps(header, separators=(",", ":"), default=str).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(header_bytes), xxhash.xxh32_intdigest(header_bytes))
    head = prefix + header_bytes
    return head + bytes(_pad(len(head))), chunks, header


def _parse_prefix(blob: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(header length, header checksum) from the first 16 bytes; raise CorruptEntry if not ours."""
    if len(blob) < _PREFIX.size:
        raise CorruptEntry("file shorter than an entry prefix")
    magic, version, _flags, hlen, hsum = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise CorruptEntry("not a persist_to_disk entry (bad magic)")
    if version > FORMAT_VERSION:
        raise CorruptEntry(f"entry written by a newer format ({version} > {FORMAT_VERSION}); upgrade to read it")
    return hlen, hsum


def _parse_header(blob: bytes | bytearray | memoryview, hlen: int, hsum: int) -> dict[str, Any]:
    start = _PREFIX.size
    raw = bytes(blob[start : start + hlen])
    if len(raw) != hlen or xxhash.xxh32_intdigest(raw) != hsum:
        raise CorruptEntry("header checksum mismatch")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise CorruptEntry(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptEntry("header is not a JSON object")
    return header


def decode(blob: bytearray) -> Entry:
    """Check and unpickle a whole entry read into one writable buffer."""
    hlen, hsum = _parse_prefix(blob)
    header = _parse_header(blob, hlen, hsum)
    start = _PREFIX.size + hlen
    start += _pad(start)
    try:
        size, pickle_size = int(header["payload_size"]), int(header["pickle_size"])
        layout = [(int(o), int(n)) for o, n in header["buffers"]]
        checksum = header["checksum"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntry(f"header lacks a field: {exc}") from None
    if len(blob) != start + size:
        raise CorruptEntry(f"payload is {len(blob) - start} bytes, header says {size} (truncated or torn)")
    view = memoryview(blob)[start:]
    if xxhash.xxh3_128_hexdigest(view) != checksum:
        raise CorruptEntry("payload checksum mismatch")
    value = pickle.loads(view[:pickle_size], buffers=[view[o : o + n] for o, n in layout])
    return Entry(value, header)


def _read_all(path: str) -> tuple[bytearray, os.stat_result]:
    with open(path, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        blob = bytearray(st.st_size)
        view = memoryview(blob)
        got = 0
        while got < st.st_size:
            n = fh.readinto(view[got:])
            if not n:
                break
            got += n
        if got != st.st_size:
            del view
            del blob[got:]
    return blob, st


def read_header_file(path: str | os.PathLike) -> dict[str, Any]:
    """The header of an entry file, reading only its first few kilobytes."""
    with open(path, "rb") as fh:
        blob = fh.read(_HEADER_PEEK)
        hlen, hsum = _parse_prefix(blob)
        if _PREFIX.size + hlen > len(blob):
            blob += fh.read(_PREFIX.size + hlen - len(blob))
    return _parse_header(blob, hlen, hsum)


class LocalStore:
    """Entries under one folder on a local or network file system.

    Keys are '/'-separated paths relative to the root (``MNIST/20/17/<digest>.ptd``).
    Nothing outside this class touches entry files, so a remote backend is an
    addition with the same methods.
    """

    def __init__(self, root: str | os.PathLike, *, fsync: bool = False) -> None:
        self.root = os.fspath(root)
        self.fsync = fsync
        self._reported: set[str] = set()

    def path_of(self, key: str) -> str:
        return os.path.join(self.root, key)

    # -- reads -------------------------------------------------------------------------------------
    def load(self, key: str) -> Entry | _Missing:
        """The entry at key, or ENOVAL when absent or unreadable (a bad entry warns once)."""
        path = self.path_of(key)
        try:
            blob, st = _read_all(path)
        except FileNotFoundError:
            return ENOVAL
        except OSError as exc:
            self._report(path, f"cannot be read ({exc})")
            return ENOVAL
        try:
            entry = decode(blob)
        except CorruptEntry as exc:
            self._report(path, str(exc))
            return ENOVAL
        except Exception as exc:  # the pickle itself fails: a class renamed, a module gone
            self._report(path, f"cannot be unpickled ({type(exc).__name__}: {exc})")
            return ENOVAL
        if time.time() - st.st_mtime > _TOUCH_AFTER:
            try:
                os.utime(path)
            except OSError:
                pass
        return entry

    def get(self, key: str) -> Any:
        """The value at key, or ENOVAL."""
        entry = self.load(key)
        return entry if entry is ENOVAL else entry.value  # type: ignore[union-attr]

    def contains(self, key: str) -> bool:
        """Whether a readable entry header exists at key (the value is not loaded)."""
        try:
            read_header_file(self.path_of(key))
            return True
        except (OSError, CorruptEntry):
            return False

    def read_header(self, key: str) -> dict[str, Any] | None:
        try:
            return read_header_file(self.path_of(key))
        except (OSError, CorruptEntry):
            return None

    def _report(self, path: str, why: str) -> None:
        if path in self._reported:
            return
        self._reported.add(path)
        message = f"persist_to_disk: ignoring cache entry {path}: {why}; it will be recomputed"
        logger.warning(message)
        warnings.warn(message, CacheWarning, stacklevel=4)

    # -- writes ------------------------------------------------------------------------------------
    def put(self, key: str, value: Any, header: dict[str, Any]) -> dict[str, Any]:
        """Write atomically; return the header written. Pickling errors propagate."""
        head, chunks, header = encode(value, header)
        path = self.path_of(key)
        folder = os.path.dirname(path)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{_HOST}-{os.getpid()}-{os.urandom(4).hex()}{TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        try:
            with open(fd, "wb", closefd=True) as fh:
                fh.write(head)
                for chunk in chunks:
                    fh.write(chunk)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if self.fsync:
            _fsync_dir(folder)
        self._reported.discard(path)
        return header

    def delete(self, key: str) -> int:
        """Remove an entry; return the bytes freed (0 if it was already gone)."""
        path = self.path_of(key)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    # -- listing ---------------------------------------------------------------------------------------
    def iter_entries(self, prefix: str = "", *, headers: bool = True) -> Iterator[EntryInfo]:
        """Every entry under prefix (a folder key), headers read but values not loaded."""
        top = os.path.join(self.root, prefix) if prefix else self.root
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or not name.endswith(ENTRY_SUFFIX):
                    continue
                path = os.path.join(folder, name)
                yield self.info(os.path.relpath(path, self.root).replace(os.sep, "/"), headers=headers)

    def info(self, key: str, *, headers: bool = True) -> EntryInfo:
        path = self.path_of(key)
        try:
            st = os.stat(path)
        except OSError:
            return EntryInfo(key, Path(path), 0, 0.0, None, "vanished")
        info = EntryInfo(key, Path(path), st.st_size, st.st_mtime)
        if headers:
            try:
                info.header = read_header_file(path)
            except FileNotFoundError:
                info.error = "vanished"
            except (OSError, CorruptEntry) as exc:
                info.error = f"corrupt: {exc}"
        return info


def _fsync_dir(folder: str) -> None:
    if sys.platform.startswith("win"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
