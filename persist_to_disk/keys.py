"""Canonical, fast and stable hashing of call arguments into cache keys.

A key must be equal for equal arguments in every process and Python run: no
``hash()`` (randomized per process), no dependence on dict or set order, no
pickle byte streams (they differ between equal objects). Values are walked into
a tagged byte stream fed to xxh3-128; numpy arrays and pandas objects feed their
raw buffers straight in (large ones as a tree hashed in parallel, see ``arrays``),
so a 200 MB array hashes at memory speed. A call's key holds each argument's own
digest (scalars go in whole), which entry headers keep for ``why``.

Changing what this module feeds the hasher changes every user's keys:
``KEY_FORMAT`` is part of every digest and the golden test pins the output.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import operator
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import xxhash

from . import arrays, polarsframes, records, scalarruns
from .arrays import qualified_name
from .errors import UnhashableArgumentError
from .sigint import import_whole
from .typefeeds import (
    EXACT,
    EXACT_BY_NAME,
    SUBCLASS,
    callable_name,
    feed_class,
    feed_dataclass,
    feed_namespace,
    feed_str,
    pack_len,
)

__all__ = [
    "KEY_FORMAT",
    "CanonicalHasher",
    "argument_digests",
    "hash_arguments",
    "hash_arguments_json",
    "hash_call",
    "hash_value",
    "key_format_name",
]

KEY_FORMAT = b"ptd-key-3"

_xxh3_128_digest = xxhash.xxh3_128_digest
_LIST_HEAD = b"l" + pack_len(0)  # what tag(b"l") feeds


class _Unhashable(TypeError):
    """Raised inside the walk; turned into UnhashableArgumentError naming the argument."""


def new_hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


NUMPY_IMPORT_MIN = 1 << 16  # containers from this size import numpy, if installed, to be hashed in bulk


_numpy_missing = False  # numpy was looked for (a big container) and is not installed, or fails to import


_ORDER_PEEK = 4096  # str keys compared pair by pair before all of them are handed to a sort


def _sorted_if_nearly(names: list[str]) -> list[str] | None:
    """``names`` itself if it is in order; the names sorted if its first few are; None if they are not.

    A sort finds a list in order with one ``memcmp`` per pair (~2x quicker than comparing every pair
    from Python), and a list in order but for a tail (keys added later) nearly as fast."""
    peek = names[: _ORDER_PEEK + 1]
    if not all(map(operator.le, peek, peek[1:])):
        return None
    ordered = sorted(names)
    return names if ordered == names else ordered


def _keys_and_values(obj: Mapping) -> tuple[list, list]:
    """A mapping's keys and values, in matching order, from ``items()``: a subclass of dict (or another
    mapping) may override ``__iter__``, ``keys()`` or ``values()`` apart from each other."""
    pairs = list(obj.items())
    return [key for key, _ in pairs], [value for _, value in pairs]


def _numpy_for(items: int) -> bool:
    """Whether a container of this many items can be hashed in bulk by numpy: imported already, or, for
    one this large, imported now (~0.1 s once; a 1M-item dict then hashes ~4x faster, in the same bytes)."""
    global _numpy_missing
    if "numpy" in sys.modules:
        return True
    if items < NUMPY_IMPORT_MIN or _numpy_missing:
        return False
    try:  # looked for once (a search walks sys.path): not installed, or a broken install, means item by item
        import_whole("numpy")
    except Exception:
        _numpy_missing = True
        return False
    return True


class CanonicalHasher:
    """Feeds one value, recursively, into an xxh3-128 state.

    Containers are remembered while being walked so a cycle becomes a
    back-reference instead of endless recursion.
    """

    def __init__(self, hasher: xxhash.xxh3_128 | None = None, *, code_of: Callable[[Any], str] | None = None):
        self.h = hasher if hasher is not None else new_hasher()
        self._active: dict[int, int] = {}
        self.code_of = code_of

    def digest(self) -> str:
        return self.h.hexdigest()

    # -- the walk ---------------------------------------------------------------
    def feed(self, obj: Any) -> None:
        handler = EXACT.get(type(obj))
        if handler is not None:
            handler(self, obj)
            return
        self._feed_other(obj)

    def tag(self, tag: bytes, payload: bytes = b"") -> None:
        self.h.update(tag + pack_len(len(payload)) + payload)

    def container(self, tag: bytes, obj: Any, items: Callable[[], None]) -> None:
        """``items()`` fed between ``tag`` and ``)``; a container met again inside itself is a back-reference."""
        key = id(obj)
        if key in self._active:
            self.tag(b"R", pack_len(self._active[key]))
            return
        self._active[key] = len(self._active)
        try:
            self.tag(tag)
            items()
            self.h.update(b")")
        finally:
            del self._active[key]

    def sequence(self, tag: bytes, obj: Any) -> None:
        self.container(tag, obj, lambda: self._items(obj))

    def _items(self, obj: list | tuple, all_str: bool = False) -> None:
        """``all_str``: the caller knows every item is a ``str`` (they are not checked again)."""
        self.h.update(pack_len(len(obj)))
        if type(obj) is not list and type(obj) is not tuple:  # a subclass: its items as iterating gives them,
            obj = list(obj)  # whatever its own slicing does (the bulk paths slice)
        if len(obj) < scalarruns.STR_RUN_MIN or not _numpy_for(len(obj)):
            for item in obj:
                self.feed(item)
        elif all_str:
            scalarruns.feed_str_run(self, obj)
        else:
            self._items_in_runs(obj)

    def _items_in_runs(self, obj: list | tuple) -> None:
        """Each item as ``feed`` hashes it, in bulk where numpy can frame them: runs of strings (a text
        column, a list of names), a sequence of only floats or only ints, records (rows of a query), and
        scalars of mixed types (None among floats, flags, names with missing values)."""
        kinds = list(map(type, obj))
        texts = kinds.count(str)
        if texts == len(obj):
            scalarruns.feed_str_run(self, obj)
            return
        if texts == 0:
            if len(obj) >= scalarruns.FLOAT_ITEMS_MIN and kinds.count(float) == len(obj):
                scalarruns.feed_float_run(self, obj)
                return
            if len(obj) >= scalarruns.INT_ITEMS_MIN and kinds.count(int) == len(obj):  # ids, indices, counts
                scalarruns.feed_int_run(self, obj)
                return
            if len(obj) >= records.RECORDS_MIN and kinds[0] in (tuple, list, dict) and records.feed_records(self, obj):
                return  # rows of a query, a CSV, a JSON list of objects or arrays
        if len(obj) >= records.SCALARS_MIN and set(kinds) <= records.SCALAR_TYPES:
            records.feed_scalars(self, obj, self._items_between_str_runs)
            return
        if texts == 0:
            for item in obj:
                self.feed(item)
            return
        self._items_between_str_runs(obj)

    def _items_between_str_runs(self, obj: list | tuple) -> None:
        """Runs of strings in bulk, anything between them item by item."""
        run = 0  # where the current run of strings started
        for i, item in enumerate(obj):
            if type(item) is str:
                continue
            self._str_run(obj[run:i])
            self.feed(item)
            run = i + 1
        self._str_run(obj[run:])

    def _str_run(self, texts: list | tuple) -> None:
        if len(texts) < scalarruns.STR_RUN_MIN:
            for text in texts:
                feed_str(self, text)
        else:
            scalarruns.feed_str_run(self, texts)

    def _sub_digest(self, obj: Any) -> bytes:
        sub = CanonicalHasher(code_of=self.code_of)
        sub._active = self._active
        sub.feed(obj)
        return sub.h.digest()

    def _own_digest(self, obj: Any) -> bytes:
        """``_sub_digest(obj)`` (a dict key's, a set item's); a ``str`` or an ``int`` straight from its frame."""
        cls = type(obj)
        if cls is str:
            data = obj.encode("utf-8", "surrogatepass")
            return _xxh3_128_digest(b"s" + pack_len(len(data)) + data)
        if cls is int:  # as typefeeds.feed_int frames it
            size = (obj.bit_length() + 8) // 8
            return _xxh3_128_digest(b"i" + pack_len(size) + obj.to_bytes(size, "little", signed=True))
        return self._sub_digest(obj)

    def _own_digests(self, objs: list) -> list[bytes]:
        """Each one's ``_own_digest``; scalars and tuples of scalars (``{(row, column): value}``) framed in
        bulk, then one xxh3 call each."""
        if len(objs) >= records.RECORDS_MIN and type(objs[0]) is tuple and _numpy_for(len(objs)):
            digests = records.record_digests(self, objs)
            if digests is not None:
                return digests
        elif len(objs) >= records.SCALARS_MIN and _numpy_for(len(objs)):
            kinds = set(map(type, objs))
            if kinds <= records.SCALAR_TYPES and kinds != {str}:  # (a str's own digest is quick already)
                return records.scalar_digests(self, objs)
        return list(map(self._own_digest, objs))

    def mapping(self, tag: bytes, obj: Mapping) -> None:
        if type(obj) is dict:
            names, known = list(obj), None  # (its values are read as they are needed)
        else:
            names, known = _keys_and_values(obj)
        if names and list(map(type, names)).count(str) == len(names):
            self.container(tag + b"s", obj, lambda: self._str_keyed_items(names, known, obj))
            return

        def items() -> None:
            values = known if known is not None else list(obj.values())
            digests = self._own_digests(names)
            if len(digests) >= min(scalarruns.FLOAT_ITEMS_MIN, scalarruns.INT_ITEMS_MIN) and _numpy_for(len(digests)):
                kinds = list(map(type, values))
                if len(values) >= scalarruns.FLOAT_ITEMS_MIN and kinds.count(float) == len(values):  # {id: score}
                    scalarruns.feed_float_items(self, digests, values)
                    return
                all_ints = len(values) >= scalarruns.INT_ITEMS_MIN and kinds.count(int) == len(values)  # {id: count}
                if all_ints and scalarruns.feed_int_items(self, digests, values):
                    return  # (False: a value past 64 bits, nothing fed, so item by item below)
            if len(digests) >= scalarruns.SORT_MIN and _numpy_for(len(digests)):
                order = scalarruns.digest_order(digests)
            else:
                order = sorted(range(len(digests)), key=digests.__getitem__)
            self.h.update(pack_len(len(order)))
            if len(values) >= records.SCALARS_MIN and _numpy_for(len(values)) and set(map(type, values)) <= records.SCALAR_TYPES:
                records.feed_keyed_scalars(self, digests, values, order)  # {id: name}, labels with missing ones
                return
            for i in order:
                self.h.update(digests[i])
                self.feed(values[i])

        self.container(tag, obj, items)

    def _str_keyed_items(self, names: list[str], values: list | None, obj: Mapping) -> None:
        """A mapping whose keys are all ``str`` (kwargs, configs, {name: score}): its keys sorted, as one
        list, then its values in that order, as another: both then hash in bulk. ``values``: None for a
        ``dict``'s own (looked up in it), else read with the names from ``items()``."""
        order: list[int] | None = None
        if len(names) < scalarruns.SORT_MIN or not _numpy_for(len(names)):
            if values is None:  # the usual small dict (kwargs, a config): its names sorted, each looked up
                names = sorted(names)
                values = list(map(obj.__getitem__, names))
            else:
                order = sorted(range(len(names)), key=names.__getitem__)  # the keys all differ
        else:
            if type(obj) is dict:  # (a subclass's own __getitem__ may not give what values() does)
                ordered = _sorted_if_nearly(names)
            else:
                ordered = names if all(map(operator.le, names, names[1:])) else None
            if ordered is not None and ordered is not names:  # big mappings often come in order already
                names, values = ordered, list(map(obj.__getitem__, ordered))
            else:
                values = values if values is not None else list(obj.values())
                if ordered is None:
                    order = scalarruns.str_order(names)
                    if order is None:
                        order = sorted(range(len(names)), key=names.__getitem__)
        if order is not None and len(order) > 1:
            take = operator.itemgetter(*order)  # (quicker than a comprehension: ~23 vs ~34 ms for 200k keys)
            names, values = list(take(names)), list(take(values))
        for made_here, all_str in ((names, True), (values, False)):  # as sequence(b"l", ...) frames them
            self.h.update(_LIST_HEAD)  # (lists made here are in no cycle)
            self._items(made_here, all_str)
            self.h.update(b")")

    def feed_set(self, tag: bytes, obj: Any) -> None:
        def items() -> None:
            digests = self._own_digests(list(obj))
            self.h.update(pack_len(len(digests)))
            if len(digests) >= scalarruns.SORT_MIN and _numpy_for(len(digests)):
                self.h.update(scalarruns.digests_in_order(digests))
            else:
                self.h.update(b"".join(sorted(digests)))

        self.container(tag, obj, items)

    def update(self, data: Any) -> None:
        """Raw bytes (or any buffer) into the stream: for handlers that already framed them with a tag."""
        self.h.update(data)

    def mark(self) -> xxhash.xxh3_128:
        """The stream as it is now: :meth:`rewind` takes back what was fed since (bytes fed on a guess)."""
        return self.h.copy()

    def rewind(self, mark: xxhash.xxh3_128) -> None:
        self.h = mark

    def _feed_other(self, obj: Any) -> None:
        cls = type(obj)
        by_name = EXACT_BY_NAME.get((cls.__module__, cls.__qualname__))
        if by_name is not None:
            EXACT[cls] = by_name
            by_name(self, obj)
            return
        if isinstance(obj, type):  # a class whatever its metaclass (ABCMeta, EnumType, a model's)
            feed_class(self, obj)
            return
        hook = getattr(type(obj), "__ptd_hash__", None)
        if hook is not None:
            self.tag(b"H", qualified_name(type(obj)).encode())
            self.feed(hook(obj))
            return
        if dataclasses.is_dataclass(obj):
            feed_dataclass(self, obj)
            return
        module = type(obj).__module__
        if module.startswith("numpy") and arrays.feed_numpy(self, obj):
            return
        if module.startswith("pandas") and arrays.feed_pandas(self, obj):
            return
        if module.startswith("torch") and arrays.feed_torch(self, obj):
            return
        if module.startswith("polars") and polarsframes.feed_polars(self, obj):
            return
        argparse = sys.modules.get("argparse")  # a Namespace exists only once argparse is imported
        if argparse is not None and isinstance(obj, argparse.Namespace):
            feed_namespace(self, obj)
            return
        for base, handler in SUBCLASS:
            if isinstance(obj, base):
                handler(self, obj)
                return
        self._feed_reduced(obj)

    def _feed_reduced(self, obj: Any) -> None:
        """Any other object hashes as its class plus the state pickle would save.

        A reducer registered with ``copyreg`` wins, as it does for pickle (``re.Pattern`` has one).
        """
        try:
            reducer = copyreg.dispatch_table.get(type(obj))
            reduced = reducer(obj) if reducer is not None else obj.__reduce_ex__(4)
        except Exception as exc:  # objects that refuse pickling (locks, generators, files)
            raise _Unhashable(f"{type(obj).__name__} cannot be pickled: {exc}") from exc
        if isinstance(reduced, str):  # a global, pickled by name
            self.tag(b"G", f"{type(obj).__module__}.{reduced}".encode())
            return
        self.tag(b"O", qualified_name(type(obj)).encode())

        def items() -> None:
            callable_, args, *rest = tuple(reduced) + (None,) * (6 - len(reduced))
            self.feed(callable_name(callable_))
            self.feed(args)
            state, listitems, dictitems = rest[0], rest[1], rest[2]
            self.feed(state)
            self.feed(list(listitems) if listitems is not None else None)
            self.feed(dict(dictitems) if dictitems is not None else None)

        self.container(b"(", obj, items)


