"""Benchmark persist_to_disk against the caches people use, in one run, on the same work.

    bash bench/run.sh                 # everything (installs the venv first)
    bench/.venv/bin/python bench/run.py --peers ptd,diskcache --scenarios a,b

Every phase runs in a fresh process (worker.py) on a fresh temp cache, with an
isolated HOME. Results: bench/results/results-<date>.json, table.md, chart.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import adapters  # noqa: E402

PY = sys.executable
MB = 1 << 20
PEERS = ["ptd", "ptd007", "joblib", "diskcache", "cachier", "persist_cache"]
SCENARIOS = list("abcdefghijklmn")
# i and j (large arguments and results) are measured against joblib, whose targets name it: diskcache
# keys a call by its pickled arguments, so a hit on a 175 MB DataFrame takes it 13 s, and the run 2 minutes.
# k is measured against pickle.dumps in the same process (joblib takes 13 s a hit there).
DATA_PEERS = {"i": ("ptd", "joblib"), "j": ("ptd", "joblib"), "k": ("ptd",)}

# sizes and repeats (stated in the README and the JSON)
P = {
    "a_n": 2000,
    "rounds": 7,  # a and b run this many times, the peers interleaved: a busy moment hits one round
    "c_rounds": 7,  # the c hits (one fill per peer, then this many hit processes, interleaved)
    "c_n": 20000,
    "c_hits": 2000,
    "c_budget_s": 45.0,  # a peer that cannot fill 20,000 entries in this time reports how many it filled
    "d_repeats": 3,
    "e_repeats": 5,
    "f_procs": 8,
    "f_keys": 50,
    "f_timeout_s": 60.0,
    "g_small": 1000,
    "h_cost_s": 1.0,
    "i_repeats": 3,
    "i_polars_repeats": 21,  # a polars hit takes milliseconds: more of them, each beside a pass of the floor
    "j_repeats": 3,
    "j_store_rounds": 5,  # j's stores: one process per peer per round, the peers interleaved (as e's)
    "k_repeats": 3,
    "l_n": 50000,
    "l_hits": 2000,
    "l_rounds": 7,
    "l_budget_s": 90.0,
    "l_age_s": 3600.0,  # the entries were last read this long ago
    "m_rounds": 5,
    "n_repeats": 5,
    "phase_timeout_s": 240.0,
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


class Scratch:
    """A fresh temp cache + HOME for one peer in one scenario; removed afterwards."""

    def __init__(self, root: Path, peer: str, scenario: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{peer}-{scenario}-", dir=root))
        self.cache = self.dir / "cache"
        self.home = self.dir / "home"
        self.home.mkdir()
        self.counter = self.dir / "counter.txt"
        self.mark = self.dir / "mark.txt"

    def env(self, peer: str) -> dict:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.update(adapters.worker_env(peer))
        env["HOME"] = str(self.home)
        env["BENCH_COUNTER"] = str(self.counter)
        env["BENCH_MARK"] = str(self.mark)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def cleanup(self) -> None:
        """Kept until the end of the run (the root goes then): on this VM's disk (mounted with
        ``discard``) deleting thousands of files slows every file creation for a while, and the
        peer measured next would pay for it. The 200 MB values go now, the small files stay."""
        for folder, _dirs, files in os.walk(self.dir):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_size >= 50 * MB:
                        os.unlink(path)
                except OSError:
                    pass
        settle()


QUIET = {"root": None, "create_us": 15.0, "max_wait_s": 20.0, "waited_s": 0.0}


def settle() -> None:
    """Before a measurement: flush dirty pages and the journal, then wait (up to 20 s) until
    creating a file is quick again, so no peer pays for the IO of the one measured before it
    (or of other work on this shared VM)."""
    os.sync()
    time.sleep(0.2)
    root = QUIET["root"]
    if root is None or QUIET["waited_s"] > 240:  # the whole run stays inside its 15 minutes
        return
    start = time.time()
    while time.time() - start < QUIET["max_wait_s"] and fs_probe(root, 60) > QUIET["create_us"]:
        time.sleep(1.0)
    QUIET["waited_s"] += time.time() - start


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {"failed": "no result", "output": text[-1500:]}


def run_phase(
    peer: str, phase: str, s: Scratch, params: dict | None = None, timeout: float | None = None, warm: bool = False
) -> dict:
    """One phase in a new process; ``warm``: read the peer's cache files first (a hit phase)."""
    cmd = [PY, str(BENCH / "worker.py"), peer, phase, str(s.cache), json.dumps(params or {})]
    settle()
    if warm:
        warm_page_cache(s.cache)
    try:
        proc = subprocess.run(
            cmd, env=s.env(peer), cwd=str(BENCH), capture_output=True, text=True,
            timeout=timeout or P["phase_timeout_s"],
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout or P['phase_timeout_s']} s"}
    out = _last_json(proc.stdout)
    if proc.returncode and "failed" not in out:
        out["failed"] = f"exit {proc.returncode}: {proc.stderr[-800:]}"
    if "failed" in out and proc.stderr:
        out.setdefault("stderr", proc.stderr[-1500:])
    return out


