"""One "machine" sharing an S3 store: a process with its own HOME and its own checkout of a project.

Driven by JSON lines on stdin, one answer per line on stdout, so a test can interleave two
machines step by step. Each computation appends to ``$HOME/computed.txt``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import traceback
import warnings
from pathlib import Path

SOURCE = '''
import asyncio
import os
import time

import persist_to_disk as ptd


@ptd.persistf()
def simulate(x):
    with open(os.path.join(os.environ["HOME"], "computed.txt"), "a") as fh:
        fh.write(f"{x}\\n")
    gate = os.environ.get("GATE")  # a machine given a gate computes until the test opens it
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    return {"x": x, "by": os.environ["MACHINE"], "data": bytes(range(256)) * (4096 * x)}


@ptd.persistf()
async def simulate_async(x):
    with open(os.path.join(os.environ["HOME"], "computed.txt"), "a") as fh:
        fh.write(f"{x}\\n")
    gate = os.environ.get("GATE")
    while gate and not os.path.exists(gate):
        await asyncio.sleep(0.01)
    return {"x": x, "by": os.environ["MACHINE"], "data": bytes(range(256)) * (4096 * x)}
'''


def checkout(where: Path) -> Path:
    """A checkout of the project at ``where/proj`` (every machine has its own, at its own path)."""
    root = where / "proj"
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'proj'\n")
    (root / "work.py").write_text(SOURCE)
    return root


def main() -> None:
    url, root = sys.argv[1], sys.argv[2]
    logging.basicConfig(filename=os.path.join(os.environ["HOME"], "log.txt"), level=logging.INFO)
    sys.path.insert(0, root)
    import persist_to_disk as ptd

    ptd.config.set_persist_path(url)
    import work

    for line in sys.stdin:
        cmd = json.loads(line)
        answer: dict = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                op = cmd["op"]
                if op == "call":
                    value = work.simulate(cmd["x"], cache_switch=cmd.get("switch"))
                    answer = {"by": value["by"], "size": len(value["data"])}
                elif op == "acall":
                    value = asyncio.run(work.simulate_async(cmd["x"]))
                    answer = {"by": value["by"], "size": len(value["data"])}
                elif op == "invalidate":
                    answer = {"removed": work.simulate.cache.invalidate(cmd["x"])}
                elif op == "lease":
                    ptd.config.set_lease_seconds(cmd["seconds"])
                elif op == "refresh":
                    ptd.config.set_remote_refresh_seconds(cmd["seconds"])
                elif op == "copy_path":
                    answer = {"path": str(work.simulate.cache.path(cmd["x"]))}
                elif op == "drop_copies":
                    shutil.rmtree(ptd.config.describe()["local_copies"], ignore_errors=True)
            except Exception as exc:
                answer = {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}
        answer["warnings"] = [str(w.message) for w in caught]
        with open(os.path.join(os.environ["HOME"], "computed.txt"), "a"):
            pass
        answer["computed"] = Path(os.environ["HOME"], "computed.txt").read_text().split()
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
