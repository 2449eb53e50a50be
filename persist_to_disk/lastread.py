"""Last-read times (an entry file's mtime) refreshed off the hit path.

A hit that finds its entry's last read stale asks for a refresh here instead of paying a
``utime`` (a metadata write, ~2 µs, an eighth of a hit) itself. One thread per process
refreshes what was asked, a second after the first ask (a burst of hits costs one pass);
listing entries (``prune``, the catalog) refreshes everything asked first, and so does the
process on exit. A process killed outright loses the refreshes of its last second: those
entries look read a little earlier than they were, never later.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import threading
import time

__all__ = ["flush", "refresh_later"]

GATHER_SECONDS = 1.0  # how long the thread lets asks pile up before one pass over them
_NOFOLLOW = {"follow_symlinks": False} if os.utime in os.supports_follow_symlinks else {}


class _Asks:
    """The paths asked for and the thread refreshing them (a forked child starts with none)."""

    def __init__(self) -> None:
        self.pending: collections.deque[str] = collections.deque()
        self.asked: set[str] = set()
        self.work = threading.Event()
        self.draining = threading.Lock()  # held for a whole pass: a listing's flush waits for the thread's
        self.thread: threading.Thread | None = None


_asks = _Asks()


def refresh_later(path: str) -> None:
    """Set ``path``'s mtime to now, soon, on the refreshing thread (a path already asked is asked once)."""
    asks = _asks
    if path in asks.asked:
        return
    asks.asked.add(path)
    asks.pending.append(path)
    if asks.thread is None:
        _start(asks)
    if not asks.work.is_set():
        asks.work.set()


def flush() -> None:
    """Refresh every last-read time asked for so far, now (before entries are listed, and at exit).

    Returns once every refresh asked before the call is made, including one the thread has
    already taken off the queue: a listing never sees a time older than a hit it follows."""
    asks = _asks
    with asks.draining:
        while True:
            try:
                path = asks.pending.popleft()
            except IndexError:
                return
            with contextlib.suppress(OSError):  # gone, replaced by a link, or a read-only cache
                os.utime(path, **_NOFOLLOW)
            asks.asked.discard(path)


def _start(asks: _Asks) -> None:
    asks.thread = threading.Thread(target=_refresh_forever, args=(asks,), name="ptd-last-read", daemon=True)
    asks.thread.start()


def _refresh_forever(asks: _Asks) -> None:
    while True:
        asks.work.wait()
        time.sleep(GATHER_SECONDS)
        asks.work.clear()
        flush()


def _forget_in_child() -> None:
    global _asks
    _asks = _Asks()  # the parent refreshes its own asks; the child's thread starts on its first ask


atexit.register(flush)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
