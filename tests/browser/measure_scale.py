"""Measure the cache browser and the CLI on a large cache (default 50,000 entries).

    python tests/browser/measure_scale.py [--entries 50000] [--keep DIR]

Entries are written with the store directly (headers like the decorator's: one function,
grouped by one argument with 10 values, 500 buckets), in a temp HOME and persist path.
Prints: time to return the panel (``ptd.browse()``, what a user waits for before it shows),
time until its background scan has listed every entry, the catalog's stat-only and header
listings, a filter, a page turn, a sort, a row click and a look for changes on disk on the
full list, and the CLI's ``ls`` at both levels.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--keep", help="build the cache in this folder and keep it")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ptd-scale-"))
    os.environ["HOME"] = str(base / "home")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(ROOT))

    import persist_to_disk as ptd
    from persist_to_disk import catalog as cat
    from persist_to_disk.store import LocalStore

    cache = base / "cache"
    project = base / "proj"
    project.mkdir(parents=True, exist_ok=True)
    ptd.config.set_persist_path(cache)
    ptd.config.set_project_path(project)
    folder = cache / ptd.config.project_folder_name(project) / "pipeline" / "train" / "train"
    settings = Path(os.environ["HOME"]) / ".cache" / "persist_to_disk"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "config.ini").write_text(f"[global_settings]\npersist_path = {cache}\n")

    existing = sum(1 for _ in folder.rglob("*.ptd")) if folder.is_dir() else 0
    t0 = time.perf_counter()
    if existing < args.entries:
        store = LocalStore(folder)
        now = time.time()
        for i in range(existing, args.entries):
            digest = f"{i:032x}"
            dataset = f"set{i % 10}"
            header = {
                "func": "train",
                "module": "pipeline.train",
                "key": digest,
                "args": {"dataset": repr(dataset), "lr": repr(0.001 * (i % 97)), "seed": str(i)},
                "code_version": "v2" if i % 5 else "v1",
                "created": now - i,
                "compute_seconds": 1.5,
                "groupby": [["dataset", dataset]],
            }
            store.put(f"{dataset}/{i % 500}/{digest}.ptd", [i] * 8, header)
    made = time.perf_counter() - t0
    print(
        f"cache: {args.entries:,} entries in {folder} ({'made' if existing < args.entries else 'reused'} in {made:.1f} s)"
    )

    def timed(label: str, fn):
        start = time.perf_counter()
        result = fn()
        print(f"{label:<58} {time.perf_counter() - start:7.3f} s")
        return result

    catalog = cat.Catalog(cache)
    node = catalog.node_of_folder(folder)
    timed("catalog: list entry files (stat only)", lambda: catalog.entry_files(node))
    listing = timed("catalog: scan with headers (what the panel lists)", lambda: catalog.scan(node))
    assert len(listing.entries) == args.entries

    start = time.perf_counter()
    panel = ptd.browse()  # background scan of the current project
    opened = time.perf_counter() - start
    print(f"{'panel: ptd.browse() returns (tree, first status)':<58} {opened:7.3f} s")
    panel.wait(600)
    print(f"{'panel: open until all entries are listed (background)':<58} {time.perf_counter() - start:7.3f} s")
    assert len(panel.state.entries) == args.entries, len(panel.state.entries)
    timed("panel: filter 'seed=4999' over all entries", lambda: setattr(panel.filter, "value", "seed=4999"))
    panel.filter.value = ""
    timed("panel: next page", panel.next_button.click)
    timed("panel: sort all entries by size (header click)", panel.headers["size"].click)
    timed("panel: click a row (details)", panel.rows[0].cells["arguments"].click)
    timed("panel: look for changes on disk (folder mtimes)", panel.check_disk)
    panel.close()
    start = time.perf_counter()
    sync = ptd.browse(background=False)
    print(f"{'panel: ptd.browse(background=False) (open + full list)':<58} {time.perf_counter() - start:7.3f} s")
    assert len(sync.state.entries) == args.entries
    timed(
        "panel: open a groupby folder (1/10 of the entries), synchronous",
        lambda: sync.select_node(node.path + "/set3"),
    )

    def cli(*argv: str) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "persist_to_disk", *argv], check=False, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr

    name = node.project.name
    timed("cli: ptd ls (projects with entry counts and sizes)", lambda: cli("ls"))
    timed(f"cli: ptd ls {name} (functions)", lambda: cli("ls", name))
    timed(f"cli: ptd ls {name} {node.path} (entries, headers read)", lambda: cli("ls", name, node.path))
    timed("cli: ptd prune --old-versions --dry-run", lambda: cli("prune", "--old-versions", "--dry-run"))
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
