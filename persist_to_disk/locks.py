"""Compute-once locking across processes, without deadlocks between nested calls.

A miss takes, in this order, the lock of the chosen granularity (``call``: the
entry's bucket, ``func``: the function, ``global``: the whole cache) and then
the lock of the entry's own digest; it re-checks the store and computes only if
the entry is still missing. Others wait, then read what the first one wrote.

A call made while this thread already computes another persisted call (a nested
call) takes only the digest lock. Any wait-while-holding is then on digest locks
only, and a cycle of those would need a call to (indirectly) call itself with the
same arguments, which is an infinite recursion anyway. So nested persisted
calls never deadlock, at any granularity, across processes.

Locks are ``filelock`` locks (``flock`` on POSIX): a process killed while holding
one releases it, so nobody waits for ever on a dead holder.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import xxhash
from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt lock
    fcntl = None  # type: ignore[assignment]

from . import trust

LOCK_DIR = ".locks"

_held = threading.local()


def _held_paths() -> list[str]:
    paths = getattr(_held, "paths", None)
    if paths is None:
        paths = _held.paths = []
    return paths


def coarse_scope(granularity: str, persist_root: str, folder: str, groups: list[str], bucket: int) -> str:
    """What the lock of a granularity covers: one bucket (``call``), a function's folder, or the whole cache."""
    if granularity == "call":
        return f"{folder}/{'/'.join(groups)}/{bucket}"
    if granularity == "func":
        return folder
    if granularity == "global":
        return persist_root
    raise ValueError(f"lock_granularity={granularity!r} is not one of call, func, global")


def lock_path(persist_root: str, scope: str) -> str:
    """The lock file for a scope string; kept out of the entry tree."""
    name = xxhash.xxh3_128_hexdigest(scope.encode("utf-8"))
    return os.path.join(persist_root, LOCK_DIR, name[:2], name + ".lock")


class Held:
    """Handed to the holder of a miss's locks."""

    def __init__(self) -> None:
        self.stored = False

    def mark_stored(self) -> None:
        """The entry is on disk: its digest lock file can go (a late waiter re-checks and hits)."""
        self.stored = True


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILELOCK = FileLock


class _Flock:
    """An exclusive ``flock`` on a lock file: what filelock's UnixFileLock does, without its
    per-call bookkeeping (~90 µs a lock with filelock 4.x, ~3 µs here; two locks on every miss).

    Same semantics: the file is created with ``mode`` (fchmod past the umask) if missing and
    left in place on release; a lock taken on a file that its previous holder unlinked
    (``st_nlink == 0``) is dropped and taken again on the file now at the path. A negative
    timeout blocks in the kernel (woken as soon as the holder releases or dies); otherwise
    it polls and raises ``filelock.Timeout``.
    """

    __slots__ = ("path", "timeout", "mode", "fd")

    def __init__(self, path: str, timeout: float, mode: int) -> None:
        self.path, self.timeout, self.mode, self.fd = path, timeout, mode, -1

    def __enter__(self) -> _Flock:
        deadline = None if self.timeout is None or self.timeout < 0 else time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, self.mode)
                created = True
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDWR | _O_NOFOLLOW)
                except FileNotFoundError:  # unlinked between the two opens: start over
                    continue
                created = False
            try:
                if created:
                    with contextlib.suppress(PermissionError):
                        os.fchmod(fd, self.mode)
                if deadline is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    locked = True
                else:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        locked = True
                    except BlockingIOError:
                        locked = False
                if locked and os.fstat(fd).st_nlink > 0:
                    self.fd = fd
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # busy, or its previous holder removed it: try the file now at the path
            if not locked:
                if time.monotonic() >= deadline:  # type: ignore[operator]
                    raise Timeout(self.path)
                time.sleep(0.01)

    def __exit__(self, *exc: Any) -> None:
        fd, self.fd = self.fd, -1
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _acquire(path: str, timeout: float, held_state: Held | None = None) -> Iterator[None]:
    held = _held_paths()
    if path in held:  # re-entered by this thread (recursion on the same key)
        yield
        return
    policy = trust.current_policy()
    trust.makedirs(os.path.dirname(path), policy)
    if fcntl is not None and FileLock is _FILELOCK:  # (a test may swap FileLock for another lock: then use it)
        lock: Any = _Flock(path, timeout, policy.file_mode)
    else:
        lock = FileLock(path, timeout=timeout, thread_local=False, mode=policy.file_mode)
    with lock:
        held.append(path)
        try:
            yield
        finally:
            held.remove(path)
            if held_state is not None and held_state.stored:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def is_nested() -> bool:
    """Whether this thread is already inside a persisted computation."""
    return bool(_held_paths())


@contextlib.contextmanager
def compute_lock(persist_root: str, coarse_scope: str, digest_scope: str, timeout: float = -1) -> Iterator[Held]:
    """Hold the locks a miss needs; ``timeout=-1`` waits as long as the holder computes."""
    digest_path = lock_path(persist_root, digest_scope)
    state = Held()
    if is_nested():
        with _acquire(digest_path, timeout, state):
            yield state
        return
    with _acquire(lock_path(persist_root, coarse_scope), timeout), _acquire(digest_path, timeout, state):
        yield state


def clear_locks(persist_root: str, clear: bool = False) -> list[str]:
    """Lock files no process holds now; deleted when ``clear`` (a held lock is never removed)."""
    root = os.path.join(persist_root, LOCK_DIR)
    free: list[str] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if not name.endswith(".lock"):
                continue
            path = os.path.join(folder, name)
            lock = FileLock(path, timeout=0, thread_local=False)
            try:
                lock.acquire()
            except Exception:  # held by a live process
                continue
            try:
                free.append(path)
                if clear:
                    os.unlink(path)
            finally:
                lock.release()
    return free
