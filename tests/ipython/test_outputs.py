"""ipython_ext/outputs.py: what a ``%%persist`` cell showed, recorded as records and shown again on a hit."""

from __future__ import annotations

import dataclasses

import pytest
from IPython.utils.capture import capture_output

from ipython_ext import magics
from ipython_ext.outputs import Clear, Display, Output, OutputRecorder, Stream, replay

BODY = (
    "import sys\nfrom IPython.display import HTML, display\n"
    "print('one', end=' ')\nprint('line')\nprint('a note', file=sys.stderr)\n"
    "display(HTML('<b>bold</b>'), metadata={'isolated': True})\nprint('after')\n"
)
RUNS: list[int] = []


def tick() -> None:
    """Cells call this on every real run (RUNS is not an input of their keys)."""
    RUNS.append(1)


def test_a_cell_is_recorded_as_records_in_order(ip) -> None:
    with capture_output(), OutputRecorder(ip) as recorder:
        ip.run_cell(BODY)
    assert recorder.items == [
        Stream("stdout", "one line\n"),  # consecutive writes to one stream: one record
        Stream("stderr", "a note\n"),
        Display({"text/plain": "<IPython.core.display.HTML object>", "text/html": "<b>bold</b>"},
                {"isolated": True}, None, False),
        Stream("stdout", "after\n"),
    ]


def test_clear_output_is_recorded_and_replayed(ip, monkeypatch: pytest.MonkeyPatch) -> None:
    cleared: list[bool] = []
    monkeypatch.setattr(ip.display_pub, "clear_output", cleared.append, raising=False)
    with OutputRecorder(ip) as recorder:
        ip.run_cell("from IPython.display import clear_output\nclear_output(wait=True)\n")
    assert recorder.items == [Clear(True)] and cleared == [True]
    replay([Clear(False), ("clear", True)])  # a record, and the tuple an earlier release stored
    assert cleared == [True, False, True]


def _as_earlier_release(item: Output) -> tuple:
    """The tagged tuple the release before the records stored for ``item``."""
    tag = {Stream: "stream", Display: "display", Clear: "clear"}[type(item)]
    return (tag, *dataclasses.astuple(item))


@pytest.mark.parametrize("stored_as", ["records", "tuples of an earlier release"])
def test_a_hit_shows_the_same_outputs(ip, monkeypatch: pytest.MonkeyPatch, stored_as: str) -> None:
    if stored_as != "records":
        store = magics._CellRun._store

        def store_tuples(self, plan, code, names, deleted, result, outputs, *rest):
            return store(self, plan, code, names, deleted, result, [_as_earlier_release(o) for o in outputs], *rest)

        monkeypatch.setattr(magics._CellRun, "_store", store_tuples)
    RUNS.clear()
    ip.user_ns["tick"] = tick
    body = "tick()\n" + BODY
    with capture_output() as first:
        ip.run_cell_magic("persist", "shows", body)
    with capture_output() as second:
        ip.run_cell_magic("persist", "shows", body)
    assert RUNS == [1]
    status, *replayed = second.stdout.splitlines()
    assert status.startswith("[persist] read from cache")
    assert replayed == first.stdout.splitlines() == ["one line", "after"]
    assert second.stderr == first.stderr == "a note\n"
    assert [(o.data, o.metadata) for o in second.outputs] == [(o.data, o.metadata) for o in first.outputs]
    assert second.outputs[0].data["text/html"] == "<b>bold</b>"
