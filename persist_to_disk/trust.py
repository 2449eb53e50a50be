"""Who may write what the cache loads: modes on write, ownership checks on load.

Loading an entry unpickles it, and unpickling can run any code. So an entry is
only as trustworthy as every account that could have written it, or could have
swapped it, or a folder above it, for its own. The trust model:

- **private** (the default): files are created ``0600`` and folders ``0700``. An
  entry is loaded only if the file, and every folder from it up to the cache root,
  is owned by this account (or root) and writable by no other account (a folder
  with the sticky bit, like ``/tmp``, counts as safe: others cannot replace what
  is ours in it).
- ``shared_group = true`` (config.ini): a team cache. Files are created ``0660`` and
  folders ``2770`` (the setgid bit hands the folder's group down), and entries
  written by other accounts, or writable by one of *our* groups, are loaded.
  Anything writable by every account, or by a group we are not in, is still refused.
- ``trust_shared = true``: no check at all (for a file system that shows every
  file as writable by all, such as some network mounts). You vouch for everyone
  who can write there.

No symbolic link below the cache root is followed (``check_no_links``, ``make_folder``):
the cache makes none, and one planted there could lead a load, a write or a delete out of
it. ``config.ini`` is held to the private rule (``why_untrusted_settings``): its settings
decide what is loaded and from where.

The check costs one ``fstat`` of the file already open for reading, plus one
``lstat`` per folder the first time this process loads from (or writes to) it.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any

from .errors import UntrustedCacheError

__all__ = [
    "GROUP_DIR_MODE", "GROUP_FILE_MODE", "LINK_WHY", "PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "Policy",
    "check_entry", "check_no_links", "current_policy", "forget", "make_folder", "makedirs", "set_file_mode",
    "why_untrusted_settings",
]

_POSIX = not sys.platform.startswith("win") and hasattr(os, "geteuid")
# read once: the hit path's quick accept compares with it. Should the process change its euid
# later, a stale value only sends files to the full check, which asks again (or, for root's own
# files, accepts what the full check accepts too).
_EUID = os.geteuid() if _POSIX else -1

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
GROUP_FILE_MODE = 0o660
GROUP_DIR_MODE = 0o2770


@dataclass(frozen=True)
class Policy:
    """How files are created and which ones may be loaded (from config.ini)."""

    shared_group: bool = False
    trust_shared: bool = False

    @property
    def file_mode(self) -> int:
        return GROUP_FILE_MODE if self.shared_group else PRIVATE_FILE_MODE

    @property
    def dir_mode(self) -> int:
        return GROUP_DIR_MODE if self.shared_group else PRIVATE_DIR_MODE


_last: tuple[object, Policy] | None = None  # (settings snapshot, its policy): the hit path asks every time
_settings: Any = None  # config.settings, bound on first use (config imports this module's importers)


def current_policy() -> Policy:
    """The policy of the current settings (``shared_group``, ``trust_shared``)."""
    global _last, _settings
    settings = _settings
    if settings is None:
        from ._state import config  # imported once: a function-level import costs ~1 µs on every hit

        settings = _settings = config.settings
    s = settings()
    last = _last
    if last is not None and last[0] is s:
        return last[1]
    policy = Policy(shared_group=s.shared_group, trust_shared=s.trust_shared)
    _last = (s, policy)
    return policy


# -- creating ---------------------------------------------------------------------------------------
def makedirs(path: str, policy: Policy) -> None:
    """``os.makedirs(path, exist_ok=True)``, but every folder it creates gets the policy's mode.

    (``os.makedirs`` gives the mode to the last folder only, and the umask trims it.)
    """
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path and not os.path.isdir(parent):
        makedirs(parent, policy)
    try:
        os.mkdir(path, policy.dir_mode & 0o777)
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of a cache folder", path) from None
        return
    if policy.shared_group and _POSIX:  # the umask took the group bits; setgid needs chmod anyway
        os.chmod(path, policy.dir_mode)


def set_file_mode(fd: int, policy: Policy) -> None:
    """Give a file we just created the policy's mode (files are opened 0600; the umask can only narrow it)."""
    if policy.shared_group and _POSIX:
        os.fchmod(fd, policy.file_mode)


# -- loading ----------------------------------------------------------------------------------------
_trusted: set[tuple[str, str, bool]] = set()  # (entry folder, top, shared_group) already checked up to top


def check_entry(path: str, st: os.stat_result, top: str, policy: Policy) -> None:
    """Raise UntrustedCacheError unless the entry file (its ``fstat``) and its folders up to ``top`` are safe."""
    if policy.trust_shared or not _POSIX:
        return
    # the usual case, decided without the full check: a private cache's file, ours, writable by nobody else
    if policy.shared_group or st.st_mode & 0o022 or st.st_uid != _EUID:
        why = _why_untrusted(st, policy, is_dir=False)
        if why:
            raise UntrustedCacheError(_message(path, path, why, policy), path=str(path))
    folder = path[: path.rfind("/")] or "/"  # os.path.dirname, without its generality (absolute POSIX paths)
    memo = (folder, top, policy.shared_group)
    if memo in _trusted:
        return
    current = folder
    checked = []
    while True:
        if checked and (current, top, policy.shared_group) in _trusted:
            break  # this folder and those above it were checked already (by a sibling entry folder)
        try:
            fst = os.stat(current) if current == top else os.lstat(current)  # the root may be a link, nothing below
        except OSError:
            return  # vanished while we looked: nothing was loaded from it
        why = _why_untrusted(fst, policy, is_dir=True)
        if why:
            raise UntrustedCacheError(_message(path, current, why, policy), path=str(current))
        checked.append(current)
        parent = os.path.dirname(current)
        if current == top or parent == current or not _is_under(parent, top):
            break
        current = parent
    if len(_trusted) > 100_000:
        _trusted.clear()
    _trusted.update((f, top, policy.shared_group) for f in checked)  # each: itself and every folder up to top


