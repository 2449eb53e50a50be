"""Exceptions and warnings of persist_to_disk.

Store faults never cost the user's result: they become a :class:`CacheWarning`
and the computed value is returned. Misuse fails loudly with a ``ValueError`` or
``TypeError`` naming the setting or argument at fault.

The hierarchy (each error also subclasses the builtin a caller would catch)::

    CacheError                      .path: the file or folder at fault, when there is one
    ├── NotCachedError (KeyError)          READONLY / --readonly found no entry
    ├── UnhashableArgumentError (TypeError)  .argument: the argument, variable or global
    ├── UntrustedCacheError (PermissionError)  an entry or folder others could have written
    ├── HeaderError (ValueError)           .field: an entry header's field this version cannot read
    └── CatalogError                       the CLI or panel was asked for what is not there
    CacheWarning (UserWarning)      a store fault; the call still returned its value
"""

from __future__ import annotations

__all__ = [
    "CacheError", "CacheWarning", "CatalogError", "HeaderError", "NotCachedError", "UnhashableArgumentError",
    "UntrustedCacheError",
]


class CacheError(Exception):
    """Base class of the errors raised by persist_to_disk itself.

    ``path``, when set, is the file or folder at fault (an entry, a cache folder, config.ini).
    """

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class NotCachedError(CacheError, KeyError):
    """A call in READONLY mode found no cached entry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not cached"


class UnhashableArgumentError(CacheError, TypeError):
    """An argument (or a cell's variable, or a global a function reads) cannot be turned into a cache key.

    ``argument`` names it.
    """

    def __init__(self, message: str = "", *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class UntrustedCacheError(CacheError, PermissionError):
    """A cache file or folder is writable by other users, so loading it could run their code."""


class HeaderError(CacheError, ValueError):
    """An entry header is not one this version can read: ``field`` names the key missing or of the wrong type."""

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CatalogError(CacheError):
    """A project, path or entry named to the CLI or the panel does not exist, or a request makes no sense."""


class CacheWarning(UserWarning):
    """A cache read or write failed; the call still returned its computed value."""
