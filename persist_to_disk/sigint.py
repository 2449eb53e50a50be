"""Ctrl-C where cutting would do harm: the C signal functions, and imports done whole.

A module first needed inside a call (``dis`` for the first dependency walk,
``importlib.metadata`` for a library's version, ``pyarrow.compute`` for text columns) is
imported there, and a KeyboardInterrupt that cuts such an import short throws it away: the
next call starts it again, so under repeated interrupts (a stop button pressed over and
over, a signal storm) an import longer than their gap never completes, and one cut at the
wrong moment can leave a module half set up. :func:`import_whole` holds SIGINT back while
the import runs on the main thread and raises it as soon as the import is done.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import types
from typing import Any

try:  # the C functions: signal.signal is a Python wrapper, whose own frame a Ctrl-C could interrupt
    from _signal import getsignal as get_handler
    from _signal import signal as set_handler
except ImportError:  # pragma: no cover (not CPython)
    get_handler, set_handler = signal.getsignal, signal.signal

__all__ = ["get_handler", "import_whole", "set_handler"]


def import_whole(name: str) -> types.ModuleType:
    """``importlib.import_module(name)``, never cut short by Ctrl-C (held back until it is done)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    if threading.current_thread() is not threading.main_thread():
        return importlib.import_module(name)  # Python raises KeyboardInterrupt in the main thread only
    previous = get_handler(signal.SIGINT)
    if not callable(previous):  # SIG_IGN, or SIG_DFL (the process ends): nothing raised to hold back
        return importlib.import_module(name)
    held: list[Any] = []

    def hold(signum: int, frame: Any) -> None:
        held.append(frame)

    set_handler(signal.SIGINT, hold)
    try:
        return importlib.import_module(name)
    finally:
        if get_handler(signal.SIGINT) is hold:  # (unless the import installed a handler of its own)
            set_handler(signal.SIGINT, previous)
        if held:
            previous(signal.SIGINT, held[0])
