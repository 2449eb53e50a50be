"""``ptd`` / ``python -m persist_to_disk``: look at and clean the cache from a terminal.

    ptd ls                                  projects, with entries and sizes
    ptd ls PROJECT                          its sources and functions (and cells)
    ptd ls PROJECT PATH                     the entries of a source, function or groupby folder
    ptd info [PROJECT [PATH]]               settings, or details of a project, node or entry file
    ptd clear PROJECT [PATH] --yes          delete every entry there
    ptd prune [PROJECT [PATH]] --older-than 30d | --old-versions | --max-size 10G  [--yes]

The same listing and deletion code as the notebook panel (``persist_to_disk.catalog``), so on a
shared store (``persist_path = s3://...``) it lists the bucket and deletes objects.
Exit codes: 0 done, 1 something failed or was declined, 2 bad usage (argparse),
3 no such project, path or entry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import prune, readable
from .catalog import Catalog, Node
from .errors import CatalogError
from .layout import ENTRY_SUFFIX
from .listing import EntryInfo, Totals

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3
DEFAULT_LIMIT = 50


class _Declined(Exception):
    """The user said no (or could not be asked): nothing was deleted."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptd",
        description="Look at and clean the persist_to_disk cache.",
        epilog="Exit codes: 0 done, 1 failed or declined, 2 bad usage, 3 no such project, path or entry.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", metavar="DIR", help="the persist path to use (default: from config.ini)")
    common.add_argument("--local", action="store_true", help="use persist_path_local instead of persist_path")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("project", nargs="?", help="a project folder name (proj-3), a unique name (proj), or '.'")
    where.add_argument("path", nargs="?", default="", help="a source, function or groupby folder inside the project")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ls = sub.add_parser("ls", parents=[common, where], help="list projects, functions or entries")
    ls.add_argument("-n", "--limit", type=int, default=DEFAULT_LIMIT, help="entries to show (0: all)")
    ls.add_argument("--filter", default="", help="only entries whose arguments contain this text")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    info = sub.add_parser("info", parents=[common, where], help="settings, or details of a project, node or entry")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    clear = sub.add_parser("clear", parents=[common, where], help="delete every entry of a project or node")
    clear.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    clear.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")

    prune = sub.add_parser("prune", parents=[common, where], help="delete old, outdated or least recently read entries")
    prune.add_argument("--older-than", metavar="AGE", type=_duration, help="entries not read for AGE (30d, 12h, 2w)")
    prune.add_argument(
        "--old-versions",
        action="store_true",
        help="entries of an older code version of their function, and corrupt ones",
    )
    prune.add_argument(
        "--max-size", metavar="SIZE", type=_size, help="then least recently read until SIZE is left (10G)"
    )
    prune.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    prune.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    return parser


