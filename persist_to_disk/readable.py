"""Readable text for people: argument values in entry headers, and the words every face uses.

Never used for keys. The decorator and ``%%persist`` store :func:`short_repr` forms of
arguments in entry headers; the panel, the CLI and ``%%persist``'s status line format
sizes, times and durations, and name functions, cells, groupby folders and code versions,
with the functions here, so the three say the same thing the same way.
"""

from __future__ import annotations

import os
import reprlib
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_REPR", "call_text", "format_bytes", "format_seconds", "format_short_time", "format_time", "function_label",
    "group_label", "plural", "readable_arguments", "short_path", "short_repr", "version_label",
]

MAX_REPR = 200

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8
_repr.maxlevel = 3


def short_repr(value: Any) -> str:
    """A bounded, exception-free repr; arrays and frames show their shape instead of values."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None and not isinstance(value, type):
        return f"{type(value).__name__}(dtype={dtype}, shape={tuple(shape)})"
    if shape is not None and hasattr(value, "columns"):  # a DataFrame
        return f"{type(value).__name__}(shape={tuple(shape)}, columns={_repr.repr(list(value.columns))})"
    try:
        text = _repr.repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__}: repr failed ({type(exc).__name__})>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def readable_arguments(named: Mapping[str, Any]) -> dict[str, str]:
    return {name: short_repr(value) for name, value in named.items()}


# ------------------------------------------------------------------------------------ quantities
def format_bytes(n: float) -> str:
    """``1.5 MiB``: binary units, as ``--max-size 10G`` means 10 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_time(ts: float | None) -> str:
    """``2026-11-24 15:03``, or ``-`` for no time."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def format_short_time(ts: float | None, now: float | None = None) -> str:
    """For a table column, as file managers do: ``15:03`` today, ``Nov 24`` this year, ``2023-11-24`` before."""
    if not ts:
        return "-"
    when, today = time.localtime(ts), time.localtime(now)
    if when.tm_year != today.tm_year:
        return time.strftime("%Y-%m-%d", when)
    return time.strftime("%H:%M" if when.tm_yday == today.tm_yday else "%b %d", when)


def format_seconds(seconds: float | None) -> str:
    """A duration as a person says it: ``45 ms``, ``8.2 s``, ``13 min 32 s``, ``3 h 12 min``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 entry``, ``2,000 entries``."""
    if n == 1:
        return f"1 {word}"
    many = words or (word[:-1] + "ies" if word.endswith("y") else word + "s")
    return f"{n:,} {many}"


def short_path(path: str | os.PathLike) -> str:
    """A path for a narrow place: the home folder as ``~`` (``~/proj``)."""
    text = os.fspath(path)
    home = os.path.expanduser("~")
    if home not in ("", "/", "~") and (text == home or text.startswith(home.rstrip(os.sep) + os.sep)):
        return "~" + text[len(home.rstrip(os.sep)) :]
    return text


# ---------------------------------------------------------------------------------- the vocabulary
def function_label(kind: str, name: str) -> str:
    """How a function folder is named everywhere: ``train()``, ``cell features``, ``load (manual_cache)``."""
    if kind == "cell":
        return f"cell {name}"
    if kind == "manual":
        return f"{name} (manual_cache)"
    return f"{name}()"


def group_label(argument: str, folder: str) -> str:
    """How a groupby folder is named everywhere: ``dataset=mnist`` (the CLI takes it in paths too)."""
    return f"{argument}={folder}"


def version_label(status: str, current: bool | None) -> str:
    """An entry's code version as a word: ``current``, ``older``, ``-`` (unknown), or its status
    (``corrupt``, ``vanished``) when it cannot be read."""
    if status != "ok":
        return status
    if current is None:
        return "-"
    return "current" if current else "older"


def call_text(args: Mapping[str, str], names: list[str] | None = None) -> str:
    """An entry's call in one line: ``dataset='MNIST', lr=0.001``; a cell entry adds the
    variables it holds: ``window=3 → X, summary``."""
    text = ", ".join(f"{name}={value}" for name, value in args.items())
    if names is None:
        return text or "()"
    held = ", ".join(names) or "nothing"
    return f"{text} → {held}" if text else f"→ {held}"
