"""Runs of Python scalars (a list of names, of numbers, a dict of scores) hashed in bulk by numpy.

Each function here feeds exactly the bytes that feeding the items one by one would (``typefeeds``
frames each ``str``, ``int`` and ``float`` on its own), only built as whole arrays: the keys do not
depend on which way a value went. numpy is never imported here (``keys`` asks for it first).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .keys import CanonicalHasher

__all__ = ["FLOAT_ITEMS_MIN", "INT_ITEMS_MIN", "SORT_MIN", "STR_RUN_MIN", "digest_order", "digests_in_order",
           "feed_float_items", "feed_float_run", "feed_in_pieces", "feed_int_items", "feed_int_run", "feed_str_run",
           "float_frames", "int64_or_none", "int_frames", "str_frames", "str_order", "write_heads"]

pack_len = struct.Struct("<Q").pack  # (as typefeeds frames lengths; it imports arrays, which imports this)


# -- text ------------------------------------------------------------------------------------------------
STR_RUN_MIN = 32  # runs of strings shorter than this are fed one by one (numpy's set-up costs more)
STR_CHUNK = 1 << 15  # strings framed per numpy pass: the frames stay in the CPU cache
GAP = "\x00" * 9  # room for a frame's head (tag and length) before each string


def feed_str_run(h: CanonicalHasher, texts: Any) -> None:
    """A run of ``str`` (a list or tuple), hashed exactly as ``h.feed`` hashes each, but framed in bulk.

    Each string is ``b"s" | UTF-8 length (u64) | UTF-8 bytes``, so ``["ab", "c"]`` and ``["a", "bc"]``
    differ; other objects (None, NaN) are not strings and never take this path.
    """
    np = sys.modules["numpy"]

    def framed(part: Any) -> Any:
        built = str_frames(part, np)
        return None if built is None else built[0]

    feed_in_pieces(h, texts, STR_CHUNK, framed)


def feed_in_pieces(
    h: CanonicalHasher, items: Any, step: int, framed: Callable[[Any], Any], walk: Callable[[Any], Any] | None = None
) -> None:
    """``items`` fed ``step`` at a time, each piece as the bytes ``framed`` builds for it, or where it
    cannot (``None``: a NUL, an int past 64 bits, whatever the framing refuses) through ``walk``
    (by default item by item)."""
    for start in range(0, len(items), step):
        part = items[start : start + step]
        frames = framed(part)
        if frames is not None:
            h.update(frames)
        elif walk is not None:
            walk(part)
        else:
            for item in part:
                h.feed(item)


def str_frames(texts: Any, np: Any) -> tuple[Any, Any] | None:
    """(every string's frame one after another as uint8, each string's UTF-8 length);
    None when a string holds a NUL. The strings are joined with a 9-byte gap of NULs and encoded at once;
    the gaps, found by value, become the heads."""
    frames = np.frombuffer((GAP + GAP.join(texts)).encode("utf-8", "surrogatepass"), np.uint8).copy()
    nuls = np.flatnonzero(frames == 0)
    if nuls.size != len(GAP) * len(texts):  # a string holds NULs: the gaps cannot be told from them
        return None
    starts = nuls[:: len(GAP)]
    lengths = np.diff(starts, append=frames.size) - len(GAP)
    write_heads(frames, starts, lengths, np)
    return frames, lengths


def write_heads(frames: Any, starts: Any, lengths: Any, np: Any) -> None:
    """``b"s" | length u64`` at each start, over a gap of NULs: only a length's non-zero low bytes are written."""
    frames[starts] = ord("s")
    longest = int(lengths.max()) if lengths.size else 0
    if longest < 256:  # the usual short strings: one byte of length
        frames[starts + 1] = lengths
        return
    length_bytes = lengths.astype("<u8").view(np.uint8).reshape(-1, 8)
    for k in range((longest.bit_length() + 7) // 8):
        frames[starts + 1 + k] = length_bytes[:, k]


SORT_MIN = 1024  # str keys from this many are put in order by numpy (its set-up costs more below)


def str_order(texts: list[str]) -> list[int] | None:
    """The order that sorts ``texts`` as ``sorted`` does (by code point), found by numpy on its fixed-width
    strings; ``None`` where those would not do: one string far longer than the rest (the width is the
    longest), or strings ending in NUL (numpy pads with NULs, so ``"a"`` and ``"a\\0"`` would tie)."""
    np = sys.modules["numpy"]
    total = len("".join(texts))
    if max(map(len, texts)) * len(texts) > 8 * total + (1 << 20):
        return None
    fixed = np.array(texts, dtype=str)
    if int(np.char.str_len(fixed).sum()) != total:
        return None
    points = fixed.view(np.uint32).reshape(len(texts), -1)
    if points.max(initial=0) >= 256:
        return np.argsort(fixed).tolist()
    # every code point is one byte (ASCII, Latin-1): sorted as big-endian 64-bit words, far quicker
    width = -(-points.shape[1] // 8) * 8
    narrow = np.zeros((len(texts), width), np.uint8)
    narrow[:, : points.shape[1]] = points
    words = narrow.view(">u8")
    return np.lexsort(words.T[::-1]).tolist()


# -- floats ----------------------------------------------------------------------------------------------
FLOAT_ITEMS_MIN = 64  # lists and dicts of floats from this size are fed in one numpy pass
_FLOAT_FRAME = [("tag", "u1"), ("size", "<u8"), ("value", "<f8")]  # packed: 17 bytes


def feed_float_run(h: CanonicalHasher, floats: Any) -> None:
    """A run of ``float`` (a list or tuple), hashed exactly as ``h.feed`` hashes each (``b"f" | 8 | value``,
    every NaN the same), built as one record array."""
    h.update(float_frames(floats, sys.modules["numpy"]))


def float_frames(floats: Any, np: Any) -> Any:
    """Each float's frame as ``typefeeds.feed_float`` makes it, a row of 17 bytes each."""
    records = np.empty(len(floats), np.dtype(_FLOAT_FRAME))
    records["tag"] = ord("f")
    records["size"] = 8
    values = np.array(floats, np.float64)
    values[np.isnan(values)] = np.nan
    records["value"] = values
    return records.view(np.uint8).reshape(-1, 17)


# -- mappings --------------------------------------------------------------------------------------------
def feed_float_items(h: CanonicalHasher, digests: list[bytes], values: list[float]) -> None:
    """A mapping's items whose values are all ``float``, as ``CanonicalHasher.mapping`` feeds them
    (their count, then each key's digest and ``b"f" | 8 | value``, in the digests' order)."""
    np = sys.modules["numpy"]
    h.update(pack_len(len(values)))
    keyed, order = _keys_in_order(digests, np)
    rows = np.empty((len(order), 16 + 17), np.uint8)
    rows[:, :16] = keyed[order]
    rows[:, 16:] = float_frames(np.array(values, np.float64)[order], np)
    h.update(rows)


def feed_int_items(h: CanonicalHasher, digests: list[bytes], values: list[int]) -> bool:
    """A mapping's items whose values are all ``int``, as ``CanonicalHasher.mapping`` feeds them (their
    count, then each key's digest and the value's frame, in the digests' order); ``False``, nothing fed,
    when a value does not fit 64 bits (the caller feeds them one by one)."""
    np = sys.modules["numpy"]
    numbers = int64_or_none(values, np)
    if numbers is None:
        return False
    h.update(pack_len(len(values)))
    keyed, order = _keys_in_order(digests, np)
    for start in range(0, len(order), INT_CHUNK):
        part = order[start : start + INT_CHUNK]
        frames, widths = int_frames(numbers[part], np)
        rows = np.empty((len(part), 16 + _INT_FRAME), np.uint8)
        rows[:, :16] = keyed[part]
        rows[:, 16:] = frames
        h.update(rows[np.arange(rows.shape[1]) < (16 + widths)[:, None]])
    return True


def digests_in_order(digests: list[bytes]) -> Any:
    """16-byte digests (a set's items) one after another as uint8, in the order ``sorted`` puts them."""
    keyed, order = _keys_in_order(digests, sys.modules["numpy"])
    return keyed[order]


def digest_order(digests: list[bytes]) -> list[int]:
    """The order that sorts 16-byte digests (a mapping's keys) as ``sorted`` does, ties kept in place."""
    return _keys_in_order(digests, sys.modules["numpy"])[1].tolist()


def _keys_in_order(digests: list[bytes], np: Any) -> tuple[Any, Any]:
    """(the keys' 16-byte digests as rows of uint8, the order that sorts them as bytes: as ``sorted``
    puts the mapping's items)."""
    joined = b"".join(digests)
    halves = np.frombuffer(joined, ">u8").reshape(-1, 2)  # big-endian: sorts as the bytes do
    high = halves[:, 0].astype(np.uint64)  # (in native order numpy's quick sort is ~10x a lexsort's speed)
    order = np.argsort(high)
    ranked = high[order]
    if bool((ranked[1:] == ranked[:-1]).any()):  # two share their first 8 bytes (equal digests, say): in full, stably
        order = np.lexsort((halves[:, 1], halves[:, 0]))
    return np.frombuffer(joined, np.uint8).reshape(-1, 16), order


# -- integers --------------------------------------------------------------------------------------------
INT_ITEMS_MIN = 64  # lists of ints and dicts of ints from this size are fed in numpy passes
INT_CHUNK = 1 << 16  # ints framed per numpy pass: the frames stay in the CPU cache
_INT_FRAME = 17  # b"i" | byte count (u64) | at most 8 bytes of value
_INT_MIN = -(1 << 63)  # (its frame needs 9 bytes of value: fed alone)


def feed_int_run(h: CanonicalHasher, ints: Any) -> None:
    """A run of ``int`` (a list or tuple, ``bool`` not among them), hashed exactly as ``h.feed`` hashes
    each: ``b"i" | n (u64) | the value in n bytes``, little-endian two's complement, ``n`` the
    ``(bit_length() + 8) // 8`` of ``typefeeds.feed_int``. Pieces with an int past 64 bits go one by one."""
    np = sys.modules["numpy"]

    def framed(part: Any) -> Any:
        numbers = int64_or_none(part, np)
        if numbers is None:
            return None
        frames, widths = int_frames(numbers, np)
        return frames[np.arange(_INT_FRAME) < widths[:, None]]

    feed_in_pieces(h, ints, INT_CHUNK, framed)


def int64_or_none(ints: Any, np: Any) -> Any:
    """The ints as an int64 array; None when one does not fit (or is -2**63, whose frame is longer)."""
    try:
        numbers = np.array(ints, np.int64)
    except OverflowError:
        return None
    if numbers.size and numbers.min() == _INT_MIN:
        return None
    return numbers


_BYTE_STEPS = [1 << (8 * n - 1) for n in range(1, 8)]  # from this magnitude on, a value takes one more byte


def int_frames(numbers: Any, np: Any) -> tuple[Any, Any]:
    """Each int's frame as a row of 17 bytes, and how many of them it uses (9 + its byte count)."""
    counts = np.searchsorted(np.array(_BYTE_STEPS, np.uint64), np.abs(numbers).astype(np.uint64), side="right") + 1
    frames = np.zeros((numbers.size, _INT_FRAME), np.uint8)
    frames[:, 0] = ord("i")
    frames[:, 1] = counts  # the count's other seven bytes stay 0
    frames[:, 9:] = numbers.astype("<i8").view(np.uint8).reshape(-1, 8)
    return frames, 9 + counts
