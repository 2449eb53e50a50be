"""Lists of records, lists of mixed scalars and dicts of scalars hashed in bulk by numpy.

Rows from a database cursor, ``csv.reader`` or a JSON list of objects or arrays: a key walk pays
~2 µs of Python per row. Here each field's frames are built a column at a time, laid side by side
in a padded matrix (one row per record, the constant head and tail of a record around them) and
the padding dropped, so the bytes are exactly those of feeding each record on its own: keys do not
depend on which way a list went. Only records of one shape go this way: tuples (or lists) of one
length, or dicts whose keys are all exactly ``str`` and the same, in one order, with scalar fields
(int, float, str, bool, None, ``datetime.date``, zone-less ``datetime``: the "scalars" below; a field
may also be pandas Timestamps of one unit without a zone, framed by their reduction). A list of
scalars of mixed types (None among floats, flags, names with missing values) is one column of the
same framing, and so are a dict's scalar values
(each beside its key's digest) and its scalar or tuple keys (then digested one xxh3 call each).
Each piece is checked against the walk on its first item; a piece with anything else (a nested
value, an int past 64 bits, a long string or a NUL) is walked item by item.
"""

from __future__ import annotations

import copyreg
import datetime as dt
import itertools
import operator
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import xxhash

from . import scalarruns

if TYPE_CHECKING:
    from .keys import CanonicalHasher

__all__ = ["RECORDS_MIN", "SCALARS_MIN", "SCALAR_TYPES", "feed_keyed_scalars", "feed_records", "feed_scalars", "record_digests",
           "scalar_digests"]

RECORDS_MIN = 256  # lists of records, and dicts' tuple keys, from this many go in bulk
SCALARS_MIN = 2048  # lists of mixed scalars, dicts' scalar keys and values, sets, from this many go in bulk
# (numpy's set-up costs more than it saves below)
ROWS_PER_PIECE = 1 << 14  # records framed per numpy pass, at most
_PIECE_BYTES = 1 << 20  # records per pass: this over ~24 bytes a field (numbers' frames are 17 or 9 bytes wide;
# text pads a field to its longest string, at most 129 bytes, so a pass of text holds up to ~5x this, three times:
# the fields' frames, the record matrix and which of its bytes are kept)
_FIELDS_MAX = 128  # wider records are walked: few fit a pass, and a row's own runs of ints or str go in bulk
_WIDEST_STR = 120  # a text field with a string longer than this (UTF-8 bytes) is walked: padding would cost more

_pack_len = struct.Struct("<Q").pack
_xxh3_128_digest = xxhash.xxh3_128_digest
_EMPTY = _pack_len(0)


def feed_records(h: CanonicalHasher, rows: list | tuple) -> bool:
    """Feed ``rows`` (all tuples, all lists, or all dicts) as ``h.feed`` feeds each; ``False``, nothing fed,
    when they are not records of one shape: tuples or lists of one length, or dicts of the same str keys
    in one order."""
    shape = _shape(rows)
    if shape is None:
        return False
    head, tail, fields = shape

    def walk(piece: list | tuple) -> None:
        for row in piece:
            h.feed(row)

    _feed_pieces(h, rows, _rows_per_piece(shape), _columns_of(fields), head, tail, walk)
    return True


def record_digests(h: CanonicalHasher, rows: list | tuple) -> list[bytes] | None:
    """Each record's own digest, as ``h._sub_digest`` gives it (a mapping's keys, when they are tuples of
    scalars: ``{(row, column): value}``); None when they are not records of one shape."""
    shape = _shape(rows)
    if shape is None:
        return None
    head, tail, fields = shape
    return _digests(h, rows, _rows_per_piece(shape), _columns_of(fields), head, tail)


def scalar_digests(h: CanonicalHasher, items: list | tuple) -> list[bytes]:
    """Each item's own digest, as ``h._sub_digest`` gives it, for items that are all int, float, str, bool
    or None (a mapping's keys, a set's items)."""
    return _digests(h, items, ROWS_PER_PIECE, _one_column, b"", b"")


