"""A renamed or moved notebook takes its cache along: its folders move to the new name.

A notebook's functions and ``%%persist`` cells cache under the notebook's path in its
project (``proj-<id>/notebooks/Untitled/...``). When the Jupyter server reports that the
notebook now lives elsewhere and the old file is gone, those folders move to the new path
in each persist root (``persist_path`` and ``persist_path_local``), so the next call finds
what was computed before the rename. A folder is renamed in one step when the new name
has no cache yet; otherwise the entries are moved one by one, an entry the new name already
holds (the same key) winning. A failure costs nothing cached: what could not move stays
under the old name, with a ``CacheWarning`` saying so.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from persist_to_disk._state import config
from persist_to_disk.errors import CacheWarning

__all__ = ["move_notebook_cache"]

log = logging.getLogger("persist_to_disk")

Place = tuple[Path, tuple[str, ...]]  # (project root, the notebook's path parts inside it)


def move_notebook_cache(old: Place, new: Place) -> list[Path]:
    """Move the cache of the notebook at ``old`` to ``new`` in every persist root; the folders moved."""
    settings = config.settings()
    moved = []
    for persist_root in dict.fromkeys((settings.persist_path, settings.persist_path_local)):
        source, target = _folder(persist_root, old), _folder(persist_root, new)
        if source == target or not source.is_dir():
            continue
        try:
            _merge(source, target)
        except OSError as exc:
            warnings.warn(
                f"the notebook moved, but its cache could not follow ({exc}); entries left in {source} "
                f"are not found under {target}", CacheWarning, stacklevel=2,
            )
            continue
        log.info("notebook moved: cache %s -> %s", source, target)
        moved.append(target)
    return moved


def _folder(persist_root: Path, place: Place) -> Path:
    root, parts = place
    return Path(persist_root) / config.project_folder_name(root) / Path(*parts)


def _merge(source: Path, target: Path) -> None:
    if not target.exists():  # the usual case: one rename
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        return
    for folder, _subfolders, files in os.walk(source, topdown=False):
        here = Path(folder)
        there = target / here.relative_to(source)
        for name in files:
            if (there / name).exists():  # the same entry under both names: keep one
                os.unlink(here / name)
                continue
            there.mkdir(parents=True, exist_ok=True)
            os.replace(here / name, there / name)
        os.rmdir(here)
