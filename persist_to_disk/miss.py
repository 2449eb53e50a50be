"""The miss protocol, one for the decorator and the cell magic, and the resolved call it runs for.

lock -> look again -> compute -> store -> unlock. Looking again under the lock is
what makes a miss compute once: whoever waited for the lock finds what the holder
stored and returns it. An entry stored lets its digest lock go (``Held.mark_stored``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

from . import locks
from .store import ENOVAL

if TYPE_CHECKING:
    from .stores import Store

__all__ = ["ResolvedCall", "compute_once", "compute_once_async"]


@dataclass(slots=True)
class ResolvedCall:
    """A call of a function or a run of a cell, resolved: where its entry lives and what a miss locks.

    The decorator's ``Call`` and ``%%persist``'s plan extend it with what only they know. A hit
    builds one (so it stays a plain slotted record); the lock scopes are worked out only on a miss.
    """

    store: Store
    key: str  # the entry's key in the store: <groupby folders...>/<bucket>/<digest>.ptd
    digest: str
    persist_root: str
    code_version: str
    granularity: locks.Granularity
    folder: str  # the function's (or cell's) folder

    @property
    def path(self) -> Path:
        return Path(self.store.path_of(self.key))

    @property
    def lock_scopes(self) -> tuple[str, str | None, str]:
        """(persist root, granularity scope, digest scope): what a miss of this call locks."""
        coarse = locks.coarse_scope(self.granularity, self.persist_root, self.folder)
        return self.persist_root, coarse, self.store.path_of(self.key)


def compute_once(
    persist_root: str,
    coarse_scope: str | None,
    digest_scope: str,
    *,
    recheck: Callable[[], Any] | None,
    compute: Callable[[], tuple[Any, bool]],
    unlocked: Callable[[OSError], Any],
    lease: Callable[[Callable[[], Any] | None], ContextManager[Any]] | None = None,
) -> Any:
    """Run a miss under its locks and return its value.

    ``recheck``: the lookup to repeat once the locks are held (ENOVAL: still missing;
    None: do not look, the caller recomputes on purpose). ``compute``: runs the work,
    stores it, returns (value, whether it was stored). ``unlocked``: what to do when the
    locks cannot be taken at all (a read-only or vanished cache folder): the user still
    gets a result, without the cache. ``lease``: the store's compute-once across machines
    (``Store.lease``): entered once the locks are held, it gives ENOVAL when this process is
    to compute, or the value another machine stored while we waited.
    """
    __tracebackhide__ = True  # IPython: an error in a cell shows as if run without the magic
    lock = locks.compute_lock(persist_root, coarse_scope, digest_scope)
    try:  # not a `with`: an OSError taking the locks falls back to `unlocked`, one from compute propagates
        try:
            held = lock.__enter__()
        except OSError as exc:
            return unlocked(exc)
        if recheck is not None:
            found = recheck()
            if found is not ENOVAL:  # another process computed it while we waited
                return found
        with lease(recheck) if lease is not None else contextlib.nullcontext(ENOVAL) as found:
            if found is not ENOVAL:  # another machine computed it while we waited
                return found
            value, stored = compute()
        if stored:
            held.mark_stored()
        return value
    finally:
        lock.__exit__(None, None, None)  # idempotent: frees whatever an interrupt left half-taken


async def compute_once_async(
    persist_root: str,
    coarse_scope: str | None,
    digest_scope: str,
    *,
    recheck: Callable[[], Any] | None,
    compute: Callable[[], Awaitable[tuple[Any, bool]]],
    unlocked: Callable[[OSError], Awaitable[Any]],
    lease: Callable[[Callable[[], Any] | None], ContextManager[Any]] | None = None,
) -> Any:
    """``compute_once`` for ``async def`` functions: the same protocol, waiting for the locks
    and for another machine's lease without blocking the event loop (the lease is entered
    and left in a worker thread: its wait polls the store)."""
    import asyncio  # imported already: this runs in its event loop (not at start-up)

    lock = locks.compute_lock_async(persist_root, coarse_scope, digest_scope)
    try:
        try:
            held = await lock.__aenter__()
        except OSError as exc:
            return await unlocked(exc)
        if recheck is not None:
            found = recheck()
            if found is not ENOVAL:
                return found
        taken = lease(recheck) if lease is not None else contextlib.nullcontext(ENOVAL)
        found = await asyncio.to_thread(taken.__enter__)
        try:
            if found is not ENOVAL:  # another machine computed it while we waited
                return found
            value, stored = await compute()
        finally:
            await asyncio.to_thread(taken.__exit__, None, None, None)
        if stored:
            held.mark_stored()
        return value
    finally:
        await lock.__aexit__(None, None, None)
