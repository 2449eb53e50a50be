"""A project's identity across machines: the URL of its git ``origin`` remote.

Machines sharing a store (or a network folder) must name a project's folder alike. A
number given in the order projects were first seen (``project_to_pids.txt``) differs from
one HOME to the next; the origin URL does not. A project first seen with an origin gets the
id ``g<8 hex digits of the URL's xxh3-64>``, the same on every machine and for every checkout
of that repository; projects without an origin keep numbered ids, and an id once given is
kept for ever (so existing caches keep theirs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import xxhash

__all__ = ["git_origin", "normalized_url", "origin_id"]

_SECTION = re.compile(r'^\s*\[\s*remote\s+"origin"\s*\]\s*$')
_ANY_SECTION = re.compile(r"^\s*\[")
_URL = re.compile(r"^\s*url\s*=\s*(.+?)\s*$")
_SCP = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")  # git@host:org/repo (scp-like syntax)


def _config_file(root: Path) -> Path | None:
    """The git config of the repository at ``root`` (a plain clone, or a worktree's common folder)."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git / "config"
    try:
        text = dot_git.read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(os.path.join(root, text[len("gitdir:") :].strip()))
    try:
        common = (gitdir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return gitdir / "config"
    return Path(os.path.join(gitdir, common)) / "config"


def git_origin(root: str | os.PathLike) -> str | None:
    """The ``origin`` remote's URL of the git repository at ``root``, or None (read from its config file)."""
    config = _config_file(Path(root))
    if config is None:
        return None
    try:
        lines = config.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        if _SECTION.match(line):
            inside = True
        elif _ANY_SECTION.match(line):
            inside = False
        elif inside and (found := _URL.match(line)):
            return found.group(1).strip('"')
    return None


def normalized_url(url: str) -> str:
    """``host/path`` of a remote URL, however it is spelled: ``git@github.com:org/repo.git``,
    ``https://github.com/org/repo``, ``ssh://git@github.com/org/repo/`` all give ``github.com/org/repo``."""
    text = url.strip()
    if "://" in text:
        rest = text.split("://", 1)[1]
        host, _, path = rest.partition("/")
        host = host.rpartition("@")[2].split(":")[0]  # no user, no port
    elif (scp := _SCP.match(text)) is not None:
        host, path = scp.groups()
    else:  # a local path used as a remote
        host, path = "", os.path.normpath(text)
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    return f"{host.lower()}/{path}" if host else path


def origin_id(root: str | os.PathLike) -> str | None:
    """``g<8 hex>`` for a project whose git origin is known, else None."""
    url = git_origin(root)
    if not url:
        return None
    return "g" + xxhash.xxh3_64_hexdigest(normalized_url(url).encode("utf-8"))[:8]