# -- public entry points ------------------------------------------------------------------------
def key_format_name() -> str:
    """The key format as entry headers record it (``ptd-key-3``): an entry of another one is never hit again."""
    return KEY_FORMAT.decode("ascii")


@functools.lru_cache(maxsize=1024)
def _started(prefix: bytes) -> xxhash.xxh3_128:
    """The state after KEY_FORMAT and the prefix (the same for every call of a function): copied, never fed."""
    hasher = CanonicalHasher()
    hasher.h.update(KEY_FORMAT)
    hasher.feed(prefix)
    return hasher.h


def _value_hasher() -> xxhash.xxh3_128:
    """Where the digest of one value starts (a new state is quicker to make than a copy)."""
    h = xxhash.xxh3_128()
    h.update(KEY_FORMAT)
    return h


@functools.lru_cache(maxsize=4096)
def _name_bytes(name: str) -> bytes:
    """What ``feed(name)`` hashes for an argument name (a str): names repeat on every call."""
    payload = name.encode("utf-8", "surrogatepass")
    return b"s" + pack_len(len(payload)) + payload


# Arguments of these types are fed into the key itself: hashing one again for a header costs less than
# a digest of its own would cost every hit. Any other argument goes in as ``#`` and its own digest.
_INLINE = frozenset({type(None), bool, int, float, str, bytes})


