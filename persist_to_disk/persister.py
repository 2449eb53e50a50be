"""The decorator: ``@ptd.persistf(...)`` turns a function into a disk-cached one.

One straight line per call::

    bind arguments -> key (function + code version + canonical arguments)
    -> where (settings read now) -> store.load -> hit: return
    -> miss: lock -> load again -> compute -> store.put -> unlock -> return
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import settings_dir
from . import fingerprint, identity, keys, layout, locks, miss, stores, why
from .binding import bind_simple, from_var_keyword, simple_parameters
from .cachehandle import CacheHandle, call_record
from .options import Options, check_options, setting_names
from ._state import config
from .errors import CacheWarning, NotCachedError, UnhashableArgumentError
from .header import EntryHeader, header_of
from .store import ENOVAL, LocalStore
from .stores import Store, load_entry
from .switches import CACHE, NOCACHE, READONLY, RECACHE, Switch, as_switch
from .writing import UnloadableValue

__all__ = ["PersistedFunction", "persistf"]

logger = logging.getLogger("persist_to_disk")

@dataclass(frozen=True)
class Origin:
    """Where a function pickled by value was caching in the process that sent it."""

    project_root: str
    source_parts: tuple[str, ...]
    persist_path: str
    persist_path_local: str
    remote_url: str | None = None  # persist_path was this store (persist_path: the sender's local copies)


@dataclass(slots=True)
class Call(miss.ResolvedCall):
    """One call of a decorated function, resolved; its arguments and fingerprint make the header."""

    groups: tuple[str, ...]  # the key's groupby folders, outermost first (one per Options.groupby)
    named: dict[str, Any]
    fingerprint: fingerprint.Fingerprint | None  # None: dependencies not tracked (pinned, or switched off)
    arg_digests: dict[str, bytes] | None  # the digests the key holds (scalars are fed whole); None with 'json'


class PersistedFunction:
    """A function whose results are cached on disk. ``f.cache`` browses and invalidates them."""

    def __init__(self, func: Callable, options: Options) -> None:
        check_options(func, options)
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self._func = func
        self._options = options
        self._signature = inspect.signature(func)
        self._simple = simple_parameters(self._signature)
        self._var_keyword = next(  # the **kwargs parameter's name, if any (looked up once, not per call)
            (p.name for p in self._signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        self._is_async = inspect.iscoroutinefunction(func)
        self._name = identity.function_name(func)
        if options.version is None:
            # read the source now, while it is the code that runs: an edit saved to the file later
            # (without a re-import) must not label this code's results with the edited version
            identity.code_version(func)
        # the folder already names the source file; the key names the function, not its module,
        # so `python -m pkg.mod` (module __main__) and `import pkg.mod` share entries
        self._identity = self._name.encode()
        self._prefix: tuple[str, bytes] = ("", b"")  # (code version, the key prefix made from it)
        self._source_file = _source_file(func)
        # when unpickled by value: the code version where the source was readable (a worker has no
        # notebook cell source to read, so it would derive another version and miss every entry)
        self._carried_version: str | None = None
        # where the process that pickled this function by value cached it: a spawn worker caches
        # into the same tree as the notebook that sent it
        self._origin: Origin | None = None
        self._where: dict[Any, tuple[Store, str, str]] = {}
        self._tracker = fingerprint.Tracker(func, frozenset(options.ignore_globals))
        self.cache = CacheHandle(self)

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        switch = self._pop_switch(kwargs)
        if self._is_async:
            return self._call_async(switch, args, kwargs)
        if switch is NOCACHE:
            return self._func(*args, **kwargs)
        call = self._resolve(args, kwargs)
        if switch is not RECACHE:
            value = self._lookup(call, switch)
            if value is not ENOVAL:
                return value
        return self._compute(call, switch, lambda: self._func(*args, **kwargs))

    async def _call_async(self, switch: Switch, args: tuple, kwargs: dict) -> Any:
        if switch is NOCACHE:
            return await self._func(*args, **kwargs)
        call = self._resolve(args, kwargs)
        if switch is not RECACHE:
            value = self._lookup(call, switch)
            if value is not ENOVAL:
                return value

        async def compute() -> tuple[Any, bool]:
            start = time.perf_counter()
            value = await self._func(*args, **kwargs)
            return value, self._store(call, value, time.perf_counter() - start, replace=switch is RECACHE)

        async def unlocked(exc: OSError) -> Any:
            self._warn_unlocked(call, exc)
            return await self._func(*args, **kwargs)

        return await miss.compute_once_async(
            *call.lock_scopes,
            recheck=None if switch is RECACHE else lambda: self._recheck(call),
            compute=compute,
            unlocked=unlocked,
            lease=functools.partial(call.store.lease, call.key),
        )

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """Methods: bind like a function, so ``self`` is an argument of the key."""
        if instance is None:
            return self
        return functools.partial(self, instance)

    def _pop_switch(self, kwargs: dict) -> Switch:
        per_call = kwargs.pop(self._options.switch_kwarg, None)
        if self._options.cache is not None:
            return self._options.cache
        if per_call is None:
            return CACHE
        return as_switch(per_call, setting=self._options.switch_kwarg)

    def _lookup(self, call: Call, switch: Switch) -> Any:
        entry = load_entry(call.store, call.key, mmap=self._options.mmap)
        if entry is not ENOVAL:
            return entry.value  # type: ignore[union-attr]
        for alt in self._options.alt_dirs:
            alt_entry = LocalStore(alt).load(call.key, mmap=self._options.mmap)
            if alt_entry is not ENOVAL:
                self._put(call, alt_entry.value, dict(alt_entry.header))  # type: ignore[union-attr]
                return alt_entry.value  # type: ignore[union-attr]
        if switch is READONLY:
            raise NotCachedError(
                f"{self._name}: no cached result for this call (READONLY); expected at {call.path}",
                path=str(call.path),
            )
        return ENOVAL

    def _warn_unlocked(self, call: Call, exc: OSError) -> None:
        """A read-only or vanished cache folder: the user still gets the result, uncached."""
        _warn(f"cannot lock in {call.persist_root} ({exc}); {self._name} runs without the cache")

    def _recheck(self, call: Call) -> Any:
        entry = load_entry(call.store, call.key, mmap=self._options.mmap)
        return entry if entry is ENOVAL else entry.value  # type: ignore[union-attr]

    def _compute(self, call: Call, switch: Switch, run: Callable[[], Any]) -> Any:
        def compute() -> tuple[Any, bool]:
            start = time.perf_counter()
            value = run()
            return value, self._store(call, value, time.perf_counter() - start, replace=switch is RECACHE)

        def unlocked(exc: OSError) -> Any:
            self._warn_unlocked(call, exc)
            return run()

        return miss.compute_once(
            *call.lock_scopes,
            recheck=None if switch is RECACHE else lambda: self._recheck(call),
            compute=compute,
            unlocked=unlocked,
            lease=functools.partial(call.store.lease, call.key),
        )

    def _store(self, call: Call, value: Any, seconds: float, *, replace: bool = False) -> bool:
        record = call_record(call)
        header = EntryHeader(
            func=self._name,
            module=getattr(self._func, "__module__", None),
            key=call.digest,
            args=record.arg_reprs,
            code_version=call.code_version,
            created=time.time(),
            compute_seconds=round(seconds, 6),
            groupby=self._groupby_header(call),  # where the function folder ends (for the browser and CLI)
            dependencies=record.dependencies,
            arg_digests=record.arg_digests,
            key_format=record.key_format,
        )
        if _interactive():
            self._say_what_changed(call, record)
        return self._put(call, value, header.to_json(), replace=replace)

    def _say_what_changed(self, call: Call, record: why.CallRecord) -> None:
        """In a notebook: a recompute that replaces an entry of the same arguments says why, in one line."""
        same = []
        for scanned, info in enumerate(call.store.iter_entries()):
            if scanned >= _SCAN_FOR_WHY:  # a big folder: not worth a slower miss
                return
            header = header_of(info.header)
            if header is not None and info.key != call.key and why.same_arguments(record, header):
                same.append(header)
        found = why.nearest(record, same)
        reasons = why.differences(record, why.CallRecord.from_header(found)) if found is not None else []
        if reasons:
            print(f"[persist] {self._name}: recomputing, " + "; ".join(reasons))

    def _groupby_header(self, call: Call) -> tuple[tuple[str, str], ...]:
        """(groupby argument(s), folder) per groupby folder of the call's key."""
        labels = ["+".join((g,) if isinstance(g, str) else g) for g in self._options.groupby]
        return tuple(zip(labels, call.groups))

    def _put(self, call: Call, value: Any, header: dict, *, replace: bool = False) -> bool:
        """Store a result; ``replace`` (a RECACHE) overwrites an entry a write-once store would keep."""
        try:
            call.store.put(call.key, value, header, replace=replace)
            return True
        except UnloadableValue:  # its entry failed to unpickle, and that was reported: not stored again
            return False
        except Exception as exc:  # unpicklable result, disk full, read-only folder
            _warn(f"result of {self._name} was not cached: {type(exc).__name__}: {exc}")
            return False

    # -- keys and places --------------------------------------------------------------------------
    def _named_arguments(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """Arguments by name, defaults applied, skipped ones removed."""
        named = bind_simple(self._simple, args, kwargs) if self._simple is not None else None
        if named is None:  # not a plain signature, or a call that binding must explain (TypeError)
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self._name}(): {exc}") from None
            bound.apply_defaults()
            named = dict(bound.arguments)
        skip = self._options.skip_kwargs
        if skip:
            if self._var_keyword is not None:
                named[self._var_keyword] = {k: v for k, v in named[self._var_keyword].items() if k not in skip}
            for name in skip:
                named.pop(name, None)
        return named

    def code_version(self) -> str:
        """The version of the code a result comes from: this function's and that of the user code it reaches."""
        return self._version(self._fingerprint(config.settings()))

    def _fingerprint(self, settings: Any) -> fingerprint.Fingerprint | None:
        if self._options.version is not None:
            return None
        tracking = self._options.track_dependencies
        if tracking is False or (tracking is None and not settings.track_dependencies):
            return None
        return self._tracker.current()

    def _version(self, fp: fingerprint.Fingerprint | None) -> str:
        pinned = self._options.version
        if pinned is not None:
            return f"pinned:{pinned}"
        if self._carried_version is not None:
            return self._carried_version
        return fp.code if fp is not None else identity.code_version(self._func)

    def __ptd_hash__(self) -> tuple:
        """A persisted function read by a cell or passed as an argument: its code and the values it reads."""
        fp = self._fingerprint(config.settings())
        return ("ptd:persisted", self._name, self._version(fp), self._tracker.digest() if fp is not None else "")

    def _resolve(self, args: tuple, kwargs: dict) -> Call:
        named = self._named_arguments(args, kwargs)
        settings = config.settings()
        fp = self._fingerprint(settings)
        version = self._version(fp)
        if version != self._prefix[0]:  # the prefix changes only with the code version: build it once per version
            self._prefix = (version, self._identity + b"\x00" + version.encode())
        prefix = self._prefix[1]
        if self._options.hash_method == "json":
            digest, arg_digests = keys.hash_arguments_json(named, prefix=prefix), None
        else:
            digest, arg_digests = self._digest(named, prefix, fp)
        store, persist_root, folder = self._folder(settings)
        groups = self._group_folders(named) if self._options.groupby else ()
        hashsize = self._options.hashsize or settings.hashsize
        bucket = layout.bucket_of(digest, hashsize)
        key = layout.entry_relpath(groups, bucket, digest)
        granularity = self._options.lock_granularity or settings.lock_granularity
        return Call(store, key, digest, persist_root, version, granularity, folder, groups, named, fp, arg_digests)

    def _digest(self, named: dict[str, Any], prefix: bytes, fp: fingerprint.Fingerprint | None) -> tuple[str, dict[str, bytes]]:
        """The key: the arguments, and the values of the globals the code reads, under the code's version."""
        if fp is None or not fp.values:
            return keys.hash_call(named, prefix=prefix, code_of=fingerprint.code_of)
        try:
            return keys.hash_call(named, prefix=prefix, code_of=fingerprint.code_of, extra=self._tracker.values())
        except UnhashableArgumentError:
            if not self._tracker.mark_unhashable():
                raise  # an argument's fault: the error names it
            return keys.hash_call(named, prefix=prefix, code_of=fingerprint.code_of, extra=self._tracker.values())

    def _group_folders(self, named: dict[str, Any]) -> tuple[str, ...]:
        folders = []
        for group in self._options.groupby:
            names = (group,) if isinstance(group, str) else group
            values = []
            for name in names:
                value = named[name] if name in named else from_var_keyword(self._signature, named, name)
                values.append(value)
            text = "$$".join(str(v) for v in values)
            folders.append(layout.safe_folder_name(text, setting=f"groupby value of {'+'.join(names)}"))
        return tuple(folders)

    def _folder(self, settings: Any) -> tuple[Store, str, str]:
        """(store, persist root, function folder), memoized until a setting or the cwd changes."""
        memo_key = (settings.generation, os.getcwd() if settings.project_path is None else None)
        found = self._where.get(memo_key)
        if found is None:
            if self._origin is not None and self._origin.remote_url is not None and not self._options.local:
                # the sender cached into a shared store: so does this process, through its own local copies
                persist_root = str(stores.copies_root(self._origin.remote_url, settings_dir()))
                settings = settings._replace(remote_url=self._origin.remote_url, persist_path=Path(persist_root))
            elif self._origin is not None:
                persist_root = self._origin.persist_path_local if self._options.local else self._origin.persist_path
            else:
                persist_root = str(settings.persist_path_local if self._options.local else settings.persist_path)
            project_root, parts = self.location(settings)
            folder = layout.function_folder(persist_root, project_root, parts, self._name)
            store = stores.open_store(folder, persist_root, settings)
            found = (store, str(persist_root), str(folder))
            self._where = {memo_key: found}
        return found

    def location(self, settings: Any = None) -> tuple[Path, tuple[str, ...]]:
        """(project root, source path parts): where in the tree this function's folder hangs."""
        if self._origin is not None and (settings is None or settings.project_path is None):
            return Path(self._origin.project_root), self._origin.source_parts
        settings = settings or config.settings()
        if settings.project_path is not None:
            root = settings.project_path
        else:
            root = layout.default_project_root(self._source_file)
        return root, layout.source_parts(self._source_file, getattr(self._func, "__module__", None), root)

    def folder(self) -> Path:
        """This function's cache folder under the current settings."""
        return Path(self._folder(config.settings())[2])

    # -- what f.cache and the cell magic's pickler use -----------------------------------------------
    @property
    def function_name(self) -> str:
        """The name its entries are filed under (``train``, ``Model.fit``)."""
        return self._name

    @property
    def options(self) -> Options:
        """The settings it was decorated with."""
        return self._options

    def store(self) -> Store:
        """The store of this function's entries under the current settings."""
        return self._folder(config.settings())[0]

    def resolve_call(self, args: tuple, kwargs: dict) -> Call:
        """Where the call with these arguments has (or would have) its entry; nothing is run, and a
        switch argument (``cache_switch=...``) is ignored."""
        kwargs = dict(kwargs)
        kwargs.pop(self._options.switch_kwarg, None)
        return self._resolve(args, kwargs)

    @classmethod
    def rebuilt(
        cls, func: Callable, options: Options, code_version: str | None, origin: Origin | None = None
    ) -> PersistedFunction:
        """One unpickled by value: ``code_version`` is its version where the source was readable (a worker,
        or a kernel restoring a cell, cannot read a notebook function's source and would derive another);
        ``origin``: where the process that sent it caches."""
        rebuilt = cls(func, options)
        rebuilt._origin = origin
        if options.version is None:
            rebuilt._carried_version = code_version
        return rebuilt

    # -- pickling (multiprocessing, joblib, Dask) ---------------------------------------------------
    def __reduce__(self) -> Any:
        module = sys.modules.get(getattr(self._func, "__module__", "") or "")
        if module is not None and module.__name__ != "__main__" and getattr(module, self.__qualname__, None) is self:
            return (_import_by_name, (module.__name__, self.__qualname__))
        return (_rebuild, (_dump_function(self._func), self._options, self._current_origin(), self.code_version()))

    def _current_origin(self) -> Origin:
        if self._origin is not None:  # sent on again from a worker: keep the first sender's tree
            return self._origin
        root, parts = self.location()
        settings = config.settings()
        return Origin(
            str(root), tuple(parts), str(settings.persist_path), str(settings.persist_path_local), settings.remote_url
        )

    def __repr__(self) -> str:
        return f"<persisted function {self._name}>"


