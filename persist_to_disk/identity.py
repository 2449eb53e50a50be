"""Who a function is (its name and home) and which version of its code runs.

Two questions, two functions: ``function_name`` is stable across edits and names
the cache folder; ``code_version`` changes when the function's code changes,
and is part of each key, so an edit makes new entries and reverting the edit
finds the old ones again. Comments, docstrings, formatting and the decorator
line do not count as edits.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import xxhash

__all__ = ["code_version", "function_name", "normalized_source", "unwrap"]

_VERSION_CACHE: dict[Any, str] = {}


def unwrap(func: Callable) -> Callable:
    """The user's function under any of our wrappers (and functools.wraps chains)."""
    return inspect.unwrap(func)


def function_name(func: Callable) -> str:
    """The name a function's folder gets: its qualified name without ``<locals>``."""
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", "function")
    return qualname.replace(".<locals>", "")


def normalized_source(source: str) -> str:
    """The definition re-printed from its AST without docstrings and decorators, so only real code counts.

    ``ast.unparse`` rather than ``ast.dump``: its text does not change between Python
    versions, so upgrading Python does not make every entry a miss.
    """
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = []
    return ast.unparse(tree)


def code_version(func: Callable) -> str:
    """A short digest of the function's normalized code (16 hex chars).

    Falls back to the compiled code when the source cannot be read (a function
    made by ``exec``, say): still exact, but then a Python upgrade counts as an edit.
    """
    if hasattr(func, "__wrapped__"):  # (inspect.unwrap costs ~0.5 µs on every call, even with nothing to unwrap)
        func = unwrap(func)
    code = getattr(func, "__code__", None)
    cache_key = code if code is not None else func
    try:
        return _VERSION_CACHE[cache_key]
    except (KeyError, TypeError):
        pass
    try:
        text = "src:" + normalized_source(inspect.getsource(func))
        if code is not None and code.co_name == "<lambda>":
            # the source of a lambda is its whole line, which another lambda may share
            text += "|" + _code_fingerprint(code)
    except (OSError, TypeError, SyntaxError, IndentationError):
        text = "code:" + (_code_fingerprint(code) if code is not None else repr(func))
    version = xxhash.xxh3_64_hexdigest(text.encode("utf-8"))
    try:
        _VERSION_CACHE[cache_key] = version
    except TypeError:
        pass
    return version


def _code_fingerprint(code: Any) -> str:
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        parts.append(_code_fingerprint(const) if inspect.iscode(const) else repr(const))
    return "|".join(parts)
