"""The processes the reliability suite starts, kills and inspects.

Run as ``python _rel_worker.py <mode> '<json arguments>'``; each mode prints one JSON
line on stdout. The tests also load this file by path for ``expected_value``,
``SeedBucketStore`` and the checkers, so a test and its workers agree on values.

Nothing here is imported by the package: the only test hook in the core is the
``PTD_TEST_FAULT`` variable read by ``persist_to_disk.writing`` (see ``writing.fault``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import xxhash

import persist_to_disk as ptd
from persist_to_disk import locks
from persist_to_disk import writing
from persist_to_disk.store import ENOVAL, Entry, LocalStore

try:  # the browser's and the CLI's delete path, when this checkout has it
    from persist_to_disk import catalog as _catalog
except ImportError:  # pragma: no cover
    _catalog = None


# -- values everyone agrees on ----------------------------------------------------------------------
def expected_value(key: str, size: int) -> bytes:
    """``size`` bytes that only this key gives (a wrong or torn value cannot pass for it)."""
    return random.Random(f"ptd-rel:{key}").randbytes(size)


def stress_value(key: str) -> dict[str, Any]:
    size = 1024 + int(xxhash.xxh32_intdigest(key.encode())) % (48 * 1024)
    return {"key": key, "blob": expected_value(key, size)}


def _log(path: str | None, line: str) -> None:
    if path:  # one O_APPEND write per line: lines of concurrent writers never interleave
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def read_log(path: str | os.PathLike) -> list[tuple[int, str]]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [(int(pid), key) for pid, key in (line.split(" ", 1) for line in text.splitlines() if line)]


# -- the seed's design, for the honesty checks ------------------------------------------------------
class SeedBucketStore:
    """The seed's layout: every entry of a bucket in one pickle, rewritten in place for each new entry.

    Same methods as LocalStore, so a test can run the very same fault against it and
    show that its checker catches the loss. It calls the same fault points as LocalStore.
    """

    def __init__(self, root: str | os.PathLike, *, fsync: bool = False, hashsize: int = 2, **_: Any) -> None:
        self.root = os.fspath(root)
        self.hashsize = hashsize

    def _bucket_path(self, key: str) -> str:
        return os.path.join(self.root, f"{xxhash.xxh32_intdigest(key.encode()) % self.hashsize}.pkl")

    def path_of(self, key: str) -> str:
        return self._bucket_path(key)

    def _read(self, path: str) -> dict[str, Any]:
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except FileNotFoundError:
            return {}
        except Exception:  # the most forgiving seed: a bad bucket reads as empty
            return {}

    def _write(self, path: str, bucket: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = pickle.dumps(bucket, protocol=5)
        with open(path, "wb") as fh:  # in place: truncated first
            writing.fault("opened", path)
            fh.write(data[: len(data) // 2])
            fh.flush()
            writing.fault("middle", path)
            fh.write(data[len(data) // 2 :])

    def load(self, key: str, *, mmap: bool = True) -> Any:
        bucket = self._read(self._bucket_path(key))
        if key not in bucket:
            return ENOVAL
        return Entry(bucket[key][0], bucket[key][1])

    def get(self, key: str) -> Any:
        entry = self.load(key)
        return entry if entry is ENOVAL else entry.value

    def contains(self, key: str) -> bool:
        return self.load(key) is not ENOVAL

    def put(self, key: str, value: Any, header: dict[str, Any], **_: Any) -> dict[str, Any]:
        path = self._bucket_path(key)
        bucket = self._read(path)
        bucket[key] = (value, header)
        self._write(path, bucket)
        return header

    def lease(self, key: str, recheck: Any) -> Any:
        return contextlib.nullcontext(ENOVAL)  # one host: the kernel locks serve

    def delete(self, key: str) -> int:
        path = self._bucket_path(key)
        bucket = self._read(path)
        if bucket.pop(key, None) is None:
            return 0
        self._write(path, bucket)
        return 1


def make_store(design: str, root: str) -> Any:
    return SeedBucketStore(root) if design == "seed" else LocalStore(root)


# -- persisted functions ----------------------------------------------------------------------------
_ARGS: dict[str, Any] = {}  # the run's instrumentation (log file, delays), not an input of the results


@ptd.persistf(hashsize=4, ignore_globals=["_ARGS"])
def rel_stress(key):
    _log(_ARGS.get("log"), f"{os.getpid()} {key}")
    if _ARGS.get("compute_delay"):
        time.sleep(_ARGS["compute_delay"])  # stands for work, not for waiting on anyone
    return stress_value(key)


@ptd.persistf(ignore_globals=["_ARGS"])
def rel_slow(key):
    """Logs that it started, then (if asked) says so in a marker file and holds until released."""
    _log(_ARGS.get("log"), f"{os.getpid()} {key}")
    marker, release = _ARGS.get("marker"), _ARGS.get("release")
    child = _fork_sleeper() if _ARGS.get("fork") else None
    if marker:
        Path(marker).write_text(str(os.getpid()) if child is None else f"{os.getpid()} {child}")
    if release:
        deadline = time.monotonic() + 60
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.01)
    return {"key": key, "by": os.getpid()}


def _fork_sleeper() -> int:
    """Fork a child that only lives on (up to a minute), as a pool worker forked mid-computation would."""
    child = os.fork()
    if child == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # let the test read the parent's output to its end while this child lives
            os.dup2(null, fd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
        os._exit(0)
    return child


@ptd.persistf(ignore_globals=["_ARGS"])
def rel_big(key, size):
    _log(_ARGS.get("log"), f"{os.getpid()} {key}")
    return expected_value(key, size)


# -- modes ------------------------------------------------------------------------------------------
def _setup(a: dict[str, Any]) -> None:
    _ARGS.update(a)
    if a.get("persist"):
        ptd.config.set_persist_path(a["persist"])
    if a.get("granularity"):
        ptd.config.set_lock_granularity(a["granularity"])
    if a.get("design") == "seed":
        import persist_to_disk.persister as persister

        # the decorator now writes the seed's buckets (one bucket per function folder: entries share it)
        persister.stores.open_store = lambda folder, persist_root, settings: SeedBucketStore(folder, hashsize=1)
    if a.get("nolock"):

        @contextlib.contextmanager
        def no_lock(*_args: Any, **_kw: Any):
            yield locks.Held()

        locks.compute_lock = no_lock
    if a.get("lock_timeout"):  # honesty checks: a lock wait that gives up (and the caller then computes)
        import functools

        locks.compute_lock = functools.partial(locks.compute_lock, timeout=a["lock_timeout"])
    if a.get("naive_lock"):
        locks.FileLock = NaiveLock
    if a.get("warp"):
        _warp_clocks()


class NaiveLock:
    """A lock file made with O_EXCL and removed on release: it outlives a killed holder."""

    def __init__(self, path: str, timeout: float = -1, **_: Any) -> None:
        self.path = path

    def __enter__(self) -> NaiveLock:
        while True:
            try:
                os.close(os.open(self.path + ".naive", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                return self
            except FileExistsError:
                time.sleep(0.01)

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path + ".naive")


def _warp_clocks() -> None:
    """Every clock jumps an hour (and the wall clock also back and forth) each time it is read."""
    state = {"n": 0}
    real_time, real_mono, real_perf = time.time, time.monotonic, time.perf_counter

    def jump() -> float:
        state["n"] += 1
        return state["n"] * 3600.0

    time.time = lambda: real_time() + (jump() if state["n"] % 2 else -jump())  # the wall clock goes both ways
    time.monotonic = lambda: real_mono() + jump()
    time.perf_counter = lambda: real_perf() + jump()


def _caught(caught: list) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ptd.CacheWarning)]


def mode_put(a: dict[str, Any]) -> dict[str, Any]:
    """Write one value (PTD_TEST_FAULT, when set, strikes during this put)."""
    store = make_store(a.get("design", "ours"), a["root"])
    if "sweep" in a.get("disable", ()):  # honesty checks: the same rounds without the temp-file sweep
        LocalStore._sweep = lambda self, folder: None
    store.put(a["key"], expected_value(a["key"], a["size"]), {"key": a["key"]})
    return {"ok": True}


def mode_call(a: dict[str, Any]) -> dict[str, Any]:
    """Call rel_big or rel_slow for each key; report values, warnings and errors."""
    _setup(a)
    out: dict[str, Any] = {"results": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key in a["keys"]:
            try:
                if a.get("func") == "slow":
                    Path(a["calling"]).write_text("1") if a.get("calling") else None
                    value = rel_slow(key)
                    out["results"].append({"key": key, "by": value["by"]})
                else:
                    size = a.get("sizes", {}).get(key, a.get("size"))
                    value = rel_big(key, size)
                    out["results"].append({"key": key, "ok": value == expected_value(key, size)})
            except Exception as exc:
                out["results"].append({"key": key, "error": f"{type(exc).__name__}: {exc}"})
    out["warnings"] = _caught(caught)
    if a.get("list_tree"):  # a file system only this process sees (a mount namespace) is described here
        root = Path(a["persist"])
        out["tree"] = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return out


def mode_stress(a: dict[str, Any]) -> dict[str, Any]:
    """Random calls, recaches, invalidations and deletes on overlapping keys, for a bounded time."""
    _setup(a)
    rng = random.Random(a["seed"])
    stable = [f"s{i}" for i in range(a["stable"])]
    volatile = [f"v{i}" for i in range(a["volatile"])]
    keys = stable + volatile
    counts = {"calls": 0, "recaches": 0, "invalidations": 0, "deletes": 0}
    errors: list[str] = []
    wrong: list[str] = []
    deadline = time.monotonic() + a["seconds"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(a["ops"]):
            if time.monotonic() > deadline:
                break
            r = rng.random()
            try:
                if r < 0.08:  # the decorator's own delete path
                    rel_stress.cache.invalidate(rng.choice(volatile))
                    counts["invalidations"] += 1
                elif r < 0.16:  # what the browser and the CLI do: the catalog's delete (LocalStore.delete)
                    key = rng.choice(volatile)
                    if a.get("design") == "seed":
                        rel_stress.cache.invalidate(key)
                    elif _catalog is not None and rng.random() < 0.5:
                        _catalog.Catalog(a["persist"]).delete([rel_stress.cache.path(key)])
                    else:
                        folder = rel_stress.cache.folder
                        LocalStore(folder).delete(rel_stress.cache.path(key).relative_to(folder).as_posix())
                    counts["deletes"] += 1
                elif r < 0.24:
                    key = rng.choice(volatile)
                    if rel_stress(key, cache_switch=ptd.RECACHE) != stress_value(key):
                        wrong.append(key)
                    counts["recaches"] += 1
                else:
                    key = rng.choice(keys)
                    if rel_stress(key) != stress_value(key):
                        wrong.append(key)
                    counts["calls"] += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    return {
        "counts": counts, "errors": errors[:20], "n_errors": len(errors), "wrong": wrong, "warnings": _caught(caught)
    }


def mode_storm(a: dict[str, Any]) -> dict[str, Any]:
    """Recache a few keys in a loop while the test sends SIGINTs; then, signals over, call each key once more.

    A SIGINT raises KeyboardInterrupt only while a persisted call runs (anywhere inside it), so the
    loop itself survives the storm. ``done`` is written once the last calls returned; the process
    then stays alive (holding whatever it might have leaked) until ``release`` exists.
    """
    import signal

    _setup(a)
    armed = [False]

    def interrupt(signum: int, frame: Any) -> None:
        if armed[0]:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    keys = [f"k{i}" for i in range(a["keys"])]
    # The first call walks the function's dependencies (a library's version from its metadata takes
    # milliseconds): a storm denser than that would interrupt it for ever, and nothing would be recached.
    rel_stress(keys[0])
    counts = {"calls": 0, "interrupted": 0}
    Path(a["ready"]).write_text("1")
    i = 0
    while not os.path.exists(a["stop"]):
        i += 1
        try:
            armed[0] = True
            rel_stress(keys[i % len(keys)], cache_switch=ptd.RECACHE)
            armed[0] = False
            counts["calls"] += 1
        except KeyboardInterrupt:
            armed[0] = False
            counts["interrupted"] += 1
    wrong = [key for key in keys if rel_stress(key, cache_switch=ptd.RECACHE) != stress_value(key)]
    Path(a["done"]).write_text("1")
    deadline = time.monotonic() + 60
    while not os.path.exists(a["release"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {**counts, "wrong": wrong}


def mode_verify(a: dict[str, Any]) -> dict[str, Any]:
    """Which keys are cached, and whether each cached value is the right one (nothing is computed)."""
    _setup(a)
    report: dict[str, str] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key in a["keys"]:
            try:
                value = rel_stress.cache.get(key)
            except ptd.NotCachedError:
                report[key] = "missing"
                continue
            report[key] = "ok" if value == stress_value(key) else "WRONG"
    return {"report": report, "warnings": _caught(caught)}


def mode_network(a: dict[str, Any]) -> dict[str, Any]:
    """Use every face of the core with an audit hook that records any socket use."""
    events: list[str] = []

    def hook(event: str, args: Any) -> None:
        if event.startswith(("socket.", "urllib.", "http.")) and event != "socket.gethostname":
            events.append(event)

    sys.addaudithook(hook)
    _setup(a)
    for key in ("a", "b", "a"):
        rel_big(key, 1000)
    rel_big.cache.entries()
    rel_big.cache.invalidate("b", 1000)
    ptd.manual_cache("k", obj=[1, 2], write=True)
    ptd.manual_cache("k")
    ptd.config.describe()
    ptd.clear_locks(clear=True)
    LocalStore(a["persist"]).remove_stale_temps()
    return {"events": events}


MODES = {
    "put": mode_put,
    "call": mode_call,
    "stress": mode_stress,
    "verify": mode_verify,
    "storm": mode_storm,
    "network": mode_network,
}

if __name__ == "__main__":
    result = MODES[sys.argv[1]](json.loads(sys.argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
