"""The store: one file per entry, written atomically, checked on every read.

``LocalStore`` keeps entries under one folder (the format is :mod:`persist_to_disk.entryfile`,
the write path :mod:`persist_to_disk.writing`). Writers write a temp file in the entry's
folder and ``os.replace`` it into place, so readers see the old entry or the new one,
never a mix. The decorator, the cell magic, the browser and the CLI all go through this module.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import pickle
import stat
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import lastread, trust
from .entryfile import HEADER_PEEK, PREFIX, CorruptEntry, Entry, decode, parse_header, parse_prefix, pickle_payload
from .errors import CacheWarning, UntrustedCacheError
from .layout import ENTRY_SUFFIX
from .listing import EntryInfo
from .writing import (
    TEST_FAULT,
    TMP_SUFFIX,
    check_round_trip,
    fault,
    fsync_dir,
    stale_temp_files,
    temp_tag,
    write_entry,
    write_value,
)

__all__ = ["ENOVAL", "EntryInfo", "LocalStore", "Missing", "read_header_file"]

logger = logging.getLogger("persist_to_disk")

_TOUCH_AFTER = 60.0  # seconds: how stale "last read" (the file's mtime) may get

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
# an entry is opened without following a link and without blocking (a FIFO named like an entry
# would block the open for ever); what is not a regular file is then refused (fstat after open)
_O_READ = os.O_RDONLY | _O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
# a hit reads its entry without the kernel writing the inode's atime (last read is the mtime, kept by
# lastread.py); the flag is for the file's owner only: after one refusal (a team's cache) hits go without
_O_HIT = _O_READ | getattr(os, "O_NOATIME", 0)

_SWEEP_EVERY = 600.0  # seconds: how often one process looks for stale temp files in one folder
_swept: dict[str, float] = {}  # folder -> time.monotonic() of its last sweep by this process


class Missing:
    """The sentinel for "not cached": functions really do return None."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ENOVAL"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ENOVAL"


ENOVAL = Missing()


_SMALL_READ = 1 << 16  # entries up to this size are read with one os.read (no file object, no zeroed buffer)
_MMAP_MIN = 1 << 20  # entries from this size are memory-mapped (POSIX; Windows cannot replace a mapped file)
_mmap: Any = mmap if os.name == "posix" else None
_UTIME_FD = os.utime in os.supports_fd
_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)  # Linux: fresh memory for a large copy in 2 MB pages
_COPY_STEP = 16 << 20  # a copy read with mmap=False goes in pieces of this size, alternating between two threads
_PREADV = hasattr(os, "preadv")  # without it, a copy is read by one thread into a bytearray


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
    path: str, check: Any = None, touch: bool = False, mmap: bool = True
) -> tuple[bytes | bytearray | mmap.mmap, os.stat_result]:
    """The whole file; ``touch``: a stale mtime (last read) is refreshed soon by :mod:`.lastread`,
    one stamped in the future at once; ``mmap=False``: a large file is copied into fresh memory
    instead of mapped (slower to read, but writing all of the result then costs no page faults)."""
    global _O_HIT
    try:
        fd = os.open(path, _O_HIT)  # (_open_entry inlined: every hit runs this)
    except PermissionError:
        if _O_HIT == _O_READ:
            raise
        _O_HIT = _O_READ  # another account's file
        fd = os.open(path, _O_READ)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptEntry("it is not a regular file")
        if check is not None:  # before reading a byte: an untrusted file is not even read
            check(path, st)
        if touch:
            age = time.time() - st.st_mtime
            if age > _TOUCH_AFTER:
                lastread.refresh_later(path)  # stale: refreshed off the hit path
            elif age < -_TOUCH_AFTER:  # stamped in the future by a wrong clock (rare): healed at once
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
            if not mmap and _PREADV:
                return _read_copy(fd, size), st
            if mmap:
                # a large entry is mapped, not copied: its arrays are pages of the page cache (copy-on-write,
                # so writable and never written back). Safe because entry files are never changed in place:
                # a new entry is a new file renamed over the old one, and the old inode lives while mapped.
                with contextlib.suppress(OSError, ValueError):  # a file system that cannot map: read it
                    return _mmap.mmap(
                        fd, size, flags=_mmap.MAP_PRIVATE, prot=_mmap.PROT_READ | _mmap.PROT_WRITE
                    ), st
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


