"""``persist_to_disk/config.py``: settings from config.ini and from code, read at call time."""

from __future__ import annotations

from pathlib import Path

import pytest

import persist_to_disk as ptd


def _write_config(home: Path, body: str) -> Path:
    path = ptd.config.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[global_settings]\n" + body)
    path.chmod(0o600)
    ptd.config.reset()
    return path


def test_defaults_when_there_is_no_config_file(isolated_home):
    settings = ptd.config.settings()
    assert settings.persist_path == isolated_home / ".cache" / "persist_to_disk" / "cache"
    assert (settings.hashsize, settings.lock_granularity, settings.track_dependencies) == (500, "call", True)


def test_settings_come_from_config_ini_and_code_wins(isolated_home, tmp_path):
    _write_config(isolated_home, f"persist_path = {tmp_path / 'c'}\nhashsize = 7\ntrack_dependencies = false\n")
    settings = ptd.config.settings()
    assert settings.persist_path == tmp_path / "c" and settings.hashsize == 7
    assert settings.track_dependencies is False
    ptd.config.set_hashsize(11)
    ptd.config.set_track_dependencies(True)
    assert ptd.config.settings().hashsize == 11 and ptd.config.settings().track_dependencies is True
    assert ptd.config.describe()["track_dependencies"] is True


@pytest.mark.parametrize(
    "line, setting",
    [("hashsize = lots", "hashsize"), ("lock_granularity = bucket", "lock_granularity"),
     ("track_dependencies = maybe", "track_dependencies")],
)
def test_a_bad_value_in_config_ini_names_the_setting_and_the_file(isolated_home, line, setting):
    path = _write_config(isolated_home, line + "\n")
    with pytest.raises(ValueError, match=setting) as caught:
        ptd.config.settings()
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("call", [lambda: ptd.config.set_hashsize(0), lambda: ptd.config.set_lock_granularity("x")])
def test_a_bad_value_set_in_code_fails_at_once(call):
    with pytest.raises(ValueError):
        call()


def test_a_setting_made_after_decoration_counts_on_the_next_call(tmp_path):
    @ptd.persistf()
    def f(x):
        return x

    ptd.config.set_persist_path(tmp_path / "first")
    f(1)
    ptd.config.set_persist_path(tmp_path / "second")
    f(1)
    assert list((tmp_path / "first").rglob("*.ptd")) and list((tmp_path / "second").rglob("*.ptd"))
