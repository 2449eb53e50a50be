"""What a result depends on besides its arguments: the code it runs and the globals it reads.

A function's *fingerprint* has two parts, the same for the decorator and ``%%persist``:

- **code** (worked out once per code change): the function's own normalized code, and,
  transitively, that of the *user code* it references (functions and classes defined in
  ``__main__``, in notebook cells or in any module outside the standard library and
  site-packages), through globals, ``module.attribute`` reads, closures, wrapped functions
  and the class a method belongs to. Library code is not walked: it counts by its
  distribution's version.
- **values** (read on every call): the current values of the globals, closure variables
  and class attributes that code reads: ``SCALE = 3`` in a module or a notebook cell is
  another key than ``SCALE = 2``.

A *guard* per name resolved while walking (``scale`` in ``util`` is this function object)
tells, per call and at the cost of a dict lookup, whether a redefinition (a notebook cell
run again, ``importlib.reload``) makes the code part stale.

What is not seen (the README says what to do about each): files read by path, names
looked up dynamically (``getattr(obj, name)``, ``eval``, ``globals()[name]``), attributes of
objects other than modules and classes, and library code edited in place.
"""

from __future__ import annotations

import builtins
import functools
import os
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import xxhash

from . import identity, keys
from .bytecode import code_reads
from .errors import CacheWarning, UnhashableArgumentError
from .sigint import import_whole

__all__ = [
    "Dependency", "Fingerprint", "Tracker", "ValueRef", "class_code", "code_of", "describe_values", "is_user_code",
    "library_version", "of_module", "of_object", "tracker_of",
]

DependencyKind = Literal["function", "class", "global", "closure", "attribute", "library"]

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()  # a name not (yet) bound
_OWN_PACKAGES = ("persist_to_disk", "ipython_ext")


@dataclass(frozen=True)
class Dependency:
    """One thing a result depends on, as an entry header records it and ``why`` explains it."""

    kind: DependencyKind
    name: str  # `scale`, `util.scale`, `SCALE`, `Model.factor`, `numpy`
    where: str  # `util.py:12` for code, the module or notebook for a value, the version for a library
    digest: str  # of the code, of the value (per call), or the library version

    def as_json(self) -> list[str]:
        return [self.kind, self.name, self.where, self.digest]

    @classmethod
    def from_json(cls, row: list[str]) -> Dependency:
        return cls(*row)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ValueRef:
    """A global, closure variable or class attribute whose value is read on every call."""

    kind: DependencyKind
    name: str
    where: str
    read: Callable[[], Any]  # returns MISSING when unbound


@dataclass(frozen=True)
class Fingerprint:
    """The code part (fixed until a guard fails) and the values to read per call."""

    code: str  # digest of every code dependency, the function's own included
    code_dependencies: tuple[Dependency, ...]
    values: tuple[ValueRef, ...]
    guards: tuple[tuple[Callable[[], Any], Any], ...]  # (read the binding, the object it held when walked)

    def still_valid(self) -> bool:
        for read, expected in self.guards:
            if read() is not expected:
                return False
        return True


# -- what counts as user code -----------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    paths = import_whole("sysconfig").get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots))


@functools.lru_cache(maxsize=4096)
def _is_user_module(module_name: str | None) -> bool:
    if module_name in (None, "__main__"):
        return True
    top = module_name.split(".")[0]
    if top in _OWN_PACKAGES or top in sys.builtin_module_names or _is_stdlib(top):
        return False
    filename = getattr(sys.modules.get(module_name), "__file__", None)
    if filename is None:  # made at run time (exec, a notebook's module, a function sent by value)
        return True
    return not os.path.realpath(filename).startswith(_library_roots())


def _is_stdlib(module_name: str) -> bool:
    return module_name.split(".")[0] in sys.stdlib_module_names


def is_user_code(obj: Any) -> bool:
    """Whether a function, class or module is the user's (walked) rather than a library's (versioned)."""
    if isinstance(obj, types.ModuleType):
        return _is_user_module(obj.__name__)
    return _is_user_module(getattr(obj, "__module__", None))


