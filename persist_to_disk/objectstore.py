"""Entries in an object store (S3 and S3-compatible servers through fsspec/s3fs), with local copies.

Each entry is one object, the entry file byte for byte followed by its signature
(:mod:`persist_to_disk.signing`), at ``<persist_path URL>/<the tree of a local cache>``.
Every entry this machine reads or writes is kept as a plain local entry file under
``~/.cache/persist_to_disk/copies/<protocol>/<bucket>/<prefix>`` (a :class:`LocalBackend`,
memory-mapped when large, as any local hit), so a hit is served from the local disk.

- **Write-once.** A new entry is created with a conditional PUT (``If-None-Match: *``); a writer
  that loses the race drops its copy and reads the winner's. A RECACHE replaces the object.
- **Invalidation.** A local copy is checked against the store (one HEAD: is the object still
  there, with the ETag the copy came from?) when this process last checked it more than
  ``remote_refresh_seconds`` ago; a deleted or replaced object drops the copy. Within that
  interval a hit does not touch the network.
- **Compute-once across machines.** A lease object next to the entry, renewed by its live
  holder (:mod:`persist_to_disk.objectlease`).
- **Listing.** One LIST, and the headers from the writers' index shards
  (:mod:`persist_to_disk.objectindex`), not one GET per entry.
- **Faults.** With the server unreachable, local copies are still served and misses compute
  (one CacheWarning per process and store), and the store is not asked again for 10 s; a
  failed upload leaves neither object nor copy.

Measured on loopback (moto, s3fs): a conditional create ~2 ms, a HEAD ~1.5 ms.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ContextManager

from . import objectindex, signing, trust
from .entryfile import HEADER_PEEK, PREFIX, CorruptEntry, Entry, parse_header, parse_prefix
from .errors import CacheWarning, UntrustedCacheError
from .layout import ENTRY_SUFFIX
from .listing import EntryInfo
from .objectlease import Lease, lost_race
from .store import ENOVAL, Missing
from .stores import LocalBackend, register_store_backend
from .writing import TMP_SUFFIX, temp_tag

__all__ = ["ObjectStore"]

logger = logging.getLogger("persist_to_disk")

ETAG_SUFFIX = ".etag"  # the sidecar of a local copy: the ETag of the object it was copied from
LEASE_SUFFIX = ".lease"  # <digest>.ptd.lease: who computes that entry, until when
_UNREACHABLE = object()
_filesystems: dict[tuple[str, str | None, int], Any] = {}  # (protocol, endpoint, pid) -> fsspec filesystem
_fs_lock = threading.Lock()
_warned_unreachable: set[str] = set()
# a bucket that did not answer is not asked again for a while: each try costs ~1.5 s of retries
_ASK_AGAIN_AFTER = 10.0
_down_until: dict[str, float] = {}  # bucket -> time.monotonic() before which it is taken as unreachable


def _s3_filesystem() -> Any:
    """One s3fs filesystem per process (its event loop does not survive a fork), listing cache off.

    Credentials, region and endpoint come from the standard variables (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) through botocore.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    memo = ("s3", endpoint, os.getpid())
    with _fs_lock:
        fs = _filesystems.get(memo)
        if fs is None:
            try:
                import s3fs
            except ImportError:
                raise ImportError(
                    "persist_path is an s3:// URL, which needs s3fs: pip install 'persist-to-disk[s3]'"
                ) from None
            fs = s3fs.S3FileSystem(
                skip_instance_cache=True,
                use_listings_cache=False,
                endpoint_url=endpoint,
                # an unreachable server is known in one attempt, not after s3fs's and botocore's retries
                config_kwargs={"connect_timeout": 5, "read_timeout": 120, "retries": {"max_attempts": 2}},
            )
            fs.retries = 2
            _filesystems[memo] = fs
    return fs


