"""One small adapter per cache: how its docs say to cache a function in a folder.

Adding a peer is a few lines: subclass Adapter, set ``name``/``package``, write
``wrap``, and list it in ADAPTERS. Each adapter is only imported inside the
worker process that benchmarks it (peers are never imported by the package,
and persist-to-disk 0.0.7 shares this project's import name).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PTD007_DIR = os.path.join(BENCH_DIR, ".venv", "ptd007")  # persist-to-disk 0.0.7 + its pinned filelock + six


class Adapter:
    name = "?"  # short id used on the command line and in the JSON
    label = "?"  # what the table shows
    package = "?"  # distribution whose version is reported
    import_name = "?"
    # extra environment for the worker process (e.g. a sys.path that shadows this checkout)
    env: dict[str, str] = {}

    def setup(self, cache_dir: str) -> None:
        """Point the cache at cache_dir (a fresh, empty folder per scenario)."""
        self.cache_dir = cache_dir

    def wrap(self, func: Callable) -> Callable:
        raise NotImplementedError

    def version(self) -> str:
        from importlib.metadata import version

        try:
            return version(self.package)
        except Exception:
            mod = __import__(self.import_name)
            return getattr(mod, "__version__", "?")


class ThisProject(Adapter):
    name = "ptd"
    label = "persist_to_disk (this checkout)"
    package = "persist-to-disk"
    import_name = "persist_to_disk"

    def setup(self, cache_dir: str) -> None:
        super().setup(cache_dir)
        import persist_to_disk as ptd

        ptd.config.set_persist_path(cache_dir)
        ptd.config.set_project_path(BENCH_DIR)

    def wrap(self, func: Callable) -> Callable:
        import persist_to_disk as ptd

        return ptd.persistf()(func)

    def version(self) -> str:
        import persist_to_disk

        return persist_to_disk.__version__


class PersistToDisk007(ThisProject):
    """The library we grew from: the same API, installed in its own folder (bench/README.md)."""

    name = "ptd007"
    label = "persist-to-disk"
    env = {"PYTHONPATH": PTD007_DIR}

    def setup(self, cache_dir: str) -> None:
        import persist_to_disk as ptd

        assert ptd.__version__ == "0.0.7", ptd.__file__
        super().setup(cache_dir)


class Joblib(Adapter):
    name = "joblib"
    label = "joblib.Memory"
    package = "joblib"
    import_name = "joblib"

    def wrap(self, func: Callable) -> Callable:
        from joblib import Memory

        return Memory(location=self.cache_dir, verbose=0).cache(func)


class DiskCache(Adapter):
    name = "diskcache"
    label = "diskcache (Cache.memoize)"
    package = "diskcache"
    import_name = "diskcache"

    def wrap(self, func: Callable) -> Callable:
        from diskcache import Cache

        self._cache = Cache(self.cache_dir)
        return self._cache.memoize()(func)


class Cachier(Adapter):
    name = "cachier"
    label = "cachier"
    package = "cachier"
    import_name = "cachier"

    def wrap(self, func: Callable) -> Callable:
        from cachier import cachier

        return cachier(cache_dir=self.cache_dir)(func)


class PersistCache(Adapter):
    name = "persist_cache"
    label = "persist-cache"
    package = "persist-cache"
    import_name = "persist_cache"

    def wrap(self, func: Callable) -> Callable:
        from persist_cache import cache

        return cache(dir=self.cache_dir)(func)


ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls for cls in (ThisProject, PersistToDisk007, Joblib, DiskCache, Cachier, PersistCache)
}


def get(name: str) -> Adapter:
    return ADAPTERS[name]()


def worker_env(name: str) -> dict[str, Any]:
    return dict(ADAPTERS[name].env)