def warm_page_cache(folder: Path) -> None:
    """Read every file under a peer's cache once, just before its hit phase.

    This VM's host pages out page cache nobody touched for a few seconds (DAMON ``pageout``),
    so without this a hit phase would read cold files from disk, more or less of them
    depending on how long the phases before it took. "Page cache warm", the condition the
    figures are stated for, is made explicit and the same for every peer."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                with open(os.path.join(dirpath, name), "rb", buffering=0) as fh:
                    while fh.read(1 << 20):
                        pass
            except OSError:
                pass


def count_lines(path: Path) -> int:
    try:
        return sum(1 for _ in open(path))
    except FileNotFoundError:
        return 0


def footprint(path: Path) -> dict:
    """What the cache takes on disk: blocks allocated (what ``du`` says), bytes in files, files."""
    blocks = size = files = 0
    for folder, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            blocks += st.st_blocks * 512
            size += st.st_size
            files += 1
    return {"disk_mb": round(blocks / MB, 1), "bytes_mb": round(size / MB, 1), "files": files}


def du(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


# -- scenarios ---------------------------------------------------------------------------------------
def scen_ab(peer: str, root: Path) -> dict:
    s = Scratch(root, peer, "ab")
    try:
        a = run_phase(peer, "a", s, {"n": P["a_n"]})
        if "failed" in a:
            return {"a": a, "b": {"failed": "a failed"}}
        b = run_phase(peer, "b", s, {"n": P["a_n"]}, warm=True)
        return {"a": a, "b": b}
    finally:
        s.cleanup()


def scen_c(peer: str, root: Path, state: dict, round_: int) -> dict:
    """Round 0 fills the cache (kept in ``state``) and hits it; later rounds hit it again in new processes."""
    if round_ == 0:
        s = state[peer] = Scratch(root, peer, "c")
        fill = run_phase(peer, "c_fill", s, {"n": P["c_n"], "budget_s": P["c_budget_s"]}, timeout=P["c_budget_s"] + 120)
        fill.update(footprint(s.cache))
        state[peer, "fill"] = fill
    fill = state[peer, "fill"]
    if "failed" in fill or not fill.get("filled"):
        return {"fill": fill, "hit": {"failed": "fill failed"}}
    hit = run_phase(peer, "c_hit", state[peer], {"n": P["c_hits"], "filled": fill["filled"]}, warm=True)
    return {"fill": fill, "hit": hit}


def run_rounds(g: str, peers: list[str], root: Path) -> dict[str, list[dict]]:
    """Scenario group ab (P["rounds"] times) or c (P["c_rounds"]), each round in its own shuffled peer order."""
    per: dict[str, list[dict]] = {p: [] for p in peers}
    state: dict = {}
    try:
        for r in range(P["rounds"] if g == "ab" else P["c_rounds"]):
            order = peers[:]
            random.Random(f"{g}{r}").shuffle(order)  # no peer always goes first
            for peer in order:
                t0 = time.time()
                res = scen_ab(peer, root) if g == "ab" else scen_c(peer, root, state, r)
                per[peer].append(res)
                log(f"  {g:>2} {peer:<14} {time.time() - t0:6.1f} s  {_brief(g, res)}  (round {r + 1})")
    finally:
        for peer in peers:
            if peer in state:
                state[peer].cleanup()
    return per


def merge_rounds(rounds: list[dict]) -> dict:
    """One phase's rounds as one result: each figure the median over the rounds that ran, the rounds kept."""
    ok = [r for r in rounds if "failed" not in r]
    if not ok:
        return rounds[0]
    out = dict(ok[0])
    for k in ("median_us", "p99_us", "mean_us"):
        if all(k in r for r in ok):
            out[k] = statistics.median(r[k] for r in ok)
    out["errors"] = sum(r.get("errors", 0) for r in ok)
    out["rounds"] = rounds
    return out


