"""What a busy writer's index flushes move in a shared store: ``--entries`` rows of a cell-sized header
(3 KB: readable args, ten dependency rows, 2,000 characters of source) added to one folder, a flush
every ``--every`` rows, against moto on 127.0.0.1 (in this process: bytes are counted, not time).

The bytes a flush PUT are the sizes of the shard objects whose ETag it changed.

Run: ``python bench/index_flush.py [--entries N --every K]`` with the checkout importable and the test
extra installed; prints a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3server import MotoS3  # noqa: E402

HEADER = {
    "func": "cell features", "args": {f"a{i}": "x" * 40 for i in range(5)}, "created": 1.7e9, "kind": "cell",
    "code_version": "c" * 16, "compute_seconds": 1.5, "source": "y" * 2000,
    "dependencies": [["function", f"dep{i}", "mod.py", "d" * 16] for i in range(10)],
    "file": "k.ptd", "format": 3, "pickle_size": 100, "payload_size": 100, "checksum": "e" * 32,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    server = MotoS3()
    os.environ.update(server.env())
    import s3fs

    from persist_to_disk import objectindex

    url = f"s3://{server.new_bucket()}/bench/proj/f"
    look = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    writer = objectindex.writer_for(s3fs.S3FileSystem(skip_instance_cache=True), url, tempfile.mkdtemp())

    def shards() -> dict[str, tuple[str, int]]:
        return {p: (i["ETag"], i["size"]) for p, i in look.find(url, detail=True).items() if "/.ptd-index/" in p}

    before: dict[str, tuple[str, int]] = {}
    put = []  # bytes PUT by each flush
    for n in range(args.entries):
        writer.add(f"{n % 500}/{n:032x}.ptd", f'"{n}"', {**HEADER, "key": f"{n:032x}"})
        if (n + 1) % args.every == 0 or n + 1 == args.entries:
            writer.flush()
            after = shards()
            put.append(sum(size for p, (etag, size) in after.items() if before.get(p, ("", 0))[0] != etag))
            before = after
    server.stop()
    print(json.dumps({
        "entries": args.entries, "flushes": len(put), "shards": len(before),
        "index_bytes": sum(size for _, size in before.values()),
        "put_bytes_last_flush": put[-1], "put_bytes_max_flush": max(put), "put_bytes_total": sum(put),
    }))


if __name__ == "__main__":
    main()
