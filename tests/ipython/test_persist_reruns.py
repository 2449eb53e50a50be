"""``%%persist`` hits on its second run, whatever names its first run left behind.

A cell that leaves its loop variable (or anything it binds in a loop, a branch or a
``try``) and reads it after the loop must not be keyed on the value its own first run
left: the second run would miss and store a second entry. An interrupted run leaves such
names half-way; the run after it computes and the one after that hits. Counted on a real
shell in this process and in real kernels.
"""

from __future__ import annotations

from pathlib import Path

import pytest

RUNS: list = []
INTERRUPTS: list = []


def tick() -> None:
    """Cells call this on every real run (importable: keys count it by name)."""
    RUNS.append(1)


def interrupt_once() -> None:
    """The first call raises KeyboardInterrupt, as Ctrl-C (or the kernel's interrupt) would mid-cell."""
    if not INTERRUPTS:
        INTERRUPTS.append(1)
        raise KeyboardInterrupt


@pytest.fixture
def runs(ip):
    RUNS.clear()
    INTERRUPTS.clear()
    ip.user_ns.update(tick=tick, interrupt_once=interrupt_once)
    return RUNS


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ptd"))


LOOP = """\
%%persist scores
tick()
scores = []
for seed in range(3):
    model = seed * 10
    scores.append(model)
print("last", seed, model)
"""


def test_a_loop_variable_left_behind_is_not_an_input_of_the_next_run(ip, runs, capsys, cache_root: Path) -> None:
    for _ in range(3):
        assert ip.run_cell(LOOP).success
    assert runs == [1]  # computed once, then read twice
    out = capsys.readouterr().out
    assert out.count("last 2 20") == 3 and out.count("[persist] read from cache") == 2
    assert len(entries(cache_root)) == 1

    for name in ("scores", "seed", "model"):  # a restart: nothing left behind
        del ip.user_ns[name]
    assert ip.run_cell(LOOP).success
    assert runs == [1] and ip.user_ns["scores"] == [0, 10, 20] and ip.user_ns["seed"] == 2


def test_when_the_loop_does_not_run_the_value_it_reads_still_counts(ip, runs, capsys) -> None:
    cell = "%%persist\ntick()\nfor item in todo:\n    pass\nprint('last item', item)\n"
    ip.user_ns.update(todo=[], item="from before")
    assert ip.run_cell(cell).success
    assert ip.run_cell(cell).success
    assert runs == [1]
    ip.user_ns["item"] = "changed"  # the loop runs zero times: the cell prints this value
    assert ip.run_cell(cell).success
    assert runs == [1, 1]
    assert capsys.readouterr().out.splitlines()[-1] == "last item changed"
    ip.user_ns["todo"] = [1, 2]  # now it runs and binds item itself
    assert ip.run_cell(cell).success and ip.run_cell(cell).success
    assert runs == [1, 1, 1]


def test_an_interrupted_run_costs_one_run_not_two(ip, runs, cache_root: Path) -> None:
    cell = (
        "%%persist work\n"
        "tick()\n"
        "for step in range(5):\n"
        "    partial = step * 2\n"
        "    if step == 2:\n"
        "        interrupt_once()\n"
        "result = partial\n"
    )
    first = ip.run_cell(cell)
    assert isinstance(first.error_in_exec, KeyboardInterrupt)
    assert ip.user_ns["step"] == 2 and entries(cache_root) == []  # half-way names, nothing stored
    assert ip.run_cell(cell).success  # computes
    assert ip.run_cell(cell).success  # hits
    assert runs == [1, 1] and ip.user_ns["result"] == 8
    assert len(entries(cache_root)) == 1


SETUP = """\
%load_ext persist_to_disk
import pathlib
COUNTER = {counter!r}
MARK = {mark!r}

def bump(tag):
    with open(COUNTER, "a") as fh:
        fh.write(tag + "\\n")
"""

SLOW = """\
%%persist slow
import time
bump("slow")
for step in range(40):
    pathlib.Path(MARK).write_text(str(step))
    total = step
    time.sleep(0.05)
print("done", step, total)
"""


@pytest.mark.slow
def test_reruns_and_an_interrupt_in_a_real_kernel(project: Path, kernelspec: Path) -> None:
    import time

    from jupyter_client.manager import start_new_kernel

    counter, mark = project / "counter.txt", project / "mark.txt"

    def computed() -> list[str]:
        return counter.read_text().splitlines() if counter.exists() else []

    def run(kc, code: str) -> dict:
        return kc.execute_interactive(code, timeout=120)["content"]

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(project / "notebooks"))
    try:
        assert run(kc, SETUP.format(counter=str(counter), mark=str(mark)))["status"] == "ok"
        kc.execute(SLOW, stop_on_error=False)  # (else the kernel aborts the next request if it comes quickly)
        deadline = time.monotonic() + 60
        while not mark.exists():  # the cell is in its loop
            assert time.monotonic() < deadline, "the cell never started"
            time.sleep(0.02)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=60)["content"]
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
        assert computed() == ["slow"]

        assert run(kc, SLOW)["status"] == "ok"  # left step and total half-way: computes
        assert run(kc, SLOW)["status"] == "ok"  # hits
        assert run(kc, SLOW)["status"] == "ok"
        assert computed() == ["slow", "slow"]

        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        assert run(kc, SETUP.format(counter=str(counter), mark=str(mark)))["status"] == "ok"
        assert run(kc, SLOW)["status"] == "ok"
        assert computed() == ["slow", "slow"]  # a restart hits too
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
