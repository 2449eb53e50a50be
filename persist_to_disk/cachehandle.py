"""``f.cache``: one persisted function's entries, looked at and invalidated without running it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import fingerprint, keys, why
from .errors import NotCachedError
from .header import header_of
from .readable import readable_arguments, short_repr
from .store import ENOVAL, EntryInfo
from .stores import load_entry

if TYPE_CHECKING:
    from .persister import Call, PersistedFunction

__all__ = ["CacheHandle", "call_record"]


def call_record(call: Call) -> why.CallRecord:
    """What the call's key is made of, readable: entry headers keep it, ``why`` compares it."""
    rows: list[tuple[str, str, str, str]] = []
    if call.fingerprint is not None:
        rows = [tuple(dep.as_json()) for dep in call.fingerprint.code_dependencies]  # type: ignore[misc]
        rows += [tuple(dep.as_json()) for dep in fingerprint.describe_values(call.fingerprint, short_repr)]  # type: ignore[misc]
    digests = keys.argument_digests(call.named, call.arg_digests or {})  # why tells which argument differs by them
    return why.CallRecord(digests, readable_arguments(call.named), tuple(rows), keys.key_format_name())


class CacheHandle:
    """``f.cache``: look at and invalidate one function's entries without running it."""

    def __init__(self, owner: PersistedFunction) -> None:
        self._owner = owner

    @property
    def folder(self) -> Path:
        return self._owner.folder()

    def _call(self, args: tuple, kwargs: dict) -> Call:
        return self._owner.resolve_call(args, kwargs)

    def path(self, *args: Any, **kwargs: Any) -> Path:
        """The file the entry of this call lives (or would live) in."""
        return self._call(args, kwargs).path

    def contains(self, *args: Any, **kwargs: Any) -> bool:
        """Whether this call is cached under the current code version (nothing is run)."""
        call = self._call(args, kwargs)
        return call.store.contains(call.key)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """The cached value of this call; NotCachedError when there is none."""
        call = self._call(args, kwargs)
        entry = load_entry(call.store, call.key, mmap=self._owner.options.mmap)
        if entry is ENOVAL:
            raise NotCachedError(
                f"{self._owner.function_name}: this call is not cached (expected at {call.path})", path=str(call.path)
            )
        return entry.value  # type: ignore[union-attr]

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Delete this call's entry; the next call recomputes. True if there was one."""
        call = self._call(args, kwargs)
        return call.store.delete(call.key) > 0

    def why(self, *args: Any, **kwargs: Any) -> why.Explanation:
        """What differs between this call and the nearest stored entry ("global SCALE: 2 -> 3")."""
        call = self._call(args, kwargs)
        name = self._owner.function_name
        if call.store.contains(call.key):
            return why.Explanation(name, cached=True)
        headers = (header_of(info.header) for info in call.store.iter_entries())
        return why.explain(name, call_record(call), (header for header in headers if header is not None))

    def entries(self) -> list[EntryInfo]:
        """Every entry of this function (all code versions), with readable arguments, values not loaded."""
        current = self._owner.code_version()
        found = []
        store = self._owner.store()
        for info in store.iter_entries():
            header = header_of(info.header)
            info.current = header is not None and header.code_version == current
            found.append(info)
        return found

    def clear(self, *, older_versions_only: bool = False) -> int:
        """Delete every entry (or those of older code versions); return how many went."""
        removed = 0
        store = self._owner.store()
        for info in self.entries():
            if older_versions_only and info.current:
                continue
            if store.delete(info.key):
                removed += 1
        return removed

    def __len__(self) -> int:
        return len(self.entries())

    def __repr__(self) -> str:
        return f"<cache of {self._owner.function_name} at {self.folder}>"
