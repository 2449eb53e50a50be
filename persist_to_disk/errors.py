"""Exceptions and warnings of persist_to_disk.

Store faults never cost the user's result: they become a :class:`CacheWarning`
and the computed value is returned. Misuse fails loudly with a ``ValueError`` or
``TypeError`` naming the setting or argument at fault.
"""

from __future__ import annotations


class CacheError(Exception):
    """Base class of the errors raised by persist_to_disk itself."""


class NotCachedError(CacheError, KeyError):
    """A call in READONLY mode found no cached entry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not cached"


class UnhashableArgumentError(CacheError, TypeError):
    """An argument cannot be turned into a stable cache key."""


class UntrustedCacheError(CacheError, PermissionError):
    """A cache file or folder is writable by other users, so loading it could run their code."""


class CacheWarning(UserWarning):
    """A cache read or write failed; the call still returned its computed value."""
