"""SIGKILL at every point of a large write, and a lock holder killed while it computes.

A writer process is stopped at a named point of ``LocalStore.put`` (the test-only
``PTD_TEST_FAULT`` hook: the temp file just opened, half of a 4 MB value written,
the temp file complete but not yet renamed) and SIGKILLed there. Afterwards every
other entry must read back byte for byte, the torn entry must be a miss (the old
value, for an overwrite), and the dead writer's temp file must be swept by the next
writer, while a live writer's temp file is never touched. The same rounds against
the seed's design (a bucket in one pickle, rewritten in place) lose entries: the
checker is shown to catch that.
"""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from pathlib import Path

from persist_to_disk import writing
from persist_to_disk.store import ENOVAL, LocalStore

SIZE = 4 * 1024 * 1024  # the torn write: big enough that "the middle" is a real place
SMALL = 64 * 1024
SURVIVORS = [f"grp/3/survivor{i}.ptd" for i in range(6)]
POINTS = ("opened", "middle", "written")


def _check(store, expected: dict[str, bytes | None]) -> list[str]:
    """What went wrong: entries lost, torn values returned, wrong values; [] when all is well."""
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key, value in expected.items():
            got = store.get(key)
            if value is None:
                if got is not ENOVAL:
                    problems.append(f"{key}: a torn entry was returned")
            elif got is ENOVAL:
                problems.append(f"{key}: lost")
            elif got != value:
                problems.append(f"{key}: wrong value")
    problems += [f"warning: {w.message}" for w in caught]
    return problems


def _kill_rounds(rel, root: Path, design: str, points: tuple[str, ...], repeats: int) -> list[str]:
    """Kill a writer at each point, ``repeats`` times; return every problem the checks found."""
    w = rel.worker
    store = w.make_store(design, str(root))
    expected: dict[str, bytes | None] = {}
    for key in SURVIVORS:
        expected[key] = w.expected_value(key, SMALL)
        store.put(key, expected[key], {"key": key})
    problems: list[str] = []
    for i in range(repeats * len(points)):
        point = points[i % len(points)]
        overwrite = i % 2 == 1  # odd rounds tear an overwrite of an existing entry: its old value must stay
        victim = SURVIVORS[i % len(SURVIVORS)] if overwrite else f"grp/3/victim{i}.ptd"
        ready = root.parent / f"ready-{design}-{i}"
        proc = rel.start(
            "put",
            {"root": str(root), "key": victim, "size": SIZE, "design": design},
            env={"PTD_TEST_FAULT": f"{point}:pause", "PTD_TEST_FAULT_READY": str(ready)},
        )
        rel.wait_for(ready.exists, what=f"the writer to reach {point!r}")
        torn = Path(ready.read_text())
        assert torn.exists(), f"the writer's file {torn} should be on disk when it is killed"
        rel.kill(proc)
        if not overwrite:
            expected[victim] = None  # a torn new entry is a miss
        problems += [f"round {i} ({point}): {p}" for p in _check(store, expected)]
        if design == "ours":
            rel.count(faults=1, operations=len(expected) + 1, lost=len(problems))
            # this round's writer swept the temp files of the dead writers before it; only its own is left
            assert rel.temp_files(root) == [torn], f"round {i}: stale temp files were not swept"
    return problems


def test_sigkill_at_each_point_of_a_large_write_loses_nothing(rel, tmp_path):
    root = tmp_path / "ours"
    assert _kill_rounds(rel, root, "ours", POINTS, repeats=3) == []
    # the next writer (any process, here a fresh one) removes the last dead writer's temp file
    rel.run("put", {"root": str(root), "key": "grp/3/after.ptd", "size": 10})
    assert rel.temp_files(root) == []
    rel.count(operations=1)


def test_the_same_kills_lose_entries_in_the_seeds_bucket_design(rel, tmp_path):
    """Honesty: the checker above is not vacuous; it catches the seed's design losing a whole bucket."""
    problems = _kill_rounds(rel, tmp_path / "seed", "seed", ("opened", "middle"), repeats=1)
    assert any("lost" in p for p in problems), problems


def test_without_the_sweep_dead_writers_temp_files_would_pile_up(rel, tmp_path):
    """Honesty: the temp-file assertion above fails when the sweep is switched off in the writers."""
    root = tmp_path / "nosweep"
    for i, point in enumerate(("middle", "written")):
        ready = tmp_path / f"ready{i}"
        proc = rel.start(
            "put",
            {"root": str(root), "key": f"g/1/v{i}.ptd", "size": SMALL, "disable": ["sweep"]},
            env={"PTD_TEST_FAULT": f"{point}:pause", "PTD_TEST_FAULT_READY": str(ready)},
        )
        rel.wait_for(ready.exists, what="the writer to pause")
        rel.kill(proc)
    assert len(rel.temp_files(root)) == 2


