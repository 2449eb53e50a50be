"""Static analysis of a notebook cell for the ``%%persist`` cell magic.

The magic keys a cell on its normalized code plus the values of the names the
cell *reads* from the notebook namespace, and stores the names the cell
*assigns*.  Leaving a name out of ``reads`` would return a stale cached answer,
while an extra name only costs a cache miss, so every rule here errs towards
reporting a read.
"""

from __future__ import annotations

import ast
import itertools
import re
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["CellNames", "analyze_cell", "normalized_cell_source", "to_python"]


@dataclass(frozen=True)
class CellNames:
    """What a cell takes from and leaves in the namespace.

    ``reads`` over-approximates (a missing read is a stale-cache bug).
    ``assigns`` and ``deletes`` are the names the cell *may* bind or remove:
    a conditional binding is still listed, so the magic must check which
    names actually exist after running the cell.
    """

    reads: frozenset[str]  # names whose value may come from the namespace before the cell runs
    assigns: tuple[str, ...]  # top-level names the cell binds, in first-binding order, no duplicates
    deletes: frozenset[str]  # top-level names removed by `del` (and not re-bound afterwards)
    # the part of `reads` read only after the cell itself may have bound them, and never bound
    # again after: `for i in ...: ...` then `print(i)`. A run that does bind such a name (the loop
    # ran) never reads the namespace's value of it; a run that does not, reads it.
    reads_after_binding: frozenset[str] = frozenset()


def to_python(source: str) -> str:
    """Turn IPython syntax (``%magic``, ``!cmd``, ``obj?``) into plain Python.

    The magic sees the raw cell text; ``ast`` only understands Python.  Without
    IPython there is no IPython syntax to translate.
    """
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return source
    return TransformerManager().transform_cell(source)


def normalized_cell_source(source: str) -> str:
    """A cache-key form of the code: blind to comments, layout and docstrings.

    Docstrings of functions/classes defined in the cell are dropped (editing
    them cannot change a result); a leading string expression of the cell is
    kept because the notebook displays it.  Raises SyntaxError.
    """
    tree = ast.parse(to_python(source))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _is_docstring(node.body[0]):
            del node.body[0]
        magic = _ipython_call(node)
        if magic and magic[0] in ("run_line_magic", "run_cell_magic") and magic[1][0] in _CODE_MAGICS:
            try:  # `%time f(x)  # comment` carries its code as a string: normalize that too
                node.args[-1] = ast.Constant(normalized_cell_source(magic[1][-1]))
            except SyntaxError:
                pass  # e.g. `%timeit -n 3 f(x)`: keep the text
    return ast.unparse(tree)  # unlike ast.dump, the same text on every Python version


def analyze_cell(source: str) -> CellNames:
    """Names the cell reads from, binds in and deletes from the namespace.

    Raises SyntaxError when the (IPython-translated) cell is not valid Python.
    """
    return _Analyzer().run(ast.parse(to_python(source)))


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

# IPython line/cell magics whose argument is Python code, mapped to whether
# that code runs in the user namespace (True) or in a throw-away function
# scope (False: %timeit compiles the statement into a function).
_CODE_MAGICS = {"time": True, "prun": True, "capture": True, "timeit": False}
_IPYTHON_CALLS = {"run_line_magic", "run_cell_magic", "system", "getoutput"}
_IDENTIFIER = re.compile(r"[^\W\d]\w*")


