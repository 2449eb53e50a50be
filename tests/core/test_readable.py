"""persist_to_disk/readable.py: the words and figures the panel, the CLI and %%persist share."""

from __future__ import annotations

import time

import pytest

from persist_to_disk import readable


def test_sizes_and_counts():
    assert readable.format_bytes(512) == "512 B" and readable.format_bytes(1536) == "1.5 KiB"
    assert readable.format_bytes(3 * 1024**4) == "3.0 TiB"
    assert readable.plural(1, "entry") == "1 entry" and readable.plural(2000, "entry") == "2,000 entries"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.0421, "42 ms"), (8.24, "8.2 s"), (90, "1 min 30 s"), (812.4, "13 min 32 s"),
     (11520, "3 h 12 min")],
)
def test_durations_read_as_people_say_them(seconds, text):
    assert readable.format_seconds(seconds) == text


def test_times():
    ts = time.mktime((2023, 11, 24, 15, 3, 0, 0, 0, -1))
    assert readable.format_time(ts) == "2023-11-24 15:03" and readable.format_time(None) == "-"
    assert readable.format_short_time(ts, now=ts + 60) == "15:03"
    assert readable.format_short_time(ts, now=ts + 2 * 86400) == "Nov 24"
    assert readable.format_short_time(ts, now=ts + 400 * 86400) == "2023-11-24"


def test_one_name_for_each_kind_of_folder_and_version():
    assert readable.function_label("function", "train") == "train()"
    assert readable.function_label("cell", "features") == "cell features"
    assert readable.function_label("manual", "load") == "load (manual_cache)"
    assert readable.group_label("dataset", "mnist") == "dataset=mnist"
    assert [readable.version_label("ok", c) for c in (True, False, None)] == ["current", "older", "-"]
    assert readable.version_label("corrupt", None) == "corrupt"
    assert readable.version_label("vanished", True) == "vanished"


def test_a_call_and_what_a_cell_holds():
    assert readable.call_text({"dataset": "'MNIST'", "lr": "0.1"}) == "dataset='MNIST', lr=0.1"
    assert readable.call_text({}) == "()"
    assert readable.call_text({"window": "3"}, ["X", "summary"]) == "window=3 → X, summary"
    assert readable.call_text({}, ["X"]) == "→ X" and readable.call_text({}, []) == "→ nothing"


def test_short_paths_say_home_as_a_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert readable.short_path(tmp_path / "me" / "proj") == "~/proj"
    assert readable.short_path(tmp_path / "meme") == str(tmp_path / "meme")
    assert readable.short_path("/elsewhere/x") == "/elsewhere/x"