def hash_call(
    named: Mapping[str, Any],
    *,
    prefix: bytes = b"",
    code_of: Callable[[Any], str] | None = None,
    extra: Sequence[tuple[bytes, Any]] = (),
) -> tuple[str, dict[str, bytes]]:
    """The key of named arguments (32 hex chars), independent of their order, and the digests it holds.

    Each argument other than a scalar (None, bool, int, float, str, bytes) goes into the key as its
    own digest, returned by name (so a header records what ``why`` compares without hashing a large
    argument again: see :func:`argument_digests`). ``extra``: more values, each with a label made by
    :func:`extra_label`, in a fixed order (the values of the globals a function reads); no argument
    name can take their place. A value that cannot be hashed raises UnhashableArgumentError naming
    the argument, whatever went wrong inside the value's own code.
    """
    hasher = CanonicalHasher(_started(prefix).copy(), code_of=code_of)
    digests = {}
    for name in sorted(named):
        if type(name) is str:
            hasher.h.update(_name_bytes(name))  # what feed(name) hashes, encoded once per name
        else:
            hasher.feed(name)
        value = named[name]
        inline = type(value) in _INLINE
        if not inline:
            key = hasher.h  # (read again each time: a value fed before may have rewound the stream to a copy)
            hasher.h = _value_hasher()  # the argument's own digest, then that into the key
        try:
            hasher.feed(value)
        except Exception as exc:
            raise _unhashable_error(f"argument {name!r}", value, exc, str(name)) from exc
        if not inline:
            digest = hasher.h.digest()
            key.update(b"#" + digest)  # no scalar's frame starts with "#"
            digests[name if type(name) is str else str(name)] = digest
            hasher.h = key
    for label, value in extra:
        hasher.h.update(label)
        try:
            hasher.feed(value)
        except Exception as exc:
            raise _unhashable_error(label[9:].decode("utf-8", "replace"), value, exc) from exc
    return hasher.digest(), digests


