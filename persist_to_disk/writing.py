"""The write path of the local store: temp files, the streamed pickle, and stale temp files.

Writers write a temp file in the entry's folder (``.<entry>.<host>-<pid>-<8 hex>.tmp``)
and ``os.replace`` it into place (:meth:`persist_to_disk.store.LocalStore.put`), so
readers see the old entry or the new one, never a mix. A writer killed mid-write leaves
its temp file behind; ``stale_temp_files`` finds those whose writer is dead.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import xxhash

from . import pickling
from .entryfile import PICKLE_PROTOCOL, Payload, make_head, padding, payload_of, pickle_payload

__all__ = [
    "TEST_FAULT",
    "TMP_SUFFIX",
    "UnloadableValue",
    "check_round_trip",
    "fault",
    "fsync_dir",
    "stale_temp_files",
    "temp_tag",
    "write_entry",
    "write_value",
]

TMP_SUFFIX = ".tmp"

_HOST = (os.uname().nodename if hasattr(os, "uname") else __import__("socket").gethostname()).replace(".", "_")
_STALE_TMP_AGE = 86400.0  # seconds: a temp file not touched for a day belongs to a dead writer

# Test-only fault injection, used by tests/reliability: PTD_TEST_FAULT=<point>:<action> makes a writer
# pause (to be SIGKILLed), kill itself or fail with ENOSPC at a named point of put(). Unset in normal use;
# read once at import, so the write path pays one `is None` test.
TEST_FAULT = os.environ.get("PTD_TEST_FAULT") or None


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


def fault(point: str, tmp: str) -> None:
    """Test-only (PTD_TEST_FAULT=<point>:<action>): pause, kill or fail with ENOSPC at a point of put().

    Points: ``opened`` (temp file created, empty), ``middle`` (half the bytes written),
    ``written`` (temp file complete and closed, just before the rename). When
    PTD_TEST_FAULT_READY names a file, the temp file's path is written there first.
    """
    where, _, action = (TEST_FAULT or "").partition(":")
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


def check_round_trip(payload: Payload) -> None:
    """Unpickle a payload just made; UnloadableValue if that fails (run only where an entry failed before)."""
    buffers = [chunk for chunk in payload.chunks[1:] if isinstance(chunk, memoryview)]  # (padding is bytes)
    try:
        pickle.loads(payload.chunks[0], buffers=buffers)
    except Exception as exc:
        raise UnloadableValue(f"it pickles but cannot be unpickled ({type(exc).__name__}: {exc})") from exc


_STREAM_MIN = 1 << 20  # a pickle growing past this size is streamed to the file instead of built in memory
_STREAM_SPARE = 4096  # head room left for the out-of-band buffers a streamed pickle may still bring


def write_value(fd: int, tmp: str, value: Any, header: dict[str, Any], dumps: Callable[..., bytes]) -> dict[str, Any]:
    """Pickle value into the new temp file; return the final header.

    A pickle that stays small is built in memory and written by ``write_entry``. One that grows
    past _STREAM_MIN (a large in-band value: a torch tensor, a big dict, bytes) goes to the file
    as the pickler makes it, after room left for the head, so memory never holds a second copy
    of it; its out-of-band buffers follow, and the head, checksum included, goes in last. A
    stand-in ``dumps`` (the cell magic's) returns bytes, so its values are always built in memory.
    Plain torch tensors go out of band like arrays (see ``pickling``).
    """
    if dumps is not pickle.dumps:
        return write_entry(fd, tmp, pickle_payload(value, dumps), header)
    spool = _Spool(fd, tmp, header)
    buffers: list[pickle.PickleBuffer] = []
    pickler = pickle.Pickler(spool, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append)
    pickler.dispatch_table = pickling.dispatch_table()  # torch tensors out of band too
    pickler.dump(value)
    if spool.room is None:
        return write_entry(fd, tmp, payload_of(b"".join(spool.parts), buffers), header)
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
        write = _write_all if TEST_FAULT is None else functools.partial(_write_with_faults, tmp=self.tmp)
        write(self.fd, self.parts)
        self.parts = []

    def finish(self, buffers: list[pickle.PickleBuffer]) -> dict[str, Any]:
        """Write the out-of-band buffers after the pickle, then the head into its room."""
        assert self.room is not None
        pickle_size = offset = self.size
        layout: list[list[int]] = []
        for buf in buffers:
            raw = buf.raw()
            pad = bytes(padding(offset))
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
            return write_entry(self.fd, self.tmp, payload_of(main, buffers), self.header)
        os.lseek(self.fd, 0, os.SEEK_SET)
        _write_all(self.fd, [head])
        return header


_HASH_ALONGSIDE_MIN = 4 << 20  # payloads from this size are hashed in a thread while they are written


def write_entry(fd: int, tmp: str, payload: Payload, header: dict[str, Any]) -> dict[str, Any]:
    """Write head and payload to the new temp file; return the final header.

    A large payload is written after room left for the head while another thread hashes it
    (xxhash and os.write release the GIL): a 200 MB store then costs the write alone, not the
    write plus the hash (~40 vs ~51 ms here). The head, checksum included, goes in last.
    """
    write = _write_all if TEST_FAULT is None else functools.partial(_write_with_faults, tmp=tmp)
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
    fault("opened", tmp)
    views = [memoryview(part).cast("B") for part in parts]
    half, done = sum(len(v) for v in views) // 2, 0
    for view in views:
        if done <= half < done + len(view):
            cut = half - done
            _write_all(fd, [view[:cut]])
            fault("middle", tmp)
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


def temp_tag() -> str:
    """``<host>-<pid>-<8 hex>`` for a temp file name: unique without a getpid or getrandom call per write."""
    if not _tag_state:
        _tag_state[:] = [os.getpid(), itertools.count(int.from_bytes(os.urandom(4), "little"))]
    pid, counter = _tag_state
    return f"{_HOST}-{pid}-{next(counter) & 0xFFFFFFFF:08x}"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_tag_state.clear)


def fsync_dir(folder: str) -> None:
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
