"""The functions every peer caches: the same code, the same inputs.

They live in a module file (not in ``__main__``) because persist-to-disk 0.0.7
needs a function whose source file lies inside the project path, and because
a function's module and name are what joblib and cachier key on.
"""

from __future__ import annotations

import os
import time

import numpy as np

MB = 1 << 20
BIG_BYTES = 200 * MB  # scenarios d and e
TORN_BYTES = 100 * MB  # scenario g

_BIG_RESULT: np.ndarray | None = None


def _count() -> None:
    """Append one line to $BENCH_COUNTER: one line per real execution (O_APPEND is atomic for a line)."""
    path = os.environ.get("BENCH_COUNTER")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)


def inc(x):
    """Scenarios a, b, c: the cheapest function there is, so a call costs what the cache costs."""
    return x + 1


def slow(x):
    """Scenario f: 0.2 s of work, counted."""
    _count()
    time.sleep(0.2)
    return x * 2


def total(a):
    """Scenario d: a 200 MB argument, a small result; a hit costs hashing the argument."""
    return float(a[:: 1 << 16].sum())


def big_result_array() -> np.ndarray:
    """The 200 MB float64 array scenario e returns; built once per process, outside the timing."""
    global _BIG_RESULT
    if _BIG_RESULT is None:
        _BIG_RESULT = np.random.default_rng(1).random(BIG_BYTES // 8)
    return _BIG_RESULT


def big_result(i):
    """Scenario e: returns a prebuilt 200 MB array, so a miss costs storing it."""
    return big_result_array()


def torn_array() -> np.ndarray:
    return np.random.default_rng(2).random(TORN_BYTES // 8)


def small_or_torn(x):
    """Scenario g: one function, counted. Small keys return x + 1 (the 1,000 earlier entries);
    the key "torn" returns 100 MB whose write gets killed (it signals $BENCH_MARK once computed)."""
    _count()
    if x != "torn":
        return x + 1
    arr = torn_array()
    mark = os.environ.get("BENCH_MARK")
    if mark:
        with open(mark, "w") as fh:
            fh.write("computed")
    return arr
