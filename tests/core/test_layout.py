"""``persist_to_disk/layout.py``: where an entry lives (pure functions, no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

import xxhash

from persist_to_disk import layout


@pytest.mark.parametrize("value", ["mnist", "cifar-10", "v1.2", "a_b", 42, 0.5])
def test_clean_values_name_their_folder_as_they_are(value):
    assert layout.safe_folder_name(value, setting="groupby") == str(value)


def test_odd_values_are_escaped_apart_and_never_equal_a_clean_name():
    escaped = layout.safe_folder_name("a b", setting="groupby")
    assert escaped.startswith("a_b") and layout.ESCAPE_MARK in escaped
    assert escaped != layout.safe_folder_name("a_b", setting="groupby")
    assert escaped != layout.safe_folder_name("a?b", setting="groupby"), "two odd values keep apart"
    assert layout.safe_folder_name(".hidden", setting="g") != ".hidden", "no hidden folders"
    long = layout.safe_folder_name("é" * 300, setting="g")
    assert len(long.encode()) <= 255


@pytest.mark.parametrize("value", ["..", "../x", "a/../../b", "/etc", "", " ", "x\x00y", "C:\\Windows"])
def test_values_that_would_escape_the_folder_are_refused_naming_the_setting(value):
    with pytest.raises(ValueError, match="groupby value of dataset"):
        layout.safe_folder_name(value, setting="groupby value of dataset")


def test_buckets_spread_digests_over_hashsize_and_relpaths_follow_the_seed_tree():
    digests = [xxhash.xxh3_128_hexdigest(str(i).encode()) for i in range(200)]
    buckets = {layout.bucket_of(d, 7) for d in digests}
    assert buckets <= set(range(7)) and len(buckets) == 7
    assert layout.entry_relpath((), 3, "ab") == "3/ab.ptd"
    assert layout.entry_relpath(("mnist", "20"), 3, "ab") == "mnist/20/3/ab.ptd"


def test_source_parts_name_the_file_in_the_project(tmp_path: Path):
    root = tmp_path / "proj"
    (root / "pipeline").mkdir(parents=True)
    source = root / "pipeline" / "train.py"
    source.write_text("")
    assert layout.source_parts(str(source), "pipeline.train", root) == ("pipeline", "train")
    outside = tmp_path / "elsewhere.py"
    outside.write_text("")
    assert layout.source_parts(str(outside), "elsewhere", root) == ("_external", "elsewhere")
    assert layout.source_parts(None, "__main__", root) == ("_interactive",)


def test_the_project_root_is_the_nearest_marked_folder(tmp_path: Path):
    root = tmp_path / "proj"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    found, marker = layout.find_marker_root(root / "src" / "pkg")
    assert found == root and marker == "marker:pyproject.toml"