class ObjectStore:
    """A folder of entries at ``root_url`` (``s3://bucket/prefix/<project>/<source>/<function>``)."""

    def __init__(
        self,
        fs: Any,
        root_url: str,
        name: str,
        copies: LocalBackend,
        *,
        refresh_seconds: float,
        trust_shared: bool,
        lease_seconds: float = 60.0,
    ) -> None:
        """``name``: the folder's path under the persist path (signatures bind an entry to its place)."""
        self.fs = fs
        self.root_url = root_url.rstrip("/")
        self.name = name.strip("/")
        self.copies = copies
        self.root = copies.root
        self.refresh_seconds = refresh_seconds
        self.trust_shared = trust_shared
        self.lease_seconds = lease_seconds
        self._checked: dict[str, float] = {}  # key -> time.monotonic() this process last matched it to the store
        self._reported: set[str] = set()
        # from the listings: each entry's ETag, and the index shards found (URL -> their folder's key prefix)
        self._listed: dict[str, str] = {}
        self._shards: dict[str, str] = {}
        self._rows: objectindex.Rows = {}  # the rows of the shards in _read, read when headers are asked for
        self._read: set[str] = set()
        self._emptied: set[str] = set()  # folders (keys) this process deleted entries from: tidy looks at them

    def _index(self) -> objectindex.ShardWriter:
        return objectindex.writer_for(self.fs, self.root_url, self.copies.trust_root)

    # -- places ------------------------------------------------------------------------------------
    def url_of(self, key: str) -> str:
        return f"{self.root_url}/{key}"

    def path_of(self, key: str) -> str:
        return self.copies.path_of(key)

    def _signed_name(self, key: str) -> str:
        return f"{self.name}/{key}" if self.name else key

    # -- reads -------------------------------------------------------------------------------------
    def load(self, key: str, *, mmap: bool = True) -> Entry | Missing:
        """This machine's copy when it still matches the store, else the store's entry (copied here first)."""
        entry = self.copies.load(key, mmap=mmap)
        if entry is not ENOVAL:
            if self._still_current(key):
                return entry
            self._drop_copy(key)
        return self._download(key, mmap=mmap)

    def get(self, key: str) -> Any:
        entry = self.load(key)
        return entry if entry is ENOVAL else entry.value  # type: ignore[union-attr]

    def contains(self, key: str) -> bool:
        if self.copies.contains(key) and self._still_current(key):
            return True
        if self._down():
            return False
        try:
            return bool(self.fs.exists(self.url_of(key)))
        except Exception as exc:
            self._unreachable(exc)
            return False

    def _still_current(self, key: str) -> bool:
        """Whether the local copy may be served: checked within the refresh interval, or the object
        still has the ETag the copy came from, or the store cannot be reached (the copy is all there is)."""
        checked = self._checked.get(key)
        now = time.monotonic()
        if checked is not None and now - checked < self.refresh_seconds:
            return True
        remote = self._etag(key)
        if remote is _UNREACHABLE or (remote is not None and remote == self._copied_etag(key)):
            self._checked[key] = now
            return True
        return False

    def _etag(self, key: str) -> Any:
        """The object's ETag, None when there is no object, _UNREACHABLE when the store does not answer."""
        if self._down():
            return _UNREACHABLE
        try:
            return self.fs.info(self.url_of(key)).get("ETag") or ""
        except FileNotFoundError:
            return None
        except Exception as exc:
            self._unreachable(exc)
            return _UNREACHABLE

    def _copied_etag(self, key: str) -> str | None:
        try:
            with open(self._etag_path(key), encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return None

    def _etag_path(self, key: str) -> str:
        folder, _, name = self.copies.path_of(key).rpartition("/")
        return f"{folder}/.{name}{ETAG_SUFFIX}"

    def _download(self, key: str, *, mmap: bool = True) -> Entry | Missing:
        """The store's entry, streamed into a temp file beside the local copy, its signature checked
        from the head and the trailer alone, the trailer cut, then renamed into place and loaded."""
        url = self.url_of(key)
        if self._down():
            return ENOVAL
        path = self.copies.path_of(key)
        folder, _, name = path.rpartition("/")
        trust.make_folder(os.path.normpath(os.path.abspath(folder)), self.copies.trust_root, self.copies.policy)
        tmp = f"{folder}/.{name}.{temp_tag()}{TMP_SUFFIX}"
        try:
            try:
                etag = self.fs.info(url).get("ETag") or ""  # before the body: a replacement in between re-downloads
                self.fs.get_file(url, tmp)
            except FileNotFoundError:
                return ENOVAL
            except Exception as exc:
                self._unreachable(exc)
                return ENOVAL
            try:
                self._check_download(tmp, key, url)
            except CorruptEntry as exc:
                self._report(url, str(exc))
                return ENOVAL
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._record_etag(key, etag)
        return self.copies.load(key, mmap=mmap)  # checked (and memory-mapped) like any local entry

    def _check_download(self, tmp: str, key: str, url: str) -> None:
        """Verify the signature of the object downloaded to ``tmp`` and cut it to the bare entry, mode set."""
        with open(tmp, "r+b") as fh:
            trust.set_file_mode(fh.fileno(), self.copies.policy)
            head = fh.read(HEADER_PEEK)
            need = PREFIX.size + parse_prefix(head)[0]
            if need > len(head):
                head += fh.read(need - len(head))
            length = signing.entry_length(head)
            size = os.fstat(fh.fileno()).st_size
            if size < length:
                raise CorruptEntry(f"object is {size} bytes, its header says {length} (truncated)")
            fh.seek(length)
            trailer = fh.read(signing.TRAILER_SIZE + 1)
            signing.verify(head, trailer, self._signed_name(key), url, key=signing.secret(),
                           trust_shared=self.trust_shared)
            fh.truncate(length)

    def read_header(self, key: str) -> dict[str, Any] | None:
        """The header, from the local copy or the object's first kilobytes (nothing is unpickled)."""
        header = self.copies.read_header(key)
        if header is not None:
            return header
        try:
            head = self.fs.cat_file(self.url_of(key), start=0, end=HEADER_PEEK)
        except OSError:
            return None
        except Exception as exc:
            self._unreachable(exc)
            return None
        return self._parse_head(key, head)

    def _parse_head(self, key: str, head: bytes) -> dict[str, Any] | None:
        """The header from an object's first bytes (fetching the rest of a long header), or None."""
        try:
            need = PREFIX.size + parse_prefix(head)[0]
            if need > len(head):
                head = self.fs.cat_file(self.url_of(key), start=0, end=need)
            return parse_header(head)
        except (OSError, CorruptEntry):
            return None
        except Exception as exc:
            self._unreachable(exc)
            return None

    # -- writes ------------------------------------------------------------------------------------
    def put(
        self,
        key: str,
        value: Any,
        header: dict[str, Any],
        *,
        dumps: Callable[..., bytes] = pickle.dumps,
        replace: bool = False,
    ) -> dict[str, Any]:
        """Write the local copy, then create the object (write-once unless ``replace``).

        A writer that loses the race to create drops its copy and takes the winner's. A failed
        upload drops the copy and raises (the caller warns and returns the computed value).
        """
        secret = signing.secret()
        if secret is None and not self.trust_shared:
            raise UntrustedCacheError(
                f"not storing into {self.url_of(key)}: {signing.SECRET_ENV} is not set, and unsigned entries "
                f"are refused by every reader. Set {signing.SECRET_ENV} to your team's shared secret",
                path=self.url_of(key),
            )
        written = self.copies.put(key, value, header, dumps=dumps)
        try:
            with open(self.copies.path_of(key), "rb") as fh:
                entry = fh.read()
            body = signing.sign(entry, self._signed_name(key), secret) if secret else signing.unsigned(entry)
            out = self.fs.pipe_file(self.url_of(key), body, mode="overwrite" if replace else "create")
        except BaseException as exc:
            self._drop_copy(key)
            if replace or not lost_race(exc):
                raise
            logger.info("%s: another writer stored it first; using theirs", self.url_of(key))
            theirs = self._download(key)
            return theirs.header if theirs is not ENOVAL else written  # type: ignore[union-attr]
        etag = out.get("ETag") if isinstance(out, dict) else None
        etag = etag if etag is not None else self._etag(key)
        self._record_etag(key, etag)
        if isinstance(etag, str):
            self._index().add(key, etag, written)
        return written

    def _record_etag(self, key: str, etag: Any) -> None:
        if not isinstance(etag, str):
            return
        sidecar = self._etag_path(key)
        tmp = f"{sidecar}.{temp_tag()}{TMP_SUFFIX}"
        with contextlib.suppress(OSError):
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(etag)
            os.replace(tmp, sidecar)
        self._checked[key] = time.monotonic()

    def _drop_copy(self, key: str) -> None:
        self._checked.pop(key, None)
        with contextlib.suppress(OSError):
            self.copies.delete(key)
        with contextlib.suppress(OSError):
            os.unlink(self._etag_path(key))

    def delete(self, key: str) -> int:
        """Remove the object and this machine's copy; the bytes freed in the store (or of the copy)."""
        url = self.url_of(key)
        try:
            size = int(self.fs.info(url).get("size") or 0)
            self.fs.rm_file(url)
        except FileNotFoundError:
            size = 0
        copy = self.copies.delete(key)
        with contextlib.suppress(OSError):
            os.unlink(self._etag_path(key))
        self._checked.pop(key, None)
        self._emptied.add(key.rpartition("/")[0])
        if self.name:  # a function's folder (the catalog deletes through the root, where no shard is)
            self._index().drop(key)
        return size or copy

    # -- compute-once across machines ------------------------------------------------------------------
    def lease(self, key: str, recheck: Callable[[], Any] | None) -> ContextManager[Any]:
        """ENOVAL while this process holds the key's lease (it computes), or what another holder stored.

        ``recheck`` None (a RECACHE): take the lease without looking for an entry.
        """
        lease = Lease(self.fs, self.url_of(key) + LEASE_SUFFIX, self.lease_seconds, self._unreachable)
        return lease.hold(self.url_of(key), recheck)

    # -- listing -------------------------------------------------------------------------------------
    def iter_entries(self, prefix: str = "", *, headers: bool = True) -> Iterator[EntryInfo]:
        """Every entry under prefix, listed from the store: one listing (which finds the index shards
        too), then headers as :meth:`fill_headers` reads them. An unreachable store lists nothing."""
        found = self._find(prefix)
        if found is None:
            return
        infos = []
        for key in sorted(found):
            folder, _, name = key.rpartition("/")
            if folder.rpartition("/")[2] == objectindex.INDEX_FOLDER and name.endswith(".json"):
                above = folder[: -len(objectindex.INDEX_FOLDER)]
                self._shards[self.url_of(key)] = above
                self._read.discard(self.url_of(key))  # listed again: it may have changed
                continue
            if name.startswith(".") or not name.endswith(ENTRY_SUFFIX):
                continue
            infos.append(self._info(key, found[key]))
        if headers:
            self.fill_headers(infos)
        yield from infos

    def _find(self, prefix: str) -> dict[str, dict[str, Any]] | None:
        """Every object under prefix (one recursive listing), by key relative to the root, with what
        the listing says of it; None when the prefix does not exist or the store is unreachable."""
        top = f"{self.root_url}/{prefix.strip('/')}" if prefix.strip("/") else self.root_url
        try:
            found = self.fs.find(top, detail=True)
        except FileNotFoundError:
            return None
        except Exception as exc:
            self._unreachable(exc)
            return None
        start = len(self.root_url.split("://", 1)[-1]) + 1
        return {path[start:]: detail for path, detail in found.items()}

    def list_folder(self, prefix: str) -> tuple[list[str], list[EntryInfo]]:
        """One level of the store's tree (one LIST request); an unreachable store lists nothing."""
        prefix = prefix.strip("/")
        top = f"{self.root_url}/{prefix}" if prefix else self.root_url
        folders: list[str] = []
        entries: list[EntryInfo] = []
        if self._down():
            return folders, entries
        try:
            found = self.fs.ls(top, detail=True)
        except FileNotFoundError:
            return folders, entries
        except Exception as exc:
            self._unreachable(exc)
            return folders, entries
        base = f"{prefix}/" if prefix else ""
        for detail in found:
            name = detail["name"].rstrip("/").rpartition("/")[2]
            if name.startswith("."):
                continue
            if detail.get("type") == "directory":
                folders.append(name)
            elif name.endswith(ENTRY_SUFFIX):
                entries.append(self._info(base + name, detail))
        folders.sort()
        entries.sort(key=lambda info: info.key)
        return folders, entries

    def _info(self, key: str, detail: dict[str, Any]) -> EntryInfo:
        """A listed object as an entry: its size and last write (a store records no reads)."""
        modified = detail.get("LastModified")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else 0.0
        if detail.get("ETag"):
            self._listed[key] = detail["ETag"]
        return EntryInfo(key, Path(self.copies.path_of(key)), int(detail.get("size") or 0), stamp)

    def fill_headers(self, infos: list[EntryInfo]) -> None:
        """Headers from the index rows whose ETag is the listed object's, else from this machine's copy
        of that very object, else from the objects (one batch of concurrent ranged GETs)."""
        todo = [info for info in infos if info.header is None and info.status != "vanished"]
        self._read_shards(todo)
        for info in todo:
            listed = self._listed.get(info.key)
            row = self._rows.get(info.key)
            if row is not None and listed in row:
                info.header = row[listed]
            elif listed is None or listed == self._copied_etag(info.key):
                info.header = self.copies.read_header(info.key)
        remote = [info for info in todo if info.header is None]
        if remote:
            urls = [self.url_of(info.key) for info in remote]
            try:
                heads = self.fs.cat_ranges(urls, [0] * len(urls), [HEADER_PEEK] * len(urls), on_error="return")
            except Exception as exc:
                self._unreachable(exc)
                heads = [exc] * len(urls)
            for info, head in zip(remote, heads):
                if isinstance(head, FileNotFoundError):
                    info.status = "vanished"
                else:
                    info.header = self._parse_head(info.key, head) if isinstance(head, bytes) else None
        for info in todo:
            if info.header is None and info.status == "ok":
                info.status, info.reason = "corrupt", "the header cannot be read"
            elif info.header is not None:
                info.status, info.reason = "ok", None

    def _read_shards(self, infos: list[EntryInfo]) -> None:
        """Read (one batch of GETs) the index shards listed above these entries and not read since."""
        needed = {
            url: above
            for url, above in self._shards.items()
            if url not in self._read and any(info.key.startswith(above) for info in infos)
        }
        if not needed:
            return
        try:
            rows = objectindex.read_rows(self.fs, needed)
        except Exception as exc:
            self._unreachable(exc)
            return
        for key, by_etag in rows.items():
            self._rows.setdefault(key, {}).update(by_etag)
        self._read.update(needed)

    def tidy(self, prefix: str) -> None:
        """After deletions under prefix: index shards of folders left without entries go (objects have no
        folders), other shards lose the rows of deleted objects; this machine's empty copy folders go."""
        self.copies.tidy(prefix)
        found = self._find(prefix)
        if found is None:
            return
        keys = list(found)
        entries = [key for key in keys if key.endswith(ENTRY_SUFFIX)]
        for key in keys:
            folder, _, name = key.rpartition("/")
            if folder.rpartition("/")[2] != objectindex.INDEX_FOLDER or not name.endswith(".json"):
                continue
            above = folder[: -len(objectindex.INDEX_FOLDER)]
            kept = {e[len(above) :] for e in entries if e.startswith(above)}
            with contextlib.suppress(Exception):
                if objectindex.prune_shard(self.fs, self.url_of(key), kept):
                    self._emptied.add(folder)
        self._remove_empty_folders(prefix.strip("/"), keys)

    def _remove_empty_folders(self, prefix: str, left: list[str]) -> None:
        """Some servers (SeaweedFS) keep a folder once its last object is gone; S3 and moto have none.
        Delete the folders this process emptied under prefix and nothing is left in (``left``: the keys
        still there), deepest first, in a few batch requests."""
        occupied = {""}
        for key in left:
            parts = key.split("/")[:-1]
            occupied.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        under = [f for f in self._emptied if not prefix or f == prefix or f.startswith(prefix + "/")]
        empty: set[str] = set()
        for folder in under:
            parts = folder.split("/")
            empty.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        empty = {f for f in empty if f not in occupied and (not prefix or f == prefix or f.startswith(prefix + "/"))}
        self._emptied -= set(under)
        bucket, _, base = self.root_url.split("://", 1)[-1].partition("/")
        base = f"{base}/" if base else ""
        for depth in sorted({f.count("/") for f in empty}, reverse=True):
            level = sorted(f for f in empty if f.count("/") == depth)
            for i in range(0, len(level), 1000):
                batch = [{"Key": f"{base}{f}/"} for f in level[i : i + 1000]]
                try:
                    self.fs.call_s3("delete_objects", Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                except Exception as exc:
                    logger.info("%s: empty folders not removed (%s: %s)", self.root_url, type(exc).__name__, exc)
                    return

    # -- faults --------------------------------------------------------------------------------------
    def _bucket(self) -> str:
        return self.root_url.split("/", 3)[2] if "://" in self.root_url else self.root_url

    def _down(self) -> bool:
        """Whether the store failed to answer within the last _ASK_AGAIN_AFTER seconds."""
        until = _down_until.get(self._bucket())
        return until is not None and time.monotonic() < until

    def _unreachable(self, exc: BaseException) -> None:
        """The store did not answer: say so once per process and store; local copies keep serving."""
        where = self._bucket()
        _down_until[where] = time.monotonic() + _ASK_AGAIN_AFTER
        if where in _warned_unreachable:
            return
        _warned_unreachable.add(where)
        message = (
            f"persist_to_disk: cannot reach the store {where} ({type(exc).__name__}: {exc}); "
            "local copies are served and misses are computed without being shared"
        )
        logger.warning(message)
        warnings.warn(message, CacheWarning, stacklevel=4)

    def _report(self, url: str, why: str) -> None:
        if url in self._reported:
            return
        self._reported.add(url)
        message = f"persist_to_disk: ignoring cache entry {url}: {why}; it will be recomputed"
        logger.warning(message)
        warnings.warn(message, CacheWarning, stacklevel=4)


def _open_s3(url: str, name: str, copies: LocalBackend, settings: Any) -> ObjectStore:
    return ObjectStore(
        _s3_filesystem(),
        url,
        name,
        copies,
        refresh_seconds=float(getattr(settings, "remote_refresh_seconds", 10.0)),
        trust_shared=bool(getattr(settings, "trust_shared", False)),
        lease_seconds=float(getattr(settings, "lease_seconds", 60.0)),
    )


register_store_backend("s3", _open_s3)
