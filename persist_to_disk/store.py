"""The store: one file per entry, written atomically, checked on every read.

An entry file is::

    "PTDE" | format u16 | flags u16 | header length u32 | header xxh32 u32   (16 bytes)
    header (its length and xxh32 in the prefix):
        fixed block: payload size u64 | pickle size u64 | payload xxh3-128 (16 bytes) | buffer count u32
                     | file name length u16, then the file name (UTF-8), then (offset u64, size u64) per buffer
        UTF-8 JSON (arguments in readable form, times, sizes, checksum, code version, file name)
    zero padding to a 64-byte boundary
    payload: the pickle (protocol 5), then each out-of-band buffer, each 64-byte aligned

The header can be read without touching the payload, so listing 50,000 entries
never unpickles a value. A load reads what it needs from the fixed block and parses
the JSON only if the header is asked for.
The payload's xxh3-128 checksum is verified before unpickling: a torn, truncated
or bit-flipped file is a miss, never a wrong value.
Large numpy arrays travel as out-of-band pickle buffers: written straight from
the array's memory and, on load, the array's memory is the single buffer the file
is read into (no second copy).

Writers write a temp file in the entry's folder and ``os.replace`` it into place,
so readers see the old entry or the new one, never a mix. The decorator, the cell
magic, the browser and the CLI all go through this module.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import json.decoder
import json.scanner
import logging
import mmap
import os
import pickle
import stat
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from . import pickling, trust
from .errors import CacheWarning, UntrustedCacheError
from .layout import ENTRY_SUFFIX

logger = logging.getLogger("persist_to_disk")

MAGIC = b"PTDE"
FORMAT_VERSION = 1
PICKLE_PROTOCOL = 5
ALIGN = 64
TMP_SUFFIX = ".tmp"
_PREFIX = struct.Struct("<4sHHII")
_FIXED = struct.Struct("<QQ16sIH")  # payload size, pickle size, payload xxh3-128, buffer count, name length
_SPAN = struct.Struct("<QQ")  # one out-of-band buffer's (offset, size) in the payload
_HEAD = struct.Struct("<" + _PREFIX.format[1:] + _FIXED.format[1:])  # the prefix and the fixed block, read at once
_HEADER_PEEK = 8192
_TOUCH_AFTER = 60.0  # seconds: how stale "last read" (the file's mtime) may get
_HOST = (os.uname().nodename if hasattr(os, "uname") else __import__("socket").gethostname()).replace(".", "_")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
# an entry is opened without following a link and without blocking (a FIFO named like an entry
# would block the open for ever); what is not a regular file is then refused (fstat after open)
_O_READ = os.O_RDONLY | _O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_STALE_TMP_AGE = 86400.0  # seconds: a temp file not touched for a day belongs to a dead writer
_SWEEP_EVERY = 600.0  # seconds: how often one process looks for stale temp files in one folder
_swept: dict[str, float] = {}  # folder -> time.monotonic() of its last sweep by this process

# Test-only fault injection, used by tests/reliability: PTD_TEST_FAULT=<point>:<action> makes a writer
# pause (to be SIGKILLed), kill itself or fail with ENOSPC at a named point of put(). Unset in normal use;
# read once at import, so the write path pays one `is None` test.
_FAULT = os.environ.get("PTD_TEST_FAULT") or None


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


class Entry:
    """A loaded entry: the value and its header.

    The header JSON is parsed on first access: a hit returns only the value, and the
    parse was a third of its decoding time.
    """

    __slots__ = ("_header", "_json", "value")

    def __init__(self, value: Any, header: dict[str, Any] | None = None, header_json: bytes = b"") -> None:
        self.value = value
        self._header = header
        self._json = header_json  # checked against the header checksum already; parsed when asked for

    @property
    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = _parse_json(self._json)
        return self._header

    def __repr__(self) -> str:
        return f"Entry(value={self.value!r}, header={self.header!r})"


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


@dataclass
class Payload:
    """A pickled value as written after the header: the pickle, then its out-of-band buffers, each
    64-byte aligned (``chunks``, in file order; ``layout``: each buffer's [offset, size])."""

    chunks: list[memoryview | bytes]
    layout: list[list[int]]
    pickle_size: int
    size: int

    def checksum(self) -> bytes:
        hasher = xxhash.xxh3_128()
        for chunk in self.chunks:
            hasher.update(chunk)
        return hasher.digest()


def pickle_payload(value: Any, dumps: Callable[..., bytes] = pickle.dumps) -> Payload:
    """``dumps``: ``pickle.dumps`` or a stand-in taking ``protocol`` and ``buffer_callback``
    (the cell magic pickles notebook functions by value); what it writes loads with ``pickle``."""
    buffers: list[pickle.PickleBuffer] = []
    main = dumps(value, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append)
    return _payload_of(main, buffers)


def _payload_of(main: bytes, buffers: list[pickle.PickleBuffer]) -> Payload:
    """The pickle ``main`` and its out-of-band buffers laid out as written after the head."""
    chunks: list[memoryview | bytes] = [main]
    layout: list[list[int]] = []
    offset = len(main)
    for buf in buffers:
        raw = buf.raw()
        pad = _pad(offset)
        if pad:
            chunks.append(bytes(pad))
            offset += pad
        chunks.append(raw)
        layout.append([offset, raw.nbytes])
        offset += raw.nbytes
    return Payload(chunks, layout, len(main), offset)


def make_head(
    payload: Payload, header: dict[str, Any], checksum: bytes, room: int | None = None
) -> tuple[bytes, dict[str, Any]]:
    """(prefix + header + padding, the final header). Its length does not depend on ``checksum``,
    so a writer can leave room for the head and write it once the payload is hashed; ``room``: make
    the head exactly that long (a multiple of ALIGN, at least the natural length) with spaces in the JSON."""
    header = dict(header)
    header.update(
        format=FORMAT_VERSION,
        pickle_size=payload.pickle_size,
        buffers=payload.layout,
        payload_size=payload.size,
        checksum=checksum.hex(),
    )
    header_bytes = json.dumps(header, separators=(",", ":"), default=str).encode("utf-8")
    # the fixed block repeats what a load needs, so a hit does not parse the JSON (empty name: none recorded)
    name = str(header.get("file", "")).encode("utf-8")
    fixed = _FIXED.pack(payload.size, payload.pickle_size, checksum, len(payload.layout), len(name)) + name
    spans = b"".join(_SPAN.pack(o, n) for o, n in payload.layout)
    if room is not None:  # JSON allows spaces after the opening brace
        spaces = room - _PREFIX.size - len(fixed) - len(spans) - len(header_bytes)
        if spaces < 0:
            raise ValueError(f"entry head needs {room - spaces} bytes, room is {room}")
        header_bytes = b"{" + b" " * spaces + header_bytes[1:]
    region = fixed + spans + header_bytes
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(region), xxhash.xxh32_intdigest(region))
    head = prefix + region
    return head + bytes(_pad(len(head))), header


