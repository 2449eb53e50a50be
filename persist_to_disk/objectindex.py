"""The listing index of a shared store: per-writer shards of entry headers.

Listing a folder of N entries would cost N ranged GETs (one per header). Instead each
writer keeps small index objects in each folder it stores into, ``<folder>/.ptd-index/<writer>.json``
then ``<writer>.1.json``, ``<writer>.2.json``... = ``{"rows": {key: [etag, header]}}``, so a
reader pays one LIST (which it needs anyway) and one GET per shard: N / :data:`SHARD_ROWS`
per writer instead of N. A writer is a machine: its host and its folder of local copies (two
HOMEs on one host are two machines). Its processes add rows to its last shard at most once per
:data:`FLUSH_DELAY` seconds (and at exit), merged with what that shard holds, and start the
next shard once it holds :data:`SHARD_ROWS` rows: a flush moves at most one full shard each way,
however many entries the folder has.

The bucket LIST stays the truth of what exists: a row whose object is gone is ignored, and
an object with no row, or whose ETag differs from its row's (replaced by a RECACHE on
another machine, or a row lost to a killed process or to two processes of one machine
writing the shard at once), has its header read from the object (a ranged GET). So the
index can only save requests, never show a wrong entry.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import xxhash

__all__ = [
    "FLUSH_DELAY", "INDEX_FOLDER", "SHARD_ROWS", "ShardWriter", "flush_all", "prune_shard", "read_rows", "writer_for"
]

logger = logging.getLogger("persist_to_disk")

INDEX_FOLDER = ".ptd-index"
FLUSH_DELAY = 1.0  # seconds a writer gathers puts before rewriting its shard
SHARD_ROWS = 256  # rows a shard takes before its writer starts the next one

_writers: dict[tuple[str, int], ShardWriter] = {}  # (first shard's URL, pid) -> this process's writer there
_writers_lock = threading.Lock()

Rows = dict[str, dict[str, Any]]  # key -> {etag: header}


def writer_name(copies_root: str) -> str:
    """This machine's name as a writer: its host and (hashed) its folder of local copies."""
    return f"{socket.gethostname()}-{xxhash.xxh3_64_hexdigest(os.path.abspath(copies_root).encode())[:8]}"


def shard_url(folder_url: str, writer: str, number: int = 0) -> str:
    """The URL of a writer's shard ``number`` in a folder (the first keeps the name it always had)."""
    name = writer if number == 0 else f"{writer}.{number}"
    return f"{folder_url.rstrip('/')}/{INDEX_FOLDER}/{name}.json"


def _shard_number(name: str, writer: str) -> int | None:
    """The number of a shard file name of this writer; None for another writer's or a foreign name."""
    if name == f"{writer}.json":
        return 0
    number = name.removeprefix(f"{writer}.").removesuffix(".json")
    if name.startswith(f"{writer}.") and name.endswith(".json") and number.isdigit():
        return int(number)
    return None


