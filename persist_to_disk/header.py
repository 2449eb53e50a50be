"""The entry header as a typed record: what an entry says about itself, and its JSON round trip.

Every face writes its entries' headers through :class:`EntryHeader` (the decorator, ``%%persist``,
``manual_cache``) and reads them back through it (``why``, the status line of a cell read from
cache, the catalog). On disk the header stays the JSON object of :mod:`persist_to_disk.entryfile`:
a field left unset is not written, and keys this version does not know (written by a newer
one) are kept in ``extra`` and written back, so an entry rewritten here loses nothing.

A hit never builds one: the store parses a header only when it is asked for, and a face
turns it into a record only when it shows or compares it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from .errors import HeaderError

__all__ = ["EntryHeader", "EntryKind", "header_of"]

logger = logging.getLogger("persist_to_disk")

EntryKind = Literal["function", "cell", "manual"]
"""What wrote an entry: the decorator, ``%%persist``, or ``manual_cache``."""


@dataclass(frozen=True)
class EntryHeader:
    """An entry's header. Every face writes ``func``, ``key``, ``args`` and ``created``, and what else
    it knows; the last six fields are the store's. ``None``: not recorded (a header read from a file
    may lack any field: it is shown as unknown, never refused for it)."""

    func: str | None = None  # the function's name; a cell's folder name; manual_cache: the caller's folder
    key: str | None = None  # the call's digest; manual_cache: the key it was given
    args: Mapping[str, str] = field(default_factory=dict)  # each argument (a cell: each input) in readable form
    created: float | None = None  # time.time() when the value was stored
    kind: EntryKind = "function"  # on disk: "kind": "cell" for a cell, "manual": true for manual_cache
    module: str | None = None
    code_version: str | None = None  # the function's or cell's own code digest
    compute_seconds: float | None = None
    groupby: tuple[tuple[str, str], ...] | None = None  # (groupby argument(s), folder), outermost first
    dependencies: tuple[tuple[str, str, str, str], ...] | None = None  # (kind, name, where, digest)
    arg_digests: Mapping[str, str] | None = None  # each argument's digest in the key (``why`` compares them)
    key_format: str | None = None  # keys.KEY_FORMAT the key was made under; None: older than ptd-key-3
    names: tuple[str, ...] | None = None  # a cell's variables stored
    unpicklable: tuple[str, ...] | None = None  # a cell's variables that could not be pickled
    source: str | None = None  # the start of a cell's source
    # written by the store (entryfile.make_head and LocalStore.put)
    file: str | None = None  # the entry's file name, checked on load against the name it is read under
    format: int | None = None
    pickle_size: int | None = None
    buffers: tuple[tuple[int, int], ...] | None = None  # each out-of-band buffer's (offset, size)
    payload_size: int | None = None
    checksum: str | None = None  # the payload's xxh3-128, hex
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as read

    def to_json(self) -> dict[str, Any]:
        """The JSON object written into the entry file (fields not recorded are left out)."""
        data: dict[str, Any] = {}
        state = self.__dict__
        for name, plain in _WRITERS:  # the order the faces always wrote
            if name == "kind":
                if self.kind == "cell":
                    data["kind"] = "cell"
            elif name == "manual":
                if self.kind == "manual":
                    data["manual"] = True
            elif (value := state[name]) is not None:
                data[name] = value if plain is None else plain(value)
        for name, value in self.extra.items():
            data.setdefault(name, value)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EntryHeader:
        """The record of a header read from an entry file; HeaderError naming the first field of
        the wrong type. Unknown keys go to ``extra``."""
        if not isinstance(data, Mapping):
            raise HeaderError(f"entry header: a JSON object was expected, not {type(data).__name__}")
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in data.items():
            read = _READERS.get(name)
            if read is None:
                if name != "kind" and name != "manual":
                    extra[name] = value
            elif type(value) is read:  # a str, int or float field holding one: most fields, checked inline
                values[name] = value
            elif value is None and name != "args":
                pass  # null: not recorded
            elif read is float and type(value) is int:
                values[name] = float(value)
            else:
                try:
                    if isinstance(read, type):
                        raise TypeError(value)
                    values[name] = read(value)
                except TypeError:
                    why = f"entry header: {name!r} has an unexpected value: {value!r:.80}"
                    raise HeaderError(why, field=name) from None
        manual = data.get("manual", False)
        if type(manual) is not bool:
            raise HeaderError(f"entry header: 'manual' should be true or false, not {manual!r}", field="manual")
        raw_kind = data.get("kind")
        if raw_kind is not None and raw_kind != "cell":
            extra["kind"] = raw_kind  # a kind of a newer version: read as a function's entry, written back as it was
        # built without __init__: a frozen dataclass's sets each of its 22 fields through object.__setattr__,
        # which was two thirds of the cost, and a listing reads thousands of headers
        record = object.__new__(cls)
        state = record.__dict__
        state.update(_UNSET)
        state["args"], state["extra"] = {}, extra
        state.update(values)
        state["kind"] = "manual" if manual else "cell" if raw_kind == "cell" else "function"
        return record


def header_of(data: Mapping[str, Any] | None) -> EntryHeader | None:
    """The record of a header, or None when there is none or this version cannot read it (logged):
    a listing shows such an entry with its fields unknown instead of failing."""
    if data is None:
        return None
    try:
        return EntryHeader.from_json(data)
    except HeaderError as exc:
        logger.debug("%s", exc)
        return None


# -- reading the JSON fields (exact types: json gives no subclasses, and bool is not a number here) -------
def _str_map(value: Any) -> dict[str, str]:
    if type(value) is not dict:
        raise TypeError(value)
    for item in value.values():  # (the keys of a JSON object are strings)
        if type(item) is not str:
            raise TypeError(value)
    return dict(value)


def _strs(value: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise TypeError(value)
    for item in value:
        if type(item) is not str:
            raise TypeError(value)
    return tuple(value)


def _rows(width: int, item_type: type) -> Callable[[Any], tuple[tuple[Any, ...], ...]]:
    """A list of lists of ``width`` items of ``item_type``, as tuples."""

    def read(value: Any) -> tuple[tuple[Any, ...], ...]:
        if type(value) is not list:
            raise TypeError(value)
        rows = []
        for row in value:
            if type(row) is not list or len(row) != width:
                raise TypeError(value)
            for item in row:
                if type(item) is not item_type:
                    raise TypeError(value)
            rows.append(tuple(row))
        return tuple(rows)

    return read


# each field's type (str, int, float: an int is read as a float) or reader; null is read as None
# (not recorded) for every field but args
_READERS: dict[str, type | Callable[[Any], Any]] = {
    "func": str,
    "module": str,
    "key": str,
    "args": _str_map,
    "code_version": str,
    "created": float,
    "compute_seconds": float,
    "groupby": _rows(2, str),
    "dependencies": _rows(4, str),
    "arg_digests": _str_map,
    "names": _strs,
    "source": str,
    "unpicklable": _strs,
    "key_format": str,
    "file": str,
    "format": int,
    "pickle_size": int,
    "buffers": _rows(2, int),
    "payload_size": int,
    "checksum": str,
}
_FIRST = ("func", "kind", "module", "key", "args", "manual")  # kind and manual: from ``kind``
_ORDER = (*_FIRST, *(name for name in _READERS if name not in _FIRST))
_UNSET = {f.name: f.default for f in fields(EntryHeader) if f.default is not MISSING}


def _plain_rows(value: tuple[tuple[Any, ...], ...]) -> list[list[Any]]:
    return [list(row) for row in value]


# how a field that is not a str or a number is made plain JSON (tuples back to lists, mappings to
# dicts), looked up once here: a miss writes a header, so this runs on every miss
_PLAIN: dict[str, Callable[[Any], Any]] = {
    "args": dict, "arg_digests": dict, "names": list, "unpicklable": list,
    "groupby": _plain_rows, "dependencies": _plain_rows, "buffers": _plain_rows,
}
_WRITERS = tuple((name, _PLAIN.get(name)) for name in _ORDER)
