"""Large arguments: buffers hashed as a tree of runs on a few threads, each argument hashed once.

From ``arrays.TREE_MIN_BYTES`` on, an array's values hash as fixed runs of elements in C order,
hashed in parallel, then the runs' digests. The runs must not depend on the memory layout (a
Fortran or strided array of the same values keys the same), every value must count, and a
process forked after the thread pool started must still hash. A call's key is made of each
argument's digest, which the entry's header keeps: a miss hashes each argument once.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import persist_to_disk as ptd
from persist_to_disk import arrays, keys

ROWS = arrays.TREE_MIN_BYTES // (3 * 8) + 12_345  # (ROWS, 3) float64: past the tree's threshold, runs cut rows


def _values() -> np.ndarray:
    return np.random.default_rng(7).random((ROWS, 3))


def test_a_large_array_keys_the_same_in_every_layout() -> None:
    a = _values()
    assert a.nbytes >= arrays.TREE_MIN_BYTES
    fortran = np.asfortranarray(a)
    strided = np.random.default_rng(7).random((ROWS, 6))[:, ::2]
    strided[:] = a
    assert not fortran.flags.c_contiguous and not strided.flags.c_contiguous
    digest = keys.hash_value(a)
    assert keys.hash_value(fortran) == digest
    assert keys.hash_value(strided) == digest
    assert keys.hash_value(a.T.copy().T) == digest


@pytest.mark.parametrize("where", [0, ROWS // 2, ROWS - 1])
def test_every_value_of_a_large_array_counts(where: int) -> None:
    a = _values()
    digest = keys.hash_value(a)
    b = a.copy()
    b[where, 1] += 1e-9
    assert keys.hash_value(b) != digest
    assert keys.hash_value(np.asfortranarray(b)) == keys.hash_value(b)


def test_a_large_array_with_nans_keys_as_the_same_missing_values() -> None:
    a = _values()
    a[::1000, 0] = np.nan
    negative = a.copy()
    negative[::1000, 0] = -np.nan  # another bit pattern of NaN
    assert np.signbit(negative[0, 0]) != np.signbit(a[0, 0])
    assert keys.hash_value(negative) == keys.hash_value(a)
    assert keys.hash_value(np.asfortranarray(negative)) == keys.hash_value(a)


def test_large_tensors_key_by_their_values() -> None:
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(_values())
    digest = keys.hash_value(t)
    assert keys.hash_value(t.clone()) == digest
    changed = t.clone()
    changed[ROWS - 1, 2] += 1
    assert keys.hash_value(changed) != digest
    half = torch.cat([t] * 4).to(torch.bfloat16)  # no numpy dtype: hashed from its bytes
    assert half.numel() * half.element_size() >= arrays.TREE_MIN_BYTES
    other = half.clone()
    other[-1, -1] += 1
    assert keys.hash_value(half) == keys.hash_value(torch.cat([t] * 4).to(torch.bfloat16))
    assert keys.hash_value(other) != keys.hash_value(half)


# -- floats below the tree: fed while another thread looks for NaNs ----------------------------------------
MID = arrays.OVERLAP_MIN_BYTES // 8 * 3  # float64s: past the overlap's threshold, below the tree's
assert arrays.OVERLAP_MIN_BYTES <= MID * 8 < arrays.TREE_MIN_BYTES


def _in_turns(value, monkeypatch: pytest.MonkeyPatch) -> str:
    """The digest of the single-thread path (NaN check then hash, a piece at a time)."""
    with monkeypatch.context() as m:
        m.setattr(arrays, "OVERLAP_MIN_BYTES", arrays.TREE_MIN_BYTES)
        return keys.hash_value(value)


@pytest.mark.parametrize("dtype", ["<f8", "<f4", "<c16"])
def test_mid_size_floats_key_as_the_single_thread_path_does(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = np.random.default_rng(3).random(MID).astype(dtype)
    assert keys.hash_value(a) == _in_turns(a, monkeypatch)
    with_nans = a.copy()
    with_nans[[0, MID // 2, -1]] = np.nan
    negative = a.copy()
    negative[[0, MID // 2, -1]] = -np.nan  # another bit pattern: the stream must be rewound and fed again
    assert keys.hash_value(with_nans) == keys.hash_value(negative) == _in_turns(negative, monkeypatch)
    assert keys.hash_value(with_nans) != keys.hash_value(a)
    assert keys.hash_value([negative, a]) == keys.hash_value([with_nans, a])  # what came before stays fed


def test_values_after_a_rewound_one_keep_their_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A global read after a value whose stream was rewound (floats with a NaN, fed while checked): its
    label still goes into the key, and the key is the single-thread path's (any machine's)."""
    nans = np.random.default_rng(4).random(MID)
    nans[MID // 2] = -np.nan

    def key(*labels: str) -> str:
        extra = [(keys.extra_label(labels[0]), nans), (keys.extra_label(labels[1]), 1)]
        return keys.hash_call({"x": 1}, prefix=b"p", extra=extra)[0]

    assert key("a", "b") != key("a", "c")
    with monkeypatch.context() as m:
        m.setattr(arrays, "OVERLAP_MIN_BYTES", arrays.TREE_MIN_BYTES)  # no rewind
        single = key("a", "b")
    assert key("a", "b") == single


_FORK = """
import os, sys
import numpy as np
from persist_to_disk import keys
a = np.arange({n}, dtype="<f8")
before = keys.hash_value(a)  # the hashing threads start here
pid = os.fork()
if pid == 0:
    os._exit(0 if keys.hash_value(a) == before else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(sys.modules["os"], "fork"), reason="needs os.fork")
@pytest.mark.parametrize("n", [arrays.TREE_MIN_BYTES // 8 * 2, MID], ids=["tree", "mid-size"])
def test_a_forked_process_hashes_large_arrays_too(python: str, n: int) -> None:
    """A child forked after the pool started has none of its threads: it must not wait on them."""
    script = textwrap.dedent(_FORK.format(n=n))
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


_WITHOUT_NUMPY = """
import sys
from persist_to_disk import keys
assert "numpy" not in sys.modules
n = keys.NUMPY_IMPORT_MIN
values = [{f"sample-{i:07d}": i / 7 for i in range(n)}, [f"name {i}" for i in range(n)], {str(i): i for i in range(n)}]
keys.NUMPY_IMPORT_MIN = 1 << 62
item_by_item = [keys.hash_value(v) for v in values]
assert "numpy" not in sys.modules
keys.NUMPY_IMPORT_MIN = n
print(item_by_item == [keys.hash_value(v) for v in values], "numpy" in sys.modules)
"""


_NUMPY_MISSING = """
import importlib.abc, sys
looked = []

class NoNumpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "numpy":
            looked.append(name)
            raise ImportError("numpy is not installed here")

sys.meta_path.insert(0, NoNumpy())
from persist_to_disk import keys
names = [f"name {i}" for i in range(keys.NUMPY_IMPORT_MIN)]
digests = {keys.hash_value(names) for _ in range(3)}
small = [keys.hash_value(names[: keys.NUMPY_IMPORT_MIN - 1]) for _ in range(3)]
print(len(digests), len(looked), "numpy" in sys.modules)
"""


def test_without_numpy_a_large_container_looks_for_it_once(python: str) -> None:
    """Each big container searched sys.path for numpy again; hashing goes on item by item, the same key."""
    out = subprocess.run([python, "-c", _NUMPY_MISSING], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "False"]


def test_a_large_container_is_hashed_in_bulk_even_before_numpy_is_imported(python: str) -> None:
    """A 1M-item dict hashed item by item took ~4x pickle.dumps' time; from NUMPY_IMPORT_MIN items numpy
    is imported (when installed) and frames it in bulk, into the same key."""
    out = subprocess.run([python, "-c", _WITHOUT_NUMPY], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


_AT_EXIT = """
import atexit
import numpy as np
from persist_to_disk import keys
values = {{"mid-size": np.arange({mid}, dtype=float), "tree": np.arange({tree}, dtype=float)}}
digests = {{name: keys.hash_value(a) for name, a in values.items()}}  # the hashing threads start here
atexit.register(lambda: print(*[keys.hash_value(a) == digests[name] for name, a in values.items()]))
"""


def test_arrays_hash_while_the_interpreter_shuts_down(python: str) -> None:
    """An atexit hook (a last save) hashing a large array: the thread pool takes no more work then,
    and a tree-sized array raised UnhashableArgumentError ("cannot schedule new futures")."""
    script = textwrap.dedent(_AT_EXIT.format(mid=MID, tree=arrays.TREE_MIN_BYTES // 8 * 2))
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"], out.stderr


# -- each argument hashed once, its digest in the key and in the header ------------------------------------
class Counted:
    """An argument whose hashing is counted (through the hook every object may define)."""

    hashed = 0

    def __init__(self, label: str) -> None:
        self.label = label

    def __ptd_hash__(self) -> str:
        Counted.hashed += 1
        return self.label


def test_the_key_is_made_of_each_arguments_digest() -> None:
    named = {"a": [1, 2, 3], "b": "text"}
    key, digests = keys.hash_call(named, prefix=b"f")
    assert key == keys.hash_arguments(named, prefix=b"f")
    assert set(digests) == {"a"}  # a scalar is fed whole: its digest is made only for a header
    assert keys.argument_digests(named, digests) == {name: keys.hash_value(v) for name, v in named.items()}
    other_key, other_digests = keys.hash_call({"a": [1, 2, 3], "b": "other"}, prefix=b"f")
    assert other_digests == digests and other_key != key
    assert keys.hash_call({"a": [1, 2, 4], "b": "text"}, prefix=b"f")[0] != key
    assert keys.hash_call({"b": [1, 2, 3], "a": "text"}, prefix=b"f")[0] != key  # names count
    assert keys.hash_call({"a": "x"})[0] != keys.hash_call({"a": ["x"]})[0] != keys.hash_call({"a": b"x"})[0]


def test_a_miss_hashes_each_argument_once(tmp_path) -> None:
    ptd.config.set_persist_path(str(tmp_path))

    @ptd.persistf()
    def label_of(x: Counted, n: int) -> str:
        return x.label * n

    Counted.hashed = 0
    assert label_of(Counted("ab"), 2) == "abab"  # a miss: the key, then the header's digests
    assert Counted.hashed == 1
    assert label_of(Counted("ab"), 2) == "abab"  # a hit
    assert Counted.hashed == 2
    (header,) = [info.header for info in label_of.cache.entries()]
    assert header["arg_digests"] == {"x": keys.hash_value(Counted("ab")), "n": keys.hash_value(2)}


def test_threads_hashing_at_once_share_one_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first hashes of several threads at once start one pool of hashing threads, not one each."""
    import threading

    from concurrent.futures import ThreadPoolExecutor

    class SlowToStart(ThreadPoolExecutor):  # widens the window in which another thread could make its own
        def __init__(self, *args, **kwargs) -> None:
            time.sleep(0.02)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(arrays, "ThreadPoolExecutor", SlowToStart)
    monkeypatch.setattr(arrays, "_pool", None)
    start = threading.Barrier(16)
    pools = []

    def first_hash() -> None:
        start.wait()
        pools.append(arrays.hashing_pool())

    threads = [threading.Thread(target=first_hash) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(pools) == 16 and len({id(p) for p in pools}) == 1
    pools[0].shutdown(wait=False)