@functools.lru_cache(maxsize=1024)
def library_version(module_name: str) -> str | None:
    """``numpy==2.4.6`` for anything from numpy; None for the standard library and the unversioned."""
    top = module_name.split(".")[0]
    if top in sys.builtin_module_names or _is_stdlib(top) or top in _OWN_PACKAGES:
        return None
    version = getattr(sys.modules.get(top), "__version__", None)
    if not isinstance(version, str):
        try:
            version = import_whole("importlib.metadata").version(top)
        except Exception:
            version = "unknown"
    return f"{top}=={version}"


# -- the walk ---------------------------------------------------------------------------------------------
class _Walk:
    """One walk from a root: collects code dependencies, values to read and guards."""

    def __init__(self, ignore: frozenset[str]) -> None:
        self.ignore = ignore
        self.code: dict[tuple[str, str], Dependency] = {}
        self.values: dict[tuple[str, str], ValueRef] = {}
        self.guards: list[tuple[Callable[[], Any], Any]] = []
        self.seen: set[int] = set()
        self.changed_attrs: set[str] = set()  # class and module attributes the walked code changes: state

    def result(self) -> Fingerprint:
        code = tuple(sorted(self.code.values(), key=lambda d: (d.kind, d.name)))
        h = xxhash.xxh3_64()
        for dep in code:
            h.update(f"{dep.kind}\x00{dep.name}\x00{dep.digest}\x01".encode())
        changed = self.changed_attrs
        inputs = (v for v in self.values.values() if not (v.kind == "attribute" and _short(v.name) in changed))
        values = tuple(sorted(inputs, key=lambda v: (v.kind, v.name)))
        return Fingerprint(h.hexdigest(), code, values, tuple(_unique_guards(self.guards)))

    # -- functions
    def function(self, func: types.FunctionType, name: str, *, root: bool = False) -> None:
        if id(func) in self.seen:
            return
        self.seen.add(id(func))
        self.guards.append((functools.partial(getattr, func, "__code__"), func.__code__))  # autoreload swaps it
        where = _where(func)
        self.code[("function", name)] = Dependency("function", name, where, identity.code_version(func))
        if not root and (func.__defaults__ or func.__kwdefaults__):
            self._value_now("global", f"{name} defaults", where, (func.__defaults__, func.__kwdefaults__))
        self._globals_of(func.__code__, func.__globals__, _module_label(func))
        self._closure(func, name)
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None:
            self.reference(wrapped, f"{name}.__wrapped__")
        if root:
            owner = _defining_class(func)
            if owner is not None:
                self.reference(owner, owner.__qualname__)

    def _globals_of(self, code: types.CodeType, ns: Mapping[str, Any], label: str) -> None:
        reads = code_reads(code)
        self.changed_attrs |= reads.changed_attrs
        for gname, attrs in reads.attrs:
            if gname in self.ignore or gname in reads.changed:
                continue
            read = functools.partial(ns.get, gname, MISSING)
            value = read()
            if value is MISSING:
                if hasattr(builtins, gname):
                    continue  # print, len, range ...
                self.guards.append((read, MISSING))  # defined later: then the code part is stale
                continue
            if isinstance(value, types.ModuleType):
                self.guards.append((read, value))
                self.module(value, attrs, gname)
            elif self._is_code(value):
                self.guards.append((read, value))
                self.reference(value, gname)
            else:
                self.values[("global", f"{label}.{gname}")] = ValueRef("global", gname, label, read)

    def _closure(self, func: types.FunctionType, name: str) -> None:
        changed = code_reads(func.__code__).changed
        for var, cell in zip(func.__code__.co_freevars, func.__closure__ or ()):
            if var in self.ignore or var in changed:
                continue
            read = functools.partial(_cell_contents, cell)
            value = read()
            if self._is_code(value):
                self.guards.append((read, value))
                self.reference(value, var)
            elif not isinstance(value, types.ModuleType):
                self.values[("closure", f"{name}.{var}")] = ValueRef("closure", var, name, read)

    @staticmethod
    def _is_code(value: Any) -> bool:
        return isinstance(value, (types.FunctionType, type)) or _persisted_function(value) is not None

    # -- anything code-like a name can hold
    def reference(self, value: Any, name: str) -> None:
        inner = _persisted_function(value)
        if inner is not None:
            value = inner
        if isinstance(value, types.FunctionType):
            if is_user_code(value):
                self.function(value, identity.function_name(value))
            else:
                self._library(value)
        elif isinstance(value, type):
            if is_user_code(value):
                self.cls(value)
            else:
                self._library(value)

    def cls(self, cls: type) -> None:
        if id(cls) in self.seen:
            return
        self.seen.add(id(cls))
        name = cls.__qualname__.replace(".<locals>", "")
        self.code[("class", name)] = Dependency("class", name, _where(cls), class_code(cls))
        proxy = cls.__dict__
        for attr, value in sorted(proxy.items()):
            if attr in _SKIP_CLASS_ATTRS or attr in self.ignore:
                continue
            dunder = attr.startswith("__") and attr.endswith("__")
            func = _function_of(value)
            if func is not None:
                self.guards.append((functools.partial(proxy.get, attr, MISSING), value))
                self.function(func, f"{name}.{attr}")
            elif isinstance(value, type) and value.__qualname__.startswith(cls.__qualname__ + "."):
                self.cls(value)
            elif not dunder and not _is_descriptor(value):  # dunders are the class's machinery, not data
                read = functools.partial(proxy.get, attr, MISSING)
                label = f"{name}.{attr}"
                self.values[("attribute", label)] = ValueRef("attribute", label, _where(cls), read)
        for base in cls.__bases__:
            if base is not object:
                self.reference(base, base.__qualname__)

    def module(self, module: types.ModuleType, attrs: frozenset[str], name: str) -> None:
        if not is_user_code(module):
            self._library(module)
            return
        ns = vars(module)
        for attr in sorted(attrs):
            read = functools.partial(ns.get, attr, MISSING)
            value = read()
            if isinstance(value, types.ModuleType):
                self.guards.append((read, value))
                if not is_user_code(value):
                    self._library(value)
            elif self._is_code(value):
                self.guards.append((read, value))
                self.reference(value, f"{name}.{attr}")
            elif value is not MISSING:
                self.values[("attribute", f"{module.__name__}.{attr}")] = ValueRef(
                    "attribute", f"{name}.{attr}", module.__name__, read
                )

    def _library(self, obj: Any) -> None:
        module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
        version = library_version(module) if module else None
        if version is not None:
            top = version.split("==")[0]
            self.code[("library", top)] = Dependency("library", top, version, version)

    def _value_now(self, kind: DependencyKind, name: str, where: str, value: Any) -> None:
        self.values[(kind, name)] = ValueRef(kind, name, where, lambda: value)


