"""The locks of a miss: compute-once between threads, what they leave on disk, what clear_locks may delete.

Linux takes a miss's digest lock as a byte lock on one shared file; other POSIX
systems use a lock file per digest, deleted once the entry is stored. Both kinds
run here (the second by switching the first off), so the fallback cannot rot
unseen on the machines that test. Across processes: tests/core/test_core_processes.py.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk import locks, trust

KINDS = ["byte", "file"]


@pytest.fixture(params=KINDS)
def lock_kind(request, monkeypatch):
    if request.param == "byte" and not locks._OFD:
        pytest.skip("this system has no open-file-description locks (F_OFD_SETLKW): digest locks are files here")
    if request.param == "file":
        monkeypatch.setattr(locks, "_OFD", False)
    return request.param


def _lock_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / ".locks").rglob("*") if p.is_file())


def test_threads_of_one_process_compute_a_key_once(tmp_path, lock_kind):
    ptd.config.set_persist_path(tmp_path / "cache")
    runs = []
    started = threading.Event()

    @ptd.persistf()
    def slow(x):
        runs.append(x)
        started.set()
        threading.Event().wait(0.1)  # long enough for every other thread to arrive and wait
        return x * 10

    barrier = threading.Barrier(8)
    results = []

    def call():
        barrier.wait()
        results.append(slow(4))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a thread hangs on a lock"
    assert results == [40] * 8
    assert runs == [4], f"{lock_kind} locks let {len(runs)} threads compute the same key"


def test_a_digest_lock_alone_excludes_the_other_threads(tmp_path, lock_kind):
    """A nested call takes only its digest lock: that lock alone must keep two threads apart
    (classic POSIX record locks would not: they belong to the process, not the thread)."""
    inside, worst = [0], [0]
    barrier = threading.Barrier(6)

    def hold():
        barrier.wait()
        with locks._digest_hold(str(tmp_path), "one digest", -1, trust.current_policy(), locks.Held()):
            inside[0] += 1
            worst[0] = max(worst[0], inside[0])
            time.sleep(0.02)
            inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a thread hangs on a digest lock"
    assert worst[0] == 1, f"{worst[0]} threads held one digest lock at once ({lock_kind} locks)"


def test_a_miss_leaves_no_lock_file_of_its_own(tmp_path, lock_kind):
    root = tmp_path / "cache"
    ptd.config.set_persist_path(root)

    @ptd.persistf(lock_granularity="func")
    def f(x):
        return x

    for i in range(30):
        assert f(i) == i
    files = _lock_files(root)
    shared = os.path.join(locks.LOCK_DIR, locks.DIGEST_LOCK_FILE)
    if lock_kind == "byte":  # the function's lock file, and the one file every digest byte lock shares
        assert len(files) == 2 and shared in files, files
    else:  # the function's lock file; each digest's lock file went once its entry was stored
        assert len(files) == 1 and shared not in files, files


def test_clear_locks_never_deletes_the_byte_lock_file_even_while_a_miss_holds_it(tmp_path):
    if not locks._OFD:
        pytest.skip("no byte locks on this system")
    root = tmp_path / "cache"
    ptd.config.set_persist_path(root)
    inside, release = threading.Event(), threading.Event()

    @ptd.persistf()
    def held(x):
        inside.set()
        release.wait(30)
        return x

    worker = threading.Thread(target=held, args=(1,))
    worker.start()
    try:
        assert inside.wait(30)
        removed = ptd.clear_locks(clear=True)  # flock cannot see byte locks: the file must be skipped by name
        assert all(not p.endswith(locks.DIGEST_LOCK_FILE) for p in removed)
        assert (root / locks.LOCK_DIR / locks.DIGEST_LOCK_FILE).is_file()
    finally:
        release.set()
        worker.join(30)
    assert held(1) == 1
