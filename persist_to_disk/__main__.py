"""``python -m persist_to_disk``: the cache's command line (see :mod:`persist_to_disk.cli`)."""

import sys

from .cli import main

sys.exit(main())
