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
from collections.abc import Iterator

import xxhash
from filelock import FileLock

from . import trust

LOCK_DIR = ".locks"

_held = threading.local()


def _held_paths() -> list[str]:
    paths = getattr(_held, "paths", None)
    if paths is None:
        paths = _held.paths = []
    return paths


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


@contextlib.contextmanager
def _acquire(path: str, timeout: float, held_state: Held | None = None) -> Iterator[None]:
    held = _held_paths()
    if path in held:  # re-entered by this thread (recursion on the same key)
        yield
        return
    policy = trust.current_policy()
    trust.makedirs(os.path.dirname(path), policy)
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
