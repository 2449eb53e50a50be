"""Scenario o: the per-call cost of dependency tracking on a hit.

A hit of ``with_dependencies`` (three user helpers, two scalar globals: the code part of its
fingerprint is checked through five guards, the two values hashed into the key) against a hit
of ``plain`` (nothing to track), interleaved in rounds in one process on one fresh cache.
Target: with_dependencies within 1.2x of plain. Run: ``python bench/deps.py [--calls N --rounds R]``
with the checkout importable; prints a JSON line and writes it to bench/results/deps-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import deps_workloads  # noqa: E402

import persist_to_disk as ptd  # noqa: E402


def _per_call_us(fn, keys: list[int]) -> float:
    start = time.perf_counter()
    for k in keys:
        fn(k)
    return (time.perf_counter() - start) / len(keys) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HOME"] = tmp
        ptd.config.set_persist_path(os.path.join(tmp, "cache"))
        funcs = {
            "plain": ptd.persistf()(deps_workloads.plain),
            "with_dependencies": ptd.persistf()(deps_workloads.with_dependencies),
        }
        keys = list(range(args.calls))
        for fn in funcs.values():  # fill
            for k in keys:
                fn(k)
        rounds: dict[str, list[float]] = {name: [] for name in funcs}
        for _ in range(args.rounds):
            order = list(funcs)
            random.shuffle(order)
            for name in order:
                random.shuffle(keys)
                rounds[name].append(_per_call_us(funcs[name], keys))
    ratios = [d / p for d, p in zip(rounds["with_dependencies"], rounds["plain"])]
    result = {
        "scenario": "o: hit with three helpers and two globals vs a hit with none",
        "plain_us": round(statistics.median(rounds["plain"]), 2),
        "with_dependencies_us": round(statistics.median(rounds["with_dependencies"]), 2),
        "ratio": round(statistics.median(ratios), 3),
        "round_ratios": [round(r, 3) for r in ratios],
        "target": "<= 1.2",
        "met": statistics.median(ratios) <= 1.2,
        "loadavg": os.getloadavg(),
        "calls": args.calls,
    }
    print(json.dumps(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"deps-{time.strftime('%Y-%m-%d')}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