def _source_file(func: Callable) -> str | None:
    try:
        return inspect.getsourcefile(identity.unwrap(func)) or inspect.getfile(func)
    except TypeError:
        return None


def _dump_function(func: Callable) -> bytes | Callable:
    """By reference when importable, else by value through cloudpickle (notebook functions)."""
    module = getattr(func, "__module__", None)
    if module not in (None, "__main__") and "<locals>" not in func.__qualname__:
        return func
    import cloudpickle

    return cloudpickle.dumps(func)


def _import_by_name(module: str, qualname: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _rebuild(func: bytes | Callable, options: Options, origin: Origin, version: str | None = None) -> PersistedFunction:
    import pickle

    if isinstance(func, bytes):
        func = pickle.loads(func)
    return PersistedFunction.rebuilt(func, options, version, origin)


_SCAN_FOR_WHY = 256  # entries read at most, on a miss in a notebook, to say why it recomputes


def _interactive() -> bool:
    """Whether an IPython shell runs this process (the decorator prints only there)."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


def _warn(message: str) -> None:
    logger.warning(message)
    warnings.warn(message, CacheWarning, stacklevel=4)


def persistf(
    freq: Callable | None = None,
    hashsize: int | None = None,
    skip_kwargs: Sequence[str] | None = None,
    expand_dict_kwargs: Sequence[str] | str | None = None,
    groupby: Sequence[str | Sequence[str]] | None = None,
    switch_kwarg: str = "cache_switch",
    cache: int | None = None,
    lock_granularity: locks.Granularity | None = None,
    hash_method: str = "pickle",
    local: bool = False,
    alt_dirs: Iterable[str | os.PathLike] | None = None,
    *,
    version: str | None = None,
    ignore_globals: Sequence[str] | None = None,
    track_dependencies: bool | None = None,
    mmap: bool = True,
) -> Any:
    """Cache a function's results on disk, keyed by its code, what its code depends on, and its arguments.

    Use as ``@persistf`` or ``@persistf(...)``. See the README for each option;
    ``version="v2"`` pins the code version instead of deriving it from the code and its dependencies;
    ``ignore_globals=["logger"]`` leaves named globals, helpers or closure variables out of the key;
    ``track_dependencies=False`` keys on the function's own code only;
    ``mmap=False`` loads large results into fresh memory instead of mapping them copy-on-write
    (a load then costs about ``np.load``'s time, and rewriting all of a result costs no page faults).
    """
    if expand_dict_kwargs is not None and not isinstance(expand_dict_kwargs, str):
        expand: tuple[str, ...] | str = setting_names(expand_dict_kwargs, "expand_dict_kwargs")
    elif expand_dict_kwargs not in (None, "all"):
        raise ValueError(f"expand_dict_kwargs={expand_dict_kwargs!r} must be a list of names or 'all'")
    else:
        expand = expand_dict_kwargs or ()
    options = Options(
        hashsize=hashsize,
        skip_kwargs=setting_names(skip_kwargs, "skip_kwargs"),
        expand_dict_kwargs=expand,
        groupby=tuple(g if isinstance(g, str) else tuple(g) for g in (groupby or ())),
        switch_kwarg=switch_kwarg,
        cache=None if cache is None else as_switch(cache, setting="cache"),
        lock_granularity=lock_granularity,
        hash_method=hash_method,
        local=bool(local),
        alt_dirs=tuple(os.path.abspath(os.fspath(d)) for d in (alt_dirs or ())),
        version=None if version is None else str(version),
        ignore_globals=setting_names(ignore_globals, "ignore_globals"),
        track_dependencies=None if track_dependencies is None else bool(track_dependencies),
        mmap=mmap,
    )
    if isinstance(groupby, str):
        raise ValueError(f"groupby={groupby!r} must be a list of argument names, e.g. groupby=[{groupby!r}]")
    if callable(freq):  # bare @persistf
        return PersistedFunction(freq, options)
    if freq is not None:
        raise ValueError("freq is not supported; pass options by keyword, e.g. persistf(groupby=[...])")

    def decorate(func: Callable) -> PersistedFunction:
        if not callable(func):
            raise TypeError(f"persistf decorates functions, not {type(func).__name__}")
        return PersistedFunction(func, options)

    return decorate