def scen_d(peer: str, root: Path) -> dict:
    s = Scratch(root, peer, "d")
    try:
        return run_phase(peer, "d", s, {"repeats": P["d_repeats"]})
    finally:
        s.cleanup()


def scen_e(peers: list[str], root: Path) -> dict[str, dict]:
    """A 200 MB result stored by a miss, in rounds that interleave the peers (the disk's write-back state
    swings within minutes, so peers measured minutes apart are not comparable), then loaded by hits."""
    scratch = {peer: Scratch(root, peer, "e") for peer in peers}
    out: dict[str, dict] = {}
    try:
        stores = _store_rounds("e", peers, scratch, P["e_repeats"])
        for peer in peers:
            store = stores[peer]
            if "failed" in store:
                out[peer] = {"store": store, "load": {"failed": "store failed"}}
                continue
            s = scratch[peer]
            before = count_lines(s.counter)
            load = run_phase(peer, "e_load", s, {"repeats": P["e_repeats"]}, warm=True)
            if "executions" in load:
                load["recomputed"] = load.pop("executions") - before
            out[peer] = {"store": store, "load": load}
            log(f"   e {peer:<14} {_brief('e', out[peer])}")
    finally:
        for s in scratch.values():
            s.cleanup()
    return out


def _store_rounds(scenario: str, peers: list[str], scratch: dict[str, Scratch], rounds: int) -> dict[str, dict]:
    """Each peer's ``<scenario>_store`` phase in rounds that interleave the peers, a new process and a new
    key each (a 200 MB write follows the page cache's state, which swings within minutes): per peer,
    the rounds merged by :func:`_merge_stores`."""
    stores: dict[str, list[dict]] = {peer: [] for peer in peers}
    for r in range(rounds):
        order = peers[:]
        random.Random(f"{scenario}{r}").shuffle(order)
        for peer in order:
            if stores[peer] and "failed" in stores[peer][-1]:
                continue
            res = run_phase(peer, f"{scenario}_store", scratch[peer], {"repeats": 1, "first": r})
            stores[peer].append(res)
            log(f"   {scenario} {peer:<14} store {res.get('store_mb_s', 0):.0f} MB/s (round {r + 1})")
    return {peer: _merge_stores(runs) for peer, runs in stores.items()}


def _merge_stores(rounds: list[dict]) -> dict:
    """The store rounds of one peer as one result: its rate from the median store, the largest peak growth."""
    ok = [r for r in rounds if "failed" not in r]
    if not ok:
        return rounds[-1] if rounds else {"failed": "not run"}
    times = [t for r in ok for t in r["store_s"]]
    mb = ok[0]["mb"]
    return {"mb": mb, "store_s": times, "store_mb_s": mb / statistics.median(times),
            "store_peak_growth_mb": max(r["store_peak_growth_mb"] for r in ok), "version": ok[0].get("version"),
            "rounds": rounds}


def scen_j(peers: list[str], root: Path) -> dict[str, dict]:
    """A 200 MB torch tensor hashed as an argument (a process per peer), then stored as a result in rounds
    that interleave the peers, as e's stores are (the page cache's state swings within minutes)."""
    peers = [p for p in peers if p in DATA_PEERS["j"]]
    scratch = {peer: Scratch(root, peer, "j") for peer in peers}
    out: dict[str, dict] = {}
    try:
        for peer in peers:
            out[peer] = run_phase(peer, "j", scratch[peer], {"repeats": P["j_repeats"]})
        hashed = [peer for peer in peers if "failed" not in out[peer]]
        stores = _store_rounds("j", hashed, scratch, P["j_store_rounds"])
        for peer in hashed:
            store = stores[peer]
            if "failed" in store:
                out[peer] = store
                continue
            out[peer].update(store_s=store["store_s"], store_mb_s=store["store_mb_s"], result_mb=store["mb"],
                             store_peak_growth_mb=store["store_peak_growth_mb"], store_rounds=store["rounds"])
            log(f"   j {peer:<14} {_brief('j', out[peer])}")
    finally:
        for s in scratch.values():
            s.cleanup()
    return out