def forget() -> None:
    """Check every folder again on the next load or write (tests; after changing permissions by hand)."""
    _trusted.clear()
    _linkless.clear()


# -- config.ini -----------------------------------------------------------------------------------------
def why_untrusted_settings(path: str, st: os.stat_result) -> str | None:
    """Why a settings file (its ``fstat``) may not be honoured, or None: the entry rule of a private
    cache, for the file and its folder. Its settings decide what gets loaded (``trust_shared``) and
    where (``persist_path``), so a file another account could have written is code it could run as you."""
    if not _POSIX:
        return None
    why = _why_untrusted(st, Policy(), is_dir=False)
    if why:
        return f"it {why}"
    folder = os.path.dirname(path)
    try:
        why = _why_untrusted(os.stat(folder), Policy(), is_dir=True)
    except OSError:
        return None
    return f"its folder {folder} {why}" if why else None


# -- no symbolic links below the root --------------------------------------------------------------------
LINK_WHY = "is a symbolic link; the cache makes none below its root, so one there was planted or made by hand"
_linkless: set[tuple[str, str]] = set()  # (folder, top): it, and every folder up to top, is no symbolic link


def check_no_links(folder: str, top: str) -> None:
    """Raise UntrustedCacheError if a folder from ``folder`` up to ``top`` (``top`` itself may be a link:
    the cache root is the user's choice) is a symbolic link, which could lead a write, a delete or
    a listing out of the cache. Missing folders are fine. One ``lstat`` per folder, the first time."""
    current = folder
    checked = []
    while current != top and _is_under(current, top):
        if (current, top) in _linkless:
            break
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            checked.clear()  # below a missing folder nothing exists: remember only what is above it
        else:
            if stat.S_ISLNK(st.st_mode):
                raise UntrustedCacheError(_link_message(current), path=str(current))
            checked.append(current)
        current = os.path.dirname(current)
    if len(_linkless) > 100_000:
        _linkless.clear()
    _linkless.update((f, top) for f in checked)


def make_folder(folder: str, top: str, policy: Policy, *, again: bool = False) -> None:
    """``makedirs(folder)`` for a write below ``top``, never through a symbolic link.

    ``again``: the folder was found missing after all (a delete removed it): check it anew.
    """
    if again:
        current = folder
        while _is_under(current, top) and current != top:
            _linkless.discard((current, top))
            current = os.path.dirname(current)
    elif (folder, top) in _linkless:
        return
    check_no_links(folder, top)  # before making anything: a folder made through a link is made outside
    makedirs(folder, policy)
    check_no_links(folder, top)  # and the folders just made (one planted meanwhile is refused)


def _link_message(path: str) -> str:
    return (
        f"persist_to_disk refuses to use {path}: it {LINK_WHY}, and it could lead the cache's reads, writes "
        f"and deletes out of it. Remove it (`rm {path}`); to keep the cache elsewhere, set persist_path there "
        f"(the cache root itself may be a link)."
    )


def _is_under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _why_untrusted(st: os.stat_result, policy: Policy, *, is_dir: bool) -> str | None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return LINK_WHY
    sticky = is_dir and bool(mode & stat.S_ISVTX)
    if mode & stat.S_IWOTH and not sticky:
        return "is writable by every account"
    if policy.shared_group:
        if mode & stat.S_IWGRP and not sticky and st.st_gid not in _my_groups():
            return f"is writable by group {st.st_gid}, which this account is not in"
        return None
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        return f"is owned by another account (uid {st.st_uid}; this process runs as uid {me})"
    if mode & stat.S_IWGRP and not sticky:
        return f"is writable by its group (gid {st.st_gid})"
    return None


def _my_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def _message(entry: str, culprit: str, why: str, policy: Policy) -> str:
    from .config import settings_dir

    if why == LINK_WHY:
        return _link_message(culprit)
    what = "it" if culprit == entry else f"the folder {culprit}"
    fix = "chmod o-w" if "every account" in why else "chmod go-w"
    optin = (
        "set `trust_shared = true`"
        if policy.shared_group
        else "set `shared_group = true` (a team cache: trust your groups) or `trust_shared = true` (trust anyone "
        "who can write there)"
    )
    return (
        f"persist_to_disk refuses to load the cache entry {entry}: {what} {why}. Loading an entry unpickles it, "
        f"which can run code, so by default entries are loaded only from files and folders no other account can "
        f"write. If you trust every account that can write there, {optin} in [global_settings] of "
        f"{settings_dir() / 'config.ini'}; otherwise fix it (`{fix} {culprit}`, or delete the entry)."
    )