class ShardWriter:
    """This process's side of one writer's shards in one folder: rows added by puts, flushed in batches
    to the writer's last shard, a new shard every :data:`SHARD_ROWS` rows."""

    def __init__(self, fs: Any, folder_url: str, writer: str) -> None:
        self.fs = fs
        self.folder_url = folder_url.rstrip("/")
        self.writer = writer
        self._last: int | None = None  # the shard this process fills; found by a LIST at its first flush
        self._rows: dict[str, list[Any]] = {}  # key -> [etag, header] put by this process since its last flush
        self._dropped: set[str] = set()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one rewrite at a time: the timer's and the one at exit
        self._timer: threading.Timer | None = None

    def add(self, key: str, etag: str, header: dict[str, Any]) -> None:
        with self._lock:
            self._rows[key] = [etag, header]
            self._dropped.discard(key)
            self._schedule()

    def drop(self, key: str) -> None:
        with self._lock:
            self._rows.pop(key, None)
            self._dropped.add(key)
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(FLUSH_DELAY, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        """Write this process's rows put and dropped since the last flush into the writer's shards."""
        with self._flushing:
            with self._lock:
                self._timer = None
                rows, dropped = self._rows, self._dropped
                self._rows, self._dropped = {}, set()
            try:
                if dropped:
                    self._drop_rows(dropped)
                if rows:
                    self._append(rows)
            except Exception as exc:  # the store is down: the rows are lost, readers read those headers
                logger.info("%s: index not updated (%s: %s)", self.folder_url, type(exc).__name__, exc)

    def _append(self, rows: dict[str, list[Any]]) -> None:
        """Rows into the last shard (a key it holds is replaced in place), then into new shards once
        it is full: each PUT carries at most SHARD_ROWS rows."""
        if self._last is None:
            self._last = max(self._numbers(), default=0)
        pending = dict(rows)
        while pending:
            url = shard_url(self.folder_url, self.writer, self._last)
            held = _read_shard(self.fs, url)
            taken = [key for key in pending if key in held]
            room = SHARD_ROWS - len(held)
            taken += [key for key in pending if key not in held][: max(room, 0)]
            if taken:
                held.update((key, pending.pop(key)) for key in taken)
                self.fs.pipe_file(url, _shard_body(held))
            if pending:  # full (another process of this machine may have started the next one: it is read)
                self._last += 1

    def _drop_rows(self, dropped: set[str]) -> None:
        """Remove the rows of deleted entries from every shard of this writer that holds one (a
        deletion is rare; a row left behind would only be ignored, its object gone)."""
        for number in self._numbers():
            with contextlib.suppress(FileNotFoundError):
                _keep_rows(self.fs, shard_url(self.folder_url, self.writer, number), lambda key: key not in dropped)

    def _numbers(self) -> list[int]:
        """The numbers of this writer's shards in the folder (one LIST)."""
        try:
            paths = self.fs.ls(f"{self.folder_url}/{INDEX_FOLDER}", detail=False, refresh=True)
        except FileNotFoundError:
            return []
        found = (_shard_number(path.rstrip("/").rpartition("/")[2], self.writer) for path in paths)
        return sorted(number for number in found if number is not None)


def writer_for(fs: Any, folder_url: str, copies_root: str) -> ShardWriter:
    """This process's writer of this machine's shards in a folder of the store."""
    writer = writer_name(copies_root)
    memo = (shard_url(folder_url, writer), os.getpid())  # a forked child has no timer thread: it keeps its own
    with _writers_lock:
        shards = _writers.get(memo)
        if shards is None:
            shards = _writers[memo] = ShardWriter(fs, folder_url, writer)
    return shards


def flush_all() -> None:
    """Flush every shard this process has rows for (at exit; a killed process loses them)."""
    with _writers_lock:
        mine = [w for (_url, pid), w in _writers.items() if pid == os.getpid()]
    for writer in mine:
        writer.flush()


# At exit, before concurrent.futures refuses new work (s3fs resolves names in its executor), which
# happens before atexit handlers run; threading's own exit hooks run first, the latest registered first.
getattr(threading, "_register_atexit", atexit.register)(flush_all)


def prune_shard(fs: Any, url: str, kept: set[str]) -> bool:
    """Keep only the rows of ``kept`` keys in a shard; remove it when none is left (after a prune or
    clear), and say so."""
    return _keep_rows(fs, url, kept.__contains__)


def _keep_rows(fs: Any, url: str, keep: Callable[[str], bool]) -> bool:
    """Rewrite a shard with only the rows whose key ``keep`` accepts, or remove it when none is left
    (and say so); a shard losing nothing is not written."""
    rows = _parse_shard(fs.cat_file(url))
    left = {key: row for key, row in rows.items() if keep(key)}
    if not left:
        fs.rm_file(url)
        return True
    if len(left) < len(rows):
        fs.pipe_file(url, _shard_body(left))
    return False


def read_rows(fs: Any, shards: Mapping[str, str]) -> Rows:
    """The rows of shards (URL -> the key prefix of its folder), in one batch of concurrent GETs,
    as key -> {etag: header}. An unreadable shard contributes nothing."""
    found: Rows = {}
    if not shards:
        return found
    prefixes = {fs._strip_protocol(url): prefix for url, prefix in shards.items()}
    bodies = fs.cat(list(shards), on_error="return")
    for path, body in bodies.items():
        prefix = prefixes.get(fs._strip_protocol(path))
        if prefix is None or not isinstance(body, bytes):
            continue
        for key, (etag, header) in _parse_shard(body).items():
            found.setdefault(prefix + key, {})[etag] = header
    return found


def _read_shard(fs: Any, url: str) -> dict[str, list[Any]]:
    """A shard's rows; none when it does not exist yet."""
    try:
        return _parse_shard(fs.cat_file(url))
    except FileNotFoundError:
        return {}


def _shard_body(rows: dict[str, list[Any]]) -> bytes:
    """A shard's object; header values JSON cannot hold are written as the entry file writes them (str)."""
    return json.dumps({"rows": rows}, separators=(",", ":"), default=str).encode()


def _parse_shard(body: bytes) -> dict[str, list[Any]]:
    """A shard's rows; a shard that does not parse (a foreign or torn object) has none."""
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        rows = json.loads(body)["rows"]
        return {
            key: row
            for key, row in rows.items()
            if isinstance(row, list) and len(row) == 2 and isinstance(row[0], str) and isinstance(row[1], dict)
        }
    return {}
