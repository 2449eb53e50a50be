"""The main job in one script: an expensive computation cached on disk and read back.

    python examples/demo.py        # first run computes (a few seconds) and stores the result
    python examples/demo.py        # every later run, in any process, reads it back at once

Pass ``--fresh`` to start from an empty cache in a temporary folder and run both
steps in two separate processes, which is what the README's demo command does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import persist_to_disk as ptd


@ptd.persistf(groupby=["model"], skip_kwargs=["verbose"])
def simulate(model: str, steps: int, seed: int = 0, verbose: bool = False) -> list[float]:
    """A stand-in for a long simulation: a random walk that takes a few seconds."""
    import random

    rng = random.Random(seed)
    position, path = 0.0, []
    for step in range(steps):
        position += rng.gauss(0.0, 1.0)
        path.append(position)
        if step % (steps // 4) == 0:
            time.sleep(0.5)  # the expensive part
            if verbose:
                print(f"  step {step}/{steps}")
    return path


def run_once() -> None:
    start = time.perf_counter()
    cached_before = simulate.cache.contains("brownian", 200_000, seed=7)
    path = simulate("brownian", 200_000, seed=7)
    took = time.perf_counter() - start
    source = "read from the cache" if cached_before else "computed and stored"
    print(f"simulate('brownian', 200000, seed=7): {source} in {took:.3f} s; final position {path[-1]:.4f}")
    print(f"  entry: {simulate.cache.path('brownian', 200_000, seed=7)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="use an empty cache in a temp folder, run twice")
    args = parser.parse_args()
    if not args.fresh:
        run_once()
        return
    with tempfile.TemporaryDirectory(prefix="ptd-demo-") as tmp:
        env = dict(os.environ, PTD_DEMO_PERSIST_PATH=tmp)
        for label in ("first process", "second process"):
            print(f"-- {label}")
            subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, check=True)


if __name__ == "__main__":
    if os.environ.get("PTD_DEMO_PERSIST_PATH"):
        ptd.config.set_persist_path(os.environ["PTD_DEMO_PERSIST_PATH"])
    main()
