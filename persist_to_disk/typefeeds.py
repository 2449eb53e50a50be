"""How each Python type goes into the canonical stream of :mod:`persist_to_disk.keys`.

``CanonicalHasher.feed`` looks a value's handler up by its exact type (``EXACT``), then, for types
of modules a cold start should not import, by name (``EXACT_BY_NAME``), then by base class
(``SUBCLASS``, in order). What a handler feeds is part of every key: changing it changes keys.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import math
import pathlib
import struct
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .arrays import qualified_name

if TYPE_CHECKING:
    from .keys import CanonicalHasher

__all__ = ["EXACT", "EXACT_BY_NAME", "SUBCLASS", "callable_name", "feed_class", "feed_dataclass",
           "feed_namespace", "feed_str", "pack_len"]

pack_len = struct.Struct("<Q").pack
pack_float = struct.Struct("<d").pack


def callable_name(fn: Any) -> str:
    if fn is None:
        return "None"
    return qualified_name(fn)


# -- handlers for exact builtin types ----------------------------------------------
def feed_int(h: CanonicalHasher, x: int) -> None:
    h.tag(b"i", x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True))


def feed_float(h: CanonicalHasher, x: float) -> None:
    h.tag(b"f", pack_float(math.nan if x != x else x))


def feed_str(h: CanonicalHasher, x: str) -> None:
    h.tag(b"s", x.encode("utf-8", "surrogatepass"))


def _feed_function(h: CanonicalHasher, fn: Any) -> None:
    """Functions count by name; the user's (``code_of`` says which) also by their code and what it reads."""
    h.tag(b"F", qualified_name(fn).encode())
    code = h.code_of(fn) if h.code_of is not None else None
    if code is not None:
        h.tag(b"c", code.encode())
        # the same code makes different functions through defaults and closures
        # (`lambda x, n=n: ...` in a loop, a factory's inner function): they count too
        h.container(b"V", fn, lambda: _feed_function_state(h, fn))


def _feed_function_state(h: CanonicalHasher, fn: Any) -> None:
    h.feed(fn.__defaults__)
    h.feed(fn.__kwdefaults__)
    cells = fn.__closure__ or ()
    h.h.update(pack_len(len(cells)))
    for cell in cells:
        try:
            contents = cell.cell_contents
        except ValueError:  # a cell not yet filled
            h.tag(b"0")
            continue
        h.feed(contents)


EXACT: dict[type, Callable[[CanonicalHasher, Any], None]] = {
    type(None): lambda h, x: h.tag(b"N"),
    bool: lambda h, x: h.tag(b"T" if x else b"B"),
    int: feed_int,
    float: feed_float,
    complex: lambda h, x: h.tag(b"j", pack_float(x.real) + pack_float(x.imag)),
    str: feed_str,
    bytes: lambda h, x: h.tag(b"b", x),
    bytearray: lambda h, x: h.tag(b"y", bytes(x)),
    tuple: lambda h, x: h.sequence(b"t", x),
    list: lambda h, x: h.sequence(b"l", x),
    dict: lambda h, x: h.mapping(b"d", x),
    set: lambda h, x: h.feed_set(b"S", x),
    frozenset: lambda h, x: h.feed_set(b"z", x),
    range: lambda h, x: h.tag(b"r", f"{x.start},{x.stop},{x.step}".encode()),
    slice: lambda h, x: (h.tag(b"_"), h.feed((x.start, x.stop, x.step))),
    type: lambda h, x: feed_class(h, x),
    types.FunctionType: _feed_function,
    types.BuiltinFunctionType: lambda h, x: h.tag(b"F", qualified_name(x).encode()),
    types.ModuleType: lambda h, x: h.tag(b"M", x.__name__.encode()),
    _dt.datetime: lambda h, x: h.tag(b"D", (x.isoformat() + _zone(x)).encode()),
    _dt.date: lambda h, x: h.tag(b"a", x.isoformat().encode()),
    _dt.time: lambda h, x: h.tag(b"e", (x.isoformat() + _zone(x)).encode()),
    _dt.timedelta: lambda h, x: h.tag(b"m", f"{x.days},{x.seconds},{x.microseconds}".encode()),
    pathlib.PosixPath: lambda h, x: h.tag(b"P", str(x).encode()),
    pathlib.WindowsPath: lambda h, x: h.tag(b"W", str(x).encode()),
}


# Types of modules a cold start should not import (uuid alone pulls in platform): looked up by name,
# and moved into EXACT the first time one is seen. An object of them exists only once its module is loaded.
EXACT_BY_NAME: dict[tuple[str, str], Callable[[CanonicalHasher, Any], None]] = {
    ("decimal", "Decimal"): lambda h, x: h.tag(b"q", str(x).encode()),
    ("fractions", "Fraction"): lambda h, x: h.tag(b"Q", f"{x.numerator}/{x.denominator}".encode()),
    ("uuid", "UUID"): lambda h, x: h.tag(b"u", x.bytes),
}


