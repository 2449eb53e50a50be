"""Compute-once locking across processes, without deadlocks between nested calls.

A miss takes the lock of the entry's own digest, after (for ``func`` and
``global`` granularity) the lock of its function or of the whole cache; it
re-checks the store and computes only if the entry is still missing. Others
wait, then read what the first one wrote. (The seed's ``call`` locked a bucket
because a bucket was one shared file; an entry is its own file now, so ``call``
locks just the key, and two keys that share a bucket no longer wait for each other.)

A call made while this thread (or asyncio task) already computes another persisted
call (a nested call) takes only the digest lock. Any wait-while-holding is then on digest locks
only, and a cycle of those would need a call to (indirectly) call itself with the
same arguments, which is an infinite recursion anyway. So nested persisted
calls never deadlock, at any granularity, across processes.

Every lock is one the kernel drops when its holder dies, so nobody waits for ever
on a dead holder:

- a granularity lock is an ``flock`` on a lock file of its scope (a function,
  the cache), made once and kept;
- a digest lock is, on Linux, an open-file-description lock (``F_OFD_SETLKW``) on
  one byte of a single file, ``.locks/digests.lock``, at an offset derived from the
  digest. A miss then creates and deletes no lock file: creating and unlinking one
  cost ~100 µs on a busy disk, a byte lock ~1 µs. Elsewhere (macOS, BSD) it is an
  ``flock`` on a file of its own, deleted once the entry is stored; on Windows,
  filelock's ``msvcrt`` lock.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import signal
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import xxhash

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt lock
    fcntl = None  # type: ignore[assignment]

from . import trust
from .config import Granularity
from .sigint import get_handler as _get_handler
from .sigint import set_handler as _set_handler

__all__ = [
    "DIGEST_LOCK_FILE", "LOCK_DIR", "Granularity", "Held", "clear_locks", "coarse_scope", "compute_lock",
    "compute_lock_async", "lock_path", "whole_file_lock",
]

LOCK_DIR = ".locks"
DIGEST_LOCK_FILE = "digests.lock"  # the byte-range lock file; never deleted by clear_locks

# the locks this thread (or asyncio task) holds for computations in progress; a tuple, never mutated:
# tasks that a computing coroutine starts inherit it, so their persisted calls count as nested
_held: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("persist_to_disk_held_locks", default=())


def coarse_scope(granularity: Granularity, persist_root: str, folder: str) -> str | None:
    """What a miss locks besides its own key: nothing more (``call``), its function (``func``), or the
    whole cache (``global``): how much other work waits while one call computes."""
    if granularity == "call":
        return None
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
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# filelock's lock (imported on first use: only where there is no fcntl, or to clear locks), or a
# stand-in a test puts here; None: our own kernel locks
FileLock: Any = None
# byte-range locks owned by an open file description (Linux 3.15+): unlike classic POSIX
# record locks, two threads of one process exclude each other and closing another
# descriptor of the file does not drop them
_OFD = fcntl is not None and hasattr(fcntl, "F_OFD_SETLKW")
_FLOCK_ARG = struct.Struct("hhqqi")  # struct flock: l_type, l_whence, l_start, l_len, l_pid (native layout)
_FLOCK_ARG_SIZE = -(-_FLOCK_ARG.size // 8) * 8  # with the C struct's tail padding


def _open_lock_file(path: str, mode: int) -> int:
    """Open a lock file read-write, making it (and its folders, with the policy's modes) if missing.

    Never through a symbolic link: a lock folder linked out of the cache (planted in a shared root)
    would take the lock files with it (UntrustedCacheError; the call then runs without the cache).
    """
    flags = os.O_RDWR | _O_NOFOLLOW | _O_CLOEXEC
    folder = os.path.dirname(path)
    top = folder[: folder.rfind(os.sep + LOCK_DIR)]  # the cache root
    trust.check_no_links(folder, top)
    while True:
        try:
            return os.open(path, flags)
        except (FileNotFoundError, NotADirectoryError):
            pass
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:  # made by another process between the two opens
            continue
        except (FileNotFoundError, NotADirectoryError):  # its folder is missing (first lock, or cleared), or
            # a file is in the way: make_folder makes the folders, or raises the error that says so
            trust.make_folder(folder, top, trust.current_policy(), again=True)
            continue
        try:
            os.fchmod(fd, mode)  # past the umask
        except PermissionError:
            pass
        return fd


class _KernelLock:
    """An exclusive kernel lock on an open lock file (released by the kernel if the holder dies).

    A negative timeout blocks in the kernel (woken as soon as the holder releases or
    dies); otherwise it polls and raises ``filelock.Timeout``. A lock taken on a file that
    was unlinked meanwhile (``st_nlink == 0``) is dropped and taken on the file now at the path.

    The descriptor is recorded (``fd``) before any wait, and ``release`` is idempotent: a
    KeyboardInterrupt landing anywhere in ``acquire`` leaves nothing that ``release`` cannot free.
    A forked child closes its copies of every open lock descriptor (``_forget_in_child``).
    """

    __slots__ = ("path", "timeout", "mode", "fd")

    def __init__(self, path: str, timeout: float, mode: int) -> None:
        self.path, self.timeout, self.mode, self.fd = path, timeout, mode, -1

    def _lock(self, fd: int, blocking: bool) -> bool:
        raise NotImplementedError

    def _unlock(self, fd: int) -> None:
        raise NotImplementedError

    def _attempt(self, blocking: bool) -> bool | None:
        """One try: True (held), False (busy) or None (taken on a file unlinked meanwhile: try again now)."""
        if self.fd < 0:
            _open_locks.add(self)  # first, so that a forked child finds the descriptor whenever it exists
            self.fd = _open_lock_file(self.path, self.mode)
        _Interrupts.deliver()  # a Ctrl-C held back so far interrupts now, not after an hour's wait
        if not self._lock(self.fd, blocking):
            return False
        if os.fstat(self.fd).st_nlink == 0:
            self.release()  # its previous holder removed it: the lock goes with the descriptor
            return None
        return True

    def acquire(self) -> _KernelLock:
        deadline = None if self.timeout is None or self.timeout < 0 else time.monotonic() + self.timeout
        while True:
            got = self._attempt(deadline is None)
            if got:
                return self
            if got is False:
                if time.monotonic() >= deadline:  # type: ignore[operator]
                    self.release()
                    from filelock import Timeout  # what filelock's own locks raise

                    raise Timeout(self.path)
                time.sleep(0.01)

    async def acquire_async(self) -> _KernelLock:
        """Wait without blocking the event loop: non-blocking tries, sleeping 1 ms doubling to 50 ms between.

        Polling rather than a blocking wait in a worker thread: a cancelled task then holds
        nothing, where a thread would go on to take a lock nobody releases.
        """
        pause = 0.001
        while True:
            got = self._attempt(False)
            if got:
                return self
            if got is False:
                import asyncio  # imported already: this runs in its event loop

                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)

    def release(self) -> None:
        """Unlock and close; a no-op when nothing is open. Unlocked first, so a descriptor left open by an
        interrupt holds no lock (and a child forked meanwhile, sharing the descriptor, does not keep it)."""
        fd = self.fd
        if fd < 0:
            return
        self._unlock(fd)
        self.fd = -1
        _open_locks.discard(self)
        os.close(fd)

    @property
    def held(self) -> bool:
        """Whether a descriptor is open (the lock taken, or being waited for)."""
        return self.fd >= 0

    def __enter__(self) -> _KernelLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


_open_locks: set[_KernelLock] = set()  # every lock that may have an open descriptor (in this process)


def _forget_in_child() -> None:
    """In a forked child: close the lock descriptors it inherited, without unlocking.

    ``flock`` and byte locks belong to the open file description, which the child shares:
    a child that kept the descriptor would keep its parent's lock after the parent died, and
    one that unlocked it would free the lock under its live parent. Closing only drops the
    child's reference.
    """
    for lock in list(_open_locks):
        fd, lock.fd = lock.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    _open_locks.clear()
    _taken_by_thread.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class _Flock(_KernelLock):
    """``flock`` on the whole file: what filelock's UnixFileLock does, without its per-call
    bookkeeping (~90 µs a lock with filelock 4.x, ~3 µs here)."""

    __slots__ = ()

    def _lock(self, fd: int, blocking: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class _ByteLock(_KernelLock):
    """An open-file-description lock on one byte of a shared file (Linux)."""

    __slots__ = ("lock_arg", "unlock_arg")

    def __init__(self, path: str, offset: int, timeout: float, mode: int) -> None:
        super().__init__(path, timeout, mode)
        self.lock_arg = _FLOCK_ARG.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0).ljust(_FLOCK_ARG_SIZE, b"\0")
        self.unlock_arg = _FLOCK_ARG.pack(fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0).ljust(_FLOCK_ARG_SIZE, b"\0")

    def _lock(self, fd: int, blocking: bool) -> bool:
        if blocking:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, self.lock_arg)
            return True
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, self.lock_arg)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(self, fd: int) -> None:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, self.unlock_arg)


class _ForeignLock:
    """filelock's lock (no fcntl) or a test's stand-in, behind the kernel locks' acquire/release."""

    __slots__ = ("lock", "held")

    def __init__(self, lock: Any) -> None:
        self.lock, self.held = lock, False

    def acquire(self) -> _ForeignLock:
        self.lock.__enter__()
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.__exit__(None, None, None)

    def __enter__(self) -> _ForeignLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _file_lock(path: str, timeout: float, policy: trust.Policy) -> _KernelLock | _ForeignLock:
    """The whole-file lock of a lock file: our flock, or filelock's where there is no fcntl."""
    if fcntl is not None and FileLock is None:  # (a test may put another lock in FileLock: then use it)
        return _Flock(path, timeout, policy.file_mode)
    trust.makedirs(os.path.dirname(path), policy)
    return _ForeignLock(_file_lock_class()(path, timeout=timeout, thread_local=False, mode=policy.file_mode))


def whole_file_lock(path: str, timeout: float = -1) -> Any:
    """A lock on a whole lock file for a short critical section of one user's own files (the
    project registry): the locks calls take, without importing filelock where fcntl exists."""
    return _file_lock(path, timeout, trust.Policy())


def _file_lock_class() -> Any:
    """FileLock if set, else filelock's (imported now: it costs a fifth of our import time)."""
    if FileLock is not None:
        return FileLock
    from filelock import FileLock as filelock_lock

    return filelock_lock


@dataclass
class _Step:
    """One lock of a miss: its name (to spot re-entry), the lock, and a per-digest lock file to
    delete on release once the entry is stored."""

    name: str
    lock: Any
    remove: str | None = None


def _digest_step(persist_root: str, digest_scope: str, timeout: float, policy: trust.Policy) -> _Step:
    if _OFD and FileLock is None:
        path = os.path.join(persist_root, LOCK_DIR, DIGEST_LOCK_FILE)
        offset = xxhash.xxh3_64_intdigest(digest_scope.encode("utf-8")) >> 2  # < 2**62: fits off_t with its length
        return _Step(f"{path}#{offset}", _ByteLock(path, offset, timeout, policy.file_mode))
    path = lock_path(persist_root, digest_scope)
    return _Step(path, _file_lock(path, timeout, policy), remove=path)


def _steps(persist_root: str, coarse_scope: str | None, digest_scope: str, timeout: float) -> list[_Step]:
    """The granularity lock (if any), then the digest lock; only the digest lock for a nested call."""
    policy = trust.current_policy()
    held = _held.get()
    steps = [_digest_step(persist_root, digest_scope, timeout, policy)]
    if coarse_scope is not None and not held:
        coarse_path = lock_path(persist_root, coarse_scope)
        steps.insert(0, _Step(coarse_path, _file_lock(coarse_path, timeout, policy)))
    return [step for step in steps if step.name not in held]  # re-entered by a recursion on the same key


class _Interrupts:
    """Ctrl-C while the bookkeeping of a miss's locks runs: raised once it is done, not in the middle.

    While a miss of the main thread holds or takes locks, SIGINT goes through ``_on_sigint``:
    a KeyboardInterrupt that would be raised inside one of the functions that record or
    release a lock (``CRITICAL``) is held back and raised at the next safe point (before a
    blocking wait, at the end of taking, at the end of releasing); anywhere else, including
    a blocking wait and the computation itself, the previous handler runs at once. Python
    raises KeyboardInterrupt only in the main thread, so other threads need none of this.
    Installing and restoring the handler costs ~1.3 µs a miss (one ``sigaction`` call each).
    """

    CRITICAL: set[Any] = set()  # code objects, filled below
    depth = 0
    previous: Any = None
    pending = False

    @classmethod
    def enter(cls) -> bool:
        """Hold back Ctrl-C in the critical functions from now on (main thread only); whether it did."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if cls.depth:
            cls.depth += 1
            return True
        previous = _get_handler(signal.SIGINT)
        if not callable(previous) or previous is _on_sigint:  # SIG_DFL, SIG_IGN: nothing raised to defer
            return False
        cls.previous, cls.pending = previous, False
        _set_handler(signal.SIGINT, _on_sigint)  # from here on, an interrupt of this function is held back
        cls.depth = 1
        return True

    @classmethod
    def leave(cls) -> None:
        """Restore the handler (unless something replaced ours meanwhile), then raise what was held back."""
        cls.depth -= 1
        if cls.depth == 0:
            previous, cls.previous = cls.previous, None
            if _get_handler(signal.SIGINT) is _on_sigint:
                _set_handler(signal.SIGINT, previous)
            if cls.pending:
                cls.pending = False
                previous(signal.SIGINT, None)

    @classmethod
    def deliver(cls) -> None:
        """A safe point: raise a held-back Ctrl-C now."""
        if cls.pending:
            cls.pending = False
            cls.previous(signal.SIGINT, None)


def _on_sigint(signum: int, frame: Any) -> None:
    if frame is not None and frame.f_code in _Interrupts.CRITICAL:
        _Interrupts.pending = True
    elif _Interrupts.previous is not None:
        _Interrupts.previous(signum, frame)


# (lock name, thread id) -> the lock a blocking miss of that thread took (or is taking) under that name
_taken_by_thread: dict[tuple[str, int], Any] = {}


class _ComputeLock:
    """The locks of one miss, held in a ``with`` (or ``async with``) block; entering returns a ``Held``.

    A KeyboardInterrupt (Ctrl-C, a notebook's stop button) never leaves a lock held: each lock
    records its descriptor before it waits, releasing is idempotent (and runs again if cut
    short), and Ctrl-C is held back while a lock is recorded or released (``_Interrupts``).
    And a blocking miss never waits for a lock its own thread took under the same name: such a
    lock is either forgotten or held further up this thread's stack (in another context), where
    waiting could only deadlock, so it is released and taken afresh.
    """

    __slots__ = ("steps", "state", "outer", "deferring")

    def __init__(self, persist_root: str, coarse_scope: str | None, digest_scope: str, timeout: float = -1) -> None:
        self.steps = _steps(persist_root, coarse_scope, digest_scope, timeout)
        self.state = Held()
        self.outer = _held.get()
        self.deferring = False

    def _mark_held(self) -> None:
        """From here on, this thread's (or task's) calls see these locks as held: they are nested."""
        _held.set(self.outer + tuple(step.name for step in self.steps))

    def __enter__(self) -> Held:
        entered = False
        try:
            self.deferring = _Interrupts.enter()
            thread = threading.get_ident()
            for step in self.steps:
                forgotten = _taken_by_thread.get((step.name, thread))
                if forgotten is not None:
                    forgotten.release()
                _taken_by_thread[(step.name, thread)] = step.lock
                step.lock.acquire()
            self._mark_held()
            _Interrupts.deliver()
            entered = True
            return self.state
        finally:
            if not entered:
                self._release_all()

    def __exit__(self, *exc: Any) -> None:
        self._release_all()

    async def __aenter__(self) -> Held:
        entered = False
        try:
            self.deferring = _Interrupts.enter()
            for step in self.steps:
                acquire_async = getattr(step.lock, "acquire_async", None)
                if acquire_async is not None:
                    await acquire_async()
                else:  # filelock's lock (no fcntl) or a test's stand-in: its own blocking wait
                    step.lock.acquire()
            self._mark_held()
            _Interrupts.deliver()
            entered = True
            return self.state
        finally:
            if not entered:
                self._release_all()

    async def __aexit__(self, *exc: Any) -> None:
        self._release_all()

    def _release_all(self) -> None:
        try:
            self._release()
        finally:
            try:
                self._release()  # a no-op, unless an interrupt cut the first one short
            finally:
                if self.deferring:
                    self.deferring = False
                    _Interrupts.leave()  # raises a Ctrl-C held back meanwhile

    def _release(self) -> None:
        _held.set(self.outer)
        thread = threading.get_ident()
        for step in reversed(self.steps):
            if step.remove is not None and self.state.stored and step.lock.held:
                try:
                    os.unlink(step.remove)  # while still held: a waiter then retries at the path and re-checks
                except OSError:
                    pass
            if _taken_by_thread.get((step.name, thread)) is step.lock:
                del _taken_by_thread[(step.name, thread)]
            step.lock.release()


_Interrupts.CRITICAL.update(
    f.__code__
    for f in (
        _Interrupts.enter.__func__,
        _Interrupts.leave.__func__,
        _open_lock_file,
        _KernelLock._attempt,
        _KernelLock.release,
        _Flock._unlock,
        _ByteLock._unlock,
        _ForeignLock.acquire,
        _ForeignLock.release,
        _ComputeLock.__enter__,
        _ComputeLock.__aenter__,
        _ComputeLock.__exit__,
        _ComputeLock.__aexit__,
        _ComputeLock._release_all,
        _ComputeLock._release,
        _ComputeLock._mark_held,
    )
)


def compute_lock(persist_root: str, coarse_scope: str | None, digest_scope: str, timeout: float = -1) -> _ComputeLock:
    """The locks a miss needs, for a ``with`` block; ``timeout=-1`` waits as long as the holder computes."""
    return _ComputeLock(persist_root, coarse_scope, digest_scope, timeout)


def compute_lock_async(persist_root: str, coarse_scope: str | None, digest_scope: str) -> _ComputeLock:
    """``compute_lock`` for an ``async with``: waits without blocking the event loop (other tasks run,
    including the one holding the lock in this process), and a cancelled wait holds nothing."""
    return _ComputeLock(persist_root, coarse_scope, digest_scope)


def clear_locks(persist_root: str, clear: bool = False) -> list[str]:
    """Lock files no process holds now; deleted when ``clear`` (a held lock is never removed).

    The digest byte-lock file is never listed: its byte locks are invisible to ``flock``.
    """
    root = os.path.join(persist_root, LOCK_DIR)
    free: list[str] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if not name.endswith(".lock") or (folder == root and name == DIGEST_LOCK_FILE):
                continue
            path = os.path.join(folder, name)
            lock = _file_lock_class()(path, timeout=0, thread_local=False)
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
