"""Real processes: compute-once across processes, nested calls, crashes mid-write, a dead lock holder.

The persisted functions live in a module written to a temp folder and put on
sys.path, so spawned processes import them by name (as users' modules are).
Every wait has a deadline; a hang is a failure with the processes' output, never a
stuck test run. Each computation appends a line to a counter file (O_APPEND writes
of one short line are atomic), so "ran exactly once" is read from the file.
"""

from __future__ import annotations

import collections
import importlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

GRANULARITIES = ["call", "func", "global"]
DEADLINE = 60.0  # seconds any process may take before the test calls it a hang

WORKERS = '''
import os
import time

import persist_to_disk as ptd

GRANULARITY = {granularity!r}


def log(*words):
    with open(os.environ["PTD_COUNTER"], "a") as fh:
        fh.write(" ".join(str(w) for w in words) + "\\n")


@ptd.persistf(lock_granularity=GRANULARITY)
def square(x):
    log("square", x, os.getpid())
    time.sleep(0.05)  # a computation that takes a while, so other processes arrive meanwhile
    return x * x


@ptd.persistf(lock_granularity=GRANULARITY)
def inner(x):
    log("inner", x)
    time.sleep(0.01)
    return x + 1


@ptd.persistf(lock_granularity=GRANULARITY)
def outer(x):
    log("outer", x)
    return inner(x) * 2 + inner(x + 100)


# left and right call each other, so a process starting at left(x) and one starting at
# right(x) take the function (or, with one bucket, the bucket) locks in opposite orders
@ptd.persistf(lock_granularity=GRANULARITY, hashsize=1)
def left(x):
    log("left", x)
    time.sleep(0.05)  # long enough that both processes hold their first lock before wanting the second
    return 1 + (right(x) if x > 0 else 0)


@ptd.persistf(lock_granularity=GRANULARITY, hashsize=1)
def right(x):
    log("right", x)
    time.sleep(0.05)
    return 1 + left(x - 1)


@ptd.persistf(lock_granularity=GRANULARITY)
def fib(n):
    log("fib", n)
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def square_worker(keys, barrier, queue):
    barrier.wait(timeout=30)
    queue.put((os.getpid(), [(k, square(k)) for k in keys]))


def nested_worker(plan, barrier, queue):
    barrier.wait(timeout=30)
    out = []
    for name, arg in plan:
        out.append((name, arg, {{"outer": outer, "inner": inner, "fib": fib, "left": left, "right": right}}[name](arg)))
    queue.put((os.getpid(), out))
'''


def expected_outer(x):
    return (x + 1) * 2 + (x + 101)


