"""Strings hashed in bulk (object columns, lists of names, Arrow strings) key exactly as one by one would.

The bulk paths exist for speed only: an object array or list of many ``str`` feeds the very
bytes ``feed`` gives each string (``b"s" | length | UTF-8``), so keys are those of the per-item
walk; Arrow strings feed their lengths and bytes from the Arrow buffers. Either way values that
differ key apart, including the ones a careless join would merge.
"""

from __future__ import annotations

import enum
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import xxhash

from persist_to_disk import keys

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

TEXTS = ["", "a", "ab", "héllo", "日本語", "\ud800lone", "x" * 300, "y" * 70_000, "tab\tand\nline", "😀"] * 7
ARROW_TEXTS = [t for t in TEXTS if "\ud800" not in t]  # Arrow holds UTF-8 only: no lone surrogates


def _per_item_digest(items: list) -> str:
    """The key format written out by hand: a list is ``l``, its length, each item, then ``)``."""
    stream = bytearray(keys.KEY_FORMAT + b"l" + struct.pack("<Q", 0) + struct.pack("<Q", len(items)))
    for item in items:
        if isinstance(item, str):
            data = item.encode("utf-8", "surrogatepass")
            stream += b"s" + struct.pack("<Q", len(data)) + data
        else:
            assert item is None
            stream += b"N" + struct.pack("<Q", 0)
    stream += b")"
    return xxhash.xxh3_128_hexdigest(bytes(stream))


@pytest.mark.parametrize(
    "items",
    [
        TEXTS,
        [f"name{i}" for i in range(1000)],
        [*TEXTS[:40], None, *TEXTS[:3], None, *TEXTS[5:60]],  # runs of strings between other objects
        ["with\x00nul", *TEXTS],  # a NUL inside a string
    ],
    ids=["unicode", "ascii", "mixed", "nul"],
)
def test_many_strings_hash_as_each_string_would(items: list) -> None:
    assert keys.hash_value(items) == _per_item_digest(items)


def test_joined_text_that_splits_differently_keys_apart() -> None:
    assert keys.hash_value(["ab", "c"] * 50) != keys.hash_value(["a", "bc"] * 50)
    column = np.array(["ab", "c"] * 50, dtype=object)
    assert keys.hash_value(column) != keys.hash_value(np.array(["a", "bc"] * 50, dtype=object))
    for dtype in ("string[pyarrow]", "str"):
        assert keys.hash_value(pd.Series(["ab", "c"] * 50, dtype=dtype)) != keys.hash_value(
            pd.Series(["a", "bc"] * 50, dtype=dtype)
        )


def test_missing_values_and_their_spellings_key_apart() -> None:
    base = [f"w{i}" for i in range(100)]
    variants = [None, "None", math.nan, "nan", "", "NaN"]
    digests = {keys.hash_value(np.array([*base, v], dtype=object)) for v in variants}
    assert len(digests) == len(variants)
    arrow = {keys.hash_value(pd.Series([*base, v], dtype="string[pyarrow]")) for v in (None, "None", "nan", "")}
    assert len(arrow) == 4


def test_a_str_subclass_is_not_a_str() -> None:
    class Label(str):
        pass

    plain = [f"w{i}" for i in range(100)]
    assert keys.hash_value(plain) != keys.hash_value([*plain[:-1], Label(plain[-1])])


def _values_digest(values) -> str:
    """What a Series' or an Index's values feed (the key less its dtype's name)."""
    from persist_to_disk import arrays

    h = keys.CanonicalHasher()
    arrays._feed_array_like(h, values)
    return h.digest()


@pytest.mark.parametrize(
    "texts", [ARROW_TEXTS, ARROW_TEXTS[:5], [f"w{i}" for i in range(70_000)]], ids=["unicode", "short", "many"]
)
@pytest.mark.parametrize("arrow_type", ["string", "large_string"])
def test_arrow_strings_feed_what_their_object_array_feeds(texts: list, arrow_type: str) -> None:
    """pandas 2 keeps text in object columns, pandas 3 in Arrow: equal strings must feed equal bytes."""
    as_objects = pd.Index(texts, dtype=object)
    for chunks in ([texts], [texts[:7], texts[7:]], [["pad", *texts]]):
        arrow = pa.chunked_array(chunks, type=getattr(pa, arrow_type)())
        if chunks[0][0] == "pad":
            arrow = arrow.slice(1)
        as_arrow = pd.Index(pd.arrays.ArrowStringArray(arrow))
        assert _values_digest(as_arrow) == _values_digest(as_objects)


