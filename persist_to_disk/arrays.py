"""Array values into the key straight from their buffers: numpy, pandas and torch.

The libraries are never imported here: a value can only be one of their objects if
its library is already in ``sys.modules``, so each handler looks there and answers
``False`` (not mine) otherwise. Keys stay canonical across processes and versions:

- values are fed in C order whatever the memory layout (C, Fortran, strided);
- every dtype feeds its raw bytes, datetime64/timedelta64 included (their unit is in
  the dtype tag);
- NaNs are fed as one bit pattern, as they are for Python floats: ``0/0`` in numpy
  (sign bit set on x86) and ``float('nan')`` are the same missing value;
- torch tensors feed dtype, shape, strides, device and ``requires_grad`` beside the
  data, never torch's own pickle (whose bytes hold memory addresses).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

__all__ = ["feed_ndarray", "feed_numpy", "feed_pandas", "feed_torch", "qualified_name"]

if TYPE_CHECKING:
    from .keys import CanonicalHasher

CHUNK_BYTES = 1 << 24  # a non-contiguous array is copied this much at a time
FLOAT_CHUNK_BYTES = 1 << 18  # floats are checked for NaNs and hashed this much at a time


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


def feed_ndarray(h: CanonicalHasher, arr: Any) -> None:
    """dtype, shape and the values in C order, straight from the buffer."""
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
    if arr.nbytes <= FLOAT_CHUNK_BYTES and arr.flags.c_contiguous:  # the usual small argument, in one piece
        h.update(_bytes_of(_nan_canonical(arr.reshape(-1), np), np))
        return
    for chunk in _c_order_chunks(arr, np):
        h.update(_bytes_of(_nan_canonical(chunk, np), np))


def _c_order_chunks(arr: Any, np: Any) -> Iterator[Any]:
    """Contiguous 1-D pieces of the values in C order.

    Floats come in pieces small enough to stay in the CPU cache between the NaN check
    and the hash (the check is then nearly free: 200 MB hash 19.5 vs 18 ms without it);
    anything else in pieces of at most about CHUNK_BYTES.
    """
    size = FLOAT_CHUNK_BYTES if arr.dtype.kind in "fc" else CHUNK_BYTES
    if arr.flags.c_contiguous:
        flat = arr.reshape(-1)
        step = max(1, size // arr.itemsize)
        for start in range(0, flat.size, step):
            yield flat[start : start + step]
        return
    rows = max(1, CHUNK_BYTES // max(1, arr[0].nbytes))
    for start in range(0, arr.shape[0], rows):
        yield from _c_order_chunks(np.ascontiguousarray(arr[start : start + rows]), np)


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
    np = sys.modules["numpy"]
    array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    feed_ndarray(h, np.asarray(array))


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
        h.update(flat.view(torch.uint8).numpy())
        return True
    np = sys.modules["numpy"]
    for chunk in _c_order_chunks(values, np):
        h.update(_bytes_of(_nan_canonical(chunk, np), np))
    return True
