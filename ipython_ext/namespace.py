"""A cell's inputs and outputs in the notebook namespace, for the ``%%persist`` key and store.

Inputs (:func:`input_digests`): the values of the names a cell reads, one digest each, the
decorator's way (``persist_to_disk.fingerprint``): a function or class defined in the notebook
or the project counts by its code, the user code it reaches and the values of the globals it
reads (so editing a helper in an earlier cell, or changing a global it uses, is a new key);
a project module by the attributes the cell reads off it (``params.LR``), a library module by
its version, everything else by value through ``persist_to_disk.keys``.

Outputs (:func:`dumps` / :func:`loading_into`): the names a cell assigns, pickled with
cloudpickle so that functions and classes defined in the cell are stored by value. Two
rules keep restored objects wired to the notebook as if the cell had run:

* a function defined in the cell is rebuilt with the notebook namespace as its globals
  (not a frozen copy of the globals it used), so it sees later changes and later cells;
* a function or class defined in an earlier cell and still reachable by its name is
  stored by reference, so a restored instance of ``Model`` is an instance of the
  notebook's ``Model``, not of a copy.
"""

from __future__ import annotations

import builtins
import io
import logging
import marshal
import re
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from typing import Any

import cloudpickle

from persist_to_disk import fingerprint, identity, keys
from persist_to_disk.errors import UnhashableArgumentError
from persist_to_disk.persister import PersistedFunction
from persist_to_disk.readable import short_repr

__all__ = ["dumps", "input_digests", "loading_into", "readable_inputs", "unpicklable_names"]

log = logging.getLogger("persist_to_disk")

#: Names IPython puts in every namespace; a cell reading them is not keyed on them.
IPYTHON_NAMES = frozenset(
    {"In", "Out", "_ih", "_oh", "_dh", "get_ipython", "exit", "quit", "open", "__builtins__", "__builtin__",
     "__name__", "__doc__", "__spec__", "__loader__", "__package__"}
)
_OUTPUT_NAME = re.compile(r"^_+$|^_\d+$")  # `_`, `__`, `_3`: earlier outputs, real data

_ABSENT = ("ptd:absent",)  # a name read but not defined (a builtin, or an error to come)
_NOT_FOUND = object()


# -------------------------------------------------------------------------------- inputs


def _is_notebook_function(value: Any, ns: Mapping[str, Any]) -> bool:
    return isinstance(value, types.FunctionType) and (value.__globals__ is ns or value.__module__ == "__main__")


def _is_notebook_class(value: Any) -> bool:
    return isinstance(value, type) and getattr(value, "__module__", None) == "__main__"


def _module_stand_in(module: types.ModuleType, attrs: frozenset[str], name: str) -> tuple:
    """A module as the cell uses it: the code and current values of the attributes it reads (``params.LR``)."""
    fp = fingerprint.of_module(module, attrs, name)
    values = {}
    for ref in fp.values:
        value = ref.read()
        try:
            keys.hash_value(value)
        except UnhashableArgumentError:
            value = ("ptd:unhashable", keys.qualified_name(type(value)))
        values[ref.name] = value
    return ("ptd:module", module.__name__, fp.code, values)


def _counts(name: str, ns: Mapping[str, Any], hidden: Mapping[str, Any]) -> bool:
    """Whether a name in the namespace is the user's (not IPython's own furniture)."""
    if name in IPYTHON_NAMES and (name not in hidden or hidden[name] is ns.get(name)):
        return False
    if name in hidden and hidden[name] is ns.get(name) and not _OUTPUT_NAME.match(name):
        return False
    return True