def test_a_categorical_column_keys_by_its_categories_and_values() -> None:
    def series(values, categories):
        return pd.Series(pd.Categorical(values, categories=categories))

    same = series(["a", "b"] * 50, ["a", "b"])
    assert keys.hash_value(same) == keys.hash_value(series(["a", "b"] * 50, ["a", "b"]))
    assert keys.hash_value(same) != keys.hash_value(series(["b", "a"] * 50, ["a", "b"]))
    assert keys.hash_value(same) != keys.hash_value(series(["a", "b"] * 50, ["b", "a"]))  # same values, other codes


FRAME = """
import pandas as pd, numpy as np
from persist_to_disk import keys
words = [f"w{i % 37}é" for i in range(5000)]
frame = pd.DataFrame({"s": pd.Series(words, dtype="str"), "p": pd.Series(words, dtype="string[pyarrow]"),
                      "o": pd.Series(words, dtype=object), "c": pd.Categorical(words), "f": np.arange(5000.0)})
print(keys.hash_value(frame))
"""


def test_a_frame_with_text_columns_keys_the_same_in_every_process() -> None:
    digests = {
        subprocess.run(
            [sys.executable, "-c", FRAME],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1 and len(digests.pop()) == 32


def _item_by_item(monkeypatch: pytest.MonkeyPatch, value) -> str:
    """The digest with every bulk path off: each key and value fed alone, keys put in order by ``sorted``."""
    from persist_to_disk import records, scalarruns

    with monkeypatch.context() as patched:
        patched.setattr(records, "RECORDS_MIN", 10**9)
        patched.setattr(records, "SCALARS_MIN", 10**9)
        patched.setattr(scalarruns, "STR_RUN_MIN", 10**9)
        patched.setattr(scalarruns, "FLOAT_ITEMS_MIN", 10**9)
        patched.setattr(scalarruns, "INT_ITEMS_MIN", 10**9)
        patched.setattr(scalarruns, "SORT_MIN", 10**9)  # keys put in order by sorted(items)
        return keys.hash_value(value)


def _keyed_alike_in_any_order(monkeypatch: pytest.MonkeyPatch, mapping: dict) -> str:
    """The mapping's digest, after checking it in reverse insertion order, in bulk and item by item."""
    digest = keys.hash_value(mapping)
    backward = dict(reversed(list(mapping.items())))
    assert keys.hash_value(backward) == digest
    assert _item_by_item(monkeypatch, backward) == digest
    return digest


def test_a_dict_of_floats_hashes_as_item_by_item(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = {f"run{i}": float(i) / 7 for i in range(500)}
    scores.update({"nan": math.nan, "negative nan": -math.nan, "zero": 0.0, "minus zero": -0.0, "inf": math.inf})
    reordered = dict(reversed(list(scores.items())))
    bulk = keys.hash_value(scores)
    assert keys.hash_value(reordered) == bulk
    assert _item_by_item(monkeypatch, scores) == bulk
    assert _item_by_item(monkeypatch, reordered) == bulk
    assert keys.hash_value({**scores, "zero": -0.0}) != bulk


# ints at each edge of a byte count (feed_int frames -128 in two bytes, 127 in one), and the 64-bit ends
EDGES = [0, 1, -1, 127, 128, -127, -128, -129, 255, 256, 32767, 32768, -32768, -32769, 2**55 - 1, 2**55,
         -(2**55), 2**63 - 1, -(2**63) + 1]
INT_RUNS = [
    list(range(1000)),  # indices
    [(i * 7919) % 5003 - 2500 for i in range(3000)],  # shuffled, negative too
    EDGES * 10,
    tuple(EDGES * 10),
    EDGES * 10 + [-(2**63)],  # one whose frame takes 9 bytes: that piece item by item
    EDGES * 10 + [2**64, -(2**70)],  # past 64 bits
    list(range(70_000)),  # more than one numpy piece
    list(range(70_000)) + [2**80],  # the last piece item by item, the first in bulk
]


@pytest.mark.parametrize("ints", INT_RUNS, ids=range(len(INT_RUNS)))
def test_runs_of_ints_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, ints) -> None:
    bulk = keys.hash_value(ints)
    assert _item_by_item(monkeypatch, ints) == bulk
    changed = list(ints)
    changed[len(changed) // 2] += 1
    assert keys.hash_value(type(ints)(changed)) != bulk
    assert keys.hash_value([*ints[:-1], True if ints[-1] == 1 else float(ints[-1])]) != bulk  # bool, float: not ints


@pytest.mark.parametrize("ints", INT_RUNS[:3] + INT_RUNS[4:6], ids=range(5))
def test_int_keyed_dicts_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, ints) -> None:
    """{id: count}, {id: score}, {id: name}: int keys digested without a sub-hasher, int values in bulk."""
    keyed = list(dict.fromkeys(ints))
    for values in (ints[: len(keyed)], [k / 3 for k in keyed], [str(k) for k in keyed]):
        forward = dict(zip(keyed, values))
        backward = dict(reversed(list(forward.items())))
        digest = keys.hash_value(forward)
        assert keys.hash_value(backward) == digest
        assert _item_by_item(monkeypatch, backward) == digest
        assert keys.hash_value({**forward, keyed[0]: values[1]}) != digest


def test_an_int_key_digest_is_that_of_a_sub_hasher() -> None:
    h = keys.CanonicalHasher()
    numbers = [*EDGES, -(2**63), 2**64, -(2**200), 10**40]
    for number in numbers:
        assert h._own_digest(number) == h._sub_digest(number), number
    many = [*numbers, *range(-1000, 1000), 0.5, -0.0, math.nan, True, None, "é", "x" * 130, "a\x00"]
    assert h._own_digests(many) == [h._sub_digest(item) for item in many]  # in bulk, or alone where they must


def _rows(n: int) -> list[tuple]:
    """Rows as a database cursor gives them: ids, names, scores, flags, missing values."""
    names = ["Ann", "é", "日本語", "", "a longer name with spaces", "x" * 120]
    return [(i, names[i % len(names)], i / 7 if i % 5 else math.nan, i % 3 == 0, None if i % 4 else -0.0)
            for i in range(n)]


class _Key(enum.StrEnum):
    A = "a"


class _EqualsAll:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


RECORD_LISTS = {
    "tuples": _rows(1000),
    "dicts": [dict(zip(["id", "name", "score", "flag", "maybe"], row)) for row in _rows(1000)],
    "dicts with many keys": [{f"k{j:02d}": i * j for j in range(40)} for i in range(300)],
    "records of 120 fields, a few per piece": [tuple(range(i, i + 120)) for i in range(2000)],
    "records too wide for bulk": [tuple(range(i, i + 200)) for i in range(300)],
    "ints and floats in one field": [(i, i if i % 2 else float(i)) for i in range(500)],
    "a string of 121 bytes": [("y" * 121 if i == 400 else "z", i) for i in range(500)],
    "a string with a NUL": [("a\x00b" if i == 7 else "ab", i) for i in range(500)],
    "an int past 64 bits": [(2**70 if i == 3 else i, "v") for i in range(500)],
    "a nested field": [(i, (i, i)) for i in range(500)],
    "two pieces, the second walked": [(i, "v") for i in range(20_000)] + [(2**64, "v")],
    "tuples of two lengths": [(i, "v") for i in range(499)] + [(1, "v", 2)],
    "dicts with keys in another order": [{"a": i, "b": 1} for i in range(499)] + [{"b": 1, "a": 0}],
    "a list among tuples": [(i, "v") for i in range(499)] + [[1, "v"]],
    "lists, as csv.reader gives rows": [[str(i), f"name {i}", "é" * (i % 4)] for i in range(1000)],
    "lists of floats (points)": [[i / 3, -i / 7, math.nan if i % 9 == 0 else 0.5] for i in range(1000)],
    "lists of two lengths": [[i, "v"] for i in range(499)] + [[1, "v", 2]],
    "a tuple among lists": [[i, "v"] for i in range(499)] + [(1, "v")],
    "a later row's key a str subclass": [{"a": i} for i in range(1)] + [{_Key.A: 1}] + [{"a": i} for i in range(300)],
    "a key equal to every name": [{"a": i} for i in range(1)] + [{_EqualsAll(): 1}] + [{"a": i} for i in range(300)],
}


@pytest.mark.parametrize("rows", RECORD_LISTS.values(), ids=RECORD_LISTS.keys())
def test_lists_of_records_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, rows: list) -> None:
    """Rows of a query, a CSV or a JSON list of objects, fed in bulk where they can be, key as walked one by one."""
    bulk = keys.hash_value(rows)
    assert _item_by_item(monkeypatch, rows) == bulk
    changed = list(rows)
    row = changed[len(changed) // 2]
    changed[len(changed) // 2] = {**row, next(iter(row)): "other"} if type(row) is dict else ("other", *row[1:])
    assert keys.hash_value(changed) != bulk


@pytest.mark.parametrize(
    "name",
    ["tuples", "dicts", "dicts with many keys", "ints and floats in one field", "records of 120 fields, a few per piece",
     "lists, as csv.reader gives rows", "lists of floats (points)"],
)
def test_records_of_scalars_go_in_bulk(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Their pieces are framed by numpy, the first agreeing with the walk on its first record (so fed as framed)."""
    from persist_to_disk import records

    rows = RECORD_LISTS[name]
    framed = _framed_pieces_of(monkeypatch, rows)
    assert framed and all(frames is not None for frames in framed)
    first = records._walked(keys.CanonicalHasher(), rows[0])
    assert bytes(framed[0][: len(first)]) == first


def _framed_pieces_of(monkeypatch: pytest.MonkeyPatch, value) -> list:
    """Hash ``value``; return the bytes each piece that went to ``records`` was framed as (None: walked)."""
    from persist_to_disk import records

    framed: list = []
    real = records._checked_frames

    def spy(*args):
        checked = real(*args)
        framed.append(None if checked is None else checked[1])
        return checked

    monkeypatch.setattr(records, "_checked_frames", spy)
    keys.hash_value(value)
    return framed


def test_records_that_lead_back_to_their_list_hash_as_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record holding its own list (or its parent) is a back-reference, as the walk frames it."""
    rows: list = [(i,) for i in range(300)]
    rows[0] = (rows,)
    parent: dict = {}
    parent["rows"] = [(parent, i) for i in range(300)]
    for value in (rows, parent):
        assert keys.hash_value(value) == _item_by_item(monkeypatch, value)


def test_a_record_field_that_changes_type_changes_the_key() -> None:
    rows = _rows(600)
    for field, other in ((0, 1.0), (0, True), (2, 1), (3, 1), (4, 0.0), (1, b"Ann")):
        changed = list(rows)
        changed[300] = (*rows[300][:field], other, *rows[300][field + 1 :])
        assert keys.hash_value(changed) != keys.hash_value(rows), (field, other)


@pytest.mark.parametrize(
    "names",
    [
        [f"k{i:04d}" for i in range(300)],  # built in order
        [f"k{(i * 7919) % 300:04d}" for i in range(300)],  # shuffled, ASCII
        [f"{t}{i}" for i, t in enumerate(TEXTS)] + ["é", "e", "z", "", "日本", "Z", "ß"],  # any code point
        [f"n{i}" + "\x00" * (i % 3) for i in range(100)],  # trailing NULs, which numpy's strings drop
        [f"s{i}" for i in range(100)] + ["long" * 50_000],  # one key far longer than the rest
        [f"k{i:05d}" for i in range(6000)],  # many, in order
        [f"k{i:05d}" for i in range(6000)] + [f"a{i}" for i in range(50)],  # in order, then keys added later
        [f"k{(i * 7919) % 6000:05d}" for i in range(6000)],  # many, shuffled
    ],
)
def test_str_keyed_dicts_key_as_sorted_item_by_item(monkeypatch: pytest.MonkeyPatch, names: list) -> None:
    """Keys put in order in bulk (numpy), in any insertion order, key as ``sorted`` and one by one would."""
    values = [i / 3 if i % 2 else [i, str(i)] for i in range(len(names))]
    forward = dict(zip(names, values))
    backward = dict(reversed(list(forward.items())))
    digest = keys.hash_value(forward)
    assert keys.hash_value(backward) == digest
    assert _item_by_item(monkeypatch, backward) == digest
    changed = dict(forward)
    changed[names[len(names) // 2]] = "other"
    assert keys.hash_value(changed) != digest
    assert keys.hash_value({**forward, names[0] + "\x00": 0.0}) != digest


MIXED_SCALARS = {
    "flags": [i % 3 == 0 for i in range(3000)],
    "None among floats": [None if i % 4 == 0 else i / 7 for i in range(3000)],
    "ints among floats": [i if i % 2 else float(i) for i in range(3000)],
    "flags among ints (True is not 1)": [True if i == 5 else 1 for i in range(2500)] + [0.5],
    "names with missing values": [None if i % 10 == 0 else math.nan if i % 10 == 1 else f"name {i}" for i in range(3000)],
    "NaN, -0.0 and inf among None": [[math.nan, -math.nan, -0.0, 0.0, math.inf, None][i % 6] for i in range(3000)],
    "every scalar type": [[1, 2.5, "s", True, False, None, -(2**63) + 1, 2**63 - 1][i % 8] for i in range(3200)],
    "an int past 64 bits": [None if i % 2 else i for i in range(3000)] + [2**64],
    "a long string": [None if i % 2 else "x" * (i % 200) for i in range(3000)],
    "a string with a NUL": [None if i % 2 else "a\x00b" for i in range(3000)],
    "two pieces, the second walked": [None if i % 2 else float(i) for i in range(20_000)] + ["y" * 500],
}


@pytest.mark.parametrize("items", MIXED_SCALARS.values(), ids=MIXED_SCALARS.keys())
def test_lists_of_mixed_scalars_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, items: list) -> None:
    """Flags, None among numbers, names with missing values: framed in bulk, keyed as walked one by one."""
    bulk = keys.hash_value(items)
    assert _item_by_item(monkeypatch, items) == bulk
    assert keys.hash_value(tuple(items)) != bulk
    for at, other in ((len(items) // 2, "other"), (1, 0), (2, False), (3, 0.0), (4, None)):
        if type(items[at]) is not type(other) or items[at] != other:
            changed = list(items)
            changed[at] = other
            assert keys.hash_value(changed) != bulk, (at, other)


@pytest.mark.parametrize("name", ["flags", "None among floats", "names with missing values", "every scalar type"])
def test_lists_of_mixed_scalars_go_in_bulk(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    framed = _framed_pieces_of(monkeypatch, MIXED_SCALARS[name])
    assert framed and all(frames is not None for frames in framed)


SETS = {
    "ints": set(range(-500, 3000, 3)),
    "names": frozenset(f"name {i}" for i in range(2000)),
    "mixed": {*range(700), *(f"s{i}" for i in range(700)), 2.5, None, (1, "a"), 2**70},
    "small": {3, "a", None},
}


@pytest.mark.parametrize("items", SETS.values(), ids=SETS.keys())
def test_sets_key_as_their_items_digests_sorted(monkeypatch: pytest.MonkeyPatch, items) -> None:
    """A set's items go in as their own digests, in order: numpy's sort of them keys as ``sorted`` would."""
    digest = keys.hash_value(items)
    assert _item_by_item(monkeypatch, items) == digest
    h = keys.CanonicalHasher()
    by_hand = keys.CanonicalHasher(keys._value_hasher())  # where hash_value starts
    by_hand.tag(b"z" if type(items) is frozenset else b"S")
    by_hand.update(keys.pack_len(len(items)) + b"".join(sorted(h._sub_digest(item) for item in items)))
    by_hand.update(b")")
    assert by_hand.digest() == digest
    assert keys.hash_value(type(items)([*items, "one more"])) != digest


TUPLE_KEYED = {
    "cells of a matrix": {(i // 40, i % 40): i / 3 for i in range(2000)},
    "(name, year) -> count": {(f"n{i % 97}", 1990 + i // 97): i for i in range(1000)},
    "values of any kind": {(i, i + 1): [i] if i % 2 else str(i) for i in range(1500)},
    "a key past 64 bits": {**{(i, 0): 1.5 for i in range(400)}, (2**64, 0): 2.5},
    "keys of two lengths": {**{(i, 0): 1.5 for i in range(400)}, (1, 0, 0): 2.5},
    "a nested key": {**{(i, 0): 1.5 for i in range(400)}, ((1, 2), 0): 2.5},
}


@pytest.mark.parametrize("mapping", TUPLE_KEYED.values(), ids=TUPLE_KEYED.keys())
def test_tuple_keyed_dicts_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, mapping: dict) -> None:
    """{(row, column): value}: the tuple keys framed in bulk, each digested alone; in any insertion order."""
    digest = _keyed_alike_in_any_order(monkeypatch, mapping)
    h = keys.CanonicalHasher()
    names = list(mapping)
    assert h._own_digests(names) == [h._sub_digest(name) for name in names]
    first = names[0]
    assert keys.hash_value({**mapping, first: "other"}) != digest
    assert keys.hash_value({(*first[:-1], "changed") if k == first else k: v for k, v in mapping.items()}) != digest


class _SortedIteration(dict):
    """Iterates its keys sorted, while keys(), values() and items() keep insertion order."""

    def __iter__(self):
        return iter(sorted(dict.keys(self), key=str))


class _ReversedSlices(list):
    """Slices come back reversed; iterating and indexing are a list's."""

    def __getitem__(self, index):
        got = list.__getitem__(self, index)
        return got[::-1] if isinstance(index, slice) else got


@pytest.mark.parametrize("names", [[2, 1], [f"k{i:04d}" for i in range(1500)][::-1]], ids=["int keys", "1,500 str keys"])
def test_a_mapping_keys_each_value_with_its_own_key_whatever_its_iteration_order(names: list) -> None:
    """Keys and values are read together (items()), so a subclass iterating in another order than values()
    neither collides with a different mapping nor parts from an equal one."""
    forward = _SortedIteration(zip(names, range(len(names))))
    swapped = _SortedIteration(zip(names, reversed(range(len(names)))))
    equal = _SortedIteration(zip(reversed(names), reversed(range(len(names)))))
    assert forward != swapped and forward == equal
    assert keys.hash_value(forward) != keys.hash_value(swapped)
    assert keys.hash_value(forward) == keys.hash_value(equal)


@pytest.mark.parametrize("items", [[None if i % 2 else float(i) for i in range(3000)], [[i, "v"] for i in range(600)],
                                   [f"name {i}" for i in range(600)]], ids=["mixed scalars", "rows", "names"])
def test_a_list_subclass_keys_by_its_items_as_iterated(monkeypatch: pytest.MonkeyPatch, items: list) -> None:
    """The bulk paths slice; a subclass whose slicing differs from iterating keys as the walk sees it."""
    odd = _ReversedSlices(items)
    assert keys.hash_value(odd) == _item_by_item(monkeypatch, odd)


SCALAR_VALUED = {
    "{id: name}": {i * 7919 % 100_003: f"name {i}" for i in range(3000)},
    "{id: label or None}": {i: None if i % 5 == 0 else f"label {i % 7}" for i in range(3000)},
    "{(row, col): any scalar}": {(i // 50, i % 50): [1, 2.5, "x", None, True][i % 5] for i in range(3000)},
    "mixed keys, flags": {**{i: i % 2 == 0 for i in range(1500)}, **{2.5 * i: False for i in range(1500)}},
    "a long string among them": {**{i: f"v{i}" for i in range(3000)}, -1: "z" * 300},
    "an int past 64 bits among them": {**{i: f"v{i}" for i in range(3000)}, -1: 2**64},
}


@pytest.mark.parametrize("mapping", SCALAR_VALUED.values(), ids=SCALAR_VALUED.keys())
def test_dicts_of_scalar_values_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, mapping: dict) -> None:
    """Values that are scalars of any kind go beside their keys' digests in bulk, keyed as walked one by one."""
    digest = _keyed_alike_in_any_order(monkeypatch, mapping)
    first = next(iter(mapping))
    for other in ("other", None, 0, False):
        if type(mapping[first]) is not type(other) or mapping[first] != other:
            assert keys.hash_value({**mapping, first: other}) != digest, other


@pytest.mark.parametrize("name", ["{id: name}", "{id: label or None}", "{(row, col): any scalar}", "mixed keys, flags"])
def test_dicts_of_scalar_values_go_in_bulk(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Their values are not fed one by one (each piece's first is walked, to check the framing against)."""
    fed = []
    real = keys.CanonicalHasher.feed
    monkeypatch.setattr(keys.CanonicalHasher, "feed", lambda self, obj: (fed.append(obj), real(self, obj))[1])
    keys.hash_value(SCALAR_VALUED[name])
    assert len(fed) < 10, len(fed)


def _stamped_values() -> dict:
    """Values holding pandas Timestamps as a groupby or a MultiIndex gives them (and the kinds walked instead)."""
    import pandas as pd

    days = list(pd.date_range("2024-01-01", periods=400))
    widths = [pd.Timestamp(v) for v in [3, -300, 2**40, -(2**62), 2**62, 70_000] * 60]  # frames of 2 to 8 bytes
    seconds = [pd.Timestamp("2024-03-01").as_unit("s") + pd.Timedelta(i, "s") for i in range(400)]
    return {
        "a MultiIndex frame": pd.DataFrame({"x": range(400)}, index=pd.MultiIndex.from_arrays([days, [f"s{i % 9}" for i in range(400)]])),
        "rows with a date": [(f"s{i % 9}", day, i / 3) for i, day in enumerate(days)],
        "dates of many widths": [(stamp, i) for i, stamp in enumerate(widths)],
        "a dict keyed by (date, id)": {(day, i): i for i, day in enumerate(days)},
        "dates in seconds": [(stamp, "x") for stamp in seconds],
        "units mixed (walked)": [(stamp.as_unit("ms") if i % 7 else stamp, "x") for i, stamp in enumerate(seconds)],
        "zoned (walked)": [(stamp, "x") for stamp in pd.date_range("2024-01-01", periods=400, tz="Europe/Paris")],
        "NaT among them (walked)": [(pd.NaT if i == 200 else day, i) for i, day in enumerate(days)],
    }


@pytest.mark.parametrize("name", list(_stamped_values()))
def test_pandas_timestamps_in_records_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A date field (a MultiIndex's level, a groupby's key) is framed in bulk as its reduction would be
    walked, ~20x faster; dates of several units, with a zone, or NaT among them are walked: the same key."""
    value = _stamped_values()[name]
    framed = _framed_pieces_of(monkeypatch, value)
    assert framed and any(frames is None for frames in framed) == name.endswith("(walked)")
    bulk = keys.hash_value(value)
    assert _item_by_item(monkeypatch, value) == bulk
    changed = _stamped_values()[name]
    if isinstance(changed, dict):
        changed[next(iter(changed))] = -1
    elif isinstance(changed, list):
        changed[-1] = (changed[-1][0], "other")
    else:
        changed.iloc[-1, 0] = -1
    assert keys.hash_value(changed) != bulk


def _dated_values() -> dict:
    """Dates and times as a database cursor or a parser gives them, and those walked instead."""
    import datetime as dt

    days = [dt.date(1999, 12, 31) + dt.timedelta(days=i * 37) for i in range(3000)]
    moments = [dt.datetime(2024, 3, 1, 9) + dt.timedelta(seconds=i * 61, microseconds=i % 3) for i in range(3000)]
    return {
        "rows from a cursor": [(i, f"n{i % 7}", day, moment) for i, (day, moment) in enumerate(zip(days, moments))],
        "dates with missing ones": [None if i % 10 == 0 else day for i, day in enumerate(days)],
        "times, one of year 1": [dt.datetime(1, 1, 1), *moments[1:]],
        "a dict keyed by date": {day: i for i, day in enumerate(days)},
        "a dict valued by times": {i: moment for i, moment in enumerate(moments)},
        "a set of times": set(moments),
        "rows with a zoned time (walked)": [(i, moment.replace(tzinfo=dt.timezone.utc) if i == 2000 else moment)
                                            for i, moment in enumerate(moments)],
    }


@pytest.mark.parametrize("name", list(_dated_values()))
def test_dates_and_times_hash_as_item_by_item(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``datetime.date`` and zone-less ``datetime`` values are framed in bulk as the walk frames them (their
    isoformat under their own tag), ~3x faster for a cursor's rows; a piece with a zoned time is walked."""
    import datetime as dt

    from persist_to_disk import records

    value = _dated_values()[name]
    built: list = []
    for kind in (dt.date, dt.datetime):
        real = records._BUILDERS[kind]
        monkeypatch.setitem(records._BUILDERS, kind, lambda values, np, real=real: built.append(real(values, np)) or built[-1])
    bulk = keys.hash_value(value)
    assert built and any(frames is None for frames in built) == name.endswith("(walked)")
    monkeypatch.undo()
    assert _item_by_item(monkeypatch, value) == bulk
    changed = _dated_values()[name]
    if isinstance(changed, dict):
        changed[next(iter(changed))] = dt.date(2000, 1, 1)
    elif isinstance(changed, set):
        changed.add(dt.datetime(1970, 1, 1, 0, 0, 1))
    else:
        changed[len(changed) // 2] = dt.date(2000, 1, 2)
    assert keys.hash_value(changed) != bulk
