"""The listing index of a shared store: per-writer shards of entry headers.

Listing a folder of N entries would cost N ranged GETs (one per header). Instead each
writer keeps one small index object per folder it stores into,
``<folder>/.ptd-index/<writer>.json`` = ``{"rows": {key: [etag, header]}}``, so a reader
pays one LIST (which it needs anyway) and one GET per writer, however many entries there are.
A writer is a machine: its host and its folder of local copies (two HOMEs on one host are
two machines). Its processes rewrite the shard at most once per :data:`FLUSH_DELAY` seconds
(and at exit), each time merged with what the shard holds, so the rewrites of a busy
writer stay few.

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
from collections.abc import Mapping
from typing import Any

import xxhash

__all__ = ["FLUSH_DELAY", "INDEX_FOLDER", "ShardWriter", "flush_all", "prune_shard", "read_rows", "writer_for"]

logger = logging.getLogger("persist_to_disk")

INDEX_FOLDER = ".ptd-index"
FLUSH_DELAY = 1.0  # seconds a writer gathers puts before rewriting its shard

_writers: dict[tuple[str, int], ShardWriter] = {}  # (folder URL, pid) -> this process's writer of that shard
_writers_lock = threading.Lock()

Rows = dict[str, dict[str, Any]]  # key -> {etag: header}


def writer_name(copies_root: str) -> str:
    """This machine's name as a writer: its host and (hashed) its folder of local copies."""
    return f"{socket.gethostname()}-{xxhash.xxh3_64_hexdigest(os.path.abspath(copies_root).encode())[:8]}"


def shard_url(folder_url: str, writer: str) -> str:
    return f"{folder_url.rstrip('/')}/{INDEX_FOLDER}/{writer}.json"


class ShardWriter:
    """This process's side of one writer's shard in one folder: rows added by puts, flushed in batches."""

    def __init__(self, fs: Any, url: str) -> None:
        self.fs = fs
        self.url = url
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
        """Rewrite the shard: what it holds, with this process's rows put and dropped since the last flush."""
        with self._flushing:
            with self._lock:
                self._timer = None
                rows, dropped = self._rows, self._dropped
                self._rows, self._dropped = {}, set()
            if rows or dropped:
                self._rewrite(rows, dropped)

    def _rewrite(self, rows: dict[str, list[Any]], dropped: set[str]) -> None:
        try:
            merged = _parse_shard(self.fs.cat_file(self.url))
        except FileNotFoundError:
            merged = {}
        except Exception as exc:  # the store is down: the rows are lost, readers read those headers
            logger.info("%s: index not updated (%s: %s)", self.url, type(exc).__name__, exc)
            return
        for key in dropped:
            merged.pop(key, None)
        merged.update(rows)
        try:
            if merged:
                self.fs.pipe_file(self.url, _shard_body(merged))
            else:
                self.fs.rm_file(self.url)
        except FileNotFoundError:
            pass
        except Exception as exc:
            logger.info("%s: index not updated (%s: %s)", self.url, type(exc).__name__, exc)


def writer_for(fs: Any, folder_url: str, copies_root: str) -> ShardWriter:
    """This process's writer of this machine's shard in a folder of the store."""
    url = shard_url(folder_url, writer_name(copies_root))
    memo = (url, os.getpid())  # a forked child has no timer thread: it keeps writers of its own
    with _writers_lock:
        writer = _writers.get(memo)
        if writer is None:
            writer = _writers[memo] = ShardWriter(fs, url)
    return writer


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
    rows = _parse_shard(fs.cat_file(url))
    left = {key: row for key, row in rows.items() if key in kept}
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