def fib_value(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@pytest.fixture
def workers(tmp_path, monkeypatch):
    """Import a fresh workers module for one lock granularity; spawned children import it by name."""
    loaded = []

    def load(granularity: str):
        name = f"ptd_core_workers_{granularity}_{uuid.uuid4().hex[:8]}"
        folder = tmp_path / "modules"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(WORKERS.format(granularity=granularity))
        monkeypatch.syspath_prepend(str(folder))
        module = importlib.import_module(name)
        loaded.append(name)
        return module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PTD_COUNTER", str(tmp_path / "counter.txt"))
    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def counter_lines(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "counter.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def run_spawned(target, plans, timeout=DEADLINE):
    """Start one spawned process per plan, released together by a barrier; return their results."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(plans))
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(plan, barrier, queue)) for plan in plans]
    for p in procs:
        p.start()
    results = []
    deadline = time.monotonic() + timeout
    try:
        while len(results) < len(procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                results.append(queue.get(timeout=min(remaining, 1.0)))
            except Exception:  # queue.Empty: check that nobody died
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    pytest.fail(f"worker died with exit codes {[p.exitcode for p in dead]}")
        for p in procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
        hung = [p for p in procs if p.is_alive()]
        if hung or len(results) < len(procs):
            pytest.fail(f"{len(hung)} of {len(procs)} processes still running after {timeout}s: a deadlock or hang")
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    return results


# -- (a) compute once across processes -----------------------------------------------------------------------
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_each_key_is_computed_once_across_spawned_processes(tmp_path, workers, granularity):
    module = workers(granularity)
    keys = list(range(6))
    n_procs = 4
    # every process wants every key, each starting somewhere else: all keys are contended
    plans = [keys[i:] + keys[:i] for i in range(n_procs)]
    results = run_spawned(module.square_worker, plans)

    assert len(results) == n_procs
    for _pid, got in results:
        assert sorted(got) == [(k, k * k) for k in keys], "every caller gets the right value"
    runs = collections.Counter(int(words[1]) for words in counter_lines(tmp_path) if words[0] == "square")
    assert runs == {k: 1 for k in keys}, f"each key must run exactly once, ran: {dict(runs)}"
    # and the parent, a fifth process, reads them all without computing
    assert [module.square(k) for k in keys] == [k * k for k in keys]
    assert sum(1 for w in counter_lines(tmp_path) if w[0] == "square") == len(keys)


def test_persisted_functions_can_be_handed_to_a_spawn_pool(tmp_path, workers):
    """The seed: "ptd.persistf can be used with multiprocessing directly", module-level or local."""
    import persist_to_disk as ptd

    module = workers("call")
    local_counter = str(tmp_path / "cube_counter.txt")

    @ptd.persistf
    def cube(x):
        with open(local_counter, "a") as fh:
            fh.write(f"{x}\n")
        return x**3

    with mp.get_context("spawn").Pool(2) as pool:
        assert pool.map_async(module.square, range(6)).get(timeout=DEADLINE) == [k * k for k in range(6)]
        assert pool.map_async(cube, range(6)).get(timeout=DEADLINE) == [k**3 for k in range(6)]
    assert [module.square(k) for k in range(6)] == [k * k for k in range(6)]
    assert [cube(k) for k in range(6)] == [k**3 for k in range(6)]
    assert len(counter_lines(tmp_path)) == 6, "the parent read what the pool's processes wrote"
    assert sorted(Path(local_counter).read_text().split()) == [str(k) for k in range(6)]


# -- (b) nested persisted calls never deadlock ----------------------------------------------------------
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_nested_persisted_calls_across_processes_finish(tmp_path, workers, granularity):
    module = workers(granularity)
    xs = [1, 2, 3]
    plans = [
        [("left", 4)] + [("outer", x) for x in xs] + [("fib", 18)],
        [("right", 4)] + [("inner", x) for x in reversed(xs)] + [("outer", x) for x in reversed(xs)] + [("fib", 15)],
        [("fib", 20)] + [("outer", x) for x in xs] + [("right", 3)],
    ]
    results = run_spawned(module.nested_worker, plans, timeout=30)

    expect = {
        "outer": expected_outer,
        "inner": lambda x: x + 1,
        "fib": fib_value,
        "left": lambda x: 2 * x + 1,
        "right": lambda x: 2 * x,
    }
    for _pid, got in results:
        for name, arg, value in got:
            assert value == expect[name](arg), (name, arg, value)
    runs = collections.Counter(tuple(words) for words in counter_lines(tmp_path))
    assert all(n == 1 for n in runs.values()), f"nested calls also compute once: {runs}"
    assert {("fib", str(n)) for n in range(21)} <= set(runs)


# -- (c) a crash in the middle of writing a large entry ------------------------------------------------------
CRASH_SCRIPT = '''
import builtins
import os
import sys
import time

import numpy as np

import persist_to_disk as ptd

BIG = 200 * 2**20


def log(*words):
    with open(os.environ["PTD_COUNTER"], "a") as fh:
        fh.write(" ".join(str(w) for w in words) + "\\n")


@ptd.persistf
def small(i):
    log("small", i)
    return {"i": i, "items": list(range(i * 10))}


@ptd.persistf
def big(n):
    log("big", n)
    return np.full(n, 7, dtype=np.uint8)


class SlowWriter:
    """A binary file whose writes trickle out, 1 MiB at a time, so a kill lands mid-write."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), 2**20):
            self._fh.write(view[start : start + 2**20])
            self._fh.flush()
            time.sleep(0.01)
        return len(view)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._fh.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def slow_binary_writes():
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return SlowWriter(fh) if "w" in mode and "b" in mode else fh

    builtins.open = open_


if __name__ == "__main__":
    if sys.argv[1] == "write":
        for i in range(20):
            small(i)
        print("small entries written", flush=True)
        slow_binary_writes()
        big(BIG)
        print("big entry written: the test did not kill us in time", flush=True)
    else:
        for i in range(20):
            assert small(i) == {"i": i, "items": list(range(i * 10))}, i
        value = big(BIG)
        assert value.shape == (BIG,) and value.dtype == np.uint8
        assert value[0] == 7 and value[-1] == 7 and bool((value[::4096] == 7).all())
        print("read ok", flush=True)
'''


def wait_for(condition, what: str, timeout: float = DEADLINE, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                out = p.stdout.read() if p.stdout else ""
                pytest.fail(f"process exited ({p.returncode}) while waiting for {what}:\n{out}")
        time.sleep(0.005)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def test_sigkill_while_writing_a_large_entry_loses_only_that_entry(tmp_path, cache_root):
    project = tmp_path / "proj"
    project.mkdir()
    script = project / "crashy.py"
    script.write_text(CRASH_SCRIPT)
    env = dict(os.environ, PTD_COUNTER=str(tmp_path / "counter.txt"))

    writer = subprocess.Popen(
        [sys.executable, str(script), "write"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def torn_temp_file():
            for tmp in cache_root.rglob(".*.tmp"):
                try:
                    if tmp.stat().st_size > 16 * 2**20:
                        return tmp
                except FileNotFoundError:
                    pass
            return None

        tmp = wait_for(torn_temp_file, "the large entry's temp file to grow past 16 MiB", procs=[writer])
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
    assert writer.returncode == -signal.SIGKILL
    out = writer.stdout.read()
    assert "small entries written" in out and "big entry written" not in out

    entries = [p for p in cache_root.rglob("*.ptd")]
    big_entries = [p for p in entries if "big" in p.parts]
    assert len([p for p in entries if "small" in p.parts]) == 20
    assert big_entries == [], "the torn entry must not be in place under its entry name"
    digest = tmp.name[1:].split(".ptd.")[0]
    assert not (tmp.parent / f"{digest}.ptd").exists()

    reader = subprocess.run(
        [sys.executable, str(script), "read"], cwd=project, env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    assert reader.returncode == 0, reader.stdout + reader.stderr
    assert "read ok" in reader.stdout
    runs = collections.Counter(line.split()[0] for line in (tmp_path / "counter.txt").read_text().splitlines())
    assert runs == {"small": 20, "big": 2}, "earlier entries were read intact; only the torn one was recomputed"
    assert (tmp.parent / f"{digest}.ptd").is_file(), "the recomputed entry took the torn one's place"
    for path in [*cache_root.rglob("*.ptd"), *cache_root.rglob(".*.tmp")]:  # free ~230 MB of disk now
        if "big" in path.parts:
            path.unlink()


# -- (d) a lock holder killed while computing ---------------------------------------------------------------
HOLDER_SCRIPT = '''
import os
import sys
import time

import persist_to_disk as ptd


def log(*words):
    with open(os.environ["PTD_COUNTER"], "a") as fh:
        fh.write(" ".join(str(w) for w in words) + "\\n")


@ptd.persistf(lock_granularity=sys.argv[2])
def slow(x):
    log("start", sys.argv[1], repr(time.time()))
    if sys.argv[1] == "holder":
        print("computing", flush=True)
        deadline = time.monotonic() + 60  # wait to be killed, but never for ever
        while time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(3)
    return x + 1


if __name__ == "__main__":
    print("calling", flush=True)
    print("result", slow(41), flush=True)
'''


class Lines:
    """A process's stdout lines, read by a thread, so waiting for one has a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        import queue
        import threading

        self.proc = proc
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float = DEADLINE) -> str:
        import queue

        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output from process {self.proc.pid} within {timeout}s")
        if line is None:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"process {self.proc.pid} ended its output early (exit {self.proc.poll()}):\n{err}")
        return line


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_killed_lock_holder_does_not_block_the_next_process(tmp_path, granularity):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER_SCRIPT)
    counter = tmp_path / "counter.txt"
    env = dict(os.environ, PTD_COUNTER=str(counter))

    def start(role):
        return subprocess.Popen(
            [sys.executable, str(script), role, granularity],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    holder = start("holder")
    waiter = None
    try:
        holder_out = Lines(holder)
        assert holder_out.next() == "calling"
        assert holder_out.next() == "computing"
        waiter = start("waiter")
        waiter_out = Lines(waiter)
        assert waiter_out.next() == "calling"
        # give a broken lock the chance to show: the waiter must not start computing while the holder lives
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert not any(w[:2] == ["start", "waiter"] for w in counter_lines(tmp_path)), "computed while locked"
            time.sleep(0.01)
        killed_at = time.time()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        result = waiter_out.next()
        waiter.wait(timeout=DEADLINE)
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    assert holder.returncode == -signal.SIGKILL
    assert waiter.returncode == 0, waiter.stderr.read()
    assert result == "result 42"
    starts = [w for w in counter_lines(tmp_path) if w[0] == "start"]
    assert [w[1] for w in starts] == ["holder", "waiter"]
    assert float(starts[1][2]) >= killed_at - 0.05, "the waiter computed only after the holder died"