def feed_class(h: CanonicalHasher, cls: type) -> None:
    h.tag(b"C", qualified_name(cls).encode())
    code = h.code_of(cls) if h.code_of is not None else None
    if code is not None:  # a class of the user's: its code (and the class attributes it holds now)
        h.tag(b"c", code.encode())


def _zone(moment: _dt.datetime | _dt.time) -> str:
    """What ``isoformat`` leaves out of an aware time: the zone itself (Europe/Paris is not +01:00) and ``fold``."""
    tz = moment.tzinfo
    if tz is None:
        return ""
    kind = type(tz)
    if kind.__str__ is object.__str__ and kind.__repr__ is object.__repr__:  # a zone of one's own: its str is
        return f"|{qualified_name(kind)}:{_zone_says(tz, moment)}|{moment.fold}"  # its address, so what it says
    return f"|{qualified_name(kind)}:{tz}|{moment.fold}"


def _zone_says(tz: _dt.tzinfo, moment: _dt.datetime | _dt.time) -> str:
    """A zone's name, offset and daylight saving time at this moment (a ``time``'s zone is asked of no date)."""
    at = moment if isinstance(moment, _dt.datetime) else None
    said = []
    for ask in (tz.tzname, tz.utcoffset, tz.dst):
        try:
            said.append(str(ask(at)))
        except NotImplementedError:  # (tzinfo's own methods raise it)
            said.append("-")
    return ",".join(said)


def feed_dataclass(h: CanonicalHasher, obj: Any) -> None:
    h.tag(b"K", qualified_name(type(obj)).encode())
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    h.mapping(b"d", fields)
    extra = {k: v for k, v in getattr(obj, "__dict__", {}).items() if k not in fields}
    if extra:  # attributes set outside the declared fields count too
        h.mapping(b"d", extra)


def _feed_enum(h: CanonicalHasher, obj: enum.Enum) -> None:
    h.tag(b"E", f"{qualified_name(type(obj))}.{obj.name}".encode())
    h.feed(obj.value)  # an edited value is another argument


def _feed_pure_path(h: CanonicalHasher, path: pathlib.PurePath) -> None:
    cls = type(path)
    name = f"pathlib.{cls.__name__}" if cls.__module__.startswith("pathlib") else qualified_name(cls)
    h.tag(b"p", f"{name}:{path}".encode())  # pathlib's classes moved module in Python 3.13


def feed_namespace(h: CanonicalHasher, obj: Any) -> None:
    # argparse.Namespace and types.SimpleNamespace: equal attributes, equal key
    h.tag(b"n", qualified_name(type(obj)).encode())
    h.mapping(b"d", vars(obj))


def _feed_namedtuple(h: CanonicalHasher, obj: tuple) -> None:
    h.tag(b"k", qualified_name(type(obj)).encode())
    h.sequence(b"t", tuple(obj))


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(type(obj), "_fields")


def _subclass_handlers() -> list[tuple[Any, Callable[[CanonicalHasher, Any], None]]]:
    """Handlers by base class, tried in order: the first match wins (bool before int, an Enum before its mixin)."""
    return [
        (enum.Enum, _feed_enum),
        (types.SimpleNamespace, feed_namespace),
        (bool, EXACT[bool]),
        (int, _feed_int_subclass),
        (float, lambda h, x: (h.tag(b"X", qualified_name(type(x)).encode()), feed_float(h, float(x)))),
        (str, lambda h, x: (h.tag(b"X", qualified_name(type(x)).encode()), feed_str(h, str(x)))),
        (pathlib.PurePath, _feed_pure_path),
        (tuple, lambda h, x: _feed_namedtuple(h, x) if _is_namedtuple(x) else _feed_reduced_or_seq(h, x, b"t")),
        (list, lambda h, x: _feed_reduced_or_seq(h, x, b"l")),
        (dict, _feed_dict_subclass),
        (types.MethodType, lambda h, x: (h.tag(b"b"), h.feed(x.__self__), h.feed(x.__func__))),
        (functools.partial, lambda h, x: (h.tag(b"~"), h.feed((x.func, x.args, x.keywords)))),
    ]


def _feed_int_subclass(h: CanonicalHasher, x: int) -> None:
    h.tag(b"X", qualified_name(type(x)).encode())
    feed_int(h, int(x))


def _feed_reduced_or_seq(h: CanonicalHasher, x: Any, tag: bytes) -> None:
    h.tag(b"X", qualified_name(type(x)).encode())
    h.sequence(tag, x)
    if getattr(x, "__dict__", None):
        h.feed(vars(x))


def _feed_dict_subclass(h: CanonicalHasher, x: dict) -> None:
    h.tag(b"X", qualified_name(type(x)).encode())
    ordered = type(x).__name__ == "OrderedDict"
    if ordered:  # order is part of an OrderedDict's equality
        h.sequence(b"t", list(x.items()))
    else:
        h.mapping(b"d", x)


SUBCLASS = _subclass_handlers()