def _duration(text: str) -> float:
    try:
        return prune.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return prune.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "prune" and args.older_than is None and not args.old_versions and args.max_size is None:
        parser.error("prune needs at least one of --older-than, --old-versions, --max-size")
    out = sys.stdout
    try:
        catalog = _catalog(args)
        return {"ls": _ls, "info": _info, "clear": _clear, "prune": _prune}[args.command](catalog, args, out)
    except CatalogError as exc:
        print(f"ptd: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except _Declined as exc:
        print(f"ptd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:  # a bad setting in config.ini
        print(f"ptd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ptd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ptd ls | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _catalog(args: argparse.Namespace) -> Catalog:
    if args.root:
        root = Path(os.path.expanduser(args.root))
        if not root.is_dir():
            raise CatalogError(f"--root {args.root}: no such folder")
        return Catalog(root)
    from ._state import config

    return Catalog(config.get_persist_path(local=args.local))


def _node(catalog: Catalog, args: argparse.Namespace) -> Node:
    return catalog.node(catalog.project(args.project), args.path)


# ------------------------------------------------------------------------------------------------ ls
def _ls(catalog: Catalog, args: argparse.Namespace, out: TextIO) -> int:
    if args.project is None:
        return _ls_projects(catalog, args, out)
    node = _node(catalog, args)
    if node.kind in ("project", "source") and not args.filter:
        return _ls_functions(catalog, node, args, out)
    return _ls_entries(catalog, node, args, out)


def _ls_projects(catalog: Catalog, args: argparse.Namespace, out: TextIO) -> int:
    rows = []
    for project in catalog.projects():
        files = catalog.entry_files(catalog.project_node(project))
        last = max((e.last_read for e in files), default=0.0)
        rows.append((project, len(files), sum(e.size for e in files), last))
    if args.json:
        data = [
            {"project": p.name, "folder": str(p.folder), "source": p.source, "entries": n, "bytes": b, "last_read": t}
            for p, n, b, t in rows
        ]
        json.dump({"root": catalog.location, "projects": data}, out, indent=1)
        out.write("\n")
        return EXIT_OK
    out.write(f"persist path: {catalog.location}\n")
    if not rows:
        out.write("no projects cached yet\n")
        return EXIT_OK
    table = [("PROJECT", "ENTRIES", "SIZE", "LAST READ", "PROJECT FOLDER")]
    for p, n, b, t in rows:
        table.append((p.name, f"{n:,}", readable.format_bytes(b), readable.format_time(t), p.source or "?"))
    _table(out, table, right={1, 2})
    return EXIT_OK


def _ls_functions(catalog: Catalog, node: Node, args: argparse.Namespace, out: TextIO) -> int:
    nodes = catalog.children(node) if node.kind == "source" else []
    if node.kind == "project":
        for source in catalog.children(node):
            nodes.extend(catalog.children(source))
    rows = []
    for fnode in nodes:
        files = catalog.entry_files(fnode)
        rows.append((fnode, len(files), sum(e.size for e in files), max((e.last_read for e in files), default=0.0)))
    if args.json:
        data = [
            {
                "path": f.path,
                "source": "/".join(f.function.source),
                "name": f.function.name,
                "kind": f.function.kind,
                "groupby": list(f.function.groupby),
                "entries": n,
                "bytes": b,
                "last_read": t,
            }
            for f, n, b, t in rows
            if f.function is not None
        ]
        json.dump({"project": node.project.name, "node": node.path, "functions": data}, out, indent=1)
        out.write("\n")
        return EXIT_OK
    out.write(f"{node.project.name}: {node.project.folder}\n")
    if not rows:
        out.write("nothing cached\n")
        return EXIT_OK
    table = [("SOURCE", "FUNCTION", "KIND", "ENTRIES", "SIZE", "LAST READ", "GROUPBY")]
    for f, n, b, t in rows:
        assert f.function is not None
        table.append(
            (
                "/".join(f.function.source) or ".",
                f.label,
                f.function.kind,
                f"{n:,}",
                readable.format_bytes(b),
                readable.format_time(t),
                ", ".join(f.function.groupby) or "-",
            )
        )
    _table(out, table, right={3, 4})
    total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    out.write(f"total: {readable.plural(total[0], 'entry')}, {readable.format_bytes(total[1])}\n")
    out.write(f"list a function's entries: ptd ls {node.project.name} {rows[0][0].shown_path}\n")
    return EXIT_OK


def _ls_entries(catalog: Catalog, node: Node, args: argparse.Namespace, out: TextIO) -> int:
    listing = catalog.scan(node)
    entries = [e for e in listing.entries if e.matches(args.filter)]
    entries.sort(key=lambda e: e.created or e.last_read, reverse=True)
    shown = entries if args.limit <= 0 else entries[: args.limit]
    if args.json:
        json.dump(
            {
                "project": node.project.name,
                "node": node.path,
                "kind": node.kind,
                "entries": [_entry_json(e) for e in shown],
            },
            out,
            indent=1,
        )
        out.write("\n")
        return EXIT_OK
    out.write(f"{node.project.name} {node.shown_path or '.'} ({node.kind}): {node.folder}\n")
    above = node.function is None  # entries of several functions and cells: say whose each is
    head = ("FUNCTION",) * above + ("ARGUMENTS", "SIZE", "CREATED", "LAST READ", "COMPUTE", "VERSION", "FILE")
    table = [head]
    for e in shown:
        whose = (e.owner,) * above
        table.append(
            (
                *whose,
                _clip(_args_cell(e), 60),
                readable.format_bytes(e.size),
                readable.format_time(e.created),
                readable.format_time(e.last_read),
                readable.format_seconds(e.compute_seconds),
                readable.version_label(e.status, e.current),
                str(e.path.relative_to(node.folder)),
            )
        )
    _table(out, table, right={1 + above, 4 + above})
    totals = Totals()
    for e in entries:
        totals.add(e.size)
    more = f" ({len(entries) - len(shown):,} more not shown; -n 0 shows all)" if len(shown) < len(entries) else ""
    out.write(f"total: {_totals_text(totals, entries)}{more}\n")
    return EXIT_OK


def _args_cell(e: EntryInfo) -> str:
    return e.args_text if e.status == "ok" else f"<{e.error}>"


def _totals_text(totals: Totals, entries: list[EntryInfo]) -> str:
    text = f"{readable.plural(totals.entries, 'entry')}, {readable.format_bytes(totals.bytes)}"
    seconds = sum(e.compute_seconds or 0.0 for e in entries)
    return f"{text}, {readable.format_seconds(seconds)} to recompute" if seconds else text



def _entry_json(e: EntryInfo) -> dict[str, Any]:
    return {
        "file": str(e.path),
        "status": e.status,
        "error": e.error,
        "size": e.size,
        "last_read": e.last_read,
        "created": e.created,
        "compute_seconds": e.compute_seconds,
        "args": e.args,
        "func": e.func,
        "kind": e.kind,
        "code_version": e.code_version,
        "current": e.current,
    }


# ---------------------------------------------------------------------------------------------- info
def _info(catalog: Catalog, args: argparse.Namespace, out: TextIO) -> int:
    if args.project is not None and args.path == "" and args.project.endswith(ENTRY_SUFFIX):
        return _info_entry(catalog, Path(args.project), args, out)
    if args.project is None:
        from ._state import config

        data: dict[str, Any] = {"root": catalog.location, "settings": config.describe()}
        data["projects"] = [p.name for p in catalog.projects()]
    else:
        node = _node(catalog, args)
        if args.path.endswith(ENTRY_SUFFIX):
            return _info_entry(catalog, node.folder, args, out)
        listing = catalog.scan(node)
        totals = listing.totals
        statuses: dict[str, int] = {}
        for e in listing.entries:
            statuses[e.status] = statuses.get(e.status, 0) + 1
        data = {
            "project": node.project.name,
            "project_folder": node.project.source,
            "node": node.shown_path or ".",
            "kind": node.kind,
            "folder": str(node.folder),
            "entries": totals.entries,
            "bytes": totals.bytes,
            "size": readable.format_bytes(totals.bytes),
            "corrupt": statuses.get("corrupt", 0),
            "older_version_entries": sum(1 for e in listing.entries if e.current is False),
            "functions": len(listing.versions),
            "current_versions": {str(k.relative_to(node.project.folder)): v for k, v in listing.versions.items()},
            "oldest_created": readable.format_time(min((e.created for e in listing.entries if e.created), default=0)),
            "newest_created": readable.format_time(max((e.created for e in listing.entries if e.created), default=0)),
            "last_read": readable.format_time(max((e.last_read for e in listing.entries), default=None)),
        }
        if node.function is not None:
            data["function"] = node.function.name
            data["function_kind"] = node.function.kind
            data["module"] = node.function.module
            data["groupby"] = list(node.function.groupby)
    _emit(data, args, out)
    return EXIT_OK


def _info_entry(catalog: Catalog, path: Path, args: argparse.Namespace, out: TextIO) -> int:
    entry = catalog.entry(path)
    data = _entry_json(entry)
    header = dict(entry.header or {})
    rows = header.pop("dependencies", None) or []
    header.pop("arg_digests", None)
    data["header"] = header
    if rows:  # what the result depends on besides its arguments (README: What the key is made of)
        data["dependencies"] = {f"{row[0]} {row[1]}": f"{row[2]} [{row[3][:12]}]" for row in rows if len(row) == 4}
    _emit(data, args, out)
    return EXIT_OK if entry.status == "ok" else EXIT_FAILED


def _emit(data: dict[str, Any], args: argparse.Namespace, out: TextIO) -> None:
    if args.json:
        json.dump(data, out, indent=1, default=str)
        out.write("\n")
        return
    width = max(len(k) for k in data) + 1
    for key, value in data.items():
        if isinstance(value, dict):
            out.write(f"{key + ':':<{width}}\n")
            out.writelines(f"  {k}: {v}\n" for k, v in value.items())
        else:
            out.write(f"{key + ':':<{width}} {value}\n")


# --------------------------------------------------------------------------------------- clear, prune
def _clear(catalog: Catalog, args: argparse.Namespace, out: TextIO) -> int:
    if args.project is None:
        raise CatalogError("clear needs a PROJECT (see `ptd ls`); to empty everything, clear each project")
    node = _node(catalog, args)
    files = catalog.entry_files(node)
    size = sum(e.size for e in files)
    place = f"{node.project.name} {node.shown_path or '.'}"
    what = f"{readable.plural(len(files), 'entry')} ({readable.format_bytes(size)}) in {place}"
    if args.dry_run:
        out.write(f"would delete {what}\n")
        return EXIT_OK
    if not files:
        out.write(f"nothing to delete in {place}\n")
        return EXIT_OK
    _confirm(f"Delete {what}?", args)
    result = catalog.delete_node(node)
    out.write(result.describe() + "\n")
    return EXIT_FAILED if result.failed else EXIT_OK


def _prune(catalog: Catalog, args: argparse.Namespace, out: TextIO) -> int:
    if args.project is None:
        nodes = [catalog.project_node(p) for p in catalog.projects()]
        where = catalog.location
    else:
        nodes = [_node(catalog, args)]
        where = f"{nodes[0].project.name} {nodes[0].shown_path or '.'}"
    entries: list[EntryInfo] = []
    for node in nodes:
        if args.old_versions:
            entries.extend(catalog.scan(node).entries)  # versions need headers
        else:
            entries.extend(catalog.entry_files(node))
    plan = prune.plan_prune(entries, older_than=args.older_than, old_versions=args.old_versions, max_size=args.max_size)
    goes = plan.totals
    reasons = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in plan.reasons.items() if n)
    what = f"{readable.plural(goes.entries, 'entry')} ({readable.format_bytes(goes.bytes)}) in {where}"
    keeps = f"{readable.plural(plan.keep.entries, 'entry')} ({readable.format_bytes(plan.keep.bytes)}) stay"
    if not plan.delete:
        out.write(f"nothing to prune in {where}; {keeps}\n")
        return EXIT_OK
    if args.dry_run:
        out.write(f"would delete {what} [{reasons}]; {keeps}\n")
        out.writelines(
            f"  {readable.format_time(entry.last_read)}  {readable.format_bytes(entry.size):>10}  {entry.path}\n"
            for entry in sorted(plan.delete, key=lambda e: e.last_read)[:DEFAULT_LIMIT]
        )
        if len(plan.delete) > DEFAULT_LIMIT:
            out.write(f"  ... and {len(plan.delete) - DEFAULT_LIMIT:,} more\n")
        return EXIT_OK
    _confirm(f"Delete {what} [{reasons}]; {keeps}?", args)
    result = catalog.delete(plan.delete)
    for node in nodes:
        catalog.tidy(node)
    out.write(result.describe() + "\n")
    return EXIT_FAILED if result.failed else EXIT_OK


def _confirm(question: str, args: argparse.Namespace) -> None:
    if args.yes:
        return
    if not sys.stdin or not sys.stdin.isatty():
        raise _Declined(f"{question[:-1]}: refusing without --yes (no terminal to ask); nothing deleted")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise _Declined("nothing deleted")


# ------------------------------------------------------------------------------------------- helpers
def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(out: TextIO, rows: list[tuple[str, ...]], right: frozenset[int] | set[int] = frozenset()) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        out.write("  ".join(cells).rstrip() + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
