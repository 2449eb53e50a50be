"""Many processes at once; a computation that holds its lock for hours; clocks that jump.

Eight processes make hundreds of calls each on overlapping keys (four buckets, so
they contend for the same locks and folders) while also recomputing and deleting
the "volatile" keys through the decorator's and the store's delete paths. The
"stable" keys are never deleted, so each must be computed exactly once across all
processes and still be there, intact, at the end: that is "no entry lost". Every
returned value is compared with the right one, every exception and CacheWarning in
the callers is counted, and all must be zero. The same run without locks, or on the
seed's bucket design, is shown to fail these checks.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

PROCS = 8
STABLE = 40
VOLATILE = 16


def _stress(rel, persist: Path, tmp_path: Path, ops: int, **extra) -> dict:
    log = tmp_path / "computes.log"
    args = {"persist": str(persist), "stable": STABLE, "volatile": VOLATILE, "ops": ops, "seconds": 40,
            "log": str(log), "compute_delay": 0.005, **extra}
    procs = [rel.start("stress", {**args, "seed": i}) for i in range(PROCS)]
    outs = [rel.finish(p, timeout=120) for p in procs]
    computes = Counter(key for _, key in rel.worker.read_log(log))
    stable = [f"s{i}" for i in range(STABLE)]
    verify = rel.run("verify", {**args, "keys": stable})
    return {
        "operations": sum(sum(o["counts"].values()) for o in outs),
        "invalidations": sum(o["counts"]["invalidations"] + o["counts"]["deletes"] for o in outs),
        "errors": [e for o in outs for e in o["errors"]],
        "n_errors": sum(o["n_errors"] for o in outs),
        "wrong": [k for o in outs for k in o["wrong"]],
        "warnings": [w for o in outs for w in o["warnings"]] + verify["warnings"],
        "computed_twice": {k: n for k, n in computes.items() if k.startswith("s") and n > 1},
        "lost": [k for k in stable if computes[k] and verify["report"][k] != "ok"],
        "stable_computed": sum(1 for k in stable if computes[k]),
    }


def _problems(r: dict) -> list[str]:
    out = []
    for name in ("errors", "wrong", "warnings", "lost"):
        if r[name]:
            out.append(f"{name}: {r[name][:5]}")
    if r["computed_twice"]:
        out.append(f"stable keys computed more than once: {r['computed_twice']}")
    return out


def test_eight_processes_overlapping_keys_random_invalidations(rel, tmp_path, persist):
    r = _stress(rel, persist, tmp_path, ops=400)
    assert _problems(r) == []
    assert r["n_errors"] == 0
    assert r["operations"] >= PROCS * 400 * 0.9, r  # the run was not cut short by the time bound
    assert r["invalidations"] > 100 and r["stable_computed"] == STABLE
    rel.count(operations=r["operations"] + STABLE, lost=len(r["lost"]))
    rel.figures["invalidations"] = rel.figures.get("invalidations", 0) + r["invalidations"]


def test_without_locks_the_same_run_computes_keys_twice(rel, tmp_path, persist):
    """Honesty: remove the compute-once lock and the checker catches duplicated work."""
    r = _stress(rel, persist, tmp_path, ops=150, nolock=True)
    assert r["computed_twice"], r


def test_on_the_seeds_bucket_design_the_same_run_loses_entries(rel, tmp_path, persist):
    """Honesty: one pickle per bucket, rewritten in place, loses and tears entries under the same load."""
    r = _stress(rel, persist, tmp_path, ops=150, design="seed")
    assert _problems(r), r


def test_a_computation_holding_its_lock_for_hours_is_waited_for(rel, tmp_path, persist):
    """The waiter's clocks jump an hour at every reading, both ways for the wall clock: it still waits."""
    log, marker, release, calling = (tmp_path / n for n in ("log", "computing", "release", "calling"))
    base = {"persist": str(persist), "func": "slow", "keys": ["L"], "log": str(log)}
    holder = rel.start("call", {**base, "marker": str(marker), "release": str(release)})
    rel.wait_for(marker.exists, what="the holder to be computing")
    waiter = rel.start("call", {**base, "calling": str(calling), "warp": True})
    rel.wait_for(calling.exists, what="the waiter to call")
    rel.assert_still_running(waiter, 1.5)  # bounded look: it is still waiting, "hours" later
    assert [pid for pid, _ in rel.worker.read_log(log)] == [holder.pid]
    release.write_text("done")
    assert rel.finish(holder)["results"] == [{"key": "L", "by": holder.pid}]
    out = rel.finish(waiter, timeout=30)
    assert out == {"results": [{"key": "L", "by": holder.pid}], "warnings": []}  # it read the holder's value
    assert [pid for pid, _ in rel.worker.read_log(log)] == [holder.pid]
    rel.count(faults=1, operations=2)


def test_a_lock_timeout_would_make_the_waiter_compute_again(rel, tmp_path, persist):
    """Honesty: with a lock wait that gives up after an hour, the same waiter computes the key a second time."""
    log, marker, release, calling = (tmp_path / n for n in ("log", "computing", "release", "calling"))
    base = {"persist": str(persist), "func": "slow", "keys": ["L"], "log": str(log)}
    holder = rel.start("call", {**base, "marker": str(marker), "release": str(release)})
    rel.wait_for(marker.exists, what="the holder to be computing")
    waiter = rel.run("call", {**base, "calling": str(calling), "warp": True, "lock_timeout": 3600})
    release.write_text("done")
    rel.finish(holder)
    assert len(rel.worker.read_log(log)) == 2 and waiter["results"][0]["by"] != holder.pid


def test_a_write_survives_its_empty_folder_being_removed_under_it(rel, tmp_path, monkeypatch):
    """The catalog removes folders left empty after a delete; a writer that just made one makes it again."""
    import os

    from persist_to_disk import store as st
    from persist_to_disk import trust

    real = trust.makedirs
    raced = []

    def makedirs_then_lose_it(path, policy):
        real(path, policy)
        if not raced and path.endswith(os.path.join("g", "1")):
            raced.append(path)
            os.rmdir(path)  # what Catalog.delete_node's empty-folder cleanup does, at the worst moment

    monkeypatch.setattr(trust, "makedirs", makedirs_then_lose_it)
    store = st.LocalStore(tmp_path / "s")
    store.put("g/1/x.ptd", b"value", {})
    assert raced and store.get("g/1/x.ptd") == b"value"
    rel.count(faults=1, operations=2)
