"""The ``%%persist`` cell magic: a notebook cell cached on disk like a persisted function.

::

    %%persist [NAME] [--recache | --readonly | --nocache] [--no-mmap]

A cell goes the decorator's way (see docs/design.md): its "function" is the cell (NAME, or a
short digest of its normalized code), its "arguments" the values of the names it reads,
its "value" the names it assigns plus what it printed and displayed::

    parse -> key: normalized source + digests of the names read -> digest
          -> where: <persist_path>/<project>-<id>/<notebook parts>/<NAME or cell-xxxxxxxx>/<bucket>/<digest>.ptd
          -> hit: restore names, replay outputs, one status line, return the last value
          -> miss: lock -> look again -> run the cell (outputs shown live and recorded) -> store -> unlock

An exception in the cell propagates as without the magic and nothing is stored.

Names the cell reads only after it may have bound them itself (``for i in ...`` then
``print(i)``: :attr:`ipython_ext.cells.CellNames.reads_after_binding`) are not part of the
key: otherwise what the first run leaves behind (or an interrupted run, half-way) would be
an input of the second, which would miss. A run that did not bind such a name (the loop ran
zero times) read its value: the entry then records that value's digest, and a later run
hits only when the name still has it.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class, output_can_be_silenced
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from persist_to_disk import bytecode, keys, layout, miss
from persist_to_disk._state import config
from persist_to_disk.errors import CacheWarning, NotCachedError, UnhashableArgumentError
from persist_to_disk.header import EntryHeader, header_of
from persist_to_disk.readable import format_seconds
from persist_to_disk.entryfile import Entry
from persist_to_disk.store import ENOVAL
from persist_to_disk.stores import load_entry, open_store
from persist_to_disk.switches import CACHE, NOCACHE, READONLY, RECACHE, Switch
from persist_to_disk.writing import UnloadableValue

from . import cells, namespace
from .outputs import Display, Output, OutputRecorder, replay

__all__ = ["PersistMagics", "cell_code_version", "cell_digest"]

logger = logging.getLogger("persist_to_disk")

PAYLOAD_VERSION = 1
_ABSENT = object()  # a name not defined in the namespace
STATUS_PREFIX = "[persist]"
_SOURCE_IN_HEADER = 2000  # characters of the cell kept in the entry header (for the browser)


# ------------------------------------------------------------------------------ keys


def cell_code_version(cell: str) -> str:
    """16 hex chars naming the cell's code; comments, formatting and docstrings do not count."""
    return xxhash.xxh3_64_hexdigest(cells.normalized_cell_source(cell).encode("utf-8"))


def cell_digest(name: str | None, code_version: str, input_digests: dict[str, str]) -> str:
    """The entry digest of a cell: its name, its code version and the digests of its inputs."""
    prefix = b"ptd-cell\x00" + (name or "").encode("utf-8") + b"\x00" + code_version.encode()
    return keys.hash_arguments(input_digests, prefix=prefix)


# ------------------------------------------------------------------------------ running the code


class _CellCode:
    """The cell body compiled as IPython would, under a file name linecache and tracebacks know."""

    def __init__(self, shell: Any, cell: str) -> None:
        self.shell = shell
        self.cell = cell
        self.python = shell.transform_cell(cell)
        self.filename = shell.compile.cache(self.python, shell.execution_count, raw_code=cell)
        self.tree = shell.transform_ast(shell.compile.ast_parse(self.python, filename=self.filename))

    def execute(self) -> Any:
        """Run the cell in the user namespace; return its last expression's value (None after ``;``)."""
        __tracebackhide__ = True  # IPython hides this frame in tracebacks
        shell = self.shell
        body = list(self.tree.body)
        last = body.pop() if body and isinstance(body[-1], ast.Expr) else None
        try:
            code = shell.compile(ast.Module(body=body, type_ignores=[]), self.filename, "exec") if body else None
            expr = shell.compile(ast.Expression(body=last.value), self.filename, "eval") if last else None
        except SyntaxError as exc:
            if "await" in str(exc) or "async" in str(exc):
                raise UsageError(
                    "%%persist cannot run top-level await; put the awaiting code in a function and call "
                    "asyncio.run(...) (or drop %%persist for this cell)"
                ) from None
            raise
        if code is not None:
            exec(code, shell.user_global_ns, shell.user_ns)
        if expr is None:
            return None
        value = eval(expr, shell.user_global_ns, shell.user_ns)
        return None if _silenced(self.cell) else value


