"""Manual caching: the seed's ``manual_cache`` and ``get_caller_cache_path``.

The caller's folder is laid out like a decorated function's, so manual entries
sit beside the persisted functions of the same file in the tree and the browser.
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path
from types import FrameType
from typing import Any

from . import keys, layout, trust
from ._state import config
from .header import EntryHeader
from .store import ENOVAL
from .stores import open_store

__all__ = ["get_caller_cache_path", "manual_cache"]


def _caller_folder(frame: FrameType, local: bool) -> Path:
    settings = config.settings()
    filename = frame.f_code.co_filename
    module = frame.f_globals.get("__name__")
    root = settings.project_path or layout.default_project_root(filename)
    parts = layout.source_parts(filename, module, root)
    name = frame.f_code.co_qualname if hasattr(frame.f_code, "co_qualname") else frame.f_code.co_name
    self_obj = frame.f_locals.get("self")
    if self_obj is not None and "." not in name:
        name = f"{type(self_obj).__name__}.{name}"
    name = name.replace(".<locals>", "")
    persist_root = settings.persist_path_local if local else settings.persist_path
    return layout.function_folder(persist_root, root, parts, name)


def _frame(stacklevel: int) -> FrameType:
    frame = inspect.currentframe()
    for _ in range(stacklevel + 1):
        if frame is None or frame.f_back is None:
            break
        frame = frame.f_back
    assert frame is not None
    return frame


def get_caller_cache_path(make_if_necessary: bool = True, *, stacklevel: int = 1, local: bool = False) -> str:
    """The cache folder of the calling function, for files you manage yourself."""
    folder = _caller_folder(_frame(stacklevel), local)
    if make_if_necessary:
        trust.makedirs(str(folder), trust.current_policy())
    return str(folder)


def manual_cache(
    key: str,
    obj: Any = None,
    write: bool = False,
    checkonly: bool = False,
    local: bool = False,
    stacklevel: int = 1,
    alt_root: str | os.PathLike | None = None,
) -> Any:
    """Read (default), write (``write=True``) or check (``checkonly=True``) an entry named ``key``.

    The entry lives in the calling function's cache folder. A read of a missing
    key returns None, as in the seed; use ``checkonly=True`` to tell a cached
    None from a missing one. Writes are atomic, so this is safe across processes.
    """
    if write and checkonly:
        raise ValueError("manual_cache: write=True and checkonly=True cannot be used together")
    name = layout.safe_folder_name(key, setting="manual_cache key") + layout.ENTRY_SUFFIX
    folder = Path(alt_root) if alt_root is not None else _caller_folder(_frame(stacklevel), local)
    settings = config.settings()
    top = folder if alt_root is not None else (settings.persist_path_local if local else settings.persist_path)
    store = open_store(folder, top, settings)
    if write:
        header = EntryHeader(
            func=folder.name, key=key, args={"key": repr(key)}, kind="manual", created=time.time(),
            key_format=keys.key_format_name(),
        )
        store.put(name, obj, header.to_json(), replace=True)
        return obj
    if checkonly:
        return store.contains(name)
    value = store.get(name)
    return None if value is ENOVAL else value

