"""Why scenario n (load a large array result, then write all of it) costs what it does: the ways to load.

    bench/.venv/bin/python bench/load_write.py [--mb 500] [--rounds 3]

In one process, the same .npy file (page cache warm), each way timed loading alone and loading
then adding 1 to every element, best of two per round:

- ``np.load``: reads the file into fresh memory (which may get huge pages), then the writes;
- ``private map``: what a hit does today: a copy-on-write map of the entry file, read once for
  the checksum; each 4 KB page then faults on its first write;
- ``private map, populated``: the same with ``MADV_POPULATE_WRITE`` at load (Linux 5.14+): the
  kernel makes every private copy at once;
- ``copy at load``: read into anonymous huge-page memory, hashed as it is read;
- ``persistf(mmap=False)``: what a hit of such a function does: the library's own copy (two threads
  reading alternate 16 MB pieces into huge-page memory), then the checksum.

A way that makes both figures low would let a hit meet n without slowing reads; none does here,
so the default keeps the map and ``persistf(mmap=False)`` is there for results rewritten in place.
"""

from __future__ import annotations

import argparse
import mmap
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
import xxhash

_MADV_POPULATE_WRITE = 23  # <linux/mman.h>
_HEADER = 128  # np.save's header for a 1-D float64 array


def _private_map(path: str, populate: bool) -> np.ndarray:
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        mapped = mmap.mmap(fd, size, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    if populate:
        mapped.madvise(_MADV_POPULATE_WRITE)
    xxhash.xxh3_128(mapped).digest()  # a hit checks the payload before handing it out
    return np.frombuffer(mapped, np.float64, offset=_HEADER, count=(size - _HEADER) // 8)


def _copy_at_load(path: str) -> np.ndarray:
    size = os.path.getsize(path)
    memory = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    memory.madvise(mmap.MADV_HUGEPAGE)
    view, done, hasher, step = memoryview(memory), 0, xxhash.xxh3_128(), 1 << 22
    with open(path, "rb", buffering=0) as fh:
        while done < size:
            n = fh.readinto(view[done : done + step])
            if not n:
                raise OSError(f"{path} is shorter than {size} bytes")
            hasher.update(view[done : done + n])
            done += n
    return np.frombuffer(memory, np.float64, offset=_HEADER, count=(size - _HEADER) // 8)


def _library_copy(path: str) -> np.ndarray:
    from persist_to_disk import store

    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        memory = store._read_copy(fd, size)
    finally:
        os.close(fd)
    xxhash.xxh3_128(memory).digest()
    return np.frombuffer(memory, np.float64, offset=_HEADER, count=(size - _HEADER) // 8)


def _best_of_two(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        path = os.path.join(folder, "values.npy")
        np.save(path, np.random.default_rng(7).random(args.mb * (1 << 20) // 8))
        ways: dict[str, Callable[[], np.ndarray]] = {
            "np.load": lambda: np.load(path),
            "private map": lambda: _private_map(path, populate=False),
            "private map, populated": lambda: _private_map(path, populate=True),
            "copy at load": lambda: _copy_at_load(path),
            "persistf(mmap=False)": lambda: _library_copy(path),
        }

        def then_write(load: Callable[[], np.ndarray]) -> Callable[[], None]:
            def run() -> None:
                values = load()
                values += 1.0
            return run

        for load in ways.values():  # the first touch of this much memory costs more: not counted
            then_write(load)()
        print(f"{args.mb} MB, ms: load alone / load then write every element")
        for r in range(args.rounds):
            cells = [f"{name} {1e3 * _best_of_two(load):.0f} / {1e3 * _best_of_two(then_write(load)):.0f}"
                     for name, load in ways.items()]
            print(f"round {r + 1}: " + "   ".join(cells))


if __name__ == "__main__":
    main()
