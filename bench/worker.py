"""One phase of one scenario for one peer, in a process of its own.

    python bench/worker.py PEER PHASE CACHE_DIR [JSON_PARAMS]

Prints one JSON object on its last stdout line. The orchestrator (run.py)
starts a fresh process for every phase that a real user would run in a new
process (hits after misses, loads after stores), so no in-process memo helps.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import adapters  # noqa: E402
import workloads  # noqa: E402

MB = workloads.MB
perf = time.perf_counter


def _stats_us(samples: list[float]) -> dict:
    arr = np.asarray(samples) * 1e6
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "median_us": float(np.median(arr)),
        "p99_us": float(np.percentile(arr, 99)),
        "mean_us": float(arr.mean()),
    }


def _timed_calls(fn, xs) -> tuple[list[float], int]:
    """Per-call seconds; errors counts calls that raised or returned a wrong value."""
    times, errors = [], 0
    for x in xs:
        t0 = perf()
        try:
            r = fn(x)
        except Exception:
            r = None
        times.append(perf() - t0)
        errors += r != x + 1
    return times, errors


def _count_lines(path: str) -> int:
    try:
        with open(path) as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


# -- phases ---------------------------------------------------------------------------------------
def phase_a(ad, p):  # 2,000 misses
    fn = ad.wrap(workloads.inc)
    times, errors = _timed_calls(fn, range(p["n"]))
    return {**_stats_us(times), "errors": errors}


def phase_b(ad, p):  # the same calls again, new process: hits
    fn = ad.wrap(workloads.inc)
    times, errors = _timed_calls(fn, range(p["n"]))
    return {**_stats_us(times), "errors": errors}


def phase_c_fill(ad, p):  # fill up to 20,000 entries within a time budget
    fn = ad.wrap(workloads.inc)
    budget, n = p["budget_s"], p["n"]
    times = []
    start = perf()
    for x in range(n):
        t0 = perf()
        fn(x)
        times.append(perf() - t0)
        if perf() - start > budget:
            break
    filled = len(times)
    first = sum(times[:1000])
    last = sum(times[-1000:])
    return {
        "filled": filled,
        "complete": filled == n,
        "fill_s": perf() - start,
        "first_1000_per_s": 1000 / first if filled >= 1000 else None,
        "last_1000_per_s": 1000 / last if filled >= 1000 else None,
        "first_1000_median_us": _stats_us(times[:1000]).get("median_us"),
        "last_1000_median_us": _stats_us(times[-1000:]).get("median_us"),
    }


def phase_c_hit(ad, p):  # 2,000 random hits among the filled keys, new process
    fn = ad.wrap(workloads.inc)
    rng = random.Random(7)
    xs = [rng.randrange(p["filled"]) for _ in range(p["n"])]
    times, errors = _timed_calls(fn, xs)
    return {**_stats_us(times), "errors": errors}


def phase_d(ad, p):  # a 200 MB argument: miss once, then hits dominated by hashing
    a = np.random.default_rng(0).random(workloads.BIG_BYTES // 8)
    fn = ad.wrap(workloads.total)
    expect = workloads.total(a)
    t0 = perf()
    r = fn(a)
    miss = perf() - t0
    assert r == expect, (r, expect)
    hits = []
    for _ in range(p["repeats"]):
        t0 = perf()
        r = fn(a)
        hits.append(perf() - t0)
        assert r == expect
    mb = a.nbytes / MB
    best = min(hits)
    return {
        "mb": mb,
        "miss_s": miss,
        "hit_s": hits,
        "hash_mb_s": mb / float(np.median(hits)),
        "hash_mb_s_best": mb / best,
    }


def phase_e_store(ad, p):  # a 200 MB result: each miss stores it
    arr = workloads.big_result_array()
    fn = ad.wrap(workloads.big_result)
    times = []
    rss_before = _peak_rss_mb()
    first = p.get("first", 0)  # rounds in new processes store new keys
    for i in range(first, first + p["repeats"]):
        t0 = perf()
        r = fn(i)
        times.append(perf() - t0)
        assert r is arr or np.array_equal(r, arr)
    mb = arr.nbytes / MB
    return {"mb": mb, "store_s": times, "store_mb_s": mb / float(np.median(times)),
            "store_peak_growth_mb": _peak_rss_mb() - rss_before}


def phase_e_load(ad, p):  # new process: each hit loads it (checked, then dropped before the next load)
    fn = ad.wrap(workloads.big_result)
    arr = workloads.big_result_array()
    times, ok, writable = [], True, True
    for i in range(p["repeats"]):
        t0 = perf()
        r = fn(i)
        times.append(perf() - t0)
        ok = ok and isinstance(r, np.ndarray) and np.array_equal(r, arr)
        writable = writable and bool(getattr(r, "flags", None) is not None and r.flags.writeable)
        del r
    mb = arr.nbytes / MB
    return {
        "mb": mb,
        "load_s": times,
        "load_mb_s": mb / float(np.median(times)),
        "correct": ok,
        "writable": writable,
        "executions": _count_lines(os.environ.get("BENCH_COUNTER", "")),
    }


def phase_f_child(ad, p):  # one of 8 processes: keys 0..49 shuffled, 0.2 s each
    fn = ad.wrap(workloads.slow)
    keys = list(range(p["keys"]))
    random.Random(p["seed"]).shuffle(keys)
    delay = p["start_at"] - time.time()
    if delay > 0:
        time.sleep(delay)
    errors, wrong, messages = 0, 0, []
    for k in keys:
        try:
            if fn(k) != 2 * k:
                wrong += 1
        except Exception as exc:
            errors += 1
            if len(messages) < 3:
                messages.append(f"{type(exc).__name__}: {exc}"[:300])
    return {"errors": errors, "wrong": wrong, "messages": messages}


def phase_g_fill(ad, p):  # 1,000 small entries, then a 100 MB result of the same function, killed mid-write
    fn = ad.wrap(workloads.small_or_torn)
    for x in range(p["n"]):
        fn(x)
    print(json.dumps({"filled": p["n"]}), flush=True)
    fn("torn")
    return {"survived_kill": True}


def phase_g_check(ad, p):  # after the kill: what survived, and does the torn key recompute
    counter = os.environ["BENCH_COUNTER"]
    fn = ad.wrap(workloads.small_or_torn)
    before = _count_lines(counter)
    errors, wrong = 0, 0
    for x in range(p["n"]):
        try:
            if fn(x) != x + 1:
                wrong += 1
        except Exception:
            errors += 1
    lost = _count_lines(counter) - before
    before = _count_lines(counter)
    try:
        r = fn("torn")
        torn = {
            "correct": bool(isinstance(r, np.ndarray) and np.array_equal(r, workloads.torn_array())),
            "recomputed": _count_lines(counter) - before == 1,
            "error": None,
        }
        del r
    except Exception as exc:
        torn = {"correct": False, "recomputed": _count_lines(counter) - before == 1,
                "error": f"{type(exc).__name__}: {exc}"[:300]}
    before = _count_lines(counter)
    try:  # a second call: a hit now, or still failing?
        fn("torn")
        torn["second_call"] = "recomputed" if _count_lines(counter) > before else "hit"
    except Exception as exc:
        torn["second_call"] = f"error {type(exc).__name__}"
    return {"earlier_lost": lost, "earlier_errors": errors, "earlier_wrong": wrong, "torn": torn}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _hash_hits(fn, arg, expect, repeats) -> tuple[float, list[float]]:
    """One miss, then hits: (miss seconds, hit seconds)."""
    t0 = perf()
    assert fn(arg) == expect
    miss = perf() - t0
    hits = []
    for _ in range(repeats):
        t0 = perf()
        r = fn(arg)
        hits.append(perf() - t0)
        assert r == expect
    return miss, hits


def phase_i(ad, p):  # a DataFrame with text columns as argument: hits dominated by hashing it
    df = workloads.text_frame()
    mb = float(df.memory_usage(deep=True).sum()) / MB
    miss, hits = _hash_hits(ad.wrap(workloads.frame_total), df, workloads.frame_total(df), p["repeats"])
    out = {"mb": mb, "miss_s": miss, "hit_s": hits, "hash_mb_s": mb / float(np.median(hits))}
    try:
        import polars as pl
    except ImportError:
        return out
    fn = ad.wrap(workloads.polars_total)
    text = pl.from_pandas(df)
    longer = text.with_columns(pl.col("name", "note").str.replace("item-", "a longer item name "))  # > 12 bytes
    frames = (("polars_text", text), ("polars_long_text", longer), ("polars_numbers", pl.from_pandas(df.iloc[:, :12])))
    for label, frame in frames:
        out[label] = _polars_hits(fn, frame, p.get("polars_repeats", p["repeats"]))
    return out


def _polars_hits(fn, frame, repeats) -> dict:
    """Hits on a polars frame, each beside a pass of the floor (xxh3 over every buffer of its columns; which
    goes first alternates, as the second finds the frame in the CPU cache), then the time to convert its
    text to Arrow. polars keeps text as string views: Arrow's offsets and bytes are the nearest
    contiguous buffers."""
    import xxhash

    expect = workloads.polars_total(frame)
    assert fn(frame) == expect  # the miss
    arrow = [column.to_arrow() for column in frame.get_columns()]
    buffers = [b for a in arrow for chunk in getattr(a, "chunks", [a]) for b in _arrow_buffers(chunk) if b]

    def hit() -> float:
        t0 = perf()
        r = fn(frame)
        took = perf() - t0
        assert r == expect
        return took

    def floor() -> float:
        t0 = perf()
        for b in buffers:
            xxhash.xxh3_128(memoryview(b)).digest()
        return perf() - t0

    hits: list[float] = []
    floors: list[float] = []
    while len(hits) < repeats and not (len(hits) >= 3 and sum(hits) > 1.0):  # a slow peer: three will do
        if len(hits) % 2:
            floors.append(floor())
            hits.append(hit())
        else:
            hits.append(hit())
            floors.append(floor())
    converts = []
    for _ in range(3):
        t0 = perf()
        for column in frame.get_columns():
            if not column.dtype.is_numeric():
                column.to_arrow()
        converts.append(perf() - t0)
    size = frame.estimated_size() / MB
    return {"mb": size, "hash_mb_s": size / float(np.median(hits)), "xxh3_mb_s": size / float(np.median(floors)),
            "to_arrow_s": float(np.median(converts)), "repeats": len(hits)}


def _arrow_buffers(chunk) -> list:
    if hasattr(chunk, "dictionary"):
        return chunk.buffers() + chunk.dictionary.buffers()
    return chunk.buffers()


def phase_j(ad, p):  # a 200 MB torch tensor as an argument: hits dominated by hashing it
    import xxhash

    t = workloads.tensor()
    mb = t.numel() * t.element_size() / MB
    miss, hits = _hash_hits(ad.wrap(workloads.tensor_total), t, workloads.tensor_total(t), p["repeats"])
    buffer_s = []
    for _ in range(p["repeats"]):  # the floor: xxh3 of the tensor's buffer alone
        t0 = perf()
        xxhash.xxh3_128(t.numpy()).digest()
        buffer_s.append(perf() - t0)
    return {"mb": mb, "hash_mb_s": mb / float(np.median(hits)), "xxh3_mb_s": mb / float(np.median(buffer_s))}


def phase_j_store(ad, p):  # new process: the same tensor as a result, stored by each miss
    result = workloads.tensor_result(0)
    fn = ad.wrap(workloads.tensor_result)
    rss_before = _peak_rss_mb()  # the tensor is built: what the stores add to the high-water mark
    stores = []
    first = p.get("first", 0)  # rounds in new processes store new keys
    for i in range(first, first + p["repeats"]):
        t0 = perf()
        fn(i)
        stores.append(perf() - t0)
    mb = result.numel() * result.element_size() / MB
    return {"mb": mb, "store_s": stores, "store_mb_s": mb / float(np.median(stores)),
            "store_peak_growth_mb": _peak_rss_mb() - rss_before}


def phase_k(ad, p):  # a dict of 1M str -> float as argument, next to pickle.dumps of it
    out = _hashed_beside_pickle(ad, workloads.scores(), p["repeats"])
    out["int_keys"] = _hashed_beside_pickle(ad, workloads.id_counts(), p["repeats"])  # {id: count}, not a target
    if ad.name == "ptd":  # (the report sets these beside pickle.dumps only)
        out["real_data"] = {name: _hashed_beside_pickle(ad, value, p["repeats"]) for name, value in workloads.real_data().items()}
    return out


def _hashed_beside_pickle(ad, d, repeats) -> dict:
    """A value as the argument of hits (each hashes it), and pickle.dumps of it, in this process."""
    import pickle

    _, hits = _hash_hits(ad.wrap(workloads.score_count), d, len(d), repeats)
    pickles = []
    for _ in range(repeats):
        t0 = perf()
        pickle.dumps(d, protocol=5)
        pickles.append(perf() - t0)
    hit, pick = float(np.median(hits)), float(np.median(pickles))
    return {"items": len(d), "hit_s": hit, "pickle_s": pick, "hit_per_pickle": hit / pick}


def phase_n_store(ad, p):  # a 500 MB array result, stored once; the same array saved by np.save beside
    arr = workloads.load_write_array()
    ad.wrap(workloads.load_write_result)(0)
    np.save(p["npy"], arr)
    return {"mb": arr.nbytes / MB}


def phase_n_load(ad, p):  # new process: load it and write every element, next to np.load and the same writes
    """Three ways, each timed loading alone and loading then writing: a hit as decorated by default
    (the result mapped copy-on-write), a hit of ``persistf(mmap=False)`` (the same entry copied into
    fresh memory) and ``np.load``. One round of all first (not counted: the process's first touch of
    that much memory costs more on this VM, and whichever ran first would pay it), then rounds
    rotating which goes first."""
    import persist_to_disk as ptd

    ways = {"mapped": ad.wrap(workloads.load_write_result),
            "copied": ptd.persistf(mmap=False)(workloads.load_write_result),  # the same key: mmap is not in it
            "np_load": lambda _i: np.load(p["npy"])}
    load_s = {name: [] for name in ways}
    load_write_s = {name: [] for name in ways}
    names = list(ways)
    for round_ in range(p["repeats"] + 1):
        for name in names[round_ % 3:] + names[:round_ % 3]:
            t0 = perf()
            r = ways[name](0)
            t1 = perf()
            del r  # (freeing it is timed by neither figure)
            t2 = perf()
            r = ways[name](0)
            r += 1.0
            t3 = perf()
            del r
            if round_:
                load_s[name].append(t1 - t0)
                load_write_s[name].append(t3 - t2)
    med = {name: float(np.median(load_write_s[name])) for name in ways}
    return {"load_write_s": load_write_s["mapped"], "copied_load_write_s": load_write_s["copied"],
            "np_load_write_s": load_write_s["np_load"],
            "load_s": {name: float(np.median(v)) for name, v in load_s.items()},
            "ratio": med["mapped"] / med["np_load"], "copied_ratio": med["copied"] / med["np_load"],
            "executions": _count_lines(os.environ.get("BENCH_COUNTER", ""))}


H_CELL = """%%persist
import time
import numpy as np
time.sleep({cost_s})
big = np.random.default_rng(3).random({n})
"""


def _shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    res = shell.run_line_magic("load_ext", "persist_to_disk")
    cell_magics = shell.magics_manager.magics.get("cell", {})
    if "persist" not in cell_magics:
        return None, f"%load_ext persist_to_disk registered no %%persist ({res!r})"
    return shell, None


def _run_cell(shell, cost_s):
    cell = H_CELL.format(cost_s=cost_s, n=workloads.TORN_BYTES // 8)
    t0 = perf()
    result = shell.run_cell(cell)
    elapsed = perf() - t0
    if not result.success:
        raise RuntimeError(f"cell failed: {result.error_in_exec or result.error_before_exec!r}")
    big = shell.user_ns.get("big")
    ok = isinstance(big, np.ndarray) and np.array_equal(big, np.random.default_rng(3).random(workloads.TORN_BYTES // 8))
    return elapsed, ok


def phase_h(ad, p):  # %%persist cell assigning 100 MB: run it (miss) here, then hit it in a new kernel
    try:
        shell, why = _shell()
    except Exception as exc:
        return {"not_measured": f"{type(exc).__name__}: {exc}"[:300]}
    if shell is None:
        return {"not_measured": why}
    miss, ok_miss = _run_cell(shell, p["cost_s"])
    return {"miss_s": miss, "correct": ok_miss}


def phase_h_hit(ad, p):
    shell, why = _shell()
    if shell is None:
        return {"not_measured": why}
    hit, ok = _run_cell(shell, p["cost_s"])
    return {"hit_s": hit, "correct": ok}


PHASES = {name[6:]: fn for name, fn in list(globals().items()) if name.startswith("phase_")}


def main() -> None:
    peer, phase, cache_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    params = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    ad = adapters.get(peer)
    try:
        ad.setup(cache_dir)
        out = PHASES[phase](ad, params)
        out["version"] = ad.version()
    except Exception as exc:
        out = {"failed": f"{type(exc).__name__}: {exc}"[:500], "trace": traceback.format_exc()[-2000:]}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