def test_a_live_writers_temp_file_is_never_swept_a_dead_ones_is(rel, tmp_path):
    root = tmp_path / "store"
    ready = tmp_path / "ready"
    proc = rel.start(
        "put",
        {"root": str(root), "key": "g/1/slow.ptd", "size": SIZE},
        env={"PTD_TEST_FAULT": "middle:pause", "PTD_TEST_FAULT_READY": str(ready)},
    )
    try:
        rel.wait_for(ready.exists, what="the slow writer to be mid-write")
        live = Path(ready.read_text())
        rel.run("put", {"root": str(root), "key": "g/1/other.ptd", "size": 10})  # sweeps g/1
        assert live.exists(), "a live writer's temp file was removed"
        assert LocalStore(root).remove_stale_temps() == []
        assert live.exists()
    finally:
        rel.kill(proc)
    assert LocalStore(root).remove_stale_temps() == [str(live)]
    assert rel.temp_files(root) == []
    rel.count(faults=1, operations=3)


def test_stale_temp_rules_host_pid_and_age(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        names = {
            "dead_here": f".a.ptd.{writing._HOST}-{dead.pid}-0123abcd.tmp",
            "live_here": f".b.ptd.{writing._HOST}-{live.pid}-0123abcd.tmp",
            "mine": f".c.ptd.{writing._HOST}-{os.getpid()}-0123abcd.tmp",
            "old_elsewhere": ".d.ptd.other-host-77-0123abcd.tmp",
            "new_elsewhere": ".e.ptd.other-host-78-0123abcd.tmp",
            "not_ours": ".notes.tmp",
        }
        for name in names.values():
            (folder / name).write_bytes(b"x")
        two_days_ago = time.time() - 2 * 86400
        for label in ("old_elsewhere", "not_ours", "live_here", "mine"):
            os.utime(folder / names[label], (two_days_ago, two_days_ago))
        stale = {Path(p).name for p in writing.stale_temp_files(str(folder))}
        assert stale == {names["dead_here"], names["old_elsewhere"]}
    finally:
        live.kill()
        live.wait()


def test_a_lock_holder_killed_while_computing_the_next_process_computes_once(rel, tmp_path, persist):
    log, marker, release = tmp_path / "log", tmp_path / "computing", tmp_path / "never"
    holder = rel.start("call", {"persist": str(persist), "func": "slow", "keys": ["K"], "log": str(log),
                                "marker": str(marker), "release": str(release)})
    rel.wait_for(marker.exists, what="the holder to be computing")
    calling = tmp_path / "calling"
    waiter = rel.start("call", {"persist": str(persist), "func": "slow", "keys": ["K"], "log": str(log),
                                "calling": str(calling)})
    rel.wait_for(calling.exists, what="the second process to call")
    assert [pid for pid, _ in rel.worker.read_log(log)] == [holder.pid]  # it waits; it does not compute
    rel.kill(holder)
    out = rel.finish(waiter, timeout=30)  # the lock died with its holder: no waiting for ever
    assert out["results"] == [{"key": "K", "by": waiter.pid}] and out["warnings"] == []
    third = rel.run("call", {"persist": str(persist), "func": "slow", "keys": ["K"], "log": str(log)})
    assert third["results"] == [{"key": "K", "by": waiter.pid}]  # a hit
    assert [pid for pid, _ in rel.worker.read_log(log)] == [holder.pid, waiter.pid]  # computed once after the kill
    rel.count(faults=1, operations=3)


def test_a_lock_that_outlives_its_holder_would_hang_the_next_process(rel, tmp_path, persist):
    """Honesty: with a naive O_EXCL lock file (no flock), the test above would wait for ever."""
    marker = tmp_path / "computing"
    args = {"persist": str(persist), "func": "slow", "keys": ["K"], "naive_lock": True}
    holder = rel.start("call", {**args, "marker": str(marker), "release": str(tmp_path / "never")})
    rel.wait_for(marker.exists, what="the holder to be computing")
    rel.kill(holder)
    waiter = rel.start("call", args)
    rel.assert_still_running(waiter, 2.0)  # bounded: long enough to show it is stuck behind a dead holder
    rel.kill(waiter)


def test_a_writer_killed_mid_write_by_the_decorator_is_recomputed_once(rel, tmp_path, persist):
    log, ready = tmp_path / "log", tmp_path / "ready"
    args = {"persist": str(persist), "keys": ["big"], "size": SIZE, "log": str(log)}
    proc = rel.start("call", args, env={"PTD_TEST_FAULT": "middle:pause", "PTD_TEST_FAULT_READY": str(ready)})
    rel.wait_for(ready.exists, what="the decorated call to be mid-write")
    rel.kill(proc)
    out = rel.run("call", args)
    assert out == {"results": [{"key": "big", "ok": True}], "warnings": []}
    again = rel.run("call", args)
    assert again == out
    assert len(rel.worker.read_log(log)) == 2  # the killed one, then one recompute; the third call hit
    assert rel.temp_files(persist) == []
    rel.count(faults=1, operations=2)
