"""Where things go: the cache tree of the seed, computed from paths at call time.

::

    <persist_path>/<project>-<autoid>/<source path in project>/<function>/<groupby...>/<bucket>/<digest>.ptd

The source path is the module's file relative to the project root (``pipeline/train``),
or the notebook's path when the function was defined in a notebook cell.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import xxhash

from .sigint import import_whole

__all__ = [
    "ENTRY_SUFFIX", "ESCAPE_MARK", "MAX_NAME", "PROJECT_MARKERS", "CellLocator", "bucket_of", "cell_locator",
    "default_project_root", "default_project_root_with_reason", "entry_relpath", "find_marker_root",
    "function_folder", "safe_folder_name", "source_parts",
]

PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg")
ENTRY_SUFFIX = ".ptd"
MAX_NAME = 100
_SAFE_NAME = re.compile(r"[^\w.,=+@-]", re.UNICODE)
ESCAPE_MARK = "~"  # before the digest of an escaped name: a clean name never holds it (_SAFE_NAME replaces it)


class CellLocator(Protocol):
    """Installed by the Jupyter layer: maps a notebook cell's code file to the notebook."""

    def locate(self, filename: str) -> tuple[Path, tuple[str, ...]] | None:
        """(project root, path parts of the notebook inside it) for a cell's filename, else None."""

    def project_root(self) -> tuple[Path, str] | None:
        """The running notebook's project root and how it was found, if a notebook runs."""

    def describe(self) -> dict[str, Any]: ...


def find_marker_root(start: Path) -> tuple[Path, str] | None:
    """The nearest folder at or above ``start`` holding a project marker."""
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        for marker in PROJECT_MARKERS:
            if (candidate / marker).exists():
                return candidate, f"marker:{marker}"
    return None


def cell_locator() -> CellLocator | None:
    """The notebook locator when running under IPython (installed lazily, never imported otherwise)."""
    from ._state import config

    if config.notebook_locator is None and "IPython" in sys.modules:
        try:
            from IPython import get_ipython

            shell = get_ipython()
            if shell is not None:
                import_whole("ipython_ext.location").install(shell)  # installs itself into config
        except Exception:  # no Jupyter layer: behave as in a script
            return None
    return config.notebook_locator


def default_project_root_with_reason(source_file: str | None) -> tuple[Path, str]:
    """Project root when none is set: the notebook's, else the marker above the source, else cwd."""
    locator = cell_locator()
    if locator is not None:
        if source_file is not None:
            located = locator.locate(source_file)
            if located is not None:
                return located[0], "notebook"
        else:
            found = locator.project_root()
            if found is not None:
                return found
    if source_file is not None and not _is_pseudo_file(source_file):
        found = find_marker_root(Path(os.path.abspath(source_file)))
        if found is not None:
            return found
    cwd = Path(os.getcwd())
    found = find_marker_root(cwd)
    return found if found is not None else (cwd, "cwd")


def default_project_root(source_file: str | None) -> Path:
    return default_project_root_with_reason(source_file)[0]


def _is_pseudo_file(filename: str) -> bool:
    return filename.startswith("<") or not os.path.isabs(filename) and not os.path.exists(filename)


def source_parts(source_file: str | None, module: str | None, project_root: Path) -> tuple[str, ...]:
    """The folders naming a function's source: its path in the project, without suffix."""
    locator = cell_locator()
    if source_file is not None and locator is not None:
        located = locator.locate(source_file)
        if located is not None:
            return located[1]
    if source_file and not _is_pseudo_file(source_file):
        path = Path(os.path.abspath(source_file)).with_suffix("")
        try:
            return tuple(path.relative_to(project_root).parts)
        except ValueError:
            pass
        if module and module != "__main__":
            return ("_external", *module.split("."))
        return ("_external", path.name)
    return ("_interactive",) if not module or module == "__main__" else tuple(module.split("."))


def safe_folder_name(value: Any, *, setting: str) -> str:
    """A folder name for a groupby value or a cell name that cannot escape the cache folder.

    Values that try to (``..``, absolute paths, NUL, empty) are refused with a
    ValueError; other odd characters are replaced and a short digest keeps two
    different values apart (``a b`` -> ``a_b~8044f8a6``). The ``~`` before the digest is a
    character no clean name holds, so an escaped name never equals a value's clean one.
    """
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise ValueError(f"{setting}={value!r} contains a NUL character and cannot name a cache folder")
    if text.strip() in ("", ".", ".."):
        raise ValueError(f"{setting}={value!r} cannot name a cache folder")
    parts = re.split(r"[\\/]", text)
    if ".." in parts or text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", text):
        raise ValueError(f"{setting}={value!r} would escape the cache folder (it is a path with '..' or absolute)")
    clean = _SAFE_NAME.sub("_", text)
    # MAX_NAME counts UTF-8 bytes: file systems limit a name to 255 bytes, not characters
    if clean != text or len(clean.encode("utf-8", "surrogatepass")) > MAX_NAME or clean.startswith("."):
        digest = xxhash.xxh3_64_hexdigest(text.encode("utf-8", "surrogatepass"))[:8]
        head = clean.lstrip(".").encode("utf-8", "surrogatepass")[: MAX_NAME - 10].decode("utf-8", "ignore")
        clean = f"{head or '_'}{ESCAPE_MARK}{digest}"
    return clean


def function_folder(
    persist_root: str | os.PathLike, project_root: str | os.PathLike, parts: Iterable[str], name: str
) -> Path:
    """``<persist_root>/<project>-<autoid>/<parts...>/<name>``: a function's (or a cell's) folder."""
    from ._state import config

    return Path(persist_root) / config.project_folder_name(Path(project_root)) / Path(*parts) / name


def bucket_of(digest: str, hashsize: int) -> int:
    return int(digest[:16], 16) % hashsize


def entry_relpath(groups: Iterable[str], bucket: int, digest: str) -> str:
    if not groups:  # the usual case, on every hit
        return f"{bucket}/{digest}{ENTRY_SUFFIX}"
    return "/".join((*groups, str(bucket), digest + ENTRY_SUFFIX))
