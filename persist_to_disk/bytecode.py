"""What a code object reads from outside and what it changes, read off its bytecode.

The dependency fingerprint (``fingerprint.py``) asks two questions of every piece of user code
it walks: which globals does it read (and which attributes off them: ``util.scale``,
``params.LR``), and which of those does it change (its state, not its inputs). Bytecode
answers both exactly for the code that runs, where the source would need a scope analysis.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass

from .sigint import import_whole

__all__ = ["MUTATING_METHODS", "Reads", "code_reads"]

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_LOAD_GLOBAL = _GLOBAL_OPS | {"LOAD_DEREF", "LOAD_CLASSDEREF"}  # closure cells too, to see what the code changes
_LOAD_ATTR = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_STORE_NAME = frozenset({"STORE_GLOBAL", "STORE_DEREF", "STORE_NAME", "DELETE_GLOBAL", "DELETE_DEREF"})
_STORE_INTO = frozenset({"STORE_SUBSCR", "DELETE_SUBSCR", "STORE_ATTR", "DELETE_ATTR"})
_SIMPLE_LOAD = frozenset({"LOAD_CONST", "LOAD_FAST", "LOAD_SMALL_INT", "LOAD_FAST_BORROW"})
#: methods that change their object: a global or closure variable the code calls them on is the
#: code's own state (a list of results it appends to, a dict it fills), not an input of the result
MUTATING_METHODS = frozenset(
    {"append", "extend", "insert", "remove", "pop", "popitem", "clear", "add", "discard", "update", "setdefault",
     "sort", "reverse", "appendleft", "extendleft", "popleft", "put", "put_nowait", "write", "writelines", "set"}
)


@dataclass(frozen=True)
class Reads:
    """The names a code object (and the code nested in it) reads from outside, and how.

    ``np.mean(x) + SCALE`` reads ``np`` (attribute ``mean``) and ``SCALE``; ``RESULTS.append(y)``,
    ``CACHE[k] = y`` and ``global COUNT; COUNT += 1`` change ``RESULTS``, ``CACHE`` and ``COUNT``.
    """

    attrs: tuple[tuple[str, frozenset[str]], ...]  # every outside name read, with the attributes read off it
    changed: frozenset[str]  # names the code changes: its state, not its inputs
    changed_attrs: frozenset[str]  # attributes it changes on anything (`Model.calls.append`, `self.n = 1`)


@functools.lru_cache(maxsize=8192)
def code_reads(code: types.CodeType) -> Reads:
    found: dict[str, set[str]] = {}
    changed: set[str] = set()
    changed_attrs: set[str] = set()
    _collect_reads(code, found, changed, changed_attrs)
    attrs = tuple((name, frozenset(names)) for name, names in sorted(found.items()))
    return Reads(attrs, frozenset(changed), frozenset(changed_attrs))


def _collect_reads(
    code: types.CodeType, found: dict[str, set[str]], changed: set[str], changed_attrs: set[str]
) -> None:
    dis = import_whole("dis")  # only a walk needs it: not imported at start-up

    instructions = list(dis.get_instructions(code))
    for i, ins in enumerate(instructions):
        if ins.opname in _STORE_NAME:
            changed.add(ins.argval)
        elif ins.opname in ("STORE_ATTR", "DELETE_ATTR"):
            changed_attrs.add(ins.argval)
        if ins.opname in _LOAD_GLOBAL:
            target = changed
            if ins.opname in _GLOBAL_OPS:  # a closure's cell is not a global
                found.setdefault(ins.argval, set())
        elif ins.opname in _LOAD_ATTR:
            target = changed_attrs
        else:
            continue
        name = ins.argval
        after = instructions[i + 1] if i + 1 < len(instructions) else None
        if after is None:
            continue
        if after.opname in _LOAD_ATTR:
            if ins.opname in _GLOBAL_OPS:
                found[name].add(after.argval)
            if after.argval in MUTATING_METHODS:
                target.add(name)  # NAME.append(...)
        elif after.opname in _STORE_INTO and target is changed:  # NAME.attr = value
            target.add(name)
        elif after.opname in _SIMPLE_LOAD and i + 2 < len(instructions) and instructions[i + 2].opname in _STORE_INTO:
            target.add(name)  # NAME[key] = value
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _collect_reads(const, found, changed, changed_attrs)