def feed_scalars(h: CanonicalHasher, items: list | tuple, walk: Callable[[list | tuple], None]) -> None:
    """Feed ``items``, each a scalar (``SCALAR_TYPES``, of several of these types), as ``h.feed``
    feeds each; a piece the framing cannot take (a long string, a NUL, an int past 64 bits, anything
    else) goes to ``walk``."""
    _feed_pieces(h, items, ROWS_PER_PIECE, _one_column, b"", b"", walk)


def feed_keyed_scalars(h: CanonicalHasher, digests: list[bytes], values: list, order: list[int]) -> None:
    """A mapping's items, in ``order``, as ``CanonicalHasher.mapping`` feeds each (its key's digest, then
    its value), for values that are all scalars (``SCALAR_TYPES``: ``{id: name}``, labels with
    missing ones): digest and value frame side by side in a padded matrix, a piece at a time."""
    np = sys.modules["numpy"]
    keyed = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 16)
    whole = np.full(ROWS_PER_PIECE, 16)
    for start in range(0, len(order), ROWS_PER_PIECE):
        part = order[start : start + ROWS_PER_PIECE]
        piece = [values[i] for i in part]
        built = _built_columns((piece,), np)
        if built is not None:
            frames = _laid_out([(keyed[part], whole[: len(part)]), *built], len(part), b"", b"", np)
            first = digests[part[0]] + _walked(h, piece[0])
            if bytes(frames[: len(first)]) == first:
                h.update(frames)
                continue
        for i in part:
            h.update(digests[i])
            h.feed(values[i])


def _feed_pieces(
    h: CanonicalHasher,
    items: list | tuple,
    step: int,
    columns: Callable[[Any], Iterable[Any]],
    head: bytes,
    tail: bytes,
    walk: Callable[[Any], Any],
) -> None:
    np = sys.modules["numpy"]

    def framed(piece: list | tuple) -> Any:
        checked = _checked_frames(h, piece, columns, head, tail, np)
        return None if checked is None else checked[1]

    scalarruns.feed_in_pieces(h, items, step, framed, walk)


def _digests(
    h: CanonicalHasher, items: list | tuple, step: int, columns: Callable[[Any], Iterable[Any]], head: bytes, tail: bytes
) -> list[bytes]:
    """Each item framed in bulk (``step`` at a time), then digested alone: one xxh3 call an item."""
    np = sys.modules["numpy"]
    digests: list[bytes] = []
    for start in range(0, len(items), step):
        piece = items[start : start + step]
        checked = _checked_frames(h, piece, columns, head, tail, np)
        if checked is None:
            digests.extend(map(h._own_digest, piece))
            continue
        built, frames = checked
        ends = np.cumsum(len(head) + len(tail) + sum(used for _, used in built)).tolist()
        data = frames.tobytes()
        digests.extend(map(_xxh3_128_digest, map(data.__getitem__, map(slice, [0, *ends[:-1]], ends))))
    return digests


def _checked_frames(
    h: CanonicalHasher, piece: list | tuple, columns: Callable[[Any], Iterable[Any]], head: bytes, tail: bytes, np: Any
) -> tuple[list[tuple[Any, Any]], Any] | None:
    """(its fields' frames, its items' bytes one after another) for a piece; None if it cannot be framed,
    or if its first item's bytes are not what the walk feeds for it."""
    built = _built_columns(columns(piece), np)
    if built is None:
        return None
    frames = _laid_out(built, len(piece), head, tail, np)
    walked = _walked(h, piece[0])  # (its items hold scalars only: this walk is short and cannot recurse)
    return (built, frames) if bytes(frames[: len(walked)]) == walked else None


def _one_column(piece: list | tuple) -> tuple[list | tuple]:
    """A piece of scalars as the one field of its items."""
    return (piece,)


def _columns_of(fields: list) -> Callable[[list | tuple], Iterator[list]]:
    """A piece of records -> each field's values, one field at a time."""
    return lambda piece: (list(map(operator.itemgetter(field), piece)) for field in fields)


