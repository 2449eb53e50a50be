"""Why a call recomputes: what differs between it and the nearest stored entry of its function.

Every entry's header records a digest per argument (``arg_digests``) and per dependency
(``dependencies``: code of the function and the user code it reaches, library versions, the
values of the globals it read), and the key format they were made under (``key_format``).
Explaining a miss is comparing those records, so it needs no value loaded and no code run.
Digests of two key formats never compare: an entry of another format is reported as that alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .header import EntryHeader

__all__ = ["CallRecord", "Explanation", "differences", "explain", "nearest", "same_arguments"]

_BY_KIND = {"function": "function", "class": "class", "library": "library"}
_BEFORE_RECORDED = "ptd-key-2 or earlier"  # the format of a header without ``key_format``


@dataclass(frozen=True)
class CallRecord:
    """What a call's key is made of, as entry headers record it."""

    arg_digests: Mapping[str, str]
    arg_reprs: Mapping[str, str]
    dependencies: tuple[tuple[str, str, str, str], ...]  # (kind, name, where, digest)
    key_format: str | None = None  # None: a header of a format older than ptd-key-3 (it did not record it)

    @classmethod
    def from_header(cls, header: EntryHeader) -> CallRecord:
        return cls(header.arg_digests or {}, header.args, header.dependencies or (), header.key_format)

    def _deps(self) -> dict[tuple[str, str], tuple[str, str]]:
        return {(kind, name): (where, digest) for kind, name, where, digest in self.dependencies}


@dataclass
class Explanation:
    """``f.cache.why(...)``: one line per difference; printed or shown in a notebook as text."""

    function: str
    cached: bool
    reasons: list[str] = field(default_factory=list)
    nearest: str | None = None  # when the nearest entry was made

    def __str__(self) -> str:
        if self.cached:
            return f"{self.function}: this call is cached"
        if self.nearest is None:
            return f"{self.function}: nothing is cached for this function yet"
        head = f"{self.function}: not cached; the nearest entry (computed {self.nearest}) differs in"
        return "\n".join([head, *(f"  - {reason}" for reason in self.reasons or ["(no recorded difference)"])])

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython shows the text, not a repr
        printer.text(str(self))


def differences(now: CallRecord, then: CallRecord) -> list[str]:
    """What changed from ``then`` (a stored entry) to ``now`` (the current call), most telling first."""
    if then.key_format != now.key_format:  # every digest differs: none of them says anything
        return [_key_format_change(then.key_format, now.key_format)]
    reasons = []
    for name in sorted(set(now.arg_digests) | set(then.arg_digests)):
        if now.arg_digests.get(name) != then.arg_digests.get(name):
            before, after = then.arg_reprs.get(name, "(absent)"), now.arg_reprs.get(name, "(absent)")
            reasons.append(f"argument {name}: {before} -> {after}")
    old, new = then._deps(), now._deps()
    for kind, name in sorted(set(old) | set(new), key=lambda k: (k[0] not in _BY_KIND, k)):
        was, is_ = old.get((kind, name)), new.get((kind, name))
        if was is not None and is_ is not None and was[1] == is_[1]:
            continue
        reasons.append(_describe(kind, name, was, is_))
    return reasons


def _key_format_change(was: str | None, now: str | None) -> str:
    older = was is None or _format_number(was) < _format_number(now)
    stored = f"stored under {'an older' if older else 'another'} key format ({was or _BEFORE_RECORDED})"
    return f"{stored}; this version computes keys as {now}"


def _format_number(name: str | None) -> int:
    """3 for ``ptd-key-3``; -1 for a name of no such form."""
    number = (name or "").rpartition("-")[2]
    return int(number) if number.isdigit() else -1


def _describe(kind: str, name: str, was: tuple[str, str] | None, is_: tuple[str, str] | None) -> str:
    if was is None:
        return f"now uses {kind} `{name}`" + (f" ({is_[0]})" if is_ and is_[0] else "")
    if is_ is None:
        return f"no longer uses {kind} `{name}`"
    if kind == "library":
        return f"library {name}: {was[0]} -> {is_[0]}"
    if kind in ("function", "class"):
        return f"{kind} `{name}` in {is_[0]} changed"
    # values: `where` reads "<module> = <short repr>"
    before, after = was[0].partition(" = ")[2], is_[0].partition(" = ")[2]
    return f"{kind} {name}: {before} -> {after}" if before != after else f"{kind} {name} changed"


def nearest(now: CallRecord, headers: Iterable[EntryHeader]) -> EntryHeader | None:
    """The stored header sharing the most argument and dependency digests with the call."""
    best, best_score = None, -1
    for header in headers:
        then = CallRecord.from_header(header)
        score = sum(now.arg_digests.get(k) == v for k, v in then.arg_digests.items())
        new = now._deps()
        score += sum(new.get(k, (None, None))[1] == v[1] for k, v in then._deps().items())
        if score > best_score or (score == best_score and best is not None and _created(header) > _created(best)):
            best, best_score = header, score
    return best


def same_arguments(now: CallRecord, header: EntryHeader) -> bool:
    then = header.arg_digests or {}
    return bool(then) and dict(then) == dict(now.arg_digests)


def explain(function: str, now: CallRecord, headers: Iterable[EntryHeader]) -> Explanation:
    found = nearest(now, headers)
    if found is None:
        return Explanation(function, cached=False)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(_created(found))) if _created(found) else "at an unknown time"
    return Explanation(function, False, differences(now, CallRecord.from_header(found)), when)


def _created(header: EntryHeader) -> float:
    return header.created or 0.0
