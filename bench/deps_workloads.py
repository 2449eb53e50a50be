"""Scenario o: a function whose key tracks three user helpers and two scalar globals, and one with none."""

from __future__ import annotations

SCALE = 3
OFFSET = 0.5


def _square(x):
    return x * x


def _shift(x):
    return x + OFFSET


def _combine(x):
    return _shift(_square(x)) * SCALE


def with_dependencies(x):
    """Reads three helpers (one calling the other two) and, through them, SCALE and OFFSET."""
    return _combine(x) + _square(x) + _shift(x)


def plain(x):
    """Reads nothing but its argument."""
    return x + 1