def argument_digests(named: Mapping[str, Any], known: Mapping[str, bytes]) -> dict[str, str]:
    """Each argument's digest (hex), as :func:`hash_value` gives it, for an entry's header: taken from
    ``known`` (what :func:`hash_call` returned) where it is there, else hashed now; ``"?"`` for an
    argument that cannot be hashed (a header never fails a store)."""
    out = {}
    for name, value in named.items():
        name = str(name)
        digest = known.get(name)
        if digest is not None:
            out[name] = digest.hex()
            continue
        try:
            out[name] = hash_value(value)
        except Exception:
            out[name] = "?"
    return out


def hash_arguments(
    named: Mapping[str, Any],
    *,
    prefix: bytes = b"",
    code_of: Callable[[Any], str] | None = None,
    extra: Sequence[tuple[bytes, Any]] = (),
) -> str:
    """Digest (32 hex chars) of named arguments, independent of their order: :func:`hash_call`'s key."""
    return hash_call(named, prefix=prefix, code_of=code_of, extra=extra)[0]


def extra_label(text: str) -> bytes:
    """A label for :func:`hash_arguments`' ``extra`` values: its first byte is no argument name's."""
    payload = text.encode("utf-8", "surrogatepass")
    return b"\x01" + pack_len(len(payload)) + payload