def _parse_prefix(blob: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(header length, header checksum) from the first 16 bytes; raise CorruptEntry if not ours."""
    if len(blob) < _PREFIX.size:
        raise CorruptEntry("file shorter than an entry prefix")
    magic, version, _flags, hlen, hsum = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise CorruptEntry("not a persist_to_disk entry (bad magic)")
    if version > FORMAT_VERSION:
        raise CorruptEntry(f"entry written by a newer format ({version} > {FORMAT_VERSION}); upgrade to read it")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"unknown entry format {version}")
    return hlen, hsum


def _header_region(blob: bytes | bytearray | memoryview) -> bytes:
    """The header bytes after the prefix, their checksum verified."""
    hlen, hsum = _parse_prefix(blob)
    raw = bytes(blob[_PREFIX.size : _PREFIX.size + hlen])
    if len(raw) != hlen or xxhash.xxh32_intdigest(raw) != hsum:
        raise CorruptEntry("header checksum mismatch")
    return raw


def _json_offset(raw: bytes) -> int:
    """Where the JSON starts in a header region: after the fixed block, the file name and the buffer spans."""
    try:
        _size, _pickle_size, _checksum, nbuf, nlen = _FIXED.unpack_from(raw)
    except struct.error:
        raise CorruptEntry("header shorter than its fixed block") from None
    end = _FIXED.size + nlen + nbuf * _SPAN.size
    if end > len(raw):
        raise CorruptEntry("header shorter than its fixed block")
    return end


_scan_json = json.scanner.make_scanner(json.decoder.JSONDecoder())


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        header, end = _scan_json(text, 0)  # json.loads without its type checks and whitespace regexes
        if end != len(text):
            raise ValueError(f"extra data at {end}")
    except StopIteration as exc:
        raise CorruptEntry(f"header is not JSON: no value at {exc.value}") from None
    except ValueError as exc:
        raise CorruptEntry(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptEntry("header is not a JSON object")
    return header


def _parse_header(blob: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The whole header dict of an entry."""
    raw = _header_region(blob)
    return _parse_json(raw[_json_offset(raw) :])


def decode(blob: bytes | bytearray | mmap.mmap, name: str | None = None) -> Entry:
    """Check and unpickle a whole entry read into one buffer (writable when it holds out-of-band buffers).

    ``name``: the file name it was read from; an entry written under another name
    (a file moved or copied by hand) is refused before its payload is touched.
    Every hit runs this: the prefix and the fixed block are unpacked in one step, and
    anything unusual (short, foreign, newer format) is explained by the slow checks.
    """
    try:
        magic, version, _flags, hlen, hsum, size, pickle_size, checksum, nbuf, nlen = _HEAD.unpack_from(blob)
    except struct.error:
        magic = b""
    if magic != MAGIC or version != FORMAT_VERSION:
        _header_region(blob)  # raises CorruptEntry saying what is wrong
        raise CorruptEntry("header shorter than its fixed block")
    region_end = _PREFIX.size + hlen
    raw = blob[_PREFIX.size : region_end]
    if len(raw) != hlen or xxhash.xxh32_intdigest(raw) != hsum:
        raise CorruptEntry("header checksum mismatch")
    at = _HEAD.size + nlen
    spans_end = at + nbuf * _SPAN.size
    if spans_end > region_end:
        raise CorruptEntry("header shorter than its fixed block")
    if name is not None and nlen:
        written_as = blob[_HEAD.size : at]
        if written_as != name.encode("utf-8"):
            raise CorruptEntry(
                f"it holds the entry written as {bytes(written_as).decode('utf-8', 'replace')!r}, "
                "not this one (moved or copied?)"
            )
    start = region_end + _pad(region_end)
    if len(blob) != start + size:
        raise CorruptEntry(f"payload is {len(blob) - start} bytes, header says {size} (truncated or torn)")
    if nbuf and isinstance(blob, bytes):
        blob = bytearray(blob)  # out-of-band buffers become arrays, which must be writable
    view = memoryview(blob)[start:]
    if xxhash.xxh3_128_digest(view) != checksum:
        raise CorruptEntry("payload checksum mismatch")
    if nbuf:
        buffers = [view[o : o + n] for o, n in _SPAN.iter_unpack(blob[at:spans_end])]
        value = pickle.loads(view[:pickle_size], buffers=buffers)
    else:
        value = pickle.loads(view[:pickle_size])
    return Entry(value, header_json=bytes(blob[spans_end:region_end]))


_SMALL_READ = 1 << 16  # entries up to this size are read with one os.read (no file object, no zeroed buffer)
_MMAP_MIN = 1 << 20  # entries from this size are memory-mapped (POSIX; Windows cannot replace a mapped file)
_mmap: Any = mmap if os.name == "posix" else None
_UTIME_FD = os.utime in os.supports_fd


def _open_entry(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    """An entry file opened for reading, and its fstat; CorruptEntry if it is not a regular file."""
    fd = os.open(path, _O_READ)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptEntry("it is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_all(
    path: str, check: Any = None, touch: bool = False
) -> tuple[bytes | bytearray | mmap.mmap, os.stat_result]:
    """The whole file; ``touch``: refresh its mtime (last read) if stale or stamped in the future."""
    fd = os.open(path, _O_READ)  # (_open_entry inlined: every hit runs this)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptEntry("it is not a regular file")
        if check is not None:  # before reading a byte: an untrusted file is not even read
            check(path, st)
        if touch and not -_TOUCH_AFTER <= time.time() - st.st_mtime <= _TOUCH_AFTER:
            with contextlib.suppress(OSError):  # a read-only cache is read all the same
                os.utime(fd if _UTIME_FD else path)  # through the open file: no second path lookup
        size = st.st_size
        if size <= _SMALL_READ:
            data = os.read(fd, size)
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    break
                data += more
            return data, st  # read-only bytes: decode copies them only if arrays need writable memory
        if size >= _MMAP_MIN and _mmap is not None:
            # a large entry is mapped, not copied: its arrays are pages of the page cache (copy-on-write,
            # so writable and never written back). Safe because entry files are never changed in place:
            # a new entry is a new file renamed over the old one, and the old inode lives while mapped.
            with contextlib.suppress(OSError, ValueError):  # a file system that cannot map: read it
                return _mmap.mmap(fd, size, flags=_mmap.MAP_PRIVATE, prot=_mmap.PROT_READ | _mmap.PROT_WRITE), st
        blob = bytearray(size)
        view = memoryview(blob)
        got = 0
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            while got < size:
                n = fh.readinto(view[got:])
                if not n:
                    break
                got += n
        if got != size:
            del view
            del blob[got:]
        return blob, st
    finally:
        os.close(fd)


def read_header_file(path: str | os.PathLike) -> dict[str, Any]:
    """The header of an entry file, reading only its first few kilobytes."""
    fd, _st = _open_entry(path)
    with open(fd, "rb") as fh:
        blob = fh.read(_HEADER_PEEK)
        hlen = _parse_prefix(blob)[0]
        if _PREFIX.size + hlen > len(blob):
            blob += fh.read(_PREFIX.size + hlen - len(blob))
    return _parse_header(blob)


class LocalStore:
    """Entries under one folder on a local or network file system.

    Keys are '/'-separated paths relative to the root (``MNIST/20/17/<digest>.ptd``).
    Nothing outside this class touches entry files, so a remote backend is an
    addition with the same methods.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        fsync: bool = False,
        policy: trust.Policy | None = None,
        trust_root: str | os.PathLike | None = None,
    ) -> None:
        """``policy``: file modes and which files may be loaded (default: the current settings);
        ``trust_root``: the folder up to which a load checks that no other account can write (default: root)."""
        self.root = os.fspath(root)
        self._root_sep = os.path.join(self.root, "")  # path_of joins by concatenation: it runs on every hit
        self._root_is_abs = os.path.isabs(self.root)
        self.fsync = fsync
        self._policy = policy
        self.trust_root = os.path.normpath(os.path.abspath(os.fspath(trust_root if trust_root is not None else root)))
        self._reported: set[str] = set()
        # path -> (inode, mtime) of an entry file that failed to unpickle here: not tried (nor reported) again
        self._unloadable: dict[str, tuple[int, int]] = {}

    @property
    def policy(self) -> trust.Policy:
        return self._policy if self._policy is not None else trust.current_policy()

    def _check_trust(self, path: str, st: os.stat_result) -> None:
        if not self._root_is_abs:  # (under an absolute root, path_of gives absolute paths)
            path = os.path.abspath(path)
        trust.check_entry(path, st, self.trust_root, self.policy)

    def path_of(self, key: str) -> str:
        """``os.path.join(root, key)`` for a key relative to the root, as every key is."""
        return self._root_sep + key

    # -- reads -------------------------------------------------------------------------------------
    def load(self, key: str) -> Entry | _Missing:
        """The entry at key, or ENOVAL when absent or unreadable (a bad entry warns once)."""
        path = self.path_of(key)
        try:
            blob, st = _read_all(path, self._check_trust, touch=True)
        except (FileNotFoundError, NotADirectoryError):  # not there, or a file where a folder should be
            return ENOVAL
        except UntrustedCacheError:
            raise
        except OSError as exc:
            self._report(path, f"cannot be read ({exc})")
            return ENOVAL
        except CorruptEntry as exc:
            self._report(path, str(exc))
            return ENOVAL
        if self._unloadable and self._unloadable.get(path) == (st.st_ino, st.st_mtime_ns):
            return ENOVAL  # this very file failed to unpickle here before (and was reported)
        try:
            entry = decode(blob, key.rpartition("/")[2])
        except CorruptEntry as exc:
            self._report(path, str(exc))
            return ENOVAL
        except Exception as exc:  # the pickle itself fails: a class renamed, a module gone
            self._unloadable[path] = (st.st_ino, st.st_mtime_ns)
            self._report(path, f"cannot be unpickled ({type(exc).__name__}: {exc})")
            return ENOVAL
        return entry

    def get(self, key: str) -> Any:
        """The value at key, or ENOVAL."""
        entry = self.load(key)
        return entry if entry is ENOVAL else entry.value  # type: ignore[union-attr]

    def contains(self, key: str) -> bool:
        """Whether a readable entry header exists at key (the value is not loaded)."""
        return self.read_header(key) is not None

    def read_header(self, key: str) -> dict[str, Any] | None:
        path = self.path_of(key)
        try:
            self._check_links(os.path.dirname(path))
            return read_header_file(path)
        except (OSError, CorruptEntry):
            return None

    def _check_links(self, folder: str) -> None:
        """UntrustedCacheError if a folder from ``folder`` up to the trust root is a symbolic link."""
        trust.check_no_links(os.path.normpath(os.path.abspath(folder)), self.trust_root)

    def _report(self, path: str, why: str) -> None:
        if path in self._reported:
            return
        self._reported.add(path)
        message = f"persist_to_disk: ignoring cache entry {path}: {why}; it will be recomputed"
        logger.warning(message)
        warnings.warn(message, CacheWarning, stacklevel=4)

    # -- writes ------------------------------------------------------------------------------------
    def put(
        self, key: str, value: Any, header: dict[str, Any], *, dumps: Callable[..., bytes] = pickle.dumps
    ) -> dict[str, Any]:
        """Write atomically; return the header written. Pickling errors propagate (``dumps``: see pickle_payload)."""
        header = {**header, "file": key.rpartition("/")[2]}
        path = self.path_of(key)
        checked = None  # a value is built in memory first only to be checked
        if self._unloadable.get(path) is not None:
            checked = pickle_payload(value, dumps)
            _check_round_trip(checked)  # the entry there did not unpickle: neither would this one
        folder = os.path.dirname(path)
        real = os.path.normpath(os.path.abspath(folder))
        policy = self.policy
        trust.make_folder(real, self.trust_root, policy)  # never through a symbolic link out of the cache
        self._sweep(folder)
        tmp = f"{folder}{os.sep}.{os.path.basename(path)}.{_temp_tag()}{TMP_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        for attempt in range(5):
            try:
                fd = os.open(tmp, flags, 0o600)
                break
            except (FileNotFoundError, NotADirectoryError):  # a delete just removed the emptied folder, or
                # a file is in the way (makedirs then raises the error that says so)
                if attempt == 4:
                    raise
                trust.make_folder(real, self.trust_root, policy, again=True)
        try:
            try:
                trust.set_file_mode(fd, policy)
                if checked is not None:
                    header = _write_entry(fd, tmp, checked, header)
                else:
                    header = _write_value(fd, tmp, value, header, dumps)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if _FAULT is not None:
                _fault("written", tmp)
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
        self._unloadable.pop(path, None)
        return header

    def _sweep(self, folder: str) -> None:
        """Remove dead writers' temp files from a folder we write to (each folder every few minutes)."""
        now = time.monotonic()
        last = _swept.get(folder)
        if last is not None and now - last < _SWEEP_EVERY:
            return
        if len(_swept) > 10_000:
            _swept.clear()
        _swept[folder] = now
        for tmp in stale_temp_files(folder):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
                logger.info("removed %s, left by a writer that died", tmp)

    def remove_stale_temps(self, prefix: str = "") -> list[str]:
        """Remove, under prefix, the temp files of writers that died mid-write; return their paths.

        A temp file goes when its writer ran on this host and its process is gone, or
        (another host's) when nobody touched it for a day. A live writer's is never touched.
        """
        top = os.path.join(self.root, prefix) if prefix else self.root
        removed: list[str] = []
        if not self._walkable(top):
            return removed
        for folder, _dirs, _files in os.walk(top):  # (os.walk does not descend into linked folders)
            for tmp in stale_temp_files(folder):
                try:
                    os.unlink(tmp)
                except OSError:
                    continue
                removed.append(tmp)
        return removed

    def delete(self, key: str) -> int:
        """Remove an entry; return the bytes freed (0 if it was already gone)."""
        path = self.path_of(key)
        self._check_links(os.path.dirname(path))  # unlink would follow a linked folder out of the cache
        try:
            size = os.lstat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    # -- listing ---------------------------------------------------------------------------------------
    def iter_entries(self, prefix: str = "", *, headers: bool = True) -> Iterator[EntryInfo]:
        """Every entry under prefix (a folder key), headers read but values not loaded."""
        top = os.path.join(self.root, prefix) if prefix else self.root
        if not self._walkable(top):
            return
        for folder, dirs, files in os.walk(top):  # (os.walk does not descend into linked folders)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(folder, self.root).replace(os.sep, "/")  # once per folder, not per file
            base = "" if rel == "." else rel + "/"
            for name in sorted(files):
                if name.startswith(".") or not name.endswith(ENTRY_SUFFIX):
                    continue
                yield self.info(base + name, headers=headers)

    def _walkable(self, top: str) -> bool:
        """Whether a tree walk may start at ``top``: not through a symbolic link (logged, then skipped)."""
        try:
            self._check_links(top)
        except UntrustedCacheError as exc:
            logger.warning("%s", exc)
            return False
        return True

    def info(self, key: str, *, headers: bool = True) -> EntryInfo:
        path = self.path_of(key)
        try:
            st = os.lstat(path)
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


def stale_temp_files(folder: str) -> list[str]:
    """Temp files of put() in folder whose writer is dead (see LocalStore.remove_stale_temps)."""
    try:
        scan = os.scandir(folder)
    except OSError:
        return []
    found = []
    now = time.time()
    with scan:
        for item in scan:
            if item.name.startswith(".") and item.name.endswith(TMP_SUFFIX) and _temp_is_stale(item, now):
                found.append(item.path)
    return found


def _temp_is_stale(item: os.DirEntry, now: float) -> bool:
    """``.<entry>.<host>-<pid>-<8 hex>.tmp``: stale if that pid is gone on this host, or untouched for a day."""
    writer = item.name[1 : -len(TMP_SUFFIX)].rpartition(".")[2]
    rest = writer.split("-")
    if len(rest) < 3 or len(rest[-1]) != 8 or not rest[-2].isdigit():
        return False  # not one of ours: leave it alone
    host, pid = "-".join(rest[:-2]), int(rest[-2])
    if host == _HOST and not sys.platform.startswith("win"):
        return pid != os.getpid() and not _pid_alive(pid)  # a live writer's file is never stale
    try:
        return now - item.stat(follow_symlinks=False).st_mtime > _STALE_TMP_AGE
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _fault(point: str, tmp: str) -> None:
    """Test-only (PTD_TEST_FAULT=<point>:<action>): pause, kill or fail with ENOSPC at a point of put().

    Points: ``opened`` (temp file created, empty), ``middle`` (half the bytes written),
    ``written`` (temp file complete and closed, just before the rename). When
    PTD_TEST_FAULT_READY names a file, the temp file's path is written there first.
    """
    where, _, action = (_FAULT or "").partition(":")
    if where != point:
        return
    ready = os.environ.get("PTD_TEST_FAULT_READY")
    if ready:
        with open(ready + ".part", "w", encoding="utf-8") as fh:
            fh.write(tmp)
        os.replace(ready + ".part", ready)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
    if action == "kill":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    if action == "pause":  # wait to be SIGKILLed by the test, never for ever
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(75)


class UnloadableValue(Exception):
    """``put`` refused a value: the entry at its key failed to unpickle, and so does this value."""


def _check_round_trip(payload: Payload) -> None:
    """Unpickle a payload just made; UnloadableValue if that fails (run only where an entry failed before)."""
    buffers = [chunk for chunk in payload.chunks[1:] if isinstance(chunk, memoryview)]  # (padding is bytes)
    try:
        pickle.loads(payload.chunks[0], buffers=buffers)
    except Exception as exc:
        raise UnloadableValue(f"it pickles but cannot be unpickled ({type(exc).__name__}: {exc})") from exc


_STREAM_MIN = 1 << 20  # a pickle growing past this size is streamed to the file instead of built in memory
_STREAM_SPARE = 4096  # head room left for the out-of-band buffers a streamed pickle may still bring


def _write_value(fd: int, tmp: str, value: Any, header: dict[str, Any], dumps: Callable[..., bytes]) -> dict[str, Any]:
    """Pickle value into the new temp file; return the final header.

    A pickle that stays small is built in memory and written by ``_write_entry``. One that grows
    past _STREAM_MIN (a large in-band value: a torch tensor, a big dict, bytes) goes to the file
    as the pickler makes it, after room left for the head, so memory never holds a second copy
    of it; its out-of-band buffers follow, and the head, checksum included, goes in last. A
    stand-in ``dumps`` (the cell magic's) returns bytes, so its values are always built in memory.
    Plain torch tensors go out of band like arrays (see ``pickling``).
    """
    if dumps is not pickle.dumps:
        return _write_entry(fd, tmp, pickle_payload(value, dumps), header)
    spool = _Spool(fd, tmp, header)
    buffers: list[pickle.PickleBuffer] = []
    pickler = pickle.Pickler(spool, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append)
    pickler.dispatch_table = pickling.dispatch_table()  # torch tensors out of band too
    pickler.dump(value)
    if spool.room is None:
        return _write_entry(fd, tmp, _payload_of(b"".join(spool.parts), buffers), header)
    return spool.finish(buffers)


class _Spool:
    """The file a pickler writes to: held in memory up to _STREAM_MIN bytes, then written (and
    hashed) straight to the temp file after ``room`` bytes left for the head."""

    def __init__(self, fd: int, tmp: str, header: dict[str, Any]) -> None:
        self.fd, self.tmp, self.header = fd, tmp, header
        self.parts: list[Any] = []
        self.size = 0
        self.room: int | None = None
        self.hasher = xxhash.xxh3_128()

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.size += n
        if self.room is not None:
            self.hasher.update(data)
            _write_all(self.fd, [data])
            return n
        self.parts.append(data)
        if self.size >= _STREAM_MIN:
            self._start()
        return n

    def _start(self) -> None:
        """Leave room for the largest head this entry can need, then write what was held."""
        widest = Payload([], [], 1 << 63, 1 << 63)
        self.room = len(make_head(widest, self.header, bytes(16))[0]) + _STREAM_SPARE
        os.lseek(self.fd, self.room, os.SEEK_SET)
        for part in self.parts:
            self.hasher.update(part)
        write = _write_all if _FAULT is None else functools.partial(_write_with_faults, tmp=self.tmp)
        write(self.fd, self.parts)
        self.parts = []

    def finish(self, buffers: list[pickle.PickleBuffer]) -> dict[str, Any]:
        """Write the out-of-band buffers after the pickle, then the head into its room."""
        assert self.room is not None
        pickle_size = offset = self.size
        layout: list[list[int]] = []
        for buf in buffers:
            raw = buf.raw()
            pad = bytes(_pad(offset))
            self.hasher.update(pad)
            self.hasher.update(raw)
            _write_all(self.fd, [pad, raw])
            layout.append([offset + len(pad), raw.nbytes])
            offset += len(pad) + raw.nbytes
        payload = Payload([], layout, pickle_size, offset)
        try:
            head, header = make_head(payload, self.header, self.hasher.digest(), room=self.room)
        except ValueError:  # more buffers than the room has spans for: write the entry again, the usual way
            with open(self.tmp, "rb") as fh:  # our temp file, opened write-only
                fh.seek(self.room)
                main = fh.read(pickle_size)
            if len(main) != pickle_size:
                raise OSError(errno.EIO, f"short read of the pickle just written to {self.tmp}") from None
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
            return _write_entry(self.fd, self.tmp, _payload_of(main, buffers), self.header)
        os.lseek(self.fd, 0, os.SEEK_SET)
        _write_all(self.fd, [head])
        return header


_HASH_ALONGSIDE_MIN = 4 << 20  # payloads from this size are hashed in a thread while they are written


def _write_entry(fd: int, tmp: str, payload: Payload, header: dict[str, Any]) -> dict[str, Any]:
    """Write head and payload to the new temp file; return the final header.

    A large payload is written after room left for the head while another thread hashes it
    (xxhash and os.write release the GIL): a 200 MB store then costs the write alone, not the
    write plus the hash (~40 vs ~51 ms here). The head, checksum included, goes in last.
    """
    write = _write_all if _FAULT is None else functools.partial(_write_with_faults, tmp=tmp)
    if payload.size < _HASH_ALONGSIDE_MIN:
        head, header = make_head(payload, header, payload.checksum())
        write(fd, [head, *payload.chunks])
        return header
    digest: list[bytes] = []
    hashing = threading.Thread(target=lambda: digest.append(payload.checksum()), name="persist_to_disk-checksum")
    hashing.start()
    try:
        room = len(make_head(payload, header, bytes(16))[0])
        os.lseek(fd, room, os.SEEK_SET)
        write(fd, payload.chunks)
    finally:
        hashing.join()
    head, header = make_head(payload, header, digest[0])
    if len(head) != room:  # make_head promises a length independent of the checksum
        raise RuntimeError(f"entry head changed size while hashing: {len(head)} != {room} bytes")
    os.lseek(fd, 0, os.SEEK_SET)
    _write_all(fd, [head])
    return header


def _write_with_faults(fd: int, parts: list[Any], tmp: str) -> None:
    """Test-only: put()'s writes, with the fault points ``opened`` and ``middle``."""
    _fault("opened", tmp)
    views = [memoryview(part).cast("B") for part in parts]
    half, done = sum(len(v) for v in views) // 2, 0
    for view in views:
        if done <= half < done + len(view):
            cut = half - done
            _write_all(fd, [view[:cut]])
            _fault("middle", tmp)
            _write_all(fd, [view[cut:]])
        else:
            _write_all(fd, [view])
        done += len(view)


def _write_all(fd: int, parts: list[Any]) -> None:
    """Write every byte of parts: one ``writev`` in the usual case, then ``os.write`` for any rest."""
    views = [memoryview(part).cast("B") for part in parts]
    done = os.writev(fd, views) if hasattr(os, "writev") and len(views) <= 512 else 0
    for view in views:
        if done >= len(view):
            done -= len(view)
            continue
        view = view[done:]
        done = 0
        while view:
            view = view[os.write(fd, view) :]


_tag_state: list[Any] = []  # [pid, a counter starting at a random 32-bit value], made again in a forked child


def _temp_tag() -> str:
    """``<host>-<pid>-<8 hex>`` for a temp file name: unique without a getpid or getrandom call per write."""
    if not _tag_state:
        _tag_state[:] = [os.getpid(), itertools.count(int.from_bytes(os.urandom(4), "little"))]
    pid, counter = _tag_state
    return f"{_HOST}-{pid}-{next(counter) & 0xFFFFFFFF:08x}"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_tag_state.clear)


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