def scen_f(peer: str, root: Path) -> dict:
    s = Scratch(root, peer, "f")
    try:
        n = P["f_procs"]
        settle()
        start_at = time.time() + 4.0  # every process imported and ready before the first call
        procs = []
        for i in range(n):
            params = {"keys": P["f_keys"], "seed": 1000 + i, "start_at": start_at}
            cmd = [PY, str(BENCH / "worker.py"), peer, "f_child", str(s.cache), json.dumps(params)]
            procs.append(subprocess.Popen(cmd, env=s.env(peer), cwd=str(BENCH), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, start_new_session=True))
        deadline = start_at + P["f_timeout_s"]
        errors, wrong, hangs, crashed, messages = 0, 0, 0, 0, []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                hangs += 1
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                continue
            res = _last_json(out)
            if "failed" in res:
                crashed += 1
                messages.append(res["failed"][:200])
                continue
            errors += res["errors"]
            wrong += res["wrong"]
            messages.extend(res["messages"])
        wall = time.time() - start_at
        return {
            "executions": count_lines(s.counter),
            "ideal": P["f_keys"],
            "errors": errors + crashed,
            "wrong": wrong,
            "hangs": hangs,
            "wall_s": wall,
            "messages": sorted(set(messages))[:5],
        }
    finally:
        s.cleanup()


def _open_files_under(pid: int, folder: str) -> list[tuple[str, int]]:
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(folder):
                found.append((target, os.stat(f"/proc/{pid}/fd/{fd}").st_size))
        except OSError:
            continue
    return found


