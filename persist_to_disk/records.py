"""Lists of records (tuples, or dicts with the same ``str`` keys, of scalars) hashed in bulk by numpy.

Rows from a database cursor, ``csv.reader`` or a JSON list of objects: a key walk pays ~2 µs of
Python per row. Here each field's frames are built a column at a time, laid side by side in a
padded matrix (one row per record, the constant head and tail of a record around them) and the
padding dropped, so the bytes are exactly those of feeding each record on its own: keys do not
depend on which way a list went. Only records of one shape go this way: tuples of one length, or
dicts whose keys are all exactly ``str`` and the same, in one order. Each piece is checked against
the walk on its first record; a piece with anything else (a nested value, an int past 64 bits, a
long string) is walked record by record.
"""

from __future__ import annotations

import itertools
import operator
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import scalarruns

if TYPE_CHECKING:
    from .keys import CanonicalHasher

__all__ = ["RECORDS_MIN", "feed_records"]

RECORDS_MIN = 256  # lists of records from this many are fed in bulk
ROWS_PER_PIECE = 1 << 14  # records framed per numpy pass, at most
_PIECE_BYTES = 1 << 20  # records per pass: this over ~24 bytes a field (numbers' frames are 17 or 9 bytes wide;
# text pads a field to its longest string, at most 129 bytes, so a pass of text holds up to ~5x this, three times:
# the fields' frames, the record matrix and which of its bytes are kept)
_FIELDS_MAX = 128  # wider records are walked: few fit a pass, and a row's own runs of ints or str go in bulk
_WIDEST_STR = 120  # a text field with a string longer than this (UTF-8 bytes) is walked: padding would cost more

_pack_len = struct.Struct("<Q").pack
_EMPTY = _pack_len(0)