def _unhashable_error(what: str, value: Any, exc: Exception, argument: str | None = None) -> UnhashableArgumentError:
    kind = type(value).__name__
    if isinstance(exc, RecursionError):
        return UnhashableArgumentError(f"{what} of type {kind} is nested too deeply to hash", argument=argument)
    reason = str(exc) if isinstance(exc, _Unhashable) else f"{type(exc).__name__}: {exc}"
    return UnhashableArgumentError(
        f"{what} of type {kind} cannot be hashed into a cache key ({reason}); pass it in skip_kwargs, "
        "or give its class a __ptd_hash__ method returning a hashable stand-in",
        argument=argument,
    )


def hash_arguments_json(named: Mapping[str, Any], *, prefix: bytes = b"") -> str:
    """The seed's ``hash_method='json'``: the key is the canonical JSON of the arguments."""
    import json

    try:
        text = json.dumps(
            dict(named), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise UnhashableArgumentError(f"hash_method='json' needs JSON-serializable arguments: {exc}") from exc
    h = new_hasher()
    h.update(KEY_FORMAT + b"json" + prefix)
    h.update(text.encode("utf-8"))
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, type):
        return qualified_name(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def hash_value(obj: Any) -> str:
    """Digest of one value (used for cell inputs and manual keys); user functions count by their code."""
    from .fingerprint import code_of

    hasher = CanonicalHasher(_value_hasher(), code_of=code_of)
    try:
        hasher.feed(obj)
    except Exception as exc:
        raise _unhashable_error("a value", obj, exc) from exc
    return hasher.digest()