def _read_copy(fd: int, size: int) -> mmap.mmap:
    """The whole file copied into fresh anonymous memory, huge pages where the kernel gives them.

    Above one piece a second thread reads every other piece (500 MB in about ``np.load``'s time),
    through its own descriptor so that it never reads a closed and reused one, and it stops at
    the next piece once the load failed or was interrupted.
    """
    try:
        memory = _mmap.mmap(-1, size, flags=_mmap.MAP_PRIVATE)
    except OSError as exc:  # no memory for it: not the entry's fault
        raise MemoryError(f"cannot allocate {size:,} bytes to load an entry into ({exc})") from None
    if _HUGEPAGE is not None:
        with contextlib.suppress(OSError):
            memory.madvise(_HUGEPAGE)
    view = memoryview(memory)
    if size <= _COPY_STEP:
        _read_pieces(fd, view, 0, 1)
        return memory
    try:
        second = _SecondReader(fd, view)
    except OSError:  # no descriptor to spare: all on this thread
        _read_pieces(fd, view, 0, 1)
        return memory
    try:
        second.start()
    except RuntimeError:  # no new thread now (the interpreter shutting down, a thread limit): all on this one
        os.close(second.fd)
        _read_pieces(fd, view, 0, 1)
        return memory
    try:
        _read_pieces(fd, view, 0, 2)
        second.join()
    except BaseException:
        second.stop.set()
        raise
    if second.failed is not None:
        raise second.failed
    return memory


class _SecondReader(threading.Thread):
    """The odd pieces of a copy, read through a descriptor of its own; ``stop`` ends it at the next piece."""

    def __init__(self, fd: int, view: memoryview) -> None:
        super().__init__(name="ptd-read", daemon=True)
        self.fd = os.dup(fd)
        self.view = view
        self.stop = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            _read_pieces(self.fd, self.view, 1, 2, self.stop)
        except BaseException as exc:  # raised again by the thread that asked for the load
            self.failed = exc
        finally:
            os.close(self.fd)


def _read_pieces(fd: int, view: memoryview, first: int, stride: int, stop: threading.Event | None = None) -> None:
    """Read pieces ``first``, ``first + stride``, ... of the file into ``view``."""
    size = len(view)
    for start in range(first * _COPY_STEP, size, stride * _COPY_STEP):
        if stop is not None and stop.is_set():
            return
        end = min(start + _COPY_STEP, size)
        while start < end:
            got = os.preadv(fd, [view[start:end]], start)
            if not got:
                raise CorruptEntry(f"the file ends at {start} bytes, {size} expected (truncated while read)")
            start += got


def read_header_file(path: str | os.PathLike) -> dict[str, Any]:
    """The header of an entry file, reading only its first few kilobytes."""
    fd, _st = _open_entry(path)
    with open(fd, "rb") as fh:
        blob = fh.read(HEADER_PEEK)
        hlen = parse_prefix(blob)[0]
        if PREFIX.size + hlen > len(blob):
            blob += fh.read(PREFIX.size + hlen - len(blob))
    return parse_header(blob)


class LocalStore:
    """Entries under one folder on a local or network file system.

    Keys are '/'-separated paths relative to the root (``MNIST/20/17/<digest>.ptd``).
    Entry files are read and written here and through this module's ``read_header_file``
    (the catalog reads headers with it and removes folders left empty), so a remote
    backend is an addition with the same methods.
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
    def load(self, key: str, *, mmap: bool = True) -> Entry | Missing:
        """The entry at key, or ENOVAL when absent or unreadable (a bad entry warns once);
        ``mmap=False``: a large entry is copied into fresh memory rather than mapped."""
        path = self.path_of(key)
        try:
            blob, st = _read_all(path, self._check_trust, touch=True, mmap=mmap)
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
            check_round_trip(checked)  # the entry there did not unpickle: neither would this one
        folder = os.path.dirname(path)
        real = os.path.normpath(os.path.abspath(folder))
        policy = self.policy
        trust.make_folder(real, self.trust_root, policy)  # never through a symbolic link out of the cache
        self._sweep(folder)
        tmp = f"{folder}{os.sep}.{os.path.basename(path)}.{temp_tag()}{TMP_SUFFIX}"
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
                    header = write_entry(fd, tmp, checked, header)
                else:
                    header = write_value(fd, tmp, value, header, dumps)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if TEST_FAULT is not None:
                fault("written", tmp)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if self.fsync:
            fsync_dir(folder)
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
        """Every entry under prefix (a folder key), headers read but values not loaded; last-read times
        as this process's hits left them (refreshes still waiting are made first)."""
        lastread.flush()
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
            return EntryInfo(key, Path(path), 0, 0.0, status="vanished")
        info = EntryInfo(key, Path(path), st.st_size, st.st_mtime)
        if headers:
            try:
                info.header = read_header_file(path)
            except FileNotFoundError:
                info.status = "vanished"
            except (OSError, CorruptEntry) as exc:
                info.status, info.reason = "corrupt", str(exc)
        return info
