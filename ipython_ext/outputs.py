"""What a cell showed: recorded while it runs (the user still sees it live) and replayed on a hit.

Recorded, in the order they happened, as one small record each (an :data:`Output`):

* :class:`Stream`: what was written to ``sys.stdout`` / ``sys.stderr`` (consecutive writes to one
  stream are merged);
* :class:`Display`: every rich output published through the shell's display publisher
  (``display()``, ``IPython.display.*``, matplotlib's inline figures);
* :class:`Clear`: ``clear_output()``.

Entries stored by earlier releases hold plain tuples instead (``("stream", name, text)``,
``("display", data, metadata, transient, update)``, ``("clear", wait)``): they replay the same.

Replaying publishes the same mime bundles again, so a notebook shows the same HTML,
Markdown, PNG or JSON. Widget views are not recorded: the widget's model lives in the
kernel that made it and a replayed view would point at nothing.

Not seen: output written straight to file descriptor 1 or 2 by C code or subprocesses
that bypass ``sys.stdout`` (``!cmd`` output is seen: IPython prints it), and logging
handlers that hold the original stream.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Clear", "Display", "Output", "OutputRecorder", "Stream", "replay"]

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass(frozen=True)
class Stream:
    """Text the cell wrote to ``sys.stdout`` or ``sys.stderr``."""

    name: Literal["stdout", "stderr"]
    text: str


@dataclass(frozen=True)
class Display:
    """A mime bundle the cell published, with what ``publish_display_data`` was given beside it."""

    data: dict[str, Any]
    metadata: dict[str, Any]
    transient: dict[str, Any] | None
    update: bool


@dataclass(frozen=True)
class Clear:
    """``clear_output(wait)``."""

    wait: bool


Output = Stream | Display | Clear
"""One recorded output."""

_BY_TAG: dict[str, type[Output]] = {"stream": Stream, "display": Display, "clear": Clear}  # earlier tuples


def _as_output(item: Output | tuple) -> Output:
    """The record of an output, also of one stored by an earlier release as a tagged tuple."""
    if isinstance(item, tuple):
        tag, *fields = item
        return _BY_TAG[tag](*fields)
    return item


class _Tee:
    """A text stream that forwards every write and keeps a copy."""

    def __init__(self, inner: Any, name: str, recorder: OutputRecorder) -> None:
        self._inner = inner
        self._name = name
        self._recorder = recorder

    def write(self, text: str) -> int:
        n = self._inner.write(text)
        if isinstance(text, str) and text:
            self._recorder._stream(self._name, text)
        return n if n is not None else len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class OutputRecorder:
    """Context manager: tee stdout, stderr and rich displays of the shell into ``self.items``."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.items: list[Output] = []
        self._lock = threading.Lock()
        self._saved: dict[str, Any] = {}
        self._inside = threading.local()  # set while a display is being published by this thread

    # -- recording ---------------------------------------------------------------------------------------
    def _stream(self, name: str, text: str) -> None:
        if getattr(self._inside, "publishing", False):  # a terminal publisher printing the display
            return
        with self._lock:
            last = self.items[-1] if self.items else None
            if isinstance(last, Stream) and last.name == name:
                self.items[-1] = Stream(name, last.text + text)
            else:
                self.items.append(Stream(name, text))

    def _display(self, data: Any, metadata: Any, transient: Any, update: bool) -> None:
        if not isinstance(data, dict):
            return
        if _WIDGET_VIEW in data:  # a live widget: nothing to show again without its kernel-side model
            return
        with self._lock:
            self.items.append(Display(dict(data), dict(metadata or {}), transient or None, bool(update)))

    def _clear(self, wait: bool) -> None:
        with self._lock:
            self.items.append(Clear(bool(wait)))

    # -- patching ----------------------------------------------------------------------------------------
    def __enter__(self) -> OutputRecorder:
        self._saved["stdout"], self._saved["stderr"] = sys.stdout, sys.stderr
        sys.stdout = _Tee(sys.stdout, "stdout", self)
        sys.stderr = _Tee(sys.stderr, "stderr", self)
        pub = self.shell.display_pub
        self._saved["pub"] = pub
        # patch the publisher object itself (not a proxy): others keep finding the real one
        for attr in ("publish", "clear_output"):
            self._saved[attr] = pub.__dict__.get(attr, _MISSING)
        publish, clear_output = pub.publish, pub.clear_output
        recorder = self

        def recording_publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            recorder._display(data, metadata, kwargs.get("transient"), kwargs.get("update", False))
            recorder._inside.publishing = True
            try:
                return publish(data, metadata, *args, **kwargs)
            finally:
                recorder._inside.publishing = False

        def recording_clear_output(wait: bool = False) -> Any:
            recorder._clear(wait)
            return clear_output(wait)

        pub.publish = recording_publish
        pub.clear_output = recording_clear_output
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush_figures()
        for name in ("stdout", "stderr"):
            try:
                getattr(sys, name).flush()
            except Exception:
                pass
            setattr(sys, name, self._saved[name])
        pub = self._saved["pub"]
        for attr in ("publish", "clear_output"):
            saved = self._saved[attr]
            if saved is _MISSING:
                pub.__dict__.pop(attr, None)
            else:
                setattr(pub, attr, saved)

    def flush_figures(self) -> None:
        """Show open matplotlib inline figures now, inside the recording.

        The inline backend shows them after the cell, from a post-execute hook, which
        would be too late to record them. Only when the inline backend is in use.
        """
        backend = sys.modules.get("matplotlib_inline.backend_inline")
        mpl = sys.modules.get("matplotlib")
        if backend is None or mpl is None:
            return
        try:
            if "inline" not in str(mpl.get_backend()):
                return
            backend.flush_figures()
        except Exception:  # showing a figure must never cost the cell its result
            pass


class _Missing:
    pass


_MISSING = _Missing()


def replay(items: Iterable[Output | tuple]) -> None:
    """Show recorded outputs again, in order."""
    from IPython.display import clear_output, publish_display_data

    for item in map(_as_output, items):
        if isinstance(item, Stream):
            stream = sys.stderr if item.name == "stderr" else sys.stdout
            stream.write(item.text)
            stream.flush()
        elif isinstance(item, Display):
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            kwargs: dict[str, Any] = {"update": item.update}
            if item.transient:
                kwargs["transient"] = item.transient
            publish_display_data(item.data, metadata=item.metadata or None, **kwargs)
        else:
            clear_output(wait=item.wait)