def _rows_per_piece(shape: tuple[bytes, bytes, list]) -> int:
    head, _, fields = shape
    return max(1, min(ROWS_PER_PIECE, _PIECE_BYTES // (len(head) + 24 * len(fields))))


def _shape(rows: list | tuple) -> tuple[bytes, bytes, list] | None:
    """(what each record's bytes start with, end with, its fields in the order they are fed: indices of a
    tuple or list, names of a dict), or None."""
    first = rows[0]
    kind = type(first)
    if kind is tuple or kind is list:
        size = len(first)
        if not 0 < size <= _FIELDS_MAX or list(map(type, rows)).count(kind) != len(rows):
            return None
        if list(map(len, rows)).count(size) != len(rows):
            return None
        return (b"t" if kind is tuple else b"l") + _EMPTY + _pack_len(size), b")", list(range(size))
    if kind is dict:
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


def _built_columns(columns: Iterable[list], np: Any) -> list[tuple[Any, Any]] | None:
    """Each field's frames (a padded matrix, and each row's length); None if a field holds a value
    that is not a scalar this handles."""
    built = []
    for values in columns:
        column = _column_frames(values, np)
        if column is None:
            return None
        built.append(column)
    return built


def _laid_out(built: list[tuple[Any, Any]], count: int, head: bytes, tail: bytes, np: Any) -> Any:
    """The bytes of ``count`` records, one after another, as a uint8 array: each record's head, its
    fields' frames (``built``), its tail."""
    padded = [not bool((used == frames.shape[1]).all()) for frames, used in built]  # (floats, flags, None: never)
    if not head and not tail and len(built) == 1 and not padded[0]:  # a list of scalars of one width
        return built[0][0].reshape(-1)
    width = len(head) + sum(frames.shape[1] for frames, _ in built) + len(tail)
    matrix = np.empty((count, width), np.uint8)  # a record a row, each field's frames padded to one width
    matrix[:, : len(head)] = np.frombuffer(head, np.uint8)
    ragged = []  # (where, how wide, each row's length) of the fields with padding
    at = len(head)
    for (frames, used), pads in zip(built, padded):
        matrix[:, at : at + frames.shape[1]] = frames
        if pads:
            ragged.append((at, frames.shape[1], used))
        at += frames.shape[1]
    matrix[:, at:] = np.frombuffer(tail, np.uint8)
    if not ragged:
        return matrix.reshape(-1)
    keep = np.ones((count, width), bool)  # which bytes are frames, not padding
    for at, wide, used in ragged:
        np.less(np.arange(wide), used[:, None], out=keep[:, at : at + wide])
    return matrix[keep]  # (row by row, in order: the records one after another)


def _column_frames(values: list, np: Any) -> tuple[Any, Any] | None:
    """One field of every record: each value's frame as a row of a padded matrix, and its length."""
    kinds = list(map(type, values))
    distinct = set(kinds)
    if not distinct <= SCALAR_TYPES:  # a nested or other value: walked, but for a column of pandas Timestamps
        return _timestamp_frames(values, np) if len(distinct) == 1 and _is_timestamp(kinds[0]) else None
    if len(distinct) == 1:
        return _BUILDERS[kinds[0]](values, np)
    code = {kind: number for number, kind in enumerate(sorted(distinct, key=_REFUSES_FIRST.index))}
    codes = np.fromiter(map(code.__getitem__, kinds), np.int8, len(kinds))
    parts = []
    for kind, number in code.items():  # a field with None (or ints among floats): each kind built alone, then placed
        rows = np.flatnonzero(codes == number)
        built = _BUILDERS[kind](list(map(values.__getitem__, rows.tolist())), np)
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
    if max(map(len, values)) > _WIDEST_STR:  # (as many code points or more UTF-8 bytes: none encoded in vain)
        return None
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


def _is_timestamp(kind: type) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and kind is pd.Timestamp


def _timestamp_frames(values: list, np: Any) -> tuple[Any, Any] | None:
    """pandas Timestamps of one unit without a zone (a MultiIndex's dates, a groupby's keys) as the walk
    feeds them, by their reduction: the same bytes before and after each one's value as an int. Those
    bytes are taken from the walk of the first and checked on the walk of the last (None: walked)."""
    first, last = values[0], values[-1]
    if copyreg.dispatch_table.get(type(first)) is not None:  # a reducer of one's own: the walk uses it, and it
        return None  # may feed more of each than its value (the reduction checked here is pandas' own)
    unit = getattr(first, "unit", None)
    try:
        if unit is None or [v.unit for v in values].count(unit) != len(values):
            return None
        if [v.tzinfo for v in values].count(None) != len(values):
            return None
        numbers = np.fromiter([v._value for v in values], np.int64, len(values))  # (in the unit's ticks, as reduced)
    except AttributeError:  # a pandas before 2.0
        return None
    frames, used = scalarruns.int_frames(numbers, np)
    walked = _walked_alone(first)
    value = bytes(frames[0, : used[0]])
    at = walked.find(value)
    if at < 0:
        return None
    head, tail = walked[:at], walked[at + len(value) :]
    if head + bytes(frames[-1, : used[-1]]) + tail != _walked_alone(last):
        return None
    widest = int(used.max())
    one_width = int(used.min()) == widest
    if one_width:  # values of one width (dates of one era): no padding
        frames = frames[:, :widest]
    matrix = np.empty((len(values), len(head) + frames.shape[1] + len(tail)), np.uint8)  # (padding: dropped)
    matrix[:, : len(head)] = np.frombuffer(head, np.uint8)
    matrix[:, len(head) : len(head) + frames.shape[1]] = frames
    if one_width:
        matrix[:, len(head) + widest :] = np.frombuffer(tail, np.uint8)
    elif tail:  # right after each value's own bytes (the padding then follows it)
        columns = len(head) + used[:, None] + np.arange(len(tail))
        matrix[np.arange(len(values))[:, None], columns] = np.frombuffer(tail, np.uint8)
    return matrix, len(head) + used + len(tail)


def _date_frames(values: list, np: Any) -> tuple[Any, Any] | None:
    """``datetime.date``s as the walk frames them: ``b"a" | length | isoformat``, a str's frame but for its tag."""
    return _tagged_text_frames([value.isoformat() for value in values], ord("a"), np)


def _datetime_frames(values: list, np: Any) -> tuple[Any, Any] | None:
    """``datetime.datetime``s without a zone as the walk frames them (``b"D" | length | isoformat``); None for
    any with a zone (the walk adds it and its fold)."""
    if [value.tzinfo for value in values].count(None) != len(values):
        return None
    return _tagged_text_frames([value.isoformat() for value in values], ord("D"), np)


def _tagged_text_frames(texts: list[str], tag: int, np: Any) -> tuple[Any, Any] | None:
    built = _text_frames(texts, np)
    if built is not None:
        built[0][:, 0] = tag
    return built


_BUILDERS: dict[type, Callable[[list, Any], tuple[Any, Any] | None]] = {
    int: _int_frames, float: _float_frames, str: _text_frames, bool: _flag_frames, type(None): _none_frames,
    dt.date: _date_frames, dt.datetime: _datetime_frames}
_REFUSES_FIRST = [int, dt.datetime, str, dt.date, float, bool, type(None)]  # a field's kinds are built in this
# order: those that may refuse (an int past 64 bits, a zone, a long string or a NUL) before the others are built in vain
SCALAR_TYPES = frozenset(_BUILDERS)  # what a field (or an item of a list of scalars) may be, exactly


def _walked(h: CanonicalHasher, row: Any) -> bytes:
    """The bytes the walk feeds for one record (what the bulk frames are checked against)."""
    recorder = _Recorder()
    walker = type(h)(recorder, code_of=h.code_of)  # type: ignore[arg-type]
    walker._active = h._active  # (the containers being walked: a back-reference is framed as the walk frames it)
    walker.feed(row)
    return b"".join(recorder.parts)


def _walked_alone(value: Any) -> bytes:
    """The bytes the walk feeds for a value that holds no container of the caller's (a Timestamp)."""
    from .keys import CanonicalHasher  # (keys imports this module)

    return _walked(CanonicalHasher(), value)


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
