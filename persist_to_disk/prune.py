"""Removing entries: deletion through the store, and which entries a prune removes.

Deleting goes through the store (:meth:`Store.delete`): a local entry is unlinked (a reader
that has the file open keeps reading it, a writer replaces the file atomically, so a
concurrent delete never corrupts an entry; at worst the call is computed again); an entry
of a shared store loses its object and this machine's copy.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layout import ENTRY_SUFFIX
from .listing import EntryInfo, Totals
from .readable import format_bytes, plural
from .stores import Store

__all__ = ["Deleted", "PrunePlan", "delete_entries", "last_read_rank", "parse_duration", "parse_size", "plan_prune"]

_CLOCK_SLACK = 60.0  # seconds: a last-read time further ahead than this was stamped by a wrong clock


@dataclass
class Deleted:
    """What a deletion did: entries removed, bytes freed, entries already gone, failures."""

    entries: int = 0
    bytes: int = 0
    missing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        text = f"Deleted {plural(self.entries, 'entry')}, freed {format_bytes(self.bytes)}"
        if self.missing:
            text += f"; {plural(self.missing, 'entry', 'entries')} already gone"
        if self.failed:
            path, why = self.failed[0]
            text += f"; {plural(len(self.failed), 'entry')} could not be deleted ({path}: {why})"
        return text + "."


def delete_entries(
    store: Store,
    root: Path,
    entries: Iterable[EntryInfo | str | os.PathLike],
    *,
    progress: Callable[[int, int], Any] | None = None,
) -> Deleted:
    """Delete entries of the store whose tree is under ``root`` (only ``.ptd`` entries under it)."""
    items = list(entries)
    result = Deleted()
    for i, item in enumerate(items):
        path = Path(os.path.abspath(item.path if isinstance(item, EntryInfo) else os.fspath(item)))
        if progress is not None and i % 500 == 0:
            progress(i, len(items))
        try:
            key = path.relative_to(root).as_posix()
        except ValueError:
            result.failed.append((path, f"not under the persist path {root}"))
            continue
        if not key.endswith(ENTRY_SUFFIX) or path.name.startswith("."):
            result.failed.append((path, "not a cache entry file"))
            continue
        existed = os.path.lexists(path)
        try:
            freed = store.delete(key)
        except OSError as exc:
            result.failed.append((path, exc.strerror or str(exc)))
            continue
        if freed or existed:
            result.entries += 1
            result.bytes += freed
            result.deleted.append(path)
        else:
            result.missing += 1
    if progress is not None:
        progress(len(items), len(items))
    return result


# -------------------------------------------------------------------------------------------- pruning
@dataclass
class PrunePlan:
    delete: list[EntryInfo]
    keep: Totals
    reasons: dict[str, int]  # how many entries each criterion chose

    @property
    def totals(self) -> Totals:
        totals = Totals()
        for entry in self.delete:
            totals.add(entry.size)
        return totals


def plan_prune(
    entries: Iterable[EntryInfo],
    *,
    older_than: float | None = None,
    old_versions: bool = False,
    max_size: int | None = None,
    now: float | None = None,
) -> PrunePlan:
    """Which entries a prune removes; criteria add up.

    ``older_than`` (seconds): entries not read (nor written) for that long.
    ``old_versions``: entries of an older code version than their function's current one, or of another key format
    (see :meth:`Catalog.mark_current`), and unreadable (corrupt) entries, which are never returned.
    ``max_size`` (bytes): then the least recently read entries until what is left fits (a last-read
    time in the future counts as never read: see :func:`last_read_rank`).
    """
    now = time.time() if now is None else now
    chosen: dict[Path, EntryInfo] = {}
    reasons = {"older_than": 0, "old_versions": 0, "max_size": 0}
    pool = [e for e in entries if e.status != "vanished"]
    for entry in pool:
        if older_than is not None and now - entry.last_read > older_than:
            chosen[entry.path] = entry
            reasons["older_than"] += 1
        elif old_versions and (entry.current is False or entry.status == "corrupt"):
            chosen[entry.path] = entry
            reasons["old_versions"] += 1
    rest = sorted((e for e in pool if e.path not in chosen), key=lambda e: last_read_rank(e.last_read, now))
    left = sum(e.size for e in rest)
    if max_size is not None:
        while rest and left > max_size:
            entry = rest.pop(0)
            chosen[entry.path] = entry
            left -= entry.size
            reasons["max_size"] += 1
    return PrunePlan(list(chosen.values()), Totals(len(rest), left), reasons)


def last_read_rank(last_read: float, now: float) -> float:
    """A last-read time to order entries by: one in the future (a wrong clock stamped it) counts as
    never read, since a read brings such a time back to the present (``LocalStore.load``)."""
    return last_read if last_read <= now + _CLOCK_SLACK else 0.0


# --------------------------------------------------------------------------------------------- parsing
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``10G`` -> bytes (binary units: K, M, G, T; ``10GB`` and ``10GiB`` mean the same)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"size {text!r} is not understood; use a number with K, M, G or T, e.g. 10G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_duration(text: str) -> float:
    """``30d`` -> seconds (s, m, h, d, w)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"age {text!r} is not understood; use a number with s, m, h, d or w, e.g. 30d")
    return float(match.group(1)) * _SECONDS[match.group(2).lower()]
