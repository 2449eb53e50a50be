"""Scenario j: a shared S3 store, on loopback (moto or SeaweedFS on 127.0.0.1, started here, each in
a process of its own as a real server runs: moto in this process would take the measured client's GIL).

- hit from the local copy vs a hit of a local store, interleaved in rounds in one process
  (target: within 1.5x), with a refresh interval longer than the run (a hit touches no network);
- the first hit of a 50 MB entry on a machine without a copy (download, signature check,
  local copy written, loaded): MB/s (target: >= 150 MB/s on loopback).

Run: ``python bench/shared_store.py [--calls N --rounds R --server moto|seaweedfs]`` with the checkout importable and
the test extra installed; prints a JSON line and writes it to bench/results/shared-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3server import MotoProcess, SeaweedS3  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--server", choices=["moto", "seaweedfs"], default="moto")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ptd-shared-bench-"))
    server = MotoProcess() if args.server == "moto" else SeaweedS3(work / "seaweedfs")
    os.environ.update(server.env())
    os.environ["PTD_SECRET_KEY"] = "bench-secret"
    os.environ["HOME"] = str(work / "home-a")
    import numpy as np

    import persist_to_disk as ptd
    from persist_to_disk import stores

    url = f"s3://{server.new_bucket()}/bench" if args.server == "moto" else f"s3://{SeaweedS3.BUCKET}/bench"
    ptd.config.set_project_path(work / "proj")
    ptd.config.set_remote_refresh_seconds(3600)

    @ptd.persistf()
    def small(x):
        return x + 1

    @ptd.persistf()
    def big(mb):
        return np.ones(mb * (1 << 20) // 8)

    def per_call_us() -> float:
        start = time.perf_counter()
        for i in range(args.calls):
            small(i)
        return (time.perf_counter() - start) / args.calls * 1e6

    ratios, local_us, copy_us = [], [], []
    for _ in range(args.rounds):
        ptd.config.set_persist_path(work / "local")
        for i in range(args.calls):
            small(i)
        a = per_call_us()
        ptd.config.set_persist_path(url)
        for i in range(args.calls):
            small(i)  # fills the bucket the first round, then hits the copies
        b = per_call_us()
        local_us.append(a)
        copy_us.append(b)
        ratios.append(b / a)

    ptd.config.set_persist_path(url)
    big(args.mb)  # stored by "machine a"
    os.environ["HOME"] = str(work / "home-b")  # machine b: no local copies
    ptd.config.reset()
    ptd.config.set_persist_path(url)
    ptd.config.set_project_path(work / "proj")
    start = time.perf_counter()
    value = big(args.mb)
    first_hit = time.perf_counter() - start
    assert value.nbytes == args.mb << 20
    assert stores.is_url(ptd.config.describe()["persist_path"])
    server.stop()
    result = {
        "scenario": f"shared store ({args.server} on 127.0.0.1)",
        "local store hit us (median of rounds)": round(statistics.median(local_us), 1),
        "local copy hit us (median of rounds)": round(statistics.median(copy_us), 1),
        "copy / local ratio (median of rounds)": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        f"first remote hit of {args.mb} MB s": round(first_hit, 3),
        "first remote hit MB/s": round(args.mb / first_hit, 1),
    }
    print(json.dumps(result))
    out = ROOT / "bench" / "results" / f"shared-{args.server}-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
