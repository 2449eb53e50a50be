"""Array values into the key straight from their buffers: numpy, pandas and torch.

The libraries are never imported here: a value can only be one of their objects if
its library is already in ``sys.modules``, so each handler looks there and answers
``False`` (not mine) otherwise. Keys stay canonical across processes and versions:

- values are fed in C order whatever the memory layout (C, Fortran, strided);
- from ``TREE_MIN_BYTES`` on, values hash as a tree: fixed runs of elements (the
  same for every layout) hashed on a few threads (xxhash releases the GIL), then
  the runs' digests in order;
- every dtype feeds its raw bytes, datetime64/timedelta64 included (their unit is in
  the dtype tag);
- NaNs are fed as one bit pattern, as they are for Python floats: ``0/0`` in numpy
  (sign bit set on x86) and ``float('nan')`` are the same missing value;
- torch tensors feed dtype, shape, strides, device and ``requires_grad`` beside the
  data, never torch's own pickle (whose bytes hold memory addresses).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import xxhash

from . import scalarruns
from .sigint import import_whole

__all__ = [
    "ARROW_OFFSETS",
    "HASHING_THREADS",
    "OVERLAP_MIN_BYTES",
    "feed_ndarray",
    "feed_numpy",
    "feed_pandas",
    "feed_torch",
    "hashing_pool",
    "holds_nan",
    "in_parallel",
    "qualified_name",
]

if TYPE_CHECKING:
    from .keys import CanonicalHasher

CHUNK_BYTES = 1 << 24  # a non-contiguous array is copied this much at a time
FLOAT_CHUNK_BYTES = 1 << 18  # floats are checked for NaNs and hashed this much at a time
TREE_MIN_BYTES = 1 << 23  # values from this size hash as a tree of runs, in parallel
TREE_RUN_BYTES = 1 << 23  # a run of the tree: as many whole elements as fit (one task for a thread)
OVERLAP_MIN_BYTES = 1 << 20  # floats from this size are checked for NaNs on another thread while hashed
HASHING_THREADS = min(os.cpu_count() or 1, 4)  # past ~4 threads memory bandwidth is the limit


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a class or function (what a class contributes to a key)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{getattr(obj, '__module__', None)}.{name}"


# -- numpy -----------------------------------------------------------------------------------------------
def feed_numpy(h: CanonicalHasher, obj: Any) -> bool:
    np = sys.modules.get("numpy")
    if np is None:
        return False
    if isinstance(obj, np.ndarray):
        feed_ndarray(h, obj)
        return True
    if isinstance(obj, np.generic):
        scalar = np.asarray(obj)
        h.tag(b"g", obj.dtype.str.encode() + b":" + bytes(_bytes_of(_nan_canonical(scalar.reshape(1), np), np)))
        return True
    if isinstance(obj, np.dtype):
        h.tag(b"Y", str(obj.descr if obj.fields else obj.str).encode())
        return True
    return False


def feed_ndarray(h: CanonicalHasher, arr: Any, *, nans_checked_apart: bool = False) -> None:
    """dtype, shape and the values in C order, straight from the buffer.

    ``nans_checked_apart``: a C-contiguous array below TREE_MIN_BYTES is fed as it is, without a
    look for NaNs in its floats; the caller has one running (:func:`holds_nan`) and, should it find
    a NaN, rewinds and feeds the array again without this."""
    np = sys.modules["numpy"]
    if type(arr) is not np.ndarray:  # subclasses (matrix, masked) keep their class and state
        h.tag(b"X", qualified_name(type(arr)).encode())
        if isinstance(arr, np.ma.MaskedArray):
            h.feed(np.ma.getmaskarray(arr))
            h.feed(arr.fill_value)
        arr = np.asarray(arr)
    descr = str(arr.dtype.descr) if arr.dtype.fields else arr.dtype.str
    h.tag(b"A", f"{descr}|{arr.shape}".encode())
    if arr.dtype.hasobject:
        h.sequence(b"l", arr.ravel(order="C").tolist())
        return
    if arr.size == 0:
        return
    if nans_checked_apart and arr.flags.c_contiguous and arr.nbytes < TREE_MIN_BYTES:
        h.update(_bytes_of(arr.reshape(-1), np))
        return
    if arr.nbytes <= FLOAT_CHUNK_BYTES and arr.flags.c_contiguous:  # the usual small argument, in one piece
        h.update(_bytes_of(_nan_canonical(arr.reshape(-1), np), np))
        return
    _feed_values(h, arr, np)


def _feed_values(h: CanonicalHasher, arr: Any, np: Any) -> None:
    """A non-empty array's values in C order, NaNs made canonical: streamed into ``h`` when small;
    from TREE_MIN_BYTES on, as the digests of fixed runs of elements hashed in parallel."""
    if arr.nbytes < TREE_MIN_BYTES:
        if arr.nbytes >= OVERLAP_MIN_BYTES and arr.dtype.kind in "fc" and arr.flags.c_contiguous:
            _feed_floats_overlapped(h, arr.reshape(-1), np)
            return
        for chunk in _c_order_chunks(arr, np):
            h.update(_bytes_of(_nan_canonical(chunk, np), np))
        return
    run = max(1, TREE_RUN_BYTES // arr.itemsize)
    h.tag(b"T", run.to_bytes(8, "little"))
    for digest in in_parallel(_run_digest, _runs_of(arr, run, np)):
        h.update(digest)


def _feed_floats_overlapped(h: CanonicalHasher, flat: Any, np: Any) -> None:
    """Contiguous floats fed as they are while another thread looks for a NaN, both at memory speed
    (in turns, as ``_c_order_chunks`` does them, it is ~1.3x xxh3 alone); in the rare array with a NaN the
    stream is rewound and the values fed with their NaNs made canonical."""
    try:
        has_nan = hashing_pool().submit(holds_nan, flat) if HASHING_THREADS > 1 else None
    except RuntimeError:  # the interpreter is shutting down: no new threads
        has_nan = None
    if has_nan is not None:
        before = h.mark()
        h.update(_bytes_of(flat, np))
        if not has_nan.result():
            return
        h.rewind(before)
    for chunk in _c_order_chunks(flat, np):
        h.update(_bytes_of(_nan_canonical(chunk, np), np))


def holds_nan(flat: Any) -> bool:
    """Whether a non-empty contiguous array of floats or complex numbers holds a NaN (one pass, no copy)."""
    np = sys.modules["numpy"]
    values = flat.view(flat.real.dtype) if flat.dtype.kind == "c" else flat
    return bool(np.isnan(np.minimum.reduce(values)))


def _run_digest(run: Any) -> bytes:
    """One run's digest, its NaNs made canonical first: a pass of numpy then one of xxh3 over the whole
    run (in pieces, the Python between them would hold the GIL the other threads need)."""
    np = sys.modules["numpy"]
    return xxhash.xxh3_128_digest(_bytes_of(_nan_canonical(run, np), np))


def _runs_of(arr: Any, run: int, np: Any) -> Iterator[Any]:
    """The values in C order as contiguous 1-D arrays of ``run`` elements (the last may be shorter):
    views of a C-contiguous array; of any other layout, copies made a block of rows at a time."""
    pieces = [arr.reshape(-1)] if arr.flags.c_contiguous else _c_order_blocks(arr, np)
    parts: list[Any] = []
    held = 0
    for piece in pieces:
        while piece.size:
            take = min(run - held, piece.size)
            parts.append(piece[:take])
            held += take
            piece = piece[take:]
            if held == run:
                yield parts[0] if len(parts) == 1 else np.concatenate(parts)
                parts, held = [], 0
    if parts:
        yield parts[0] if len(parts) == 1 else np.concatenate(parts)


_pool: tuple[int, Any] | None = None  # (the pid that made it, the executor): a forked child makes its own


def in_parallel(fn: Any, items: Iterable[Any]) -> Iterator[Any]:
    """``map(fn, items)`` on a few threads, in order, with a bounded number of items in flight
    (the runs of a non-contiguous array are copies)."""
    if HASHING_THREADS == 1:
        yield from map(fn, items)
        return
    executor = hashing_pool()
    pending: collections.deque = collections.deque()
    items = iter(items)
    for item in items:
        try:
            pending.append(executor.submit(fn, item))
        except RuntimeError:  # the interpreter is shutting down (an atexit hook hashes): the rest on this thread
            while pending:
                yield pending.popleft().result()
            yield fn(item)
            yield from map(fn, items)
            return
        if len(pending) > 2 * HASHING_THREADS:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def hashing_pool() -> Any:
    """The hashing threads of this process (a forked child starts its own; threads hashing at once share one)."""
    global _pool
    pool = _pool
    if pool is None or pool[0] != os.getpid():
        with _pool_lock:
            if _pool is None or _pool[0] != os.getpid():
                _pool = (os.getpid(), ThreadPoolExecutor(HASHING_THREADS, thread_name_prefix="ptd-hash"))
            pool = _pool
    return pool[1]


def _new_pool_lock() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()  # a forked child's copy may be held by a thread it does not have


_pool_lock = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_pool_lock)


def _c_order_chunks(arr: Any, np: Any) -> Iterator[Any]:
    """Contiguous 1-D pieces of the values in C order.

    Floats come in pieces small enough to stay in the CPU cache between the NaN check
    and the hash (the check is then nearly free: 200 MB hash 19.5 vs 18 ms without it);
    anything else in pieces of at most about CHUNK_BYTES.
    """
    size = FLOAT_CHUNK_BYTES if arr.dtype.kind in "fc" else CHUNK_BYTES
    for block in [arr.reshape(-1)] if arr.flags.c_contiguous else _c_order_blocks(arr, np):
        step = max(1, size // arr.itemsize)
        for start in range(0, block.size, step):
            yield block[start : start + step]


def _c_order_blocks(arr: Any, np: Any) -> Iterator[Any]:
    """A non-contiguous array's values in C order, as contiguous 1-D copies of about CHUNK_BYTES."""
    rows = max(1, CHUNK_BYTES // max(1, arr[0].nbytes))
    for start in range(0, arr.shape[0], rows):
        yield np.ascontiguousarray(arr[start : start + rows]).reshape(-1)


def _bytes_of(flat: Any, np: Any) -> Any:
    """The raw bytes of a contiguous 1-D array, without a copy (any dtype, structured ones too)."""
    return flat.view(np.uint8)


def _nan_canonical(flat: Any, np: Any) -> Any:
    """``flat`` with every NaN the same quiet NaN (a copy only when a NaN is there).

    ``minimum.reduce`` propagates NaN, so one cheap pass tells whether there is any.
    """
    kind = flat.dtype.kind
    if kind not in "fc":
        return flat
    if kind == "c":
        flat = flat.view(flat.real.dtype)  # real and imaginary parts side by side
    if not np.isnan(np.minimum.reduce(flat)):
        return flat
    nan = np.isnan(flat)
    fixed = flat.copy()
    fixed[nan] = np.nan
    return fixed


# -- pandas ----------------------------------------------------------------------------------------------
def feed_pandas(h: CanonicalHasher, obj: Any) -> bool:
    pd = sys.modules.get("pandas")
    if pd is None:
        return False
    if isinstance(obj, pd.DataFrame):
        h.tag(b"V", _pandas_name(type(obj)).encode())
        _feed_index(h, obj.columns)
        _feed_index(h, obj.index)
        for i in range(obj.shape[1]):
            _feed_series_values(h, obj.iloc[:, i])
        return True
    if isinstance(obj, pd.Series):
        h.tag(b"v", _pandas_name(type(obj)).encode())
        h.feed(obj.name)
        _feed_index(h, obj.index)
        _feed_series_values(h, obj)
        return True
    if isinstance(obj, pd.Index):
        _feed_index(h, obj)
        return True
    if isinstance(obj, pd.Categorical):
        h.tag(b"c", _pandas_name(type(obj)).encode())
        _feed_categories(h, obj.dtype)
        feed_ndarray(h, obj.codes)
        return True
    return False


def _pandas_name(cls: type) -> str:
    """``pandas.Series`` whatever module pandas defines it in (pandas 3 moved them): keys survive the upgrade."""
    return f"pandas.{cls.__name__}" if cls.__module__.startswith("pandas") else qualified_name(cls)


def _feed_index(h: CanonicalHasher, index: Any) -> None:
    h.tag(b"I", f"{type(index).__name__}|{index.dtype}".encode())
    h.feed(list(index.names))
    _feed_categories(h, index.dtype)
    _feed_array_like(h, index)


def _feed_series_values(h: CanonicalHasher, series: Any) -> None:
    h.tag(b"w", str(series.dtype).encode())
    _feed_categories(h, series.dtype)
    _feed_array_like(h, series)


def _feed_categories(h: CanonicalHasher, dtype: Any) -> None:
    """A categorical's categories and order flag: ``str(dtype)`` says only 'category'."""
    categories = getattr(dtype, "categories", None)
    if categories is not None:  # their values only: pandas 3 calls a str Index's dtype `str`, pandas 2 `object`
        h.tag(b"o", b"ordered" if dtype.ordered else b"unordered")
        _feed_array_like(h, categories)


def _feed_array_like(h: CanonicalHasher, values: Any) -> None:
    """A Series' or an Index's values, as the numpy array ``to_numpy`` makes of them, read from their buffers
    where that array would be Python objects: a categorical's codes (its categories are fed already) and
    Arrow strings' offsets and bytes."""
    np = sys.modules["numpy"]
    if getattr(values.dtype, "categories", None) is not None:
        feed_ndarray(h, np.asarray(values.array.codes))
        return
    if _feed_arrow_strings(h, values, np):
        return
    array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    feed_ndarray(h, np.asarray(array))


def _feed_arrow_strings(h: CanonicalHasher, values: Any, np: Any) -> bool:
    """Strings stored in Arrow without missing values, hashed exactly as their ``to_numpy()`` object
    array is (so pandas 2's object columns and pandas 3's str columns of equal strings feed the same
    bytes), but framed by Arrow itself: no Python string is made."""
    if getattr(values.dtype, "storage", None) != "pyarrow" or values.dtype.kind not in "OU":
        return False
    return _feed_arrow_text(h, values.array.__arrow_array__(), np)


def _feed_arrow_text(h: CanonicalHasher, chunked: Any, np: Any) -> bool:
    """A ChunkedArray of Arrow strings without missing values, hashed as its object array would be
    (``False``, nothing fed, for anything else). Each string is framed alone: chunking changes nothing."""
    pa = sys.modules.get("pyarrow")
    if pa is None or chunked.null_count or str(chunked.type) not in ("string", "large_string"):
        return False
    compute = import_whole("pyarrow.compute")
    n = len(chunked)
    h.tag(b"A", f"{np.dtype(object).str}|{(n,)}".encode())  # what feed_ndarray says of an object array
    if n < scalarruns.STR_RUN_MIN:
        h.sequence(b"l", chunked.to_pylist())
        return True
    h.tag(b"l")  # and what CanonicalHasher.sequence frames its list of str with
    h.update(n.to_bytes(8, "little"))
    gap = pa.scalar(scalarruns.GAP, chunked.type)
    for chunk in chunked.chunks:
        for start in range(0, len(chunk), scalarruns.STR_CHUNK):
            part = chunk.slice(start, scalarruns.STR_CHUNK)
            one_list = pa.LargeListArray.from_arrays(pa.array([0, len(part)], pa.int64()), part)
            joined = compute.binary_join(one_list, gap)[0].as_buffer()  # the strings with a gap between each
            frames = np.zeros(len(scalarruns.GAP) + joined.size, np.uint8)
            frames[len(scalarruns.GAP) :] = np.frombuffer(joined, np.uint8)
            offsets = np.frombuffer(part.buffers()[1], ARROW_OFFSETS[str(chunked.type)])
            offsets = offsets[part.offset : part.offset + len(part) + 1]
            lengths = np.diff(offsets).astype(np.int64)
            starts = offsets[:-1] - offsets[0] + len(scalarruns.GAP) * np.arange(len(part))
            scalarruns.write_heads(frames, starts, lengths, np)
            h.update(frames)
    h.update(b")")
    return True


ARROW_OFFSETS = {"string": "<i4", "large_string": "<i8"}  # Arrow string types and their offsets' dtype


# -- torch -----------------------------------------------------------------------------------------------
def feed_torch(h: CanonicalHasher, obj: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.Tensor):
        return False
    if obj.layout is not torch.strided or obj.is_quantized or getattr(obj, "is_nested", False):
        return False  # sparse, quantized, nested: through their pickled state
    h.tag(b"Z", qualified_name(type(obj)).encode())
    layout = f"{obj.dtype}|{tuple(obj.shape)}|{obj.stride()}|{obj.device}|{obj.requires_grad}"
    h.tag(b"A", layout.encode())
    flat = obj.detach().resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
    if flat.numel() == 0:
        return True
    try:
        values = flat.numpy()  # shares the buffer
    except TypeError:  # bfloat16, float8 ...: no numpy dtype, so torch makes the NaNs canonical
        if flat.is_floating_point() or flat.is_complex():
            nan = torch.isnan(flat)
            if bool(nan.any()):
                flat = flat.masked_fill(nan, float("nan"))
        values = flat.view(torch.uint8).numpy()
    _feed_values(h, values, sys.modules["numpy"])
    return True
