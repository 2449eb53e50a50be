"""The functions every peer caches: the same code, the same inputs.

They live in a module file (not in ``__main__``) because persist-to-disk 0.0.7
needs a function whose source file lies inside the project path, and because
a function's module and name are what joblib and cachier key on.
"""

from __future__ import annotations

import datetime as dt
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


# -- the data people pass and return (scenarios i to n) ---------------------------------------------------
TEXT_ROWS = 1_000_000  # scenario i: ~190 MB in memory (12 float columns, Arrow strings, object strings, a categorical)
TENSOR_BYTES = 200 * MB  # scenario j
DICT_ITEMS = 1_000_000  # scenario k
LOAD_WRITE_BYTES = 500 * MB  # scenario n


def text_frame():
    """A DataFrame as read from a CSV: numbers, names (pandas' own string dtype), free text in an
    object column and a categorical; the same in every process."""
    import pandas as pd

    rng = np.random.default_rng(5)
    words = np.array([f"item-{i:06d}" for i in range(20_000)], dtype=object)
    columns = {f"x{j}": rng.random(TEXT_ROWS) for j in range(12)}
    columns["name"] = pd.Series(words[rng.integers(0, 20_000, TEXT_ROWS)], dtype="str")
    columns["note"] = pd.Series(words[rng.integers(0, 20_000, TEXT_ROWS)], dtype=object)
    columns["kind"] = pd.Categorical(words[rng.integers(0, 40, TEXT_ROWS)])
    return pd.DataFrame(columns)


def frame_total(df):
    """Scenario i: a DataFrame argument, a small result; a hit costs hashing the frame."""
    return float(df["x0"].to_numpy()[:: 1 << 12].sum())


def polars_total(df):
    """Scenario i, the same frame in polars: a small result; a hit costs hashing the frame."""
    return float(df["x0"].to_numpy()[:: 1 << 12].sum())


def tensor():
    import torch

    return torch.from_numpy(np.random.default_rng(6).random(TENSOR_BYTES // 8))


def tensor_total(t):
    """Scenario j: a torch tensor argument; a hit costs hashing it."""
    return float(t[:: 1 << 16].sum())


_TENSOR = None


def tensor_result(i):
    """Scenario j: returns a prebuilt 200 MB tensor (pickled in band: torch writes its storage as bytes)."""
    global _TENSOR
    if _TENSOR is None:
        _TENSOR = tensor()
    return _TENSOR


def scores():
    """Scenario k: a dict of 1M str -> float, the same in every process."""
    return {f"sample-{i:07d}": i / 7 for i in range(DICT_ITEMS)}


def id_counts():
    """Scenario k, beside it: a dict of 1M int -> int (ids to counts), the same in every process."""
    return {i * 7919 % 10_000_019: i % 97 for i in range(DICT_ITEMS)}


def real_data() -> dict:
    """Scenario k, beside it (not targets): arguments shaped as people's data is, 200k items each."""
    n = 200_000
    return {
        "csv rows": [[str(i), f"name {i % 5000}", f"{i * 0.37:.2f}", f"2024-01-{i % 28 + 1:02d}"] for i in range(n)],
        "floats with missing": [None if i % 7 == 0 else i / 3 for i in range(n)],
        "flags": [i % 3 == 0 for i in range(n)],
        "cells (tuple keys)": {(i // 500, i % 500): i / 9 for i in range(n)},
        "set of names": {f"user-{i * 7919 % 1_000_003}" for i in range(n)},
        "cursor rows with dates": [(i, f"name {i % 5000}", _DAY + dt.timedelta(days=i % 900), _DAY_START + dt.timedelta(seconds=i))
                                   for i in range(n)],
        "groupby by (date, store)": _sales_by_day_and_store(n),
    }


_DAY = dt.date(2024, 1, 1)
_DAY_START = dt.datetime(2024, 1, 1, 9)


def _sales_by_day_and_store(n: int):
    """A groupby's result: a frame indexed by (date, store), a MultiIndex with a datetime level."""
    import pandas as pd

    days, stores = pd.date_range("2024-01-01", periods=n // 500), [f"store {i}" for i in range(500)]
    index = pd.MultiIndex.from_product([days, stores], names=["day", "store"])
    return pd.DataFrame({"sales": np.arange(len(index)) / 7}, index=index)


def score_count(d):
    return len(d)


def load_write_array() -> np.ndarray:
    return np.random.default_rng(7).random(LOAD_WRITE_BYTES // 8)


def load_write_result(i):
    """Scenario n: a 500 MB array result, loaded and then written to all over."""
    return load_write_array()
