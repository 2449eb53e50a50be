"""One "session" of a data scientist: every case of values.py as an argument and as a result.

``python worker.py OUT.json``: with the cache under $HOME. Each persisted function appends to a
log file on every real computation, so the test counts computations across processes.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import values  # noqa: E402

import persist_to_disk as ptd  # noqa: E402
from persist_to_disk import keys  # noqa: E402

LOG = Path(os.environ["DATASTACK_LOG"])


def _log(what: str) -> None:
    with LOG.open("a") as f:
        f.write(what + "\n")


@ptd.persistf()
def use(case: str, value: object) -> str:
    _log(f"use|{case}")
    return case


@ptd.persistf()
def give(case: str) -> object:
    _log(f"give|{case}")
    return values.CASES[case][0]()[0]


def same(x: object, y: object) -> bool:
    """Equality the way each library means it (NaNs equal, same types all the way down)."""
    if type(x) is not type(y):
        return False
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, tuple):
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
    module = type(x).__module__.split(".")[0]
    if module == "numpy":
        import numpy as np

        if isinstance(x, np.random.Generator):
            return x.bit_generator.state == y.bit_generator.state
        if x.dtype != y.dtype or x.shape != y.shape or x.flags.f_contiguous != y.flags.f_contiguous:
            return False
        return x.tobytes() == y.tobytes() or (x.dtype.kind == "O" and x.tolist() == y.tolist())
    if module == "pandas" and hasattr(x, "dtypes") and not hasattr(x, "dtype"):  # a DataFrame
        return x.equals(y) and x.dtypes.equals(y.dtypes)
    if module == "pandas":
        return x.equals(y) and x.dtype == y.dtype
    if module in ("polars", "pyarrow"):
        return x.equals(y)
    if module == "scipy":
        return x.format == y.format and (x != y).nnz == 0
    if module == "xarray":
        return x.identical(y)
    if module == "torch":
        import torch

        if isinstance(x, torch.nn.Module):
            a, b = x.state_dict(), y.state_dict()
            return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) and repr(x) == repr(y)
        same_bits = x.reshape(-1).view(torch.uint8).equal(y.reshape(-1).view(torch.uint8))
        return x.dtype == y.dtype and x.shape == y.shape and same_bits
    if module == "sklearn":
        import numpy as np

        def equal(a: object, b: object) -> bool:
            return np.array_equal(a, b) if hasattr(a, "shape") else repr(a) == repr(b)

        state_x, state_y = vars(x), vars(y)
        same_state = state_x.keys() == state_y.keys() and all(equal(state_x[k], state_y[k]) for k in state_x)
        return repr(x) == repr(y) and same_state
    return x == y


def run_case(case: str) -> dict:
    build, library = values.CASES[case]
    if library is not None:
        try:
            __import__(library)
        except ImportError:
            return {"missing": library}
    a, b, c = build()
    out = {"digests": [keys.hash_arguments({"v": v}) for v in (a, b, c)]}
    for value in (a, b, c):
        use(case, value)
    loaded = give(case)
    out["loaded_equal"] = same(loaded, a)
    out["loaded_type"] = type(loaded).__qualname__
    return out


def main(out_path: str) -> None:
    report = {}
    for case in values.CASES:
        try:
            report[case] = run_case(case)
        except Exception:
            report[case] = {"error": traceback.format_exc()}
    Path(out_path).write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
