"""The store seam: one interface for every place entries live, and the factory choosing one.

The decorator, ``%%persist`` and ``manual_cache`` never build a store themselves: they ask
:func:`open_store` for the one serving a folder of the cache tree. A plain ``persist_path``
gives a :class:`LocalBackend` (the entry files of :mod:`persist_to_disk.store`); a URL
(``s3://BUCKET/PREFIX``) gives the backend registered for its protocol, which keeps a local
read-through copy of each entry under this machine's own cache folder. Another fsspec
protocol (``gs``, ``az``) is one :func:`register_store_backend` call away.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ContextManager, Protocol, runtime_checkable

from . import lastread
from .entryfile import CorruptEntry, Entry
from .layout import ENTRY_SUFFIX
from .listing import EntryInfo
from .store import ENOVAL, LocalStore, Missing, read_header_file

__all__ = ["LocalBackend", "Store", "copies_root", "is_url", "load_entry", "open_store", "register_store_backend"]

URL_PATTERN = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://(.*)$")  # two letters at least: not a drive (C://)


@runtime_checkable
class Store(Protocol):
    """Where a folder of entries lives. Keys are '/'-separated paths relative to the folder
    (``17/<digest>.ptd``); values are loaded only by :meth:`load` and :meth:`get`."""

    root: str  # the local folder holding the entries (for a remote store: this machine's copies)

    def load(self, key: str, *, mmap: bool = True) -> Entry | Missing:
        """The entry (value and header) at key, or ENOVAL; UntrustedCacheError if it may not be unpickled.
        ``mmap=False``: a large entry is copied into fresh memory, not mapped copy-on-write."""

    def get(self, key: str) -> Any:
        """The value at key, or ENOVAL."""

    def put(
        self, key: str, value: Any, header: dict[str, Any], *, dumps: Callable[..., bytes] = ..., replace: bool = ...
    ) -> dict[str, Any]:
        """Store atomically; return the header written. Without ``replace``, a backend that can
        create write-once keeps an entry another writer stored first (and serves that one)."""

    def delete(self, key: str) -> int:
        """Remove the entry; the bytes freed (0 if it was not there)."""

    def contains(self, key: str) -> bool:
        """Whether a readable entry is at key (its value is not loaded)."""

    def iter_entries(self, prefix: str = "", *, headers: bool = True) -> Iterator[EntryInfo]:
        """Every entry under prefix, with its header (values not loaded)."""

    def list_folder(self, prefix: str) -> tuple[list[str], list[EntryInfo]]:
        """One level of the tree: the sub-folder names (hidden ones left out) and the entries
        directly in the folder, both sorted by name, headers not read."""

    def fill_headers(self, infos: list[EntryInfo]) -> None:
        """Read the headers of listed entries into them (``error`` set for a corrupt or vanished one)."""

    def tidy(self, prefix: str) -> None:
        """After deletions under prefix: remove dead writers' temp files and the folders left empty."""

    def path_of(self, key: str) -> str:
        """The local file the entry is read from (for a remote store: this machine's copy)."""

    def url_of(self, key: str) -> str:
        """Where the entry lives for everyone sharing the store (a path, or a URL)."""

    def lease(self, key: str, recheck: Callable[[], Any] | None) -> ContextManager[Any]:
        """Compute-once across machines: a context giving ENOVAL while this process holds the key's
        lease (it computes), or the value another holder stored (``recheck`` finds it)."""


def load_entry(store: Store, key: str, *, mmap: bool = True) -> Entry | Missing:
    """``store.load(key)``, with ``mmap=False`` passed only when asked for: a backend registered
    before that option existed keeps serving every function that does not use it."""
    return store.load(key) if mmap else store.load(key, mmap=False)


