"""A value that records being unpickled: shows whether a payload ever reached pickle.

Tests that must prove a damaged, foreign or untrusted entry was refused *before*
unpickling cache a ``Spy`` and then look at ``UNPICKLED`` (clear it first).
"""

from __future__ import annotations

UNPICKLED: list[str] = []


def _unpickled(tag: str) -> Spy:
    UNPICKLED.append(tag)
    return Spy(tag)


class Spy:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self):
        return (_unpickled, (self.tag,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spy) and other.tag == self.tag

    def __repr__(self) -> str:
        return f"Spy({self.tag!r})"
