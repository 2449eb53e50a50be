"""The package's logger, made at its first message.

``logging`` costs a script without it about 5 ms to import, and the package logs only rare events
(a warning, a dead writer's leftovers), so it is imported then rather than with the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger() -> logging.Logger:
    """The ``persist_to_disk`` logger (configure it as any other: ``logging.getLogger("persist_to_disk")``)."""
    import logging

    return logging.getLogger("persist_to_disk")