def _silenced(cell: str) -> bool:
    from IPython.core.displayhook import DisplayHook

    try:
        return bool(DisplayHook.semicolon_at_end_of_expression(cell))
    except Exception:
        return False


# ------------------------------------------------------------------------------ one cell run


@dataclass(slots=True)
class _Plan(miss.ResolvedCall):
    """One run of a cell, resolved; what it reads and how it names itself make the header."""

    label: str  # how messages name the cell
    analysis: cells.CellNames
    readable: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # digest of each name read, before the cell ran
    attrs: dict[str, frozenset[str]] = field(default_factory=dict)  # attributes read off each name
    hidden: dict[str, Any] = field(default_factory=dict)
    # the values of analysis.reads_after_binding before the run (_ABSENT: not defined)
    before: dict[str, Any] = field(default_factory=dict)


class _CellRun:
    def __init__(self, shell: Any, cell: str, name: str | None, switch: Switch, mmap: bool = True) -> None:
        self.shell = shell
        self.cell = cell
        self.name = name
        self.switch = switch
        self.mmap = mmap  # False: large values restored as copies in fresh memory (persistf's mmap=False)
        self.ns = shell.user_ns

    def run(self) -> Any:
        __tracebackhide__ = True
        code = _CellCode(self.shell, self.cell)  # a SyntaxError shows as without the magic
        if self.switch is NOCACHE:
            return code.execute()
        try:
            plan = self._plan(code)
        except UnhashableArgumentError as exc:
            self._warn(f"%%persist {self._label(None)}: {exc}; the cell runs without the cache", code.filename)
            return code.execute()
        if self.switch is not RECACHE:
            entry = self._load(plan)
            if entry is not ENOVAL:
                return self._restore(plan, entry)  # type: ignore[arg-type]
            if self.switch is READONLY:
                raise NotCachedError(
                    f"%%persist {plan.label}: nothing cached for this code and these inputs (--readonly); "
                    f"expected at {plan.path}",
                    path=str(plan.path),
                )

        def recheck() -> Any:
            __tracebackhide__ = True
            entry = self._load(plan)  # another kernel may have run it while we waited
            return entry if entry is ENOVAL else self._restore(plan, entry)

        def compute() -> tuple[Any, bool]:
            __tracebackhide__ = True
            return self._compute(plan, code)

        def unlocked(exc: OSError) -> Any:
            __tracebackhide__ = True
            self._warn(f"%%persist {plan.label}: cannot lock in {plan.persist_root} ({exc}); "
                       "the cell runs without the cache", code.filename)
            return code.execute()

        return miss.compute_once(
            *plan.lock_scopes,
            recheck=None if self.switch is RECACHE else recheck,
            compute=compute,
            unlocked=unlocked,
            lease=functools.partial(plan.store.lease, plan.key),
        )

    # -- where -------------------------------------------------------------------------------------------
    def _label(self, code_version: str | None) -> str:
        if self.name:
            return self.name
        return f"cell-{code_version[:8]}" if code_version else "cell"

    def _plan(self, code: _CellCode) -> _Plan:
        analysis = cells.analyze_cell(self.cell)
        version = cell_code_version(self.cell)
        hidden = getattr(self.shell, "user_ns_hidden", {})
        attrs = dict(bytecode.code_reads(compile(code.tree, code.filename, "exec")).attrs)
        digests = namespace.input_digests(analysis.reads - analysis.reads_after_binding, self.ns, hidden, attrs)
        digest = cell_digest(self.name, version, digests)
        settings = config.settings()
        folder_name = self._label(version)
        if self.name is None:
            folder_name = layout.safe_folder_name(folder_name, setting="cell folder")
        root = settings.project_path or layout.default_project_root(code.filename)
        parts = layout.source_parts(code.filename, "__main__", root)
        persist_root = settings.persist_path
        folder = layout.function_folder(persist_root, root, parts, folder_name)
        store = open_store(folder, persist_root, settings)
        bucket = layout.bucket_of(digest, settings.hashsize)
        key = layout.entry_relpath((), bucket, digest)
        readable = namespace.readable_inputs(analysis.reads, self.ns, hidden)
        before = {name: self.ns.get(name, _ABSENT) for name in analysis.reads_after_binding}
        return _Plan(store, key, digest, str(persist_root), version, settings.lock_granularity, str(folder),
                     self._label(version), analysis, readable, digests, attrs, hidden, before)

    # -- hit ---------------------------------------------------------------------------------------------
    def _load(self, plan: _Plan) -> Entry | Any:
        with namespace.loading_into(self.ns):
            entry = load_entry(plan.store, plan.key, mmap=self.mmap)
        if entry is ENOVAL:
            return ENOVAL
        payload = entry.value  # type: ignore[union-attr]
        if not isinstance(payload, dict) or payload.get("ptd_cell") != PAYLOAD_VERSION:
            return ENOVAL
        stored = payload.get("read_after_binding")
        if stored and stored != self._digests_of(plan, stored):
            return ENOVAL  # the run stored read the namespace's value of a name that now has another
        return entry

    def _digests_of(self, plan: _Plan, names: Any) -> dict[str, str | None]:
        """Digests of the current values of ``names`` (None: cannot be hashed, never equal to a stored one)."""
        digests: dict[str, str | None] = {}
        for name in names:
            try:
                digests[name] = namespace.input_digests([name], self.ns, plan.hidden, plan.attrs).get(name)
            except (UnhashableArgumentError, RecursionError):
                digests[name] = None
        return digests

    def _restore(self, plan: _Plan, entry: Entry) -> Any:
        payload = entry.value
        self.ns.update(payload["names"])
        for name in payload.get("deleted", ()):
            self.ns.pop(name, None)
        print(_status_line(header_of(entry.header), payload.get("unpicklable", ())))
        replay(payload["outputs"])
        return payload["result"] if payload.get("has_result") else None

    # -- miss --------------------------------------------------------------------------------------------
    def _compute(self, plan: _Plan, code: _CellCode) -> tuple[Any, bool]:
        """Run the cell, recording its output; (its result, whether the run was stored)."""
        __tracebackhide__ = True
        with OutputRecorder(self.shell) as recorder:
            start = time.perf_counter()
            result = code.execute()  # an exception leaves here: nothing is stored
            seconds = time.perf_counter() - start
        names = {n: self.ns[n] for n in plan.analysis.assigns if n in self.ns}
        for name in self._changed_in_place(plan):
            names[name] = self.ns[name]  # `df["b"] = ...`, `log.append(...)`: a hit must redo that too
        deleted = sorted(n for n in plan.analysis.deletes if n not in self.ns)
        # a name the run did not bind again was read from the namespace: only that value may hit
        kept = [n for n, value in plan.before.items() if self.ns.get(n, _ABSENT) is value]
        read_after_binding = self._digests_of(plan, kept)
        unhashable = sorted(n for n, digest in read_after_binding.items() if digest is None)
        if unhashable:
            self._warn(f"%%persist {plan.label}: not cached: this run read {', '.join(map(repr, unhashable))}, "
                       "which cannot be hashed into a cache key", code.filename)
            return result, False
        return result, self._store(plan, code, names, deleted, result, recorder.items, seconds, read_after_binding)

    def _changed_in_place(self, plan: _Plan) -> list[str]:
        """Names the cell read and changed without assigning them (their digest moved while it ran)."""
        unassigned = [n for n in plan.inputs if n not in plan.analysis.assigns and n in self.ns]
        try:
            after = namespace.input_digests(unassigned, self.ns, plan.hidden, plan.attrs)
        except UnhashableArgumentError:
            return []
        return sorted(n for n, digest in after.items() if digest != plan.inputs.get(n))

    def _store(self, plan: _Plan, code: _CellCode, names: dict[str, Any], deleted: list[str], result: Any,
               outputs: list[Output], seconds: float, read_after_binding: dict[str, str | None]) -> bool:
        payload: dict[str, Any] = {
            "ptd_cell": PAYLOAD_VERSION,
            # first: unpickling it registers the cell's source before the names' functions are rebuilt
            "source": namespace.SourceFile(code.filename, code.python),
            "names": names,
            "deleted": deleted,
            "result": result,
            "has_result": result is not None,
            "outputs": outputs,
            "unpicklable": [],
            "read_after_binding": read_after_binding,
        }
        header = EntryHeader(
            func=Path(plan.store.root).name,
            kind="cell",
            module="__main__",
            key=plan.digest,
            args=plan.readable,
            code_version=plan.code_version,
            created=time.time(),
            compute_seconds=round(seconds, 6),
            groupby=(),  # the entry's folder is <cell folder>/<bucket>: no groupby folders
            names=tuple(sorted(names)),
            source=self.cell[:_SOURCE_IN_HEADER],
            key_format=keys.key_format_name(),
        )
        cell_names = set(plan.analysis.assigns)

        def dumps(value: Any, **kwargs: Any) -> bytes:
            return namespace.dumps(value, namespace=self.ns, cell_names=cell_names, **kwargs)

        try:
            plan.store.put(plan.key, payload, header.to_json(), dumps=dumps, replace=self.switch is RECACHE)
            return True
        except UnloadableValue:  # its entry failed to unpickle, and that was reported: not stored again
            return False
        except OSError as exc:
            self._warn(f"%%persist {plan.label}: the cell's results were not cached: {exc}", code.filename)
            return False
        except Exception:
            pass  # something cannot be pickled: find out what, and cache the rest
        values = dict(names)
        if result is not None:
            values["<the cell's value>"] = result
        bad = namespace.unpicklable_names(values, namespace=self.ns, cell_names=cell_names)
        for name, why in bad.items():
            value = values[name]
            what = "the cell's last value" if name.startswith("<") else f"variable {name!r}"
            self._warn(
                f"%%persist {plan.label}: {what} ({type(value).__name__}) cannot be pickled and is not cached "
                f"({why}); the cell's other results are cached", code.filename
            )
        payload["names"] = {n: v for n, v in names.items() if n not in bad}
        payload["unpicklable"] = sorted(n for n in bad if not n.startswith("<"))
        header = dataclasses.replace(
            header, names=tuple(sorted(payload["names"])), unpicklable=tuple(payload["unpicklable"])
        )
        if "<the cell's value>" in bad:  # show it again as it looked
            payload["result"], payload["has_result"] = None, False
            with contextlib.suppress(Exception):
                data, metadata = self.shell.display_formatter.format(result)
                if data:
                    payload["outputs"] = [*outputs, Display(data, metadata, None, False)]
        try:
            plan.store.put(plan.key, payload, header.to_json(), dumps=dumps, replace=self.switch is RECACHE)
            return True
        except Exception as exc:
            self._warn(f"%%persist {plan.label}: the cell's results were not cached: {type(exc).__name__}: {exc}",
                       code.filename)
            return False

    @staticmethod
    def _warn(message: str, filename: str) -> None:
        logger.debug(message)
        # warn_explicit without a registry: the same warning shows every time the cell runs
        warnings.warn_explicit(message, CacheWarning, filename, 1, module="persist_to_disk")


