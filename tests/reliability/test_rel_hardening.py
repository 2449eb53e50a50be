"""Faults a careful user or a hostile neighbour can cause: Ctrl-C storms, fork, FIFOs, clocks, odd values.

Each test drives the real thing (real SIGINTs at random moments, a real ``fork``, a real FIFO)
with a bounded wait, so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import operator
import os
import random
import signal
import subprocess
import sys
import time
import warnings

import pytest

import persist_to_disk as ptd
from persist_to_disk import catalog as cat
from persist_to_disk import layout
from persist_to_disk.prune import plan_prune

POSIX = hasattr(os, "fork")
YEAR_2100 = 4102444800


# -- Ctrl-C -----------------------------------------------------------------------------------------
@pytest.mark.skipif(not POSIX, reason="real signals and /proc")
@pytest.mark.parametrize("granularity", ["call", "func"])
def test_a_sigint_storm_never_leaves_a_lock_held(rel, tmp_path, persist, granularity):
    """SIGINTs at random moments of recaching calls; afterwards this process and another still get each key."""
    files = {name: tmp_path / name for name in ("ready", "stop", "done", "release")}
    args = {"persist": str(persist), "keys": 3, "granularity": granularity, **{k: str(v) for k, v in files.items()}}
    proc = rel.start("storm", args)
    rel.wait_for(files["ready"].exists, what="the storm worker to start")
    rng = random.Random(12)
    sent = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        sent += 1
        # paces the storm: random moments, not a wait for anything; a rare lull lets a slow machine finish calls
        time.sleep(rng.uniform(0, 0.02 if sent % 50 == 0 else 0.002))
    files["stop"].write_text("1")
    try:  # a lock it leaked would make it wait for ever on its own key
        rel.wait_for(lambda: files["done"].exists() or proc.poll() is not None, timeout=30,
                     what="the interrupted process to call each key again")
        assert files["done"].exists(), proc.communicate()[1][-3000:]
        # another process recaches each key while the interrupted one still lives (its locks, if leaked, held)
        other = rel.run("storm", {**args, "ready": str(tmp_path / "ready2"), "done": str(tmp_path / "done2"),
                                  "release": str(files["stop"])}, timeout=30)
    except BaseException:
        proc.kill()
        raise
    finally:
        files["release"].write_text("1")
    out = rel.finish(proc, timeout=30)
    assert other["wrong"] == [] and other["interrupted"] == 0
    assert out["wrong"] == [] and out["interrupted"] > 20 and out["calls"] > 20, out
    rel.count(faults=sent, operations=out["calls"] + out["interrupted"] + 6)


CTRL_C_IN_AN_IMPORT = """
import importlib.abc, os, signal, sys
site = sys.argv[2]  # a folder named site-packages: what it holds counts as a library
with open(os.path.join(site, "unversioned.py"), "w") as fh:
    fh.write("def scale(x):\\n    return 2 * x\\n")  # no __version__: its version comes from importlib.metadata
sys.path.insert(0, site)

