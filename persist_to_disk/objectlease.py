"""Compute-once across machines: a lease object next to an entry in a shared store.

A miss, once it holds this host's kernel locks, creates ``<digest>.ptd.lease`` with a
conditional create and renews it every third of ``lease_seconds`` while it computes. Other
machines wait, looking for the entry, and read it when it comes; a lease not renewed for
``lease_seconds`` (its holder died) is removed and taken over. Expiry compares the holder's
clock with the waiter's: keep the machines' clocks in step (NTP) well within ``lease_seconds``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from .store import ENOVAL

__all__ = ["Lease", "lost_race"]

logger = logging.getLogger("persist_to_disk")

_POLL = 0.25  # seconds between looks of a machine waiting for another's computation


def lost_race(exc: BaseException) -> bool:
    """Whether a conditional create failed because the object exists (HTTP 412).

    s3fs raises FileExistsError on moto and AWS; on SeaweedFS an OSError whose cause is
    botocore's ``PreconditionFailed`` ClientError.
    """
    if isinstance(exc, FileExistsError):
        return True
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None) or getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    return error.get("Code") in ("PreconditionFailed", "412") or status == 412


class Lease:
    """The lease object at ``url`` (an fsspec filesystem's), as this process takes and renews it.

    ``unreachable(exc)``: what to do when the store does not answer (the caller warns once);
    then the computation goes on without a lease.
    """

    def __init__(self, fs: Any, url: str, seconds: float, unreachable: Callable[[BaseException], None]) -> None:
        self.fs = fs
        self.url = url
        self.seconds = seconds
        self._unreachable = unreachable
        self.me = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    @contextlib.contextmanager
    def hold(self, entry_url: str, recheck: Callable[[], Any] | None) -> Iterator[Any]:
        """ENOVAL while this process holds the lease (it computes), or what another holder stored
        (``recheck`` finds it; None: take the lease without looking)."""
        said = False
        while not self._take():
            if recheck is not None:
                found = recheck()
                if found is not ENOVAL:
                    yield found
                    return
            holder = self._read()
            if holder is None:
                continue  # released, or unreadable: try to take it
            if holder.get("expires", 0) < time.time():
                logger.info("%s: the lease of %s expired; taking over", self.url, holder.get("holder"))
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self.url)
                continue
            if not said:
                logger.info("%s: computed by %s; waiting for it", entry_url, holder.get("holder"))
                said = True
            time.sleep(_POLL)
        stop = threading.Event()
        renew = threading.Thread(target=self._renew, args=(stop,), name="persist_to_disk-lease", daemon=True)
        renew.start()
        try:
            # look once more, waited or not: a holder that finished between the caller's last look and
            # this lease stored the entry before letting its lease go
            found = recheck() if recheck is not None else ENOVAL
            yield found
        finally:
            stop.set()
            renew.join()
            holder = self._read()
            if holder is not None and holder.get("holder") == self.me:
                with contextlib.suppress(Exception):
                    self.fs.rm_file(self.url)

    def _body(self) -> bytes:
        return json.dumps({"holder": self.me, "expires": time.time() + self.seconds}).encode()

    def _take(self) -> bool:
        """Create the lease; False when another holds it. An unreachable store: compute without one."""
        try:
            self.fs.pipe_file(self.url, self._body(), mode="create")
        except Exception as exc:
            if lost_race(exc):
                return False
            self._unreachable(exc)
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.fs.cat_file(self.url))
        except FileNotFoundError:
            return None
        except ValueError:  # half-written by a foreign tool: treat it as expired
            return {"holder": "?", "expires": 0}
        except Exception as exc:
            self._unreachable(exc)
            return None
        return holder if isinstance(holder, dict) else {"holder": "?", "expires": 0}

    def _renew(self, stop: threading.Event) -> None:
        """Rewrite the lease every third of its seconds while the computation runs."""
        while not stop.wait(self.seconds / 3):
            with contextlib.suppress(Exception):
                self.fs.pipe_file(self.url, self._body())