def feed_records(h: CanonicalHasher, rows: list | tuple) -> bool:
    """Feed ``rows`` (all tuples, or all dicts) as ``h.feed`` feeds each; ``False``, nothing fed, when
    they are not records of one shape: tuples of one length, or dicts of the same str keys in one order."""
    head_tail = _shape(rows)
    if head_tail is None:
        return False
    head, tail, fields = head_tail
    np = sys.modules["numpy"]
    step = max(1, min(ROWS_PER_PIECE, _PIECE_BYTES // (len(head) + 24 * len(fields))))
    for start in range(0, len(rows), step):
        piece = rows[start : start + step]
        frames = _piece_frames(piece, head, tail, fields, np)
        if frames is not None:  # (its records hold scalars only: the check's walk is short and cannot recurse)
            walked = _walked(h, piece[0])
            if bytes(frames[: len(walked)]) == walked:
                h.update(frames)
                continue
        for row in piece:
            h.feed(row)
    return True


def _shape(rows: list | tuple) -> tuple[bytes, bytes, list] | None:
    """(what each record's bytes start with, end with, its fields in the order they are fed: indices of a
    tuple, names of a dict), or None."""
    first = rows[0]
    if type(first) is tuple:
        size = len(first)
        if not 0 < size <= _FIELDS_MAX or any(type(row) is not tuple or len(row) != size for row in rows):
            return None
        return b"t" + _EMPTY + _pack_len(size), b")", list(range(size))
    if type(first) is dict:
        names = list(first)
        if not 0 < len(names) <= _FIELDS_MAX or list(map(type, rows)).count(dict) != len(rows):
            return None
        keys = list(map(type, itertools.chain.from_iterable(rows)))  # (iterating a dict gives its keys)
        if keys.count(str) != len(keys) or any(list(row) != names for row in rows):  # (str == str: exact)
            return None
        ordered = sorted(names)  # a str-keyed dict feeds its keys sorted, then its values in their order
        listed = b"".join(map(_str_frame, ordered))
        count = _pack_len(len(names))
        return b"ds" + _EMPTY + b"l" + _EMPTY + count + listed + b")" + b"l" + _EMPTY + count, b"))", ordered
    return None


def _str_frame(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return b"s" + _pack_len(len(data)) + data


def _piece_frames(piece: list | tuple, head: bytes, tail: bytes, fields: list, np: Any) -> Any:
    """The records' bytes, one after another, as a uint8 array; None if a field is not a scalar this handles."""
    columns = []
    for field in fields:
        column = _column_frames(list(map(operator.itemgetter(field), piece)), np)
        if column is None:
            return None
        columns.append(column)
    width = len(head) + sum(frames.shape[1] for frames, _ in columns) + len(tail)
    matrix = np.empty((len(piece), width), np.uint8)  # a record a row, each field's frames padded to one width
    keep = np.empty((len(piece), width), bool)  # which bytes are frames, not padding
    matrix[:, : len(head)] = np.frombuffer(head, np.uint8)
    keep[:, : len(head)] = True
    at = len(head)
    for frames, used in columns:
        matrix[:, at : at + frames.shape[1]] = frames
        np.less(np.arange(frames.shape[1]), used[:, None], out=keep[:, at : at + frames.shape[1]])
        at += frames.shape[1]
    matrix[:, at:] = np.frombuffer(tail, np.uint8)
    keep[:, at:] = True
    return matrix[keep]  # (row by row, in order: the records one after another)


def _column_frames(values: list, np: Any) -> tuple[Any, Any] | None:
    """One field of every record: each value's frame as a row of a padded matrix, and its length."""
    kinds = list(map(type, values))
    distinct = set(kinds)
    if not distinct <= _BUILDERS.keys():  # a nested or other value: walked
        return None
    if len(distinct) == 1:
        return _BUILDERS[kinds[0]](values, np)
    parts = []
    for kind in distinct:  # a field with None (or ints among floats): each kind built alone, then placed
        rows = [i for i, k in enumerate(kinds) if k is kind]
        built = _BUILDERS[kind]([values[i] for i in rows], np)
        if built is None:
            return None
        parts.append((rows, *built))
    matrix = np.zeros((len(values), max(frames.shape[1] for _, frames, _ in parts)), np.uint8)
    lengths = np.zeros(len(values), np.int64)
    for rows, frames, used in parts:
        matrix[rows, : frames.shape[1]] = frames
        lengths[rows] = used
    return matrix, lengths


def _int_frames(values: list, np: Any) -> tuple[Any, Any] | None:
    numbers = scalarruns.int64_or_none(values, np)
    return None if numbers is None else scalarruns.int_frames(numbers, np)


def _float_frames(values: list, np: Any) -> tuple[Any, Any]:
    return scalarruns.float_frames(values, np), np.full(len(values), 17)


def _flag_frames(values: list, np: Any) -> tuple[Any, Any]:
    frames = np.zeros((len(values), 9), np.uint8)
    frames[:, 0] = np.where(np.array(values, bool), ord("T"), ord("B"))
    return frames, np.full(len(values), 9)


def _none_frames(values: list, np: Any) -> tuple[Any, Any]:
    frames = np.zeros((len(values), 9), np.uint8)
    frames[:, 0] = ord("N")
    return frames, np.full(len(values), 9)


def _text_frames(values: list, np: Any) -> tuple[Any, Any] | None:
    """Each string's frame (``b"s" | length | UTF-8``) as a padded row, or None (a NUL or a long string)."""
    joined = scalarruns.str_frames(values, np)
    if joined is None:
        return None
    frames, lengths = joined
    if lengths.size and int(lengths.max()) > _WIDEST_STR:
        return None
    used = lengths + 9
    matrix = np.zeros((len(values), int(used.max())), np.uint8)
    matrix[np.arange(matrix.shape[1]) < used[:, None]] = frames  # (row by row, in order: each frame at its row's start)
    return matrix, used


_BUILDERS: dict[type, Callable[[list, Any], tuple[Any, Any] | None]] = {
    int: _int_frames, float: _float_frames, str: _text_frames, bool: _flag_frames, type(None): _none_frames}


def _walked(h: CanonicalHasher, row: Any) -> bytes:
    """The bytes the walk feeds for one record (what the bulk frames are checked against)."""
    recorder = _Recorder()
    walker = type(h)(recorder, code_of=h.code_of)  # type: ignore[arg-type]
    walker._active = h._active  # (the containers being walked: a back-reference is framed as the walk frames it)
    walker.feed(row)
    return b"".join(recorder.parts)


class _Recorder:
    """Stands in for an xxh3 state: keeps what is fed."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: Any) -> None:
        self.parts.append(bytes(data))

    def copy(self) -> _Recorder:
        twin = _Recorder()
        twin.parts = list(self.parts)
        return twin