def scen_g(peer: str, root: Path) -> dict:
    """1,000 small entries, then SIGKILL while a 100 MB result is being written; then check."""
    attempts = []
    for attempt in range(3):
        s = Scratch(root, peer, "g")
        try:
            params = {"n": P["g_small"]}
            cmd = [PY, "-u", str(BENCH / "worker.py"), peer, "g_fill", str(s.cache), json.dumps(params)]
            settle()
            proc = subprocess.Popen(cmd, env=s.env(peer), cwd=str(BENCH), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            line = proc.stdout.readline()  # {"filled": 1000} once the small entries are in
            while line and not line.startswith("{"):  # a peer's own chatter (0.0.7 prints folder creations)
                line = proc.stdout.readline()
            if not line.startswith("{"):
                proc.kill()
                out, err = proc.communicate()
                return {"failed": f"fill failed: {line}{out[-300:]}{err[-800:]}"}
            du_before = du(s.cache)
            # wait for the 100 MB value to be computed, then for a file under the cache to grow past 8 MB
            folder = str(s.cache.resolve())
            killed_at, deadline = None, time.time() + 60
            while time.time() < deadline and proc.poll() is None:
                if s.mark.exists():
                    growing = [(p, n) for p, n in _open_files_under(proc.pid, folder) if n >= 8 * MB]
                    if growing:
                        proc.send_signal(signal.SIGKILL)
                        killed_at = growing[0]
                        break
                time.sleep(0.0005)
            proc.communicate()
            if killed_at is None:
                attempts.append("write finished before the kill")
                continue
            du_killed = du(s.cache)
            check = run_phase(peer, "g_check", s, params)
            du_after = du(s.cache)
            stored = check.get("torn", {}).get("correct") and check.get("torn", {}).get("second_call") == "hit"
            check.update({
                "killed_with_mb_written": round(killed_at[1] / MB, 1),
                "killed_file": os.path.relpath(killed_at[0], folder),
                "partial_mb_after_kill": round((du_killed - du_before) / MB, 1),
                # bytes on disk beyond the earlier entries and (when it was stored again) the torn value
                "left_behind_mb": round((du_after - du_before - (100 * MB if stored else 0)) / MB, 1),
                "attempts": attempt + 1,
            })
            return check
        finally:
            s.cleanup()
    return {"failed": "; ".join(attempts)}


def scen_h(peer: str, root: Path) -> dict:
    if peer != "ptd":
        return {"na": "no cell magic"}
    s = Scratch(root, peer, "h")
    try:
        miss = run_phase(peer, "h", s, {"cost_s": P["h_cost_s"]})
        if "miss_s" not in miss:
            return miss
        hit = run_phase(peer, "h_hit", s, {"cost_s": P["h_cost_s"]})  # a new kernel, same cache
        return {**miss, **hit, "miss_correct": miss.get("correct")}
    finally:
        s.cleanup()


def scen_single(*phases: str):
    """A scenario of one or more phases, each in a process of its own (i, j, k), results merged."""

    def run(peer: str, root: Path) -> dict:
        if peer not in DATA_PEERS[phases[0]]:
            return {"na": "not measured for this peer"}
        s = Scratch(root, peer, phases[0])
        try:
            out: dict = {}
            for phase in phases:
                params = {"repeats": P[f"{phases[0]}_repeats"], "polars_repeats": P["i_polars_repeats"]}
                part = run_phase(peer, phase, s, params)
                if "failed" in part:
                    return part
                out.update(part)
            return out
        finally:
            s.cleanup()

    return run


def age_files(folder: Path, seconds: float) -> int:
    """Set every file's times under folder to ``seconds`` ago: entries last read that long ago."""
    when = time.time() - seconds
    n = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                os.utime(os.path.join(dirpath, name), (when, when))
                n += 1
            except OSError:
                pass
    return n


def scen_l(peers: list[str], root: Path) -> dict[str, dict]:
    """50,000 entries last read an hour ago, then hits in new processes (rounds interleaved, the
    entries aged again before each round). diskcache keeps no last-read time to age."""
    peers = [p for p in peers if p in ("ptd", "diskcache")]
    out: dict[str, dict] = {}
    scratch: dict[str, Scratch] = {}
    try:
        for peer in peers:
            s = scratch[peer] = Scratch(root, peer, "l")
            out[peer] = {"fill": run_phase(peer, "c_fill", s, {"n": P["l_n"], "budget_s": P["l_budget_s"]},
                                           timeout=P["l_budget_s"] + 120), "rounds": []}
            log(f"   l {peer:<14} filled {out[peer]['fill'].get('filled')}")
        for r in range(P["l_rounds"]):
            order = peers[:]
            random.Random(f"l{r}").shuffle(order)
            for peer in order:
                fill = out[peer]["fill"]
                if "failed" in fill or not fill.get("filled"):
                    continue
                age_files(scratch[peer].cache, P["l_age_s"])
                hit = run_phase(peer, "c_hit", scratch[peer], {"n": P["l_hits"], "filled": fill["filled"]}, warm=True)
                out[peer]["rounds"].append(hit)
                log(f"   l {peer:<14} hit {hit.get('median_us', 0):.1f} us (round {r + 1})")
    finally:
        for s in scratch.values():
            s.cleanup()
    for peer, res in out.items():
        res["hit"] = merge_rounds(res.pop("rounds")) if res.get("rounds") else {"failed": "fill failed"}
    return out


IMPORTS = {"ptd": "persist_to_disk", "joblib": "joblib", "diskcache": "diskcache"}
COLD_START = """
import sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
sys.path.insert(0, {bench!r})
import adapters, workloads  # (not timed: the bench's own modules)
t2 = time.perf_counter()
ad = adapters.get({peer!r})
ad.setup({cache!r})
fn = ad.wrap(workloads.inc)
t3 = time.perf_counter()
fn(1)
t4 = time.perf_counter()
print({{"import_s": t1 - t0, "ready_s": t3 - t2, "first_call_s": t4 - t3, "cold_s": (t1 - t0) + (t4 - t2)}})
"""


def scen_m(peers: list[str], root: Path) -> dict[str, dict]:
    """Cold start: the import in a new process, then the first call on an empty cache and HOME
    (rounds interleaved; bytecode compiled beforehand for everyone alike)."""
    peers = [p for p in peers if p in IMPORTS]
    per: dict[str, list[dict]] = {p: [] for p in peers}
    for peer in peers:  # compile every module once (the workers run without writing bytecode)
        subprocess.run([PY, "-c", f"import {IMPORTS[peer]}"], env=adapters_env(peer), capture_output=True)
    for r in range(P["m_rounds"]):
        order = peers[:]
        random.Random(f"m{r}").shuffle(order)
        for peer in order:
            s = Scratch(root, peer, "m")
            code = COLD_START.format(module=IMPORTS[peer], bench=str(BENCH), peer=peer, cache=str(s.cache))
            settle()
            env = {**s.env(peer)}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            proc = subprocess.run([PY, "-c", code], env=env, cwd=str(s.dir), capture_output=True, text=True)
            try:
                per[peer].append(eval(proc.stdout.strip().splitlines()[-1], {}))  # a dict of two floats
            except (IndexError, SyntaxError):
                per[peer].append({"failed": proc.stderr[-500:]})
    out = {}
    for peer, rounds in per.items():
        ok = [x for x in rounds if "failed" not in x]
        out[peer] = {k: statistics.median(x[k] for x in ok) for k in ("import_s", "ready_s", "first_call_s", "cold_s")} if ok else rounds[0]
        out[peer]["rounds"] = rounds
    return out


def adapters_env(peer: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(adapters.worker_env(peer))
    return env


def scen_n(peer: str, root: Path) -> dict:
    """A 500 MB array result loaded in a new process and written all over, next to np.load and the same writes."""
    if peer != "ptd":
        return {"na": "measured for persist_to_disk against np.load"}
    s = Scratch(root, peer, "n")
    try:
        npy = str(s.dir / "beside.npy")
        store = run_phase(peer, "n_store", s, {"npy": npy})
        if "failed" in store:
            return store
        before = count_lines(s.counter)
        load = run_phase(peer, "n_load", s, {"repeats": P["n_repeats"], "npy": npy}, warm=True)
        if "executions" in load:
            load["recomputed"] = load.pop("executions") - before
        return {**store, **load}
    finally:
        s.cleanup()


RUNNERS = {"d": scen_d, "f": scen_f, "g": scen_g, "h": scen_h,
           "i": scen_single("i"), "k": scen_single("k"), "n": scen_n}
GROUP_RUNNERS = {"e": scen_e, "j": scen_j, "l": scen_l, "m": scen_m}  # every peer at once: rounds interleave them


# -- machine ------------------------------------------------------------------------------------------
def warm_memory(gb: float) -> float:
    """Touch gb of fresh memory once, so no peer pays this VM's first-touch cost (~0.45 s per 200 MB)."""
    code = (
        "import numpy as np, time\n"
        f"n = int({gb} * 1024)\n"
        "t = time.perf_counter(); keep = [np.ones(64 << 20, np.uint8) for _ in range(n // 64)]\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    try:
        return float(out.stdout.strip())
    except ValueError:
        return -1.0


def fs_probe(root: Path, n: int = 300) -> float:
    """Median µs to create (O_EXCL) and close one empty file in a new folder of root: this disk's
    metadata latency right now (it swings 10x with other IO on a shared VM; misses pay it)."""
    folder = Path(tempfile.mkdtemp(prefix="probe-", dir=root))
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            os.close(os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            times.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    times.sort()
    return round(times[len(times) // 2] * 1e6, 1)


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--scenarios", default="".join(SCENARIOS), help="letters, e.g. abc")
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--warm-gb", type=float, default=6.0)
    ap.add_argument("--tmp", default="/var/tmp" if os.access("/var/tmp", os.W_OK) else None,
                    help="where the temp caches go (default: /var/tmp; see the README on /tmp)")
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    letters = [c for c in args.scenarios if c in SCENARIOS]
    groups = []
    for c in letters:
        g = "ab" if c in "ab" else c
        if g not in groups:
            groups.append(g)

    t_start = time.time()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.tmp:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ptd-bench-", dir=args.tmp)).resolve()  # workers run in bench/
    results: dict = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
        "machine": machine(),
        "params": P,
        "peers": {},
        "results": {p: {} for p in peers},
    }
    log(f"bench: peers {peers}, scenarios {''.join(letters)}, temp {root}")
    if args.warm_gb > 0:
        log(f"warming {args.warm_gb} GB of memory: {warm_memory(args.warm_gb):.1f} s")
    QUIET["root"] = root
    settle()
    results["machine"]["file_create_us_start"] = fs_probe(root)
    log(f"file create: {results['machine']['file_create_us_start']} µs (median)")
    try:
        for g in groups:
            if g in ("ab", "c"):
                per = run_rounds(g, peers, root)
                for peer, rounds in per.items():
                    merged = {ph: merge_rounds([r[ph] for r in rounds]) for ph in rounds[0]}
                    if g == "c":
                        merged["fill"] = rounds[0]["fill"]
                        results["results"][peer]["c"] = merged
                    else:
                        results["results"][peer].update(merged)
                    for part in merged.values():
                        if isinstance(part, dict) and part.get("version"):
                            label = adapters.ADAPTERS[peer].label
                            results["peers"][peer] = {"version": part["version"], "label": label}
                continue
            if g in GROUP_RUNNERS:
                t0 = time.time()
                for peer, res in GROUP_RUNNERS[g](peers, root).items():
                    results["results"][peer][g] = res
                    for part in res.values():
                        if isinstance(part, dict) and part.get("version") and peer not in results["peers"]:
                            results["peers"][peer] = {"version": part["version"], "label": adapters.ADAPTERS[peer].label}
                log(f"  {g:>2} {time.time() - t0:6.1f} s")
                continue
            order = peers[:]
            random.Random(g).shuffle(order)  # no peer always goes first
            for peer in order:
                t0 = time.time()
                res = RUNNERS[g](peer, root)
                if g == "ab":
                    results["results"][peer].update(res)
                else:
                    results["results"][peer][g] = res
                log(f"  {g:>2} {peer:<14} {time.time() - t0:6.1f} s  {_brief(g, res)}")
                if g == "g":
                    log(f"       {json.dumps(res)[:400]}")
                for part in res.values() if g in ("ab", "c") else [res]:
                    if isinstance(part, dict) and part.get("version"):
                        results["peers"][peer] = {"version": part["version"], "label": adapters.ADAPTERS[peer].label}
        settle()
        results["machine"]["file_create_us_end"] = fs_probe(root)
        results["machine"]["waited_for_quiet_disk_s"] = round(QUIET["waited_s"], 1)
        results["load_end"] = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["wall_s"] = round(time.time() - t_start, 1)
    for peer in peers:
        results["peers"].setdefault(peer, {"version": "?", "label": adapters.ADAPTERS[peer].label})

    import report

    day = dt.date.today().isoformat()
    json_path = out_dir / f"results-{day}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    table = report.table(results)
    (out_dir / "table.md").write_text(table)
    report.chart(results, out_dir / "chart.png")
    print(table)
    log(f"wrote {json_path}, {out_dir / 'table.md'}, {out_dir / 'chart.png'} in {results['wall_s']} s")


def _brief(g: str, res: dict) -> str:
    try:
        if g == "ab":
            return f"miss {res['a'].get('median_us', 0):.0f} us, hit {res['b'].get('median_us', 0):.1f} us"
        if g == "c":
            return f"filled {res['fill'].get('filled')}, hit {res['hit'].get('median_us', 0):.1f} us"
        if g == "d":
            return f"hash {res.get('hash_mb_s', 0):.0f} MB/s" if "failed" not in res else res["failed"][:80]
        if g == "e":
            return f"store {res['store'].get('store_mb_s', 0):.0f} / load {res['load'].get('load_mb_s', 0):.0f} MB/s"
        if g == "f":
            return f"exec {res.get('executions')}, errors {res.get('errors')}, hangs {res.get('hangs')}"
        if g == "g":
            return (f"lost {res.get('earlier_lost')}, torn {res.get('torn')}" if "failed" not in res
                    else res["failed"][:80])
        if g == "h":
            return json.dumps(res)[:120]
        if g in "ijk" or g == "n":
            return json.dumps({k: v for k, v in res.items() if not isinstance(v, list)})[:160]
    except Exception as exc:  # a summary line never stops the run
        return repr(exc)
    return ""


if __name__ == "__main__":
    main()