class CtrlCWhileImported(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "importlib.metadata":
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the module is being imported
        return None

sys.meta_path.insert(0, CtrlCWhileImported())
import unversioned
import persist_to_disk as ptd
ptd.config.set_persist_path(sys.argv[1])

@ptd.persistf()
def doubled(x):
    return unversioned.scale(x)

interrupted = 0
for x in (1, 2, 3):
    try:
        doubled(x)
    except KeyboardInterrupt:
        interrupted += 1
print(interrupted, "importlib.metadata" in sys.modules, doubled(4))
"""


@pytest.mark.skipif(not POSIX, reason="real signals")
def test_ctrl_c_during_an_import_a_call_needs_interrupts_the_call_not_the_import(tmp_path, python):
    """The first dependency walk imports importlib.metadata (a library without __version__): a Ctrl-C
    then interrupts that call once the import is done; cut short, the import started over in every
    call and a long one never completed under repeated interrupts."""
    site = tmp_path / "site-packages"
    site.mkdir()
    out = subprocess.run([python, "-c", CTRL_C_IN_AN_IMPORT, str(tmp_path / "cache"), str(site)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["1", "True", "8"]


FORGOTTEN_LOCK = """
import contextvars, sys
from persist_to_disk import locks
root = sys.argv[1]
left = locks.compute_lock(root, None, "key")  # kept alive, as a traceback's frame would keep it
left.__enter__()  # taken, then forgotten (as by an interrupt that no handler saw)
def again():
    with locks.compute_lock(root, None, "key"):
        print("taken again")
contextvars.Context().run(again)  # a context that does not know this thread holds it
"""


@pytest.mark.skipif(not POSIX, reason="kernel locks")
def test_a_thread_never_waits_on_a_lock_it_holds_itself(tmp_path):
    done = subprocess.run([sys.executable, "-c", FORGOTTEN_LOCK, str(tmp_path)], capture_output=True, text=True,
                          timeout=30, env=os.environ.copy())
    assert done.returncode == 0 and "taken again" in done.stdout, done.stderr


# -- fork -------------------------------------------------------------------------------------------
@pytest.mark.skipif(not POSIX, reason="fork")
@pytest.mark.parametrize("granularity", ["call", "func"])
def test_a_forked_child_does_not_keep_its_parents_lock(rel, tmp_path, persist, granularity):
    """The holder forks a child that lives on; once the holder is killed, a waiter gets the lock at once."""
    marker = tmp_path / "computing"
    holder = rel.start("call", {"persist": str(persist), "func": "slow", "keys": ["K"], "marker": str(marker),
                                "release": str(tmp_path / "never"), "fork": True, "granularity": granularity})
    text = rel.wait_for(lambda: marker.exists() and marker.read_text(), what="the holder to fork and compute")
    child = int(text.split()[1])
    try:
        rel.kill(holder)
        out = rel.run("call", {"persist": str(persist), "func": "slow", "keys": ["K"], "granularity": granularity},
                      timeout=20)
        assert out["results"][0]["by"] != holder.pid and out["warnings"] == []
        os.kill(child, 0)  # the child still lives: the waiter did not just outwait it
    finally:
        os.kill(child, signal.SIGKILL)
    rel.count(faults=1, operations=2)


# -- what sits where an entry should ----------------------------------------------------------------
@pytest.mark.skipif(not POSIX, reason="mkfifo")
def test_a_fifo_named_like_an_entry_blocks_neither_a_call_nor_ptd_ls(rel, tmp_path, persist):
    w = rel.worker
    entry = w.rel_big.cache.path("fifo", 100)
    entry.parent.mkdir(parents=True)
    os.mkfifo(entry)
    project = entry.relative_to(persist).parts[0]
    function = w.rel_big.cache.folder.relative_to(persist / project).as_posix()
    for args in (["ls", "--root", str(persist), project], ["ls", "--root", str(persist), project, function]):
        done = subprocess.run([sys.executable, "-m", "persist_to_disk", *args], capture_output=True, text=True,
                              timeout=30, env=os.environ.copy())
        assert done.returncode == 0, done.stderr
    out = rel.run("call", {"persist": str(persist), "keys": ["fifo"], "size": 100}, timeout=30)
    assert out["results"] == [{"key": "fifo", "ok": True}]
    assert len(out["warnings"]) == 1 and str(entry) in out["warnings"][0]
    assert "not a regular file" in out["warnings"][0]
    assert entry.is_file()  # the call's own entry replaced it
    rel.count(faults=1, operations=3)


def _recorded(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    return value, [str(w.message) for w in caught if issubclass(w.category, ptd.CacheWarning)]


# -- clocks -----------------------------------------------------------------------------------------
def test_a_last_read_time_in_the_future_heals_on_read_and_pruning_stays_right(rel, persist):
    @ptd.persistf
    def f(x):
        return x

    f("read"), f("unread")
    read, unread = f.cache.path("read"), f.cache.path("unread")
    for path in (read, unread):
        os.utime(path, (YEAR_2100, YEAR_2100))  # a clock that was wrong when they were written
    assert f("read") == "read"
    assert read.stat().st_mtime <= time.time() + 1, "a read must bring a future last-read time back to now"
    catalog = cat.Catalog(persist)
    entries = catalog.entry_files(catalog.node_of_folder(f.cache.folder))
    plan = plan_prune(entries, max_size=max(e.size for e in entries))
    assert [e.path for e in plan.delete] == [unread], "the least recently read entry goes first"
    rel.count(faults=2, operations=3)


# -- values that do not come back ---------------------------------------------------------------------
class Unloadable:
    """Pickles fine; unpickling it divides by zero."""

    def __reduce__(self):
        return operator.truediv, (1, 0)


def test_an_entry_that_cannot_be_unpickled_is_reported_once_and_not_stored_again(rel, persist):
    runs = []

    @ptd.persistf
    def f(x):
        runs.append(x)
        return Unloadable()

    f(1)
    path = f.cache.path(1)
    written = path.stat()
    messages = []
    for _ in range(4):
        value, caught = _recorded(lambda: f(1))
        assert isinstance(value, Unloadable)
        messages += caught
    assert len(messages) == 1 and str(path) in messages[0] and "cannot be unpickled" in messages[0], messages
    assert runs == [1] * 5  # a value the cache cannot give back is computed on each call
    now = path.stat()
    assert (now.st_ino, now.st_mtime_ns) == (written.st_ino, written.st_mtime_ns), "it was stored again"
    rel.count(faults=1, operations=5)


# -- names --------------------------------------------------------------------------------------------
def test_an_escaped_name_never_equals_a_clean_one(rel, persist):
    escaped = layout.safe_folder_name("a b", setting="g")
    assert escaped != "a b"
    assert layout.safe_folder_name(escaped, setting="g") != escaped
    lookalike = "a_b-8044f8a6"  # what the escape of 'a b' used to be: a clean value
    assert layout.safe_folder_name(lookalike, setting="g") != escaped

    @ptd.persistf(groupby=["g"])
    def f(g):
        return g

    assert f("a b") == "a b" and f(escaped) == escaped and f(lookalike) == lookalike
    folders = {f.cache.path(g).parent.parent for g in ("a b", escaped, lookalike)}
    assert len(folders) == 3, folders
    for clean in ("MNIST", "lr=0.001", "a_b", "run-7", "cell-c65412e0", "deadbeef", "v-0123456789"):
        assert layout.safe_folder_name(clean, setting="g") == clean  # clean names keep their folders
    rel.count(faults=1, operations=2)
