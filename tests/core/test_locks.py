"""The locks of a miss: compute-once between threads, tasks and processes, what they leave on disk,
what clear_locks may delete.

Linux takes a miss's digest lock as a byte lock on one shared file; other POSIX
systems use a lock file per digest, deleted once the entry is stored. Both kinds
run here (the second by switching the first off), so the fallback cannot rot
unseen on the machines that test. Across processes: tests/core/test_processes.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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


def _run_together(target, n: int, what: str) -> None:
    """Start n threads at once on target (which should wait on a barrier first); fail on one that hangs."""
    threads = [threading.Thread(target=target, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), f"a thread hangs on {what}"


def _lock_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / ".locks").rglob("*") if p.is_file())


def test_threads_of_one_process_compute_a_key_once(tmp_path, lock_kind):
    ptd.config.set_persist_path(tmp_path / "cache")
    runs = []

    @ptd.persistf()
    def slow(x):
        runs.append(x)
        threading.Event().wait(0.1)  # long enough for every other thread to arrive and wait
        return x * 10

    barrier = threading.Barrier(8)
    results = []

    def call():
        barrier.wait()
        results.append(slow(4))

    _run_together(call, 8, "a lock")
    assert results == [40] * 8
    assert runs == [4], f"{lock_kind} locks let {len(runs)} threads compute the same key"


def test_a_digest_lock_alone_excludes_the_other_threads(tmp_path, lock_kind):
    """A nested call takes only its digest lock: that lock alone must keep two threads apart
    (classic POSIX record locks would not: they belong to the process, not the thread)."""
    inside, worst = [0], [0]
    barrier = threading.Barrier(6)

    def hold():
        barrier.wait()
        with locks._digest_step(str(tmp_path), "one digest", -1, trust.current_policy()).lock:
            inside[0] += 1
            worst[0] = max(worst[0], inside[0])
            time.sleep(0.02)
            inside[0] -= 1

    _run_together(hold, 6, "a digest lock")
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

    @ptd.persistf(ignore_globals=["release"])  # a signal, not an input (`inside.set()` marks `inside` as state)
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


# -- async def functions --------------------------------------------------------------------------------
def test_async_calls_of_one_key_compute_once_while_the_event_loop_keeps_running(tmp_path):
    ptd.config.set_persist_path(tmp_path / "cache")
    runs = []

    @ptd.persistf()
    async def fetch(x):
        runs.append(x)
        await asyncio.sleep(0.2)
        return {"x": x}

    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        results = await asyncio.wait_for(asyncio.gather(*(fetch(3) for _ in range(6))), 30)
        done.set()
        await tick_task
        return results, ticks

    results, ticks = asyncio.run(main())
    assert results == [{"x": 3}] * 6
    assert runs == [3], "waiting tasks computed the key again"
    assert ticks >= 5, f"the event loop ran only {ticks} ticks in 0.2 s: a lock wait blocked it"


def test_a_cancelled_async_waiter_leaves_no_lock_behind(tmp_path):
    ptd.config.set_persist_path(tmp_path / "cache")

    async def main():
        release = asyncio.Event()

        @ptd.persistf(ignore_globals=["release"])  # a signal, not an input
        async def slow(x):
            await release.wait()
            return x

        holder = asyncio.create_task(slow(1))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(slow(1))  # waits for the holder's locks
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        assert await asyncio.wait_for(holder, 10) == 1
        # nothing is left locked: the same key hits and another key computes, at once
        assert await asyncio.wait_for(slow(1), 5) == 1
        assert await asyncio.wait_for(slow(2), 5) == 2

    asyncio.run(main())


@pytest.mark.parametrize("granularity", ["call", "func", "global"])
def test_async_fan_out_inside_a_computation_does_not_deadlock_at_any_granularity(tmp_path, granularity):
    """Tasks started by a computing coroutine count as nested calls (they take only digest locks):
    otherwise, with lock_granularity='func' or 'global', they would wait for their parent's lock for ever."""
    ptd.config.set_persist_path(tmp_path / "cache")
    runs = []

    @ptd.persistf(lock_granularity=granularity)
    async def part(i):
        runs.append(i)
        await asyncio.sleep(0.01)
        return i * i

    @ptd.persistf(lock_granularity=granularity)
    async def whole(n):
        return sum(await asyncio.gather(*(part(i) for i in range(n))))

    assert asyncio.run(asyncio.wait_for(whole(4), 20)) == 14
    assert asyncio.run(asyncio.wait_for(whole(4), 20)) == 14  # a hit
    assert sorted(runs) == [0, 1, 2, 3]


ASYNC_SCRIPT = """
import asyncio, os, sys, time
import persist_to_disk as ptd

ptd.config.set_persist_path(sys.argv[1])


@ptd.persistf()
async def slow_square(x):
    with open(os.environ["PTD_COUNTER"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    await asyncio.sleep(0.3)
    return x * x


start_at = float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
print(asyncio.run(slow_square(9)))
"""


def test_async_calls_in_several_processes_compute_a_key_once(tmp_path):
    script = tmp_path / "async_worker.py"
    script.write_text(ASYNC_SCRIPT)
    counter = tmp_path / "counter.txt"
    env = dict(os.environ, PTD_COUNTER=str(counter))
    start_at = time.time() + 2.0  # every process imported and waiting before the first call
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(start_at)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outs.append(out.strip())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert outs == ["81"] * 4
    assert len(counter.read_text().splitlines()) == 1, "the key was computed in more than one process"


def test_a_thread_pool_inside_a_computation_calling_the_same_function_does_not_deadlock(tmp_path):
    """Pool threads are not nested calls (they start with no locks held). With the default
    granularity a miss locks only its own key, so they never wait for their parent, even when
    every key shares one bucket (hashsize=1; the seed's bucket lock would hang here)."""
    ptd.config.set_persist_path(tmp_path / "cache")
    from concurrent.futures import ThreadPoolExecutor

    @ptd.persistf(hashsize=1)
    def tree(depth):
        if depth == 0:
            return 1
        with ThreadPoolExecutor(2) as pool:
            return sum(pool.map(tree, [depth - 1, depth - 1]))

    result = []
    runner = threading.Thread(target=lambda: result.append(tree(3)), daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "the pool threads wait for their parent's lock for ever"
    assert result == [8]
