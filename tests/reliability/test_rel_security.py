"""Security: private modes, refusing entries others could have written, names that stay home, no network.

Loading an entry unpickles it, and unpickling runs code: an entry someone else can
write is code someone else can run as you. Entries carry a Spy whose unpickling
leaves a trace, so each refusal is shown to happen *before* pickle sees the payload,
and the opt-in is shown to be what lets it through.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk import layout, trust
from tests.unpickle_spy import UNPICKLED, Spy

OTHER_UID = 65534  # "nobody"
ROOT = os.geteuid() == 0


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.fixture
def planted(persist):
    """A cached call whose entry carries a Spy; returns (function, entry path, runs)."""
    runs: list[int] = []

    @ptd.persistf
    def loot(n):
        runs.append(n)
        return {"n": n, "rec": Spy(f"entry-{n}")}

    loot(1)
    UNPICKLED.clear()
    trust.forget()
    return loot, loot.cache.path(1), runs


def _set_config(**values: str) -> Path:
    """Edit config.ini as a user would, and have this process read it again."""
    import configparser

    path = ptd.config.config_path
    parser = configparser.ConfigParser()
    parser.read(path)
    if not parser.has_section("global_settings"):
        parser.add_section("global_settings")
    parser["global_settings"].update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        parser.write(fh)
    ptd.config.reload()
    trust.forget()
    return path


# -- modes ------------------------------------------------------------------------------------------
def test_files_are_0600_and_folders_0700_whatever_the_umask(rel, persist):
    @ptd.persistf(groupby=["g"])
    def f(g, x):
        return x

    with umask(0):
        f("grp", 1)
        ptd.manual_cache("m", obj=2, write=True)
        ptd.get_caller_cache_path()
    modes = _modes(persist)
    assert len(modes) > 8
    bad = {p: oct(m) for p, m in modes.items() if m != (0o700 if (persist / p).is_dir() else 0o600)}
    assert bad == {}
    rel.count(operations=3)


def test_os_makedirs_alone_would_leave_open_folders(persist, monkeypatch):
    """Honesty: with os.makedirs (the mode goes to the last folder only) the test above finds 0777 folders."""
    monkeypatch.setattr(trust, "makedirs", lambda path, policy: os.makedirs(path, 0o700, exist_ok=True))

    @ptd.persistf
    def f(x):
        return x

    with umask(0):
        f(1)
    assert any(m == 0o777 for m in _modes(persist).values())


def test_shared_group_opens_files_and_folders_to_the_group(rel, persist, tmp_path):
    _set_config(shared_group="true")

    @ptd.persistf
    def f(x):
        return x

    with umask(0o022):
        assert f(1) == 1
    for p, m in _modes(persist).items():
        path = persist / p
        if path.is_dir():
            assert m == 0o2770, (p, oct(m))
        else:
            assert m == 0o660, (p, oct(m))
    entry = f.cache.path(1)
    assert f(1) == 1  # group-writable, and trusted: it is our group's cache
    os.chmod(entry, 0o666)
    with pytest.raises(ptd.UntrustedCacheError, match="writable by every account"):
        f(1)
    rel.count(faults=1, operations=3)


# -- refusing untrusted entries ---------------------------------------------------------------------
def _refused(f, n=1) -> str:
    with pytest.raises(ptd.UntrustedCacheError) as info:
        f(n)
    assert UNPICKLED == [], "the untrusted payload reached pickle"
    return str(info.value)


def test_a_group_writable_entry_is_refused_with_the_way_to_opt_in(rel, planted):
    f, entry, runs = planted
    os.chmod(entry, 0o620)
    message = _refused(f)
    assert str(entry) in message and "writable by its group" in message
    assert "shared_group = true" in message and "trust_shared = true" in message
    assert str(ptd.config.config_path) in message and "chmod go-w" in message
    assert runs == [1]  # refused, not silently recomputed over
    assert isinstance(ptd.UntrustedCacheError(""), (ptd.CacheError, PermissionError))
    rel.count(faults=1, operations=1)


@pytest.mark.skipif(not ROOT, reason="chown to another account needs root")
def test_an_entry_owned_by_another_account_is_refused(rel, planted):
    f, entry, runs = planted
    os.chown(entry, OTHER_UID, -1)
    assert "owned by another account" in _refused(f)
    rel.count(faults=1, operations=1)


@pytest.mark.skipif(not ROOT, reason="chown to another account needs root")
def test_a_folder_owned_by_another_account_is_refused(rel, planted):
    f, entry, runs = planted
    os.chown(entry.parent.parent, OTHER_UID, -1)
    message = _refused(f)
    assert f"the folder {entry.parent.parent} is owned by another account" in message
    rel.count(faults=1, operations=1)


@pytest.mark.parametrize("level", [1, 2, 5])
def test_a_folder_others_can_write_is_refused_up_to_the_cache_root(rel, planted, persist, level):
    f, entry, runs = planted
    folder = entry.parents[level - 1]
    assert folder == persist or persist in folder.parents
    os.chmod(folder, 0o777)
    message = _refused(f)
    assert f"the folder {folder} is writable by every account" in message and "chmod o-w" in message
    os.chmod(folder, 0o1777)  # sticky, like /tmp: others cannot replace what is ours in it
    trust.forget()
    assert f(1)["n"] == 1
    rel.count(faults=2, operations=2)


def test_trust_shared_in_config_ini_lets_it_load_and_that_is_what_protected_us(rel, planted):
    """Honesty: the very entry refused above runs its payload once the check is opted out of."""
    f, entry, runs = planted
    os.chmod(entry, 0o666)
    _refused(f)
    _set_config(trust_shared="true")
    assert f(1)["n"] == 1 and runs == [1]
    assert UNPICKLED == ["entry-1"], "with trust_shared the payload is loaded: the check is the protection"
    rel.count(faults=1, operations=2)


def test_listing_and_invalidating_untrusted_entries_still_works(rel, planted):
    f, entry, runs = planted
    os.chmod(entry, 0o666)
    assert [i.path for i in f.cache.entries()] == [entry]
    assert f.cache.contains(1)
    assert f.cache.invalidate(1) and not entry.exists()
    assert f(1)["n"] == 1 and runs == [1, 1]
    rel.count(operations=4)


def test_the_check_costs_no_folder_stat_on_later_hits(planted, monkeypatch):
    f, entry, runs = planted
    f(1)
    calls = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda p, *a, real=real, **k: (calls.append(str(p)), real(p, *a, **k))[1])
    for _ in range(50):
        f(1)
    assert [c for c in calls if not c.endswith(".ptd")] == []


# -- names from arguments ---------------------------------------------------------------------------
ESCAPES = ["../x", "../../etc", "/etc/passwd", "a\x00b", "x" * 5000, "..", ".", "", "a/../../b", "C:\\Windows",
           "~root", ".hidden", "a/b", "\\\\server\\share", "ü" * 300, "con", "a\nb", " ", "..\\..\\x"]


def _outside(tmp_path: Path, persist: Path) -> set[str]:
    return {str(p) for p in tmp_path.rglob("*") if persist not in p.parents and p != persist}


@pytest.mark.parametrize("value", ESCAPES, ids=[repr(v)[:20] for v in ESCAPES])
def test_groupby_and_manual_keys_never_escape(rel, tmp_path, persist, value):
    @ptd.persistf(groupby=["g"])
    def f(g):
        return 1

    before = _outside(tmp_path, persist)
    for call in (lambda: f(value), lambda: ptd.manual_cache(value, obj=1, write=True)):
        try:
            call()
        except ValueError as exc:
            assert any(s in str(exc) for s in ("groupby value of g", "manual_cache key")), exc
    assert _outside(tmp_path, persist) == before  # nothing written outside the cache root
    written = [p.resolve() for p in persist.rglob("*") if p.is_file() and ".locks" not in p.parts]
    for p in written:
        assert persist.resolve() in p.parents
    groupby_entries = [i.path for i in f.cache.entries()]
    assert all(f.cache.folder in p.parents and len(p.relative_to(f.cache.folder).parts) == 3
               for p in groupby_entries)  # <group>/<bucket>/<digest>.ptd: one folder level per value
    rel.count(faults=2, operations=2)


def test_safe_folder_name_fuzz():
    rng = random.Random(6)
    alphabet = ["/", "\\", ".", "..", "\x00", "~", ":", "a", "é", "😀", " ", "\n", "-", "C:", "%2e"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.05:
            text *= 50
        try:
            name = layout.safe_folder_name(text, setting="s")
        except ValueError:
            continue
        assert name not in ("", ".", "..") and not name.startswith(".")
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert len(name.encode("utf-8", "surrogatepass")) <= 255
        assert os.path.basename(os.path.normpath(os.path.join("/root", name))) == name


def test_nothing_reaches_the_network(rel, persist):
    out = rel.run("network", {"persist": str(persist)})
    assert out["events"] == []
    rel.count(operations=9)


# -- symlinks planted by another account ------------------------------------------------------------
def _plant_link(link: Path, target: Path) -> None:
    """A symlink made by the second account (as it could in a folder it can write)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)
    if ROOT:
        os.lchown(link, OTHER_UID, OTHER_UID)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_planted_bucket_symlink_never_leads_a_write_or_a_read_out_of_the_root(rel, tmp_path, persist):
    @ptd.persistf(hashsize=1)
    def f(x):
        return {"x": x}

    outside = tmp_path / "outside"
    outside.mkdir()
    bucket = f.cache.path(1).parent
    _plant_link(bucket, outside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert f(1) == {"x": 1}  # computed; not cached through the link
    assert list(outside.iterdir()) == [], "a write went out of the cache root"
    messages = [str(w.message) for w in caught if issubclass(w.category, ptd.CacheWarning)]
    assert len(messages) == 1 and str(bucket) in messages[0] and "symbolic link" in messages[0], messages
    (outside / f.cache.path(1).name).write_bytes(b"precious")  # a file the link leads to
    with pytest.raises(ptd.UntrustedCacheError, match="symbolic link"):
        f(1)
    assert (outside / f.cache.path(1).name).read_bytes() == b"precious"
    rel.count(faults=2, operations=2)


def test_a_planted_lock_folder_symlink_never_leads_a_lock_file_out_of_the_root(rel, tmp_path, persist):
    @ptd.persistf(lock_granularity="func")
    def f(x):
        return x

    outside = tmp_path / "outside"
    outside.mkdir()
    persist.mkdir(mode=0o1777)  # a shared root, where another account got there first
    _plant_link(persist / ".locks", outside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert f(1) == 1  # computed, without the locks
    assert list(outside.iterdir()) == [], "a lock file was made out of the cache root"
    messages = [str(w.message) for w in caught if issubclass(w.category, ptd.CacheWarning)]
    assert len(messages) == 1 and "symbolic link" in messages[0], messages
    rel.count(faults=1, operations=1)


def test_prune_and_clear_never_follow_a_symlinked_project_out_of_a_shared_root(rel, tmp_path, persist):
    @ptd.persistf
    def f(x):
        return x

    for x in range(3):
        f(x)
    os.chmod(persist, 0o1777)  # a shared root, like /tmp: every account can add a folder (or a link)
    project = f.cache.folder.relative_to(persist).parts[0]
    outside = tmp_path / "victim"
    shutil.copytree(persist / project, outside / project)  # the victim's files, shaped like a cache
    _plant_link(persist / "evil-99", outside / project)
    before = _snapshot(outside)
    assert len(before) == 3
    runs = [
        ["prune", "--root", str(persist), "--older-than", "0s", "--yes"],
        ["clear", "--root", str(persist), "evil-99", "--yes"],
        ["clear", "--root", str(persist), "evil", "--yes"],
        ["prune", "--root", str(persist), "evil-99", "--max-size", "0", "--yes"],
    ]
    for args in runs:
        subprocess.run([sys.executable, "-m", "persist_to_disk", *args], capture_output=True, text=True,
                       timeout=60, env=os.environ.copy())
    assert _snapshot(outside) == before, "files outside the cache root were deleted"
    assert (persist / "evil-99").is_symlink()
    assert not any(p.suffix == ".ptd" for p in (persist / project).rglob("*")), "our own entries were pruned"
    rel.count(faults=1, operations=len(runs))


# -- config.ini -------------------------------------------------------------------------------------
def _config_warnings() -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = ptd.config.settings()
    return settings, [str(w.message) for w in caught if issubclass(w.category, ptd.CacheWarning)]


@pytest.mark.parametrize("how", ["other owner", "world-writable", "group-writable"])
def test_a_config_ini_others_could_write_is_ignored_with_a_warning(rel, planted, tmp_path, how):
    if how == "other owner" and not ROOT:
        pytest.skip("chown to another account needs root")
    f, entry, runs = planted
    elsewhere = tmp_path / "elsewhere"
    path = _set_config(trust_shared="true", persist_path=str(elsewhere))
    if how == "other owner":
        os.chown(path, OTHER_UID, -1)
    else:
        os.chmod(path, 0o666 if how == "world-writable" else 0o620)
    ptd.config.reload()
    settings, messages = _config_warnings()
    assert not settings.trust_shared and settings.persist_path != elsewhere
    assert len(messages) == 1 and str(path) in messages[0], messages
    assert "trust_shared" in messages[0] and "persist_path" in messages[0]  # the settings ignored, by name
    os.chown(entry, OTHER_UID, -1) if ROOT else os.chmod(entry, 0o666)
    with pytest.raises(ptd.UntrustedCacheError):
        f(1)
    assert UNPICKLED == [], "a planted trust_shared made this process unpickle another account's payload"
    rel.count(faults=2, operations=2)


def test_a_config_ini_of_ours_is_honoured(planted, tmp_path):
    path = _set_config(trust_shared="true")
    os.chmod(path, 0o600)
    ptd.config.reload()
    settings, messages = _config_warnings()
    assert settings.trust_shared and messages == []