def _unique_guards(guards: list[tuple[Callable[[], Any], Any]]) -> list[tuple[Callable[[], Any], Any]]:
    """One guard per binding (a helper two functions call is checked once per call, not twice)."""
    seen: dict[tuple, tuple[Callable[[], Any], Any]] = {}
    for read, expected in guards:
        func = getattr(read, "func", read)
        owner = getattr(func, "__self__", func)  # the dict behind a bound `ns.get`
        args = tuple(a if isinstance(a, str) else id(a) for a in getattr(read, "args", ()))
        ident = (id(owner), getattr(func, "__name__", ""), args)
        seen.setdefault(ident, (read, expected))
    return list(seen.values())


_SKIP_CLASS_ATTRS = frozenset(
    {"__dict__", "__weakref__", "__module__", "__doc__", "__qualname__", "__firstlineno__", "__static_attributes__",
     "__slotnames__", "_abc_impl", "__annotations__", "__parameters__", "__orig_bases__", "__dataclass_fields__",
     "__dataclass_params__", "__match_args__", "__hash__", "__abstractmethods__", "__annotate_func__",
     "__annotations_cache__"}
)


def _short(dotted: str) -> str:
    return dotted.rsplit(".", 1)[-1]


def _cell_contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # not filled yet
        return MISSING


def _function_of(attr: Any) -> types.FunctionType | None:
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    if isinstance(attr, property):
        attr = attr.fget
    inner = _persisted_function(attr)
    if inner is not None:
        return inner
    return attr if isinstance(attr, types.FunctionType) else None


