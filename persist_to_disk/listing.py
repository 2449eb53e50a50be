"""The listing record: one entry as every listing shows it, its value never loaded.

One record for the stores (``iter_entries``), the catalog, the CLI, the panel and
``f.cache.entries()``: a store fills in where the entry is and its header; the catalog
adds which function folder it belongs to and whether it is of the current code version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .header import EntryHeader, EntryKind, header_of
from .layout import ENTRY_SUFFIX
from .readable import call_text, function_label

__all__ = ["EntryInfo", "EntryStatus", "Totals"]

EntryStatus = Literal["ok", "corrupt", "vanished"]
"""An entry as listed: its header read (or not asked for), unreadable, or gone since it was listed."""


@dataclass
class EntryInfo:
    """An entry as listed: where it is, its size and last-read time, and its header."""

    key: str  # the path relative to the store's root, '/'-separated, with the .ptd suffix
    path: Path  # the local file it is read from (for a shared store: this machine's copy, maybe not made yet)
    size: int
    last_read: float  # set on write, refreshed on reads (a file's mtime; an object's last write)
    header: dict[str, Any] | None = None
    status: EntryStatus = "ok"
    reason: str | None = None  # why it is corrupt
    current: bool | None = None  # of the current code version? None: unknown, or no version (manual)
    function_folder: Path | None = None  # set by the catalog
    _record: EntryHeader | None = field(default=None, init=False, repr=False, compare=False)
    _record_of: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def digest(self) -> str:
        return self.path.name[: -len(ENTRY_SUFFIX)]

    @property
    def error(self) -> str | None:
        """What the CLI and the panel say of an entry that is not "ok": "vanished", or "corrupt: <why>"."""
        if self.status == "corrupt":
            return f"corrupt: {self.reason}"
        return None if self.status == "ok" else self.status

    @property
    def record(self) -> EntryHeader | None:
        """The header as a typed record; None when unread or not one this version can read."""
        if self._record_of is not self.header:  # parsed once per header read
            self._record, self._record_of = header_of(self.header), self.header
        return self._record

    @property
    def args(self) -> dict[str, str]:
        return dict(self.record.args) if self.record else {}

    @property
    def names(self) -> list[str] | None:
        """The variables a ``%%persist`` cell entry holds (None for a function's entry)."""
        names = self.record.names if self.record else None
        return list(names) if names is not None else None

    @property
    def dependencies(self) -> list[tuple[str, str, str]]:
        """What the result depends on besides its arguments, as the key recorded it:
        ``(kind, name, where)``, e.g. ``("global", "SCALE", "__main__ = 3")``."""
        rows = self.record.dependencies if self.record else None
        return [(kind, name, where) for kind, name, where, _digest in rows or ()]

    @property
    def args_text(self) -> str:
        """The call in readable form: ``dataset='MNIST', lr=0.001``; a cell's adds what it holds
        (``window=3 → X, summary``)."""
        return call_text(self.args, self.names)

    @property
    def func(self) -> str | None:
        return self.record.func if self.record else None

    @property
    def owner(self) -> str:
        """The function or cell the entry belongs to, as the panel and the CLI name it (``train()``,
        ``cell features``); ``?`` when the header cannot be read."""
        return function_label(self.kind, self.func or "?") if self.record is not None else "?"

    @property
    def created(self) -> float | None:
        return self.record.created if self.record else None

    @property
    def compute_seconds(self) -> float | None:
        return self.record.compute_seconds if self.record else None

    @property
    def code_version(self) -> str | None:
        return self.record.code_version if self.record else None

    @property
    def key_format(self) -> str | None:
        return self.record.key_format if self.record else None

    @property
    def kind(self) -> EntryKind | Literal["unknown"]:
        """ "function", "cell" or "manual" ("unknown" when the header cannot be read)."""
        return self.record.kind if self.record is not None else "unknown"

    def matches(self, text: str) -> bool:
        """Whether ``text`` (case-insensitive) occurs in the arguments' readable form."""
        return not text or text.lower() in self.args_text.lower()


@dataclass
class Totals:
    entries: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.entries += 1
        self.bytes += size