class LocalBackend(LocalStore):
    """:class:`LocalStore` as a :class:`Store`: a put always replaces, atomically (``os.replace``)."""

    def put(
        self,
        key: str,
        value: Any,
        header: dict[str, Any],
        *,
        dumps: Callable[..., bytes] = pickle.dumps,
        replace: bool = True,
    ) -> dict[str, Any]:
        return super().put(key, value, header, dumps=dumps)

    def url_of(self, key: str) -> str:
        return self.path_of(key)

    def lease(self, key: str, recheck: Callable[[], Any] | None) -> ContextManager[Any]:
        """Nothing to hold: on one host the kernel locks of :mod:`persist_to_disk.locks` do it."""
        return contextlib.nullcontext(ENOVAL)

    def list_folder(self, prefix: str) -> tuple[list[str], list[EntryInfo]]:
        lastread.flush()  # last-read times as this process's hits left them
        top = self.path_of(prefix) if prefix else self.root
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        folders: list[str] = []
        entries: list[EntryInfo] = []
        try:
            with os.scandir(top) as it:
                items = list(it)
        except OSError:
            return folders, entries
        for item in items:
            if item.name.startswith("."):
                continue
            # a symbolic link is never followed: one planted in a shared root could lead a clear out of it
            if item.is_dir(follow_symlinks=False):
                folders.append(item.name)
            elif item.name.endswith(ENTRY_SUFFIX):
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                entries.append(EntryInfo(base + item.name, Path(item.path), st.st_size, st.st_mtime))
        folders.sort()
        entries.sort(key=lambda info: info.key)
        return folders, entries

    def fill_headers(self, infos: list[EntryInfo]) -> None:
        for info in infos:
            if info.header is not None or info.status == "vanished":
                continue
            try:
                info.header = read_header_file(info.path)
                info.status, info.reason = "ok", None
            except FileNotFoundError:
                info.status = "vanished"
            except (OSError, CorruptEntry) as exc:
                info.status, info.reason = "corrupt", str(exc)

    def tidy(self, prefix: str) -> None:
        self.remove_stale_temps(prefix)
        top = self.path_of(prefix) if prefix else self.root
        if os.path.islink(top) or not os.path.isdir(top):
            return
        for folder, _dirs, _files in os.walk(top, topdown=False):  # (not into linked folders)
            with contextlib.suppress(OSError):  # not empty: a writer's temp file, an entry written meanwhile
                os.rmdir(folder)
        parent = os.path.dirname(os.path.normpath(top))
        keep = os.path.normpath(self.root)
        while parent.startswith(keep + os.sep):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)


# protocol -> a function (URL of the folder, its path under the persist path, its local copies, settings) -> Store
BackendFactory = Callable[[str, str, LocalBackend, Any], Store]
_BACKENDS: dict[str, BackendFactory] = {}


def register_store_backend(protocol: str, factory: BackendFactory) -> None:
    """Serve ``<protocol>://...`` persist paths with ``factory``."""
    _BACKENDS[protocol] = factory


def is_url(path: str | os.PathLike) -> bool:
    return URL_PATTERN.match(os.fspath(path)) is not None


def copies_root(url: str, settings_dir: Path) -> Path:
    """This machine's folder of local copies for a store URL: ``<settings dir>/copies/<protocol>/<bucket>/<prefix>``."""
    match = URL_PATTERN.match(url)
    if match is None:
        raise ValueError(f"persist_path={url!r} is not a URL")
    protocol, rest = match.groups()
    parts = [part for part in rest.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"persist_path={url!r} must name a bucket (and a prefix) without '.' or '..'")
    return settings_dir.joinpath("copies", protocol, *parts)


def open_store(folder: str | os.PathLike, persist_root: str | os.PathLike, settings: Any) -> Store:
    """The store serving ``folder``, a folder of the tree under ``persist_root``.

    When ``persist_root`` is the local copy of a remote ``persist_path``, the folder is served
    by that URL's backend, with the local folder as its read-through copy.
    """
    local = LocalBackend(folder, fsync=settings.fsync, trust_root=persist_root)
    url = getattr(settings, "remote_url", None)
    if url is None or os.path.normpath(os.fspath(persist_root)) != os.path.normpath(str(settings.persist_path)):
        return local
    protocol = URL_PATTERN.match(url).group(1)  # type: ignore[union-attr]  # checked when the setting was read
    if protocol not in _BACKENDS:
        _load_builtin_backends()
    factory = _BACKENDS.get(protocol)
    if factory is None:
        raise ValueError(
            f"persist_path={url!r}: no store backend for {protocol}:// (known: {', '.join(sorted(_BACKENDS))})"
        )
    rel = os.path.relpath(os.fspath(folder), os.fspath(persist_root)).replace(os.sep, "/")
    rel = "" if rel == "." else rel
    return factory(url.rstrip("/") + ("/" + rel if rel else ""), rel, local, settings)


def _load_builtin_backends() -> None:
    """Import the object-store backend on first use: its fsspec import costs ~0.2 s, paid only by remote users."""
    importlib.import_module(f"{__package__}.objectstore")  # registers s3