def input_digests(
    reads: Iterable[str],
    ns: Mapping[str, Any],
    hidden: Mapping[str, Any] | None = None,
    attrs: Mapping[str, frozenset[str]] | None = None,
) -> dict[str, str]:
    """One digest per name the cell reads.

    Functions and classes count by their dependency fingerprint (``persist_to_disk.fingerprint``,
    the decorator's): their code, the user code they reach and the values of the notebook
    globals they read; modules by the attributes the cell reads off them (``attrs``). Raises
    UnhashableArgumentError naming the variable when a value the cell reads cannot be hashed.
    """
    hidden = hidden or {}
    attrs = attrs or {}
    digests: dict[str, str] = {}
    for name in sorted(set(reads)):
        value = ns.get(name, _NOT_FOUND)
        if value is _NOT_FOUND:
            digests[name] = keys.hash_value(_ABSENT)
            continue
        if not _counts(name, ns, hidden):
            continue
        try:
            if isinstance(value, types.ModuleType):
                value = _module_stand_in(value, attrs.get(name, frozenset()), name)
            digests[name] = keys.hash_value(value)
        except UnhashableArgumentError as exc:
            raise UnhashableArgumentError(
                f"variable {name!r} ({type(value).__name__}) read by the cell cannot be hashed into a cache "
                f"key ({exc.__cause__ or exc})",
                argument=name,
            ) from exc
    return digests