def _ipython_call(node: ast.AST) -> tuple[str, list[str]] | None:
    """``("run_line_magic", ["time", "f(x)"])`` for ``get_ipython().run_line_magic('time', 'f(x)')``."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _IPYTHON_CALLS
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
        and node.args
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
    ):
        return node.func.attr, [a.value for a in node.args]
    return None


def _outer_parts(node: ast.AST) -> list[ast.AST]:
    """Parts of a scope-creating node that run in the enclosing scope at definition time."""
    if isinstance(node, ast.ClassDef):
        parts = [*node.decorator_list, *node.bases, *node.keywords]
    elif isinstance(node, _COMPREHENSIONS):
        return [node.generators[0].iter]
    else:  # FunctionDef, AsyncFunctionDef, Lambda
        a = node.args
        parts = [*getattr(node, "decorator_list", ()), *a.defaults, *(d for d in a.kw_defaults if d)]
        if not isinstance(node, ast.Lambda):
            args = (*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg)
            parts += [x.annotation for x in args if x is not None and x.annotation is not None]
            parts += [node.returns] if node.returns else []
    return parts + list(getattr(node, "type_params", ()))  # 3.12+: over-approximates


def _params(args: ast.arguments) -> set[str]:
    every = (*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg)
    return {a.arg for a in every if a is not None}


def _scope_bindings(nodes: list[ast.AST]) -> tuple[set[str], dict[str, None], set[str]]:
    """Names bound, declared ``global`` (ordered) and declared ``nonlocal`` directly in one scope.

    Python decides at compile time that a name bound anywhere in a function
    body is local to it, so a flow-insensitive scan is the right model there.
    Nested scopes contribute their name and the parts evaluated outside them
    (and walrus targets inside comprehensions, which bind in this scope).
    """
    bound: set[str] = set()
    declared_global: dict[str, None] = {}
    declared_nonlocal: set[str] = set()
    todo = list(reversed(nodes))
    while todo:
        node = todo.pop()
        children: list[ast.AST]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            if not isinstance(node, ast.Lambda):
                bound.add(node.name)
            children = _outer_parts(node)
        elif isinstance(node, _COMPREHENSIONS):  # everything but the comprehension's own targets
            children = [e for g in node.generators for e in (g.iter, *g.ifs)]
            children += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        else:
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                bound.add(node.id)
            elif isinstance(node, ast.alias) and node.name != "*":
                bound.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
                bound.add(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                bound.add(node.rest)
            elif isinstance(node, ast.Global):
                declared_global.update(dict.fromkeys(node.names))
            elif isinstance(node, ast.Nonlocal):
                declared_nonlocal.update(node.names)
            children = list(ast.iter_child_nodes(node))
        todo.extend(reversed(children))
    return bound, declared_global, declared_nonlocal


def _deleted(nodes: list[ast.AST]) -> set[str]:
    """Names a block may unbind: ``del`` targets and ``except ... as`` names."""
    names = set()
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Del):
                names.add(n.id)
            elif isinstance(n, ast.ExceptHandler) and n.name:
                names.add(n.name)
    return names


class _Scope:
    def __init__(self, kind: str, parent: _Scope | None, local=(), declared_global=()):
        self.kind = kind  # "module" | "class" | "function" | "comprehension"
        self.parent = parent
        # module/class: names definitely bound at this point of the flow;
        # comprehension: names a walrus definitely bound earlier in the current iteration
        self.bound: set[str] = set()
        self.local = set(local)  # function/comprehension: its local names (static)
        self.globals = set(declared_global)


class _Analyzer:
    """Walks the cell in execution order, tracking which top-level names are definitely bound.

    Module and class bodies run top to bottom once, so they are analysed
    flow-sensitively: a load reads the namespace unless an earlier
    unconditional statement bound the name.  Nested function bodies are
    analysed at their definition point: they cannot run before it, so a
    global the cell definitely bound before the ``def`` is not a read.
    """

    def __init__(self) -> None:
        self.module = self.scope = _Scope("module", None)
        self.reads: set[str] = set()
        self.assigns: dict[str, None] = {}  # ordered set
        self._clock = itertools.count()
        self._last_bind: dict[str, int] = {}
        self._last_del: dict[str, int] = {}
        # reads_after_binding: top-level names the cell may have bound so far, when each was first
        # read only after such a binding, the names read any other way, and those a nested scope
        # declares `global` (bound whenever it is called)
        self._maybe_bound: set[str] = set()
        self._first_late_read: dict[str, int] = {}
        self._plain_reads: set[str] = set()
        self._declared_global: set[str] = set()
        self._loop_start: int | None = None  # clock at the start of the top-level loop being visited

    def run(self, tree: ast.Module) -> CellNames:
        self._visit_all(tree.body)
        deletes = {n for n, t in self._last_del.items() if t > self._last_bind.get(n, -1)}
        return CellNames(
            reads=frozenset(self.reads),
            assigns=tuple(n for n in self.assigns if n not in deletes),
            deletes=frozenset(deletes),
            reads_after_binding=frozenset(
                name for name, first in self._first_late_read.items()
                if name not in self._plain_reads and name not in self._declared_global
                and self._last_bind.get(name, -1) < first and self._last_del.get(name, -1) < first
            ),
        )

    def _read(self, name: str) -> None:
        """A read of the namespace's value, unless the cell bound the name first (tracked for reads_after_binding)."""
        self.reads.add(name)
        if self.scope is self.module and name in self._maybe_bound:
            # in a loop, a binding anywhere in it may come after this read (in the next iteration)
            when = self._loop_start if self._loop_start is not None else next(self._clock)
            self._first_late_read.setdefault(name, when)
        else:
            self._plain_reads.add(name)

    # -- name events -------------------------------------------------------

    def _load(self, name: str) -> None:
        scope, own = self.scope, True
        while scope is not self.module:
            if name in scope.globals:
                break
            if scope.kind == "class" and own and name in scope.bound:
                return  # class bodies see their own namespace; nested scopes do not
            if scope.kind in ("function", "comprehension") and name in scope.local:
                return
            if scope.kind == "comprehension" and name in scope.bound:
                return  # bound by a walrus earlier in this iteration, e.g. `[y for x in d if (y := f(x))]`
            scope, own = scope.parent, False
        if name not in self.module.bound:
            self._read(name)

    def _bind(self, name: str, scope: _Scope | None = None, definite: bool = True) -> None:
        scope = scope or self.scope
        if scope is self.module or name in scope.globals:
            self.assigns[name] = None
            self._last_bind[name] = next(self._clock)
            self._maybe_bound.add(name)
            if scope is self.module and definite:
                scope.bound.add(name)
        elif scope.kind == "class":
            scope.bound.add(name)

    def _delete(self, name: str) -> None:
        if self.scope is self.module:
            self._last_del[name] = next(self._clock)
        self.scope.bound.discard(name)

    def _walrus(self, name: str) -> None:
        scope = self.scope
        if scope.kind == "comprehension":
            scope.bound.add(name)  # for the rest of this iteration
        while scope.kind == "comprehension":  # PEP 572: binds in the containing scope
            scope = scope.parent
        self._bind(name, scope, definite=scope is self.scope)

    # -- control flow ------------------------------------------------------

    def _maybe(self, *nodes: ast.AST) -> None:
        """Visit code that may not run (or stop half-way): it adds nothing definite."""
        before = set(self.scope.bound)
        self._visit_all(nodes)
        self.scope.bound &= before

    @contextmanager
    def _enter(self, kind: str, local=(), declared_global=()):
        for name in declared_global:  # the scope may rebind the top-level name when it runs
            self._declared_global.add(name)
            self._bind(name, self.module, definite=False)
            self._load_global(name)
        self.scope = _Scope(kind, self.scope, local, declared_global)
        try:
            yield
        finally:
            self.scope = self.scope.parent

    def _load_global(self, name: str) -> None:
        if name not in self.module.bound:
            self.reads.add(name)
            self._plain_reads.add(name)

    # -- visiting ----------------------------------------------------------

    def _visit_all(self, nodes) -> None:
        for node in nodes:
            self._visit(node)

    def _visit(self, node: ast.AST) -> None:
        method = getattr(self, "_visit_" + type(node).__name__, None)
        if method is not None:
            method(node)
        else:
            self._visit_all(ast.iter_child_nodes(node))

    def _visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        else:
            self._delete(node.id)

    def _visit_Assign(self, node: ast.Assign) -> None:
        self._visit(node.value)
        self._visit_all(node.targets)

    def _visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)
        self._visit(node.value)
        self._visit(node.target)

    def _visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._visit(node.annotation)
        if node.value is not None:
            self._visit(node.value)
        if node.value is not None or not isinstance(node.target, ast.Name):
            self._visit(node.target)  # a bare `x: int` binds nothing

    def _visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._visit(node.value)
        self._walrus(node.target.id)

    def _visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._bind(alias.asname or alias.name.split(".")[0])

    def _visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":  # star imports are not tracked
                self._bind(alias.asname or alias.name)

    def _visit_Global(self, node: ast.Global) -> None:
        pass  # at top level a no-op; inside scopes collected by _scope_bindings

    _visit_Nonlocal = _visit_Global

    def _visit_If(self, node: ast.If) -> None:
        self._visit(node.test)
        before = set(self.scope.bound)
        self._visit_all(node.body)
        after_body, self.scope.bound = self.scope.bound, before
        self._visit_all(node.orelse)
        self.scope.bound &= after_body

    def _visit_IfExp(self, node: ast.IfExp) -> None:
        self._visit(node.test)
        self._maybe(node.body)
        self._maybe(node.orelse)

    def _visit_BoolOp(self, node: ast.BoolOp) -> None:
        self._visit(node.values[0])
        self._maybe(*node.values[1:])

    def _visit_For(self, node: ast.For) -> None:
        self._visit(node.iter)
        with self._loop():
            self._maybe(node.target, *node.body)
            self._maybe(*node.orelse)

    _visit_AsyncFor = _visit_For

    def _visit_While(self, node: ast.While) -> None:
        with self._loop():
            self._visit(node.test)  # runs at least once: a walrus here is definite
            self._maybe(*node.body)
            self._maybe(*node.orelse)

    @contextmanager
    def _loop(self):
        outermost = self._loop_start is None and self.scope is self.module
        if outermost:
            self._loop_start = next(self._clock)
        try:
            yield
        finally:
            if outermost:
                self._loop_start = None

    def _visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self._visit(item.context_expr)
            if item.optional_vars is not None:
                self._visit(item.optional_vars)
        self._maybe(*node.body)  # a context manager may swallow an exception mid-body

    _visit_AsyncWith = _visit_With

    def _visit_Try(self, node: ast.Try) -> None:
        entry = set(self.scope.bound)
        self._visit_all(node.body)
        self._visit_all(node.orelse)
        ends = [self.scope.bound]
        for handler in node.handlers:  # may start anywhere in the body
            self.scope.bound = entry - _deleted(node.body)
            if handler.type is not None:
                self._visit(handler.type)
            if handler.name:  # bound for the handler only; Python deletes it afterwards
                self.scope.bound.add(handler.name)
            self._visit_all(handler.body)
            self.scope.bound.discard(handler.name)
            ends.append(self.scope.bound)
        self.scope.bound = set.intersection(*ends)
        if node.finalbody:
            after = self.scope.bound
            self.scope.bound = entry - _deleted([*node.body, *node.handlers, *node.orelse])
            self._visit_all(node.finalbody)
            self.scope.bound |= after - _deleted(node.finalbody)

    _visit_TryStar = _visit_Try

    def _visit_Match(self, node: ast.AST) -> None:
        self._visit(node.subject)
        for case in node.cases:
            self._maybe(case.pattern, *([case.guard] if case.guard else []), *case.body)

    def _visit_MatchAs(self, node: ast.AST) -> None:
        if node.pattern is not None:
            self._visit(node.pattern)
        if node.name:
            self._bind(node.name)

    def _visit_MatchStar(self, node: ast.AST) -> None:
        if node.name:
            self._bind(node.name)

    def _visit_MatchMapping(self, node: ast.AST) -> None:
        self._visit_all([*node.keys, *node.patterns])
        if node.rest:
            self._bind(node.rest)

    # -- nested scopes -----------------------------------------------------

    def _function(self, node: ast.AST, body: list[ast.AST]) -> None:
        self._visit_all(_outer_parts(node))
        if not isinstance(node, ast.Lambda):
            self._bind(node.name)  # bound before the body can ever run (allows recursion)
        bound, declared_global, declared_nonlocal = _scope_bindings(body)
        local = (bound | _params(node.args)) - set(declared_global) - declared_nonlocal
        with self._enter("function", local, declared_global):
            self._visit_all(body)

    def _visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node, node.body)

    _visit_AsyncFunctionDef = _visit_FunctionDef

    def _visit_Lambda(self, node: ast.Lambda) -> None:
        self._function(node, [node.body])

    def _visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._visit_all(_outer_parts(node))
        _, declared_global, _ = _scope_bindings(node.body)
        with self._enter("class", declared_global=declared_global):
            self._visit_all(node.body)
        self._bind(node.name)  # only after the body ran

    def _visit_comprehension_expr(self, node: ast.AST) -> None:
        gens = node.generators
        self._visit(gens[0].iter)
        local = {
            n.id for g in gens for n in ast.walk(g.target)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        with self._enter("comprehension", local):
            for i, g in enumerate(gens):
                if i:
                    self._visit(g.iter)
                self._visit(g.target)
                self._visit_all(g.ifs)
            self._visit_all([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt])

    _visit_ListComp = _visit_SetComp = _visit_DictComp = _visit_GeneratorExp = _visit_comprehension_expr

    def _visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values):  # evaluation order: k1, v1, k2, v2
            if key is not None:
                self._visit(key)
            self._visit(value)

    # -- IPython -----------------------------------------------------------

    def _visit_Call(self, node: ast.Call) -> None:
        magic = _ipython_call(node)
        if magic is None:
            self._visit_all(ast.iter_child_nodes(node))
            return
        self._visit(node.func)  # get_ipython: nothing special
        kind, args = magic
        if kind in ("run_line_magic", "run_cell_magic"):
            name, *args = args
            if name in _CODE_MAGICS:
                *line, code = args
                words = " ".join(line).split()
                if name == "capture" and words and not words[-1].startswith("-"):
                    self._scan(*words[:-1])
                    self._magic_code(code, runs_in_namespace=True)
                    self._bind(words[-1])  # `%%capture [options] var` stores the output in var
                else:
                    self._scan(*words)
                    self._magic_code(code, runs_in_namespace=_CODE_MAGICS[name])
                return
        self._scan(*args)
        self._visit_all(node.keywords)

    def _magic_code(self, code: str, runs_in_namespace: bool) -> None:
        """Analyse the Python code a magic such as ``%time`` runs as part of the cell."""
        try:
            body = ast.parse(to_python(code)).body
        except SyntaxError:  # e.g. `%timeit -n 3 f(x)`: options before the code
            self._scan(code)
            return
        if runs_in_namespace:
            self._visit_all(body)
        else:
            bound, declared_global, _ = _scope_bindings(body)
            with self._enter("function", bound - set(declared_global), declared_global):
                self._visit_all(body)

    def _scan(self, *texts: str) -> None:
        """Shell commands and magic arguments may interpolate any variable (`$x`, `{x}`)."""
        for text in texts:
            for word in _IDENTIFIER.findall(text):
                self._load(word)