def _is_descriptor(value: Any) -> bool:
    return hasattr(type(value), "__get__")  # cached_property, slots, ...: not plain data


def _persisted_function(value: Any) -> types.FunctionType | None:
    """The user's function inside a persisted one (its key already covers its own dependencies)."""
    module = sys.modules.get("persist_to_disk.persister")
    persisted = getattr(module, "PersistedFunction", None)
    if persisted is not None and isinstance(value, persisted):
        func = value.__wrapped__
        return func if isinstance(func, types.FunctionType) else None
    return None


def _defining_class(func: types.FunctionType) -> type | None:
    """``Model`` for ``Model.fit``, looked up from the module: its attributes count for a method."""
    parts = func.__qualname__.split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return None
    owner: Any = func.__globals__.get(parts[0], MISSING)
    for part in parts[1:-1]:
        owner = getattr(owner, part, MISSING)
    return owner if isinstance(owner, type) else None


def _where(obj: Any) -> str:
    code = getattr(obj, "__code__", None)
    if code is not None:
        return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    filename = getattr(module, "__file__", None)
    return os.path.basename(filename) if filename else str(getattr(obj, "__module__", "?"))


def _module_label(func: types.FunctionType) -> str:
    return str(func.__globals__.get("__name__", func.__module__))


def class_code(cls: type) -> str:
    """A digest of a class's own code: its bases, its methods' code versions, its nested classes.

    Data attributes are not in it (they are values, read per call); ``inspect.getsource``
    cannot find a class typed into IPython, so the class is fingerprinted from what it holds.
    """
    h = xxhash.xxh3_64()
    h.update(cls.__qualname__.encode())
    for base in cls.__bases__:
        h.update(b"|base:" + f"{base.__module__}.{base.__qualname__}".encode())
    for name, attr in sorted(cls.__dict__.items()):
        if name in _SKIP_CLASS_ATTRS:
            continue
        kind = type(attr).__name__
        if isinstance(attr, property):
            parts = [identity.code_version(f) if f is not None else "-" for f in (attr.fget, attr.fset, attr.fdel)]
            h.update(f"|{name}=property:{','.join(parts)}".encode())
            continue
        func = _function_of(attr)
        if func is not None:
            h.update(f"|{name}={kind}:{identity.code_version(func)}".encode())
        elif isinstance(attr, type) and attr.__qualname__.startswith(cls.__qualname__ + "."):
            h.update(f"|{name}=class:{class_code(attr)}".encode())
    return h.hexdigest()


# -- entry points --------------------------------------------------------------------------------------------
def of_object(obj: Any, ignore: frozenset[str] = frozenset()) -> Fingerprint:
    """The fingerprint of a function as ``persistf`` wraps it (decorators under it included), or of a class."""
    walk = _Walk(ignore)
    if isinstance(obj, types.FunctionType):
        walk.function(obj, identity.function_name(obj), root=True)
    elif isinstance(obj, type):
        walk.cls(obj)
    else:  # a callable object, a builtin: its code is not ours to read
        walk.code[("function", repr(obj))] = Dependency("function", repr(obj), "", identity.code_version(obj))
    return walk.result()


def of_module(module: types.ModuleType, attrs: frozenset[str], name: str) -> Fingerprint:
    """A module as a notebook cell reads it: the attributes it uses (``params.LR``), or its library's version."""
    walk = _Walk(frozenset())
    walk.module(module, attrs, name)
    return walk.result()