def readable_inputs(
    reads: Iterable[str], ns: Mapping[str, Any], hidden: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Short readable forms of the values a cell reads, for entry headers (the browser shows them)."""
    hidden = hidden or {}
    out: dict[str, str] = {}
    for name in sorted(set(reads)):
        value = ns.get(name, _NOT_FOUND)
        if value is _NOT_FOUND or not _counts(name, ns, hidden):
            continue
        try:
            if isinstance(value, PersistedFunction):
                out[name] = f"persisted function {value.__qualname__} (code {value.code_version()})"
            elif _is_notebook_function(value, ns):
                out[name] = f"function {value.__qualname__} (code {identity.code_version(value)})"
            elif _is_notebook_class(value):
                out[name] = f"class {value.__qualname__} (code {fingerprint.class_code(value)})"
            elif isinstance(value, types.ModuleType):
                out[name] = f"module {value.__name__}"
            elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
                out[name] = f"{'class' if isinstance(value, type) else 'function'} {keys.qualified_name(value)}"
            else:
                out[name] = short_repr(value)
        except Exception as exc:  # a header must never fail the cell
            out[name] = f"<{type(value).__name__}: {type(exc).__name__}>"
    return out


# -------------------------------------------------------------------------------- outputs


class NamespacePickler(cloudpickle.Pickler):
    """cloudpickle, with notebook functions bound to the namespace they are restored into."""

    def __init__(self, file: Any, *, namespace: Mapping[str, Any], cell_names: Iterable[str], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._ns = namespace
        self._cell_names = frozenset(cell_names)
        main = sys.modules.get("__main__")
        self._main_is_ns = getattr(main, "__dict__", None) is namespace

    def reducer_override(self, obj: Any) -> Any:
        if (
            type(obj) is PersistedFunction
            and getattr(obj.__wrapped__, "__globals__", None) is self._ns
        ):
            if self._by_reference(obj):
                return NotImplemented
            # its own __reduce__ would freeze the function's globals (it is made for worker processes)
            return (_rebuild_persisted, (obj.__wrapped__, obj.options, obj.code_version()))
        if type(obj) is types.FunctionType and obj.__globals__ is self._ns:
            if self._by_reference(obj):
                return NotImplemented  # pickle's own save_global: __main__.<name>
            return _reduce_function(obj)
        if isinstance(obj, type) and _is_notebook_class(obj) and self._by_reference(obj):
            return NotImplemented
        if type(obj) is types.CodeType:  # cloudpickle drops co_filename; the code's source is found by it
            return (marshal.loads, (marshal.dumps(obj),))
        return super().reducer_override(obj)

    def _by_reference(self, obj: Any) -> bool:
        """Defined in an earlier cell and still found under its name in ``__main__``."""
        qualname = getattr(obj, "__qualname__", "")
        if not self._main_is_ns or obj.__module__ != "__main__" or "<" in qualname:
            return False
        head, *rest = qualname.split(".")
        if head in self._cell_names:
            return False
        target = self._ns.get(head, _NOT_FOUND)
        for part in rest:
            target = getattr(target, part, _NOT_FOUND)
        return target is obj


def dumps(value: Any, *, namespace: Mapping[str, Any], cell_names: Iterable[str], protocol: int = 5,
          buffer_callback: Any = None) -> bytes:
    """Pickle values taken from ``namespace`` (see the module doc); arrays travel out of band."""
    buf = io.BytesIO()
    NamespacePickler(
        buf, namespace=namespace, cell_names=cell_names, protocol=protocol, buffer_callback=buffer_callback
    ).dump(value)
    return buf.getvalue()


def unpicklable_names(
    values: Mapping[str, Any], *, namespace: Mapping[str, Any], cell_names: Iterable[str]
) -> dict[str, str]:
    """The names whose value cannot be pickled, with why (array buffers are not copied to find out)."""
    bad: dict[str, str] = {}
    names = list(cell_names)
    for name, value in values.items():
        try:
            dumps(value, namespace=namespace, cell_names=names, buffer_callback=lambda b: False)
        except Exception as exc:
            bad[name] = f"{type(exc).__name__}: {exc}"
    return bad


# -- functions defined in the cell ---------------------------------------------------------------------

_target = threading.local()


class loading_into:  # a context manager: named like one
    """Unpickle notebook functions with ``namespace`` as their globals (in this thread)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace

    def __enter__(self) -> dict[str, Any]:
        stack = getattr(_target, "stack", None)
        if stack is None:
            stack = _target.stack = []
        stack.append(self.namespace)
        return self.namespace

    def __exit__(self, *exc: Any) -> None:
        _target.stack.pop()


def _target_namespace() -> dict[str, Any]:
    stack = getattr(_target, "stack", None)
    if stack:
        return stack[-1]
    if "IPython" in sys.modules:  # unpickled outside a restore (the browser in a kernel): that kernel's
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    return {"__builtins__": builtins, "__name__": "__main__"}


class _Empty:
    """An unfilled closure cell."""

    def __reduce__(self) -> str:
        return "_EMPTY"


_EMPTY = _Empty()


def _reduce_function(fn: types.FunctionType) -> tuple:
    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:
            cells.append(_EMPTY)
    try:
        annotations = dict(fn.__annotations__)
    except Exception:
        annotations = {}
    state = {
        "defaults": fn.__defaults__,
        "kwdefaults": fn.__kwdefaults__,
        "qualname": fn.__qualname__,
        "module": fn.__module__,
        "doc": fn.__doc__,
        "annotations": annotations,
        "dict": dict(fn.__dict__),
        "cells": cells,
    }
    # state after creation, so a function reachable from its own closure or defaults is fine
    return (_new_function, (fn.__code__, fn.__name__, len(fn.__code__.co_freevars)), state, None, None,
            _set_function_state)


def _new_function(code: types.CodeType, name: str, nfree: int) -> types.FunctionType:
    closure = tuple(types.CellType() for _ in range(nfree)) or None
    return types.FunctionType(code, _target_namespace(), name, None, closure)


def _set_function_state(fn: types.FunctionType, state: dict[str, Any]) -> None:
    fn.__defaults__ = state["defaults"]
    fn.__kwdefaults__ = state["kwdefaults"]
    fn.__qualname__ = state["qualname"]
    fn.__module__ = state["module"]
    fn.__doc__ = state["doc"]
    fn.__annotations__ = state["annotations"]
    fn.__dict__.update(state["dict"])
    for cell, value in zip(fn.__closure__ or (), state["cells"]):
        if value is not _EMPTY:
            cell.cell_contents = value


def _rebuild_persisted(func: types.FunctionType, options: Any, version: str) -> Any:
    """Unpickles a notebook's persisted function (its name and arguments are in stored entries: keep them)."""
    from persist_to_disk.persister import PersistedFunction

    return PersistedFunction.rebuilt(func, options, version)


class SourceFile:
    """Put first in a payload: unpickling it registers the cell's source before any function is rebuilt.

    Restored functions keep the file name of the cell that defined them (another kernel's);
    with its lines in ``linecache``, ``inspect.getsource`` works and code versions come out
    the same as when the cell ran.
    """

    def __init__(self, filename: str, source: str) -> None:
        self.filename = filename
        self.source = source

    def __reduce__(self) -> tuple:
        return (register_source, (self.filename, self.source))


def register_source(filename: str, source: str) -> SourceFile:
    import linecache

    if isinstance(filename, str) and isinstance(source, str) and filename not in linecache.cache:
        lines = [line + "\n" for line in source.splitlines()]
        linecache.cache[filename] = (len(source), None, lines, filename)
    return SourceFile(filename, source)
