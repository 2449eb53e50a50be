"""The cache panel's background work: scans and deletions in threads, and the disk watcher.

No ipywidgets here; :mod:`ipython_ext.browser_widget` hands in callbacks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("persist_to_disk")

WATCH_IDLE_SECONDS = 15 * 60  # the watcher stops after this long without a click, until the next one


def mtimes(folders: list[Path]) -> dict[Path, int]:
    """Each folder's mtime in ns (0: gone). About 2 µs a folder."""
    found = {}
    for folder in folders:
        try:
            found[folder] = os.stat(folder).st_mtime_ns
        except OSError:
            found[folder] = 0
    return found


class Tasks:
    """Runs a scan or a deletion in a thread (or in the caller's when not in the background).

    A newer cancellable task (opening another node) makes an older one stop and drop its
    result; a deletion is never cancelled: it finishes and reports.
    """

    def __init__(self, background: bool, lock: threading.RLock) -> None:
        self.background = background
        self._lock = lock
        self._latest = 0
        self._threads: list[threading.Thread] = []

    def run(
        self,
        work: Callable[[Callable[[int, int], None], Callable[[], bool]], Any],
        progress: Callable[[int, int], None],
        done: Callable[[Any], None],
        failed: Callable[[Exception], None],
        what: str,
        *,
        cancellable: bool,
    ) -> None:
        with self._lock:
            self._latest += 1
            task = self._latest

        def stopped() -> bool:
            return cancellable and task != self._latest

        def report(current: int, total: int) -> None:
            if not stopped():
                progress(current, total)

        def body() -> None:
            try:
                result = work(report, stopped)
                with self._lock:
                    if not stopped():
                        done(result)
            except Exception as exc:
                logger.exception("cache browser: %s failed", what)
                with self._lock:
                    failed(exc)

        if not self.background:
            body()
            return
        thread = threading.Thread(target=body, name=f"ptd-browser-{task}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"the cache browser's task is still running after {timeout} s")
            alive[0].join(left)


class Watcher:
    """Calls ``check()`` every ``every`` seconds in a daemon thread, from the first click until
    ``WATCH_IDLE_SECONDS`` pass without one (so forgotten panels stop costing anything); ``every=None``: never."""

    def __init__(self, every: float | None, check: Callable[[], Any]) -> None:
        self.every = every
        self._check = check
        self._last_use = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.poke()

    def poke(self) -> None:
        self._last_use = time.monotonic()
        if self.every is None or self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._loop, name="ptd-browser-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self.every is not None
        while not self._stop.wait(self.every):
            if time.monotonic() - self._last_use > WATCH_IDLE_SECONDS:
                return
            try:
                self._check()
            except Exception:  # a watcher must never die on a transient error (a folder being deleted)
                logger.debug("cache browser: checking the disk failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