def _status_line(header: EntryHeader | None, unpicklable: Any) -> str:
    """``[persist] read from cache (computed <when>, took <how long>)``, from what the header says."""
    parts = []
    if header is not None and header.created is not None:
        parts.append("computed " + time.strftime("%Y-%m-%d %H:%M", time.localtime(header.created)))
    if header is not None and header.compute_seconds is not None:
        parts.append("took " + format_seconds(header.compute_seconds))
    line = f"{STATUS_PREFIX} read from cache" + (f" ({', '.join(parts)})" if parts else "")
    if unpicklable:
        line += f"; not restored (could not be pickled): {', '.join(unpicklable)}"
    return line


# ------------------------------------------------------------------------------ the magic


@magics_class
class PersistMagics(Magics):
    """``%%persist``: cache a cell's variables and outputs on disk."""

    @output_can_be_silenced
    @magic_arguments()
    @argument("name", nargs="?", default=None,
              help="Name of the cell's cache folder (default: cell-<digest of its code>).")
    @argument("--recache", action="store_true", help="Run the cell and overwrite what is cached.")
    @argument("--readonly", action="store_true", help="Only read the cache; fail if this cell is not cached.")
    @argument("--nocache", action="store_true", help="Run the cell without reading or writing the cache.")
    @argument("--no-mmap", dest="mmap", action="store_false",
              help="Restore large values as copies in fresh memory instead of maps of the entry file "
                   "(for values the notebook rewrites in place).")
    @cell_magic
    def persist(self, line: str, cell: str) -> Any:
        """Cache this cell: on a later run with the same code and inputs, restore instead of running.

        The variables the cell assigns, what it prints and what it displays are stored;
        a later run with the same code (comments and formatting aside) and the same values
        of the names it reads restores the variables, shows the outputs again and says so
        in one line. Entries live beside the notebook's persisted functions.
        """
        __tracebackhide__ = True
        args = parse_argstring(self.persist, line)
        chosen = [flag for flag in ("recache", "readonly", "nocache") if getattr(args, flag)]
        if len(chosen) > 1:
            raise UsageError(f"%%persist: use only one of --recache, --readonly, --nocache (got {chosen})")
        switch = {"recache": RECACHE, "readonly": READONLY, "nocache": NOCACHE}[chosen[0]] if chosen else CACHE
        name = args.name
        if name is not None:
            name = name.strip("'\"")
            try:
                name = layout.safe_folder_name(name, setting="%%persist NAME")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return _CellRun(self.shell, cell, name, switch, mmap=args.mmap).run()
