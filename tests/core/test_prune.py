"""persist_to_disk/prune.py: which entries a prune removes, and the sizes and ages it is given in."""

from __future__ import annotations

from pathlib import Path

import pytest

from persist_to_disk.listing import EntryInfo, EntryStatus
from persist_to_disk.prune import parse_duration, parse_size, plan_prune


# ------------------------------------------------------------------------------------------- pruning
def _entry(
    name: str, size: int, last_read: float, current: bool | None = True, status: EntryStatus = "ok"
) -> EntryInfo:
    return EntryInfo(f"{name}.ptd", Path(f"/c/{name}.ptd"), size, last_read, {"code_version": "x"}, status,
                     "bad" if status == "corrupt" else None, current)


def test_plan_prune_by_age_version_and_size_lru():
    now = 10_000.0
    entries = [
        _entry("old", 100, now - 40 * 86400),
        _entry("outdated", 100, now - 10, current=False),
        _entry("corrupt", 100, now - 10, current=None, status="corrupt"),
        _entry("a", 100, now - 300),
        _entry("b", 100, now - 200),
        _entry("c", 100, now - 100),
    ]
    names = lambda plan: sorted(e.path.stem for e in plan.delete)
    assert names(plan_prune(entries, older_than=30 * 86400, now=now)) == ["old"]
    assert names(plan_prune(entries, old_versions=True, now=now)) == ["corrupt", "outdated"]
    lru = plan_prune(entries, max_size=250, now=now)  # least recently read first: old, a, b, c, ...
    assert [e.path.stem for e in lru.delete] == ["old", "a", "b", "c"]
    assert (lru.keep.entries, lru.keep.bytes) == (2, 200) and lru.totals.bytes == 400
    both = plan_prune(entries, older_than=30 * 86400, old_versions=True, max_size=150, now=now)
    assert names(both) == ["a", "b", "corrupt", "old", "outdated"] and both.keep.entries == 1
    assert both.reasons == {"older_than": 1, "old_versions": 2, "max_size": 2}
    assert plan_prune(entries, now=now).delete == []


# ---------------------------------------------------------------------------------- units and sizes
@pytest.mark.parametrize(
    "text, expected",
    [("10G", 10 * 1024**3), ("10GB", 10 * 1024**3), ("1.5M", int(1.5 * 1024**2)), ("512", 512), ("2k", 2048)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, expected", [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 14 * 86400)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "ten", "10X", "-5G"])
def test_bad_sizes_and_durations_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="e.g. 10G"):
        parse_size(bad)
    with pytest.raises(ValueError, match="e.g. 30d"):
        parse_duration(bad)