class Tracker:
    """A fingerprint kept current: the code part is walked again only when a guard fails."""

    __slots__ = ("_root", "_ignore", "_fingerprint", "_labels", "_unhashable", "__weakref__")

    def __init__(self, root: Any, ignore: frozenset[str] = frozenset()) -> None:
        self._root = root
        self._ignore = ignore
        self._fingerprint: Fingerprint | None = None
        self._labels: tuple[tuple[bytes, ValueRef], ...] = ()  # in the order of fp.values (sorted)
        self._unhashable: set[bytes] = set()

    def current(self) -> Fingerprint:
        fp = self._fingerprint
        if fp is None or not fp.still_valid():
            fp = self._fingerprint = self._walk()
            self._labels = tuple((keys.extra_label(f"{ref.kind} {ref.name} in {ref.where}"), ref) for ref in fp.values)
        return fp

    def _walk(self) -> Fingerprint:
        try:
            return of_object(self._root, self._ignore)
        except Exception as exc:  # a walk that trips on odd code must never cost the user's call
            warnings.warn(
                f"the dependencies of {_root_name(self._root)} could not be read ({type(exc).__name__}: {exc}); "
                "its results are keyed on its own code only",
                CacheWarning,
                stacklevel=5,
            )
            own = Dependency("function", _root_name(self._root), "", identity.code_version(self._root))
            return Fingerprint(own.digest, (own,), (), ())

    def values(self) -> list[tuple[bytes, Any]]:
        """The values the code reads now (call ``current()`` first), labelled for ``hash_arguments(extra=...)``."""
        if not self._unhashable:
            return [(label, ref.read()) for label, ref in self._labels]
        out = []
        for label, ref in self._labels:
            value = ref.read()
            out.append((label, _type_stand_in(value) if label in self._unhashable else value))
        return out

    def mark_unhashable(self) -> bool:
        """After a failed hash: key the values that cannot be hashed by their type, warning once for each.

        False when every value hashes (the failure was an argument's).
        """
        found = False
        for label, ref in self._labels:
            value = ref.read()
            if label in self._unhashable or _hashable(value):
                continue
            found = True
            self._unhashable.add(label)
            warnings.warn(
                f"{ref.kind} {ref.name!r} ({type(value).__name__}, in {ref.where}) read by "
                f"{_root_name(self._root)} cannot be hashed, so it is keyed by its type only; "
                "leave it out on purpose with persistf(ignore_globals=[...])",
                CacheWarning,
                stacklevel=5,
            )
        return found

    def digest(self) -> str:
        """Code and current values in one digest (a function or class passed as an argument or read by a cell)."""
        fp = self.current()
        if not fp.values:
            return fp.code
        try:
            values = keys.hash_arguments({}, extra=self.values(), code_of=code_of)
        except UnhashableArgumentError:
            if not self.mark_unhashable():
                raise
            values = keys.hash_arguments({}, extra=self.values(), code_of=code_of)
        return f"{fp.code}:{values}"


def _type_stand_in(value: Any) -> tuple[str, str]:
    return ("ptd:unhashable", keys.qualified_name(type(value)))


def _hashable(value: Any) -> bool:
    try:
        keys.hash_value(value)
        return True
    except UnhashableArgumentError:
        return False


def _root_name(root: Any) -> str:
    return identity.function_name(root) if callable(root) else repr(root)


_TRACKERS: weakref.WeakKeyDictionary[Any, Tracker] = weakref.WeakKeyDictionary()
_IN_PROGRESS = threading.local()


def tracker_of(obj: Any) -> Tracker:
    tracker = _TRACKERS.get(obj)
    if tracker is None:
        tracker = _TRACKERS[obj] = Tracker(obj)
    return tracker


def code_of(obj: Any) -> str | None:
    """For keys: what a function or class passed as a value contributes beside its name.

    User code counts by its fingerprint (its code, the user code it reaches, the values
    it reads now); library code by name only (None).
    """
    if not isinstance(obj, (types.FunctionType, type)) or not is_user_code(obj):
        return None
    active: set[int] = getattr(_IN_PROGRESS, "ids", None) or set()
    _IN_PROGRESS.ids = active
    tracker = tracker_of(obj)
    if id(obj) in active:  # a value that holds the function itself: its code is enough
        return tracker.current().code
    active.add(id(obj))
    try:
        return tracker.digest()
    finally:
        active.discard(id(obj))


def describe_values(fp: Fingerprint, short: Callable[[Any], str]) -> Iterator[Dependency]:
    """The per-call values as header records (their digest and a short repr)."""
    for ref in fp.values:
        value = ref.read()
        try:
            digest = keys.hash_value(value)
        except UnhashableArgumentError:
            digest = f"unhashable:{type(value).__qualname__}"
        yield Dependency(ref.kind, ref.name, f"{ref.where} = {short(value)}", digest)
