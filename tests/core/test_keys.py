"""Canonical keys: equal arguments give equal digests in every process; different ones differ.

A cache key is only useful if it is the same for the same call tomorrow, in another
process, after the dict was built in another order; and different whenever the
result could differ. These tests pin both halves, and pin the digests themselves
(``test_digests_stay_the_same``) so that a change of key format is a deliberate act.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import persist_to_disk as ptd
from persist_to_disk import identity, keys


def H(value, name="x"):
    """The digest the decorator would use for one argument (functions hashed with their code)."""
    return keys.hash_arguments({name: value}, code_of=identity.code_version)


# -- order does not matter ------------------------------------------------------------------------
def test_dicts_in_different_insertion_order_hash_equal():
    a = {"lr": 0.1, "epochs": 3, "name": "mnist", "nested": {"b": 2, "a": 1}}
    b = {"nested": {"a": 1, "b": 2}, "name": "mnist", "epochs": 3, "lr": 0.1}
    assert list(a) != list(b)
    assert H(a) == H(b)
    assert H(a) != H({**a, "epochs": 4})


def test_sets_in_different_insertion_order_hash_equal():
    words = [f"w{i}" for i in range(50)]
    s1, s2 = set(words), set(reversed(words))
    assert H(s1) == H(s2)
    assert H(frozenset(words)) == H(frozenset(reversed(words)))
    assert H(s1) != H(set(words[:-1]))
    assert H(s1) != H(frozenset(words)), "a set and a frozenset are different types"


def test_argument_names_order_does_not_matter_but_names_do():
    assert keys.hash_arguments({"a": 1, "b": 2}) == keys.hash_arguments({"b": 2, "a": 1})
    assert keys.hash_arguments({"a": 1, "b": 2}) != keys.hash_arguments({"a": 2, "b": 1})


def test_namespace_attribute_order_is_irrelevant():
    n1 = argparse.Namespace(lr=0.1, epochs=3, data="mnist")
    n2 = argparse.Namespace(data="mnist", epochs=3, lr=0.1)
    assert list(vars(n1)) != list(vars(n2))
    assert H(n1) == H(n2)
    assert H(n1) != H(argparse.Namespace(data="mnist", epochs=4, lr=0.1))


_SEED_SCRIPT = r"""
import json, argparse
from persist_to_disk import keys, identity
values = {
    "set_of_str": {"alpha", "beta", "gamma", "delta", "epsilon"},
    "frozenset_of_tuples": frozenset({("a", 1), ("b", 2), ("c", 3)}),
    "dict_str_keys": {"zeta": 1, "eta": [1, 2], "theta": {"x", "y"}},
    "dict_mixed_keys": {1: "one", "1": "string one", (1, 2): "tuple", None: 0},
    "namespace": argparse.Namespace(b=2, a="x", c={"k", "j"}),
}
print(json.dumps({k: keys.hash_arguments({"v": v}, code_of=identity.code_version) for k, v in values.items()}))
"""


def test_digests_equal_across_processes_with_different_hash_seeds(tmp_path):
    """str hashes are randomized per process (PYTHONHASHSEED): sets and dicts must not depend on that."""
    script = tmp_path / "seeds.py"
    script.write_text(_SEED_SCRIPT)
    outputs = []
    for seed in ("0", "1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        outputs.append(json.loads(proc.stdout))
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(set(outputs[0].values())) == len(outputs[0]), "different values must have different digests"


# -- numbers and types ----------------------------------------------------------------------------
def test_int_float_and_bool_are_different_keys():
    digests = {H(1), H(1.0), H(True), H("1"), H(b"1")}
    assert len(digests) == 5
    assert H([1, 0]) != H([True, False])
    assert H({"a": 1}) != H({"a": 1.0})
    assert H(0) != H(False)


def test_tuple_list_and_nesting_are_different_keys():
    assert H((1, 2)) != H([1, 2])
    assert H([[1], [2]]) != H([[1, 2]])
    assert H(["ab"]) != H(["a", "b"])
    assert H(None) != H("None")
    assert H(float("nan")) == H(float("nan")), "a NaN argument should be able to hit the cache"


def test_common_value_types_hash_by_value():
    assert H(dt.datetime(2024, 1, 2, 3, 4, 5)) == H(dt.datetime(2024, 1, 2, 3, 4, 5))
    assert H(dt.datetime(2024, 1, 2, 3, 4, 5)) != H(dt.datetime(2024, 1, 2, 3, 4, 6))
    assert H(Path("/a/b")) == H(Path("/a/b")) != H(Path("/a/c"))
    od1 = collections.OrderedDict([("a", 1), ("b", 2)])
    od2 = collections.OrderedDict([("b", 2), ("a", 1)])
    assert H(od1) != H(od2), "an OrderedDict's order is part of its equality"


# -- numpy --------------------------------------------------------------------------------------------
def test_c_and_fortran_order_arrays_with_equal_content_hash_equal():
    c = np.arange(3 * 4 * 5, dtype=np.float64).reshape(3, 4, 5)
    f = np.asfortranarray(c)
    assert f.flags.f_contiguous and not f.flags.c_contiguous
    assert np.array_equal(c, f)
    assert H(c) == H(f)
    strided = np.arange(200).reshape(10, 20)[::2, ::3]
    assert not strided.flags.c_contiguous
    assert H(strided) == H(np.ascontiguousarray(strided))
    assert H(c.T) == H(np.ascontiguousarray(c.T))


def test_arrays_with_different_dtype_shape_or_content_hash_different():
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert H(a) != H(a.astype(np.int32))
    assert H(a) != H(a.astype(np.float64))
    assert H(a) != H(a.reshape(4, 3)), "same bytes, different shape"
    assert H(a) != H(a.ravel())
    b = a.copy()
    b[2, 3] += 1
    assert H(a) != H(b)
    assert H(np.zeros((0, 3))) != H(np.zeros((3, 0)))
    assert H(a) == H(a.copy())


def test_large_array_hashes_and_differs_in_last_byte():
    big = np.zeros(2_000_000, dtype=np.uint8)
    other = big.copy()
    other[-1] = 1
    assert H(big) != H(other)
    assert H(np.asfortranarray(big.reshape(1000, 2000))) == H(big.reshape(1000, 2000))


# -- pandas -------------------------------------------------------------------------------------------
def _frame():
    return pd.DataFrame(
        {"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "c": ["x", "y", "z"]},
        index=pd.Index([10, 20, 30], name="id"),
    )


def test_equal_dataframes_hash_equal_and_one_changed_cell_differs():
    df = _frame()
    assert H(df) == H(_frame())
    assert H(df) == H(df.copy(deep=True))
    changed = df.copy()
    changed.loc[20, "b"] = 9.5
    assert H(df) != H(changed)
    renamed = df.rename(columns={"c": "d"})
    assert H(df) != H(renamed)
    reindexed = df.set_axis([10, 20, 31])
    assert H(df) != H(reindexed)
    as_float = df.astype({"a": "float64"})
    assert H(df) != H(as_float), "same numbers, different dtype"


def test_equal_series_hash_equal_and_one_changed_value_differs():
    s = pd.Series([1.0, 2.0, 3.0], index=["a", "b", "c"], name="s")
    assert H(s) == H(pd.Series([1.0, 2.0, 3.0], index=["a", "b", "c"], name="s"))
    t = s.copy()
    t["c"] = 4.0
    assert H(s) != H(t)
    assert H(s) != H(s.rename("other"))


# -- classes and functions ----------------------------------------------------------------------------
class Alpha:
    pass


class Beta:
    pass


def module_function(x):
    return x + 1


def other_module_function(x):
    return x + 1


def test_classes_hash_by_qualified_name():
    assert H(Alpha) == H(Alpha)
    assert H(Alpha) != H(Beta)
    assert H(json.JSONDecoder) != H(json.JSONEncoder)
    assert H(collections.OrderedDict) == H(collections.OrderedDict)


def test_library_functions_hash_by_name_and_user_functions_by_their_code():
    assert H(module_function) != H(other_module_function), "same code, different names"
    assert H(json.dumps) != H(json.loads)
    before = H(module_function)
    saved = module_function.__code__
    try:
        module_function.__code__ = (lambda x: x * 100).__code__  # what IPython's autoreload does on an edit
        assert H(module_function) != before, "a function of the user's counts by its code, even edited in place"
    finally:
        module_function.__code__ = saved
    assert H(module_function) == before


def test_lambdas_and_local_functions_hash_by_their_code():
    inc = lambda x: x + 1  # noqa: E731
    dbl = lambda x: x * 2  # noqa: E731
    assert H(inc) == H(inc)
    assert H(inc) != H(dbl)

    def make_local_a():
        def g(x):
            return x + 1

        return g

    def make_local_b():
        def g(x):
            return x - 1

        return g

    assert H(make_local_a()) == H(make_local_a()), "a fresh function object with the same code hits"
    assert H(make_local_a()) != H(make_local_b())


def test_local_functions_differing_only_in_defaults_or_closure_hash_different():
    adders = [lambda x, n=n: x + n for n in range(3)]
    assert len({H(f) for f in adders}) == 3

    def make(n):
        def add(x):
            return x + n

        return add

    assert H(make(1)) == H(make(1))
    assert H(make(1)) != H(make(2))


def test_recursive_local_function_does_not_recurse_forever():
    def outer():
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        return fact

    assert H(outer()) == H(outer())


# -- cycles -------------------------------------------------------------------------------------------
class Node:
    def __init__(self, value):
        self.value = value
        self.next = None


def test_cyclic_structures_hash_without_endless_recursion():
    l1 = [1]
    l1.append(l1)
    l2 = [1]
    l2.append(l2)
    assert H(l1) == H(l2)
    l3 = [2]
    l3.append(l3)
    assert H(l1) != H(l3)

    d = {"a": 1}
    d["self"] = d
    assert H(d) == H(d)

    a, b = Node(1), Node(2)
    a.next, b.next = b, a
    c, e = Node(1), Node(2)
    c.next, e.next = e, c
    assert H(a) == H(c)
    e.value = 3
    assert H(a) != H(c)


def test_shared_but_acyclic_references_are_not_confused_with_cycles():
    inner = [1, 2]
    shared = [inner, inner]
    copied = [[1, 2], [1, 2]]
    assert H(shared) == H(copied)


# -- what cannot be hashed --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, type_name",
    [
        (threading.Lock, "lock"),
        (lambda: (i for i in range(3)), "generator"),
        (lambda: open(os.devnull), "TextIOWrapper"),
    ],
    ids=["lock", "generator", "open-file"],
)
def test_unhashable_argument_raises_type_error_naming_argument_and_type(make, type_name):
    value = make()
    try:
        with pytest.raises(ptd.UnhashableArgumentError) as info:
            keys.hash_arguments({"dataset": 1, "resource": value})
        assert isinstance(info.value, TypeError)
        message = str(info.value)
        assert "'resource'" in message
        assert type_name in message
    finally:
        if hasattr(value, "close"):
            value.close()


def test_unhashable_argument_through_the_decorator(cache_root):
    ran = []

    @ptd.persistf
    def use(handle, n):
        ran.append(n)
        return n

    with pytest.raises(TypeError) as info:
        use(threading.Lock(), 1)
    assert "'handle'" in str(info.value) and "lock" in str(info.value)
    assert ran == [], "the function must not run when its key cannot be made"
    # the argument can be skipped, then the call caches normally
    use_skipping = ptd.persistf(skip_kwargs=["handle"])(use.__wrapped__)
    assert use_skipping(threading.Lock(), 2) == 2
    assert use_skipping(threading.Lock(), 2) == 2
    assert ran == [2]


# -- golden digests: the key format changes only on purpose -----------------------------------------
GOLDEN_VALUES = {
    "none": None,
    "int": 12345678901234567890,
    "negative": -7,
    "float": 0.1,
    "bool": True,
    "str": "héllo wörld",
    "bytes": b"\x00\x01binary",
    "tuple": (1, "a", None, 2.5),
    "list": [1, [2, [3, []]]],
    "dict": {"b": 2, "a": [1, 2], "c": {"z": None}},
    "set": {3, 1, 2},
    "namespace": argparse.Namespace(lr=0.001, epochs=30, dataset="MNIST"),
    "array": np.arange(12, dtype="<i8").reshape(3, 4),
    "farray": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
    "series": pd.Series(np.arange(4, dtype="<i8")),
    "date": dt.date(2024, 2, 29),
    "class": collections.OrderedDict,
    "function": json.dumps,
    "dates": np.array(["2024-01-01", "NaT"], dtype="M8[D]"),
    "nan_array": np.array([np.nan, 1.0]),
    "categorical": pd.Categorical(["b", "a"], categories=["a", "b", "c"], ordered=True),
    "aware": dt.datetime(2024, 2, 29, 12, tzinfo=dt.timezone.utc),
    "pure_path": __import__("pathlib").PurePosixPath("/data/x.csv"),
    "abc_class": __import__("fractions").Fraction,
    "large_array": np.linspace(0.0, 1.0, 1_250_000).reshape(-1, 5)[:, ::-1],  # 10 MB, strided: a tree of runs
}

# Computed once from the code as it stood when the key format was set (KEY_FORMAT ptd-key-3: buffers from
# 8 MB hashed as a tree, each argument but a scalar as its digest in a call's key, str-keyed dicts as their
# sorted keys then their values, polars frames from buffers; ptd-key-2: classes of any metaclass, dates,
# canonical NaNs in arrays, zones, categories, enum values; ptd-key-1 before).
# If this test fails, every user's cache is about to be orphaned: bump KEY_FORMAT on purpose
# and update these, or restore the old behaviour.
GOLDEN_DIGESTS = {
    "none": "f0b428ec41cd88c79104a715958a38ce",
    "int": "e0b5f9bc69c8c6e8de6cdd365a2364d0",
    "negative": "625c16c22f2f3878ebe7535541210edf",
    "float": "158bc2a097664612ef9842200361109d",
    "bool": "deba9e362dc4ec7349d948f1089bc2a4",
    "str": "d821c368924af906d74a51e401822ffd",
    "bytes": "321b690d6e1aaaeea980fab8487bcd69",
    "tuple": "09dbc581068f62b70c0690c5b30c0392",
    "list": "706f312f0241b74590b5c736f6f8adc9",
    "dict": "e184ad1bf680025587c9053d9d25698d",
    "set": "5e4f011e133645f99222cd7281916994",
    "namespace": "990300639eb1c6cc536ff544dfb8240e",
    "array": "3a0a51487f9106ae3b872dfbbbe79a45",
    "farray": "d42efe21197130579e73a5297c3ff24a",
    "series": "7affe2393bc0b4ce8250edd8742708be",
    "date": "368e65d5b82f16a1f57f15d36c30eac8",
    "class": "1181ecb715b72952f33be7ae97db0077",
    "function": "e9e4bff3d42e2b5b32930260f2ecd813",
    "dates": "df6a4f1253ce53be626266c230323dae",
    "nan_array": "ebe0b0b9b3f57374edd258d71dbf7de4",
    "categorical": "44ee552284aecd1330a9b2a6d5f8a6f6",
    "aware": "9ee15d4e45558110ad3428c9438eb4f4",
    "pure_path": "4be28ecd53d9de7df1444bdedcb2db3e",
    "abc_class": "e3734b52a0c5eb30c4d0572daae1c6d8",
    "large_array": "8450e69d7c9745fc7ba4ae802d735a39",
}

GOLDEN_CALL_DIGEST = "af453ed4342c309d1cd2ab2a76377e04"


def test_digests_stay_the_same():
    got = {name: keys.hash_value(value) for name, value in GOLDEN_VALUES.items()}
    assert got == GOLDEN_DIGESTS


def test_call_digest_stays_the_same():
    named = {"dataset": "MNIST", "lr": 1e-3, "epochs": 30, "model_kwargs": {"hidden": 128, "act": "relu"}}
    assert keys.hash_arguments(named, prefix=b"train_a_model\x00pinned:v1") == GOLDEN_CALL_DIGEST
    assert keys.KEY_FORMAT == b"ptd-key-3"


# -- classes of any metaclass, and values that must key apart --------------------------------------
def test_classes_hash_by_qualified_name_whatever_their_metaclass():
    import abc
    import enum
    import fractions

    class Shape(abc.ABC):
        @abc.abstractmethod
        def area(self): ...

    class Color(enum.Enum):
        RED = 1

    for cls in (Shape, Color, fractions.Fraction):
        assert type(cls) is not type
        assert H(cls) == H(cls)
    assert len({H(Shape), H(Color), H(fractions.Fraction), H(int)}) == 4
    # an object whose state holds such a class hashes through it
    assert H({"model_cls": Shape}) != H({"model_cls": Color})


def test_an_enum_member_keys_its_value_too():
    import enum

    first = enum.Enum("Mode", {"FAST": 1, "SLOW": 2})
    edited = enum.Enum("Mode", {"FAST": 10, "SLOW": 2})
    assert H(first.FAST) != H(edited.FAST)
    assert H(first.FAST) == H(enum.Enum("Mode", {"FAST": 1, "SLOW": 2}).FAST)


def test_a_zone_is_not_its_offset():
    from zoneinfo import ZoneInfo

    moment = dt.datetime(2024, 1, 15, 12, 0)
    paris = moment.replace(tzinfo=ZoneInfo("Europe/Paris"))
    fixed = moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert paris.isoformat() == fixed.isoformat()
    assert H(paris) != H(fixed)
    assert H(paris) == H(dt.datetime(2024, 1, 15, 12, 0, tzinfo=ZoneInfo("Europe/Paris")))
    assert H(moment) != H(paris)
    assert H(dt.time(1, tzinfo=ZoneInfo("Europe/Paris"))) != H(dt.time(1, tzinfo=dt.timezone(dt.timedelta(hours=1))))


class _HoursAhead(dt.tzinfo):
    """A zone of one's own with no ``__repr__``: its ``str`` is where the object lives."""

    def __init__(self, hours: int = 1) -> None:
        self.hours = hours

    def utcoffset(self, moment):
        return dt.timedelta(hours=self.hours)

    def dst(self, moment):
        return None


def test_a_zone_of_ones_own_keys_by_what_it_says_not_where_it_lives():
    """Equal times in two such zone objects were keyed apart (and anew in every process)."""
    assert H(dt.datetime(2020, 1, 1, tzinfo=_HoursAhead())) == H(dt.datetime(2020, 1, 1, tzinfo=_HoursAhead()))
    assert H(dt.time(9, tzinfo=_HoursAhead())) == H(dt.time(9, tzinfo=_HoursAhead()))
    moment = dt.datetime(2020, 1, 1, tzinfo=_HoursAhead())
    assert H(moment) != H(moment.replace(tzinfo=_HoursAhead(2)))
    assert H(moment) != H(moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=1))))  # another class of zone
    assert H(moment) != H(moment.replace(fold=1))


def test_pure_and_concrete_paths_are_different_arguments():
    from pathlib import PosixPath, PurePosixPath

    assert H(PurePosixPath("/a/b")) != H(PosixPath("/a/b"))
    assert H(PurePosixPath("/a/b")) == H(PurePosixPath("/a/b")) != H(PurePosixPath("/a/c"))


def test_dataclass_attributes_outside_its_fields_count():
    import dataclasses

    @dataclasses.dataclass
    class Config:
        lr: float

    a, b = Config(0.1), Config(0.1)
    assert H(a) == H(b)
    b.extra = "set later"
    assert H(a) != H(b)


def test_categoricals_key_their_categories_and_order():
    same_values = ["a", "b"]
    base = pd.Categorical(same_values, categories=["a", "b"])
    assert H(base) == H(pd.Categorical(same_values, categories=["a", "b"]))
    assert H(base) != H(pd.Categorical(same_values, categories=["a", "b", "c"]))
    assert H(base) != H(pd.Categorical(same_values, categories=["a", "b"], ordered=True))
    assert H(pd.Series(base)) != H(pd.Series(pd.Categorical(same_values, categories=["b", "a"])))
    assert H(pd.CategoricalIndex(base)) != H(pd.CategoricalIndex(pd.Categorical(same_values, categories=list("abz"))))


def test_dates_and_durations_hash_from_their_buffer_with_their_unit():
    days = np.array(["2024-01-01", "2024-03-01"], dtype="M8[D]")
    assert H(days) == H(days.copy())
    assert H(days) != H(days.astype("M8[s]")), "the unit is part of the key"
    assert H(days[::-1]) == H(np.ascontiguousarray(days[::-1]))
    assert H(np.array([1, 2], dtype="m8[ms]")) != H(np.array([1, 3], dtype="m8[ms]"))
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"]), "n": [1, 2]})
    assert H(frame) == H(frame.copy())
    assert H(frame) != H(frame.assign(when=frame["when"] + pd.Timedelta(seconds=1)))
    assert H(pd.DatetimeIndex(frame["when"])) == H(pd.DatetimeIndex(frame["when"].copy()))
    assert H(np.datetime64("2024-01-01")) != H(np.datetime64("2024-01-02"))


def test_nans_in_arrays_are_canonical_like_python_floats():
    with np.errstate(all="ignore"):
        made = np.array([0.0, 2.0]) / np.array([0.0, 1.0])
    written = np.array([float("nan"), 2.0])
    assert made.tobytes() != written.tobytes(), "numpy's 0/0 NaN has other bits on this machine"
    assert H(made) == H(written)
    assert H(made) != H(np.array([float("nan"), 3.0]))
    assert H(made.astype(np.float32)) == H(written.astype(np.float32))
    assert H(made.astype(np.complex128)) == H(written.astype(np.complex128))
    assert H(made[0]) == H(np.float64("nan"))
    big = np.ones(3_000_000)
    big[-1] = np.nan
    other = big.copy()
    other[-1] = -np.nan
    assert H(big) == H(other)
    assert H(np.array([np.inf, -np.inf])) != H(np.array([np.nan, np.nan])), "infinities are not NaNs"


def test_regular_expressions_hash_through_their_copyreg_reducer():
    import re

    assert H(re.compile("a+", re.I)) == H(re.compile("a+", re.I))
    assert H(re.compile("a+", re.I)) != H(re.compile("a+"))


def test_a_failure_inside_a_values_own_code_is_our_error_naming_the_argument():
    class Odd:
        def __reduce_ex__(self, protocol):
            raise ValueError("no state for you")

    with pytest.raises(ptd.UnhashableArgumentError, match=r"'model'.*Odd.*no state for you"):
        keys.hash_arguments({"model": Odd()})


def _optional(name: str):
    """An optional library of the test extra: skipped by name when absent, required in CI."""
    if os.environ.get("CI"):
        return __import__(name)
    return pytest.importorskip(name)


def test_torch_tensors_hash_from_their_buffer_with_their_layout():
    torch = _optional("torch")
    t = torch.arange(12.0).reshape(3, 4)
    assert H(t) == H(torch.arange(12.0).reshape(3, 4)), "an equal tensor hits (no memory address in the key)"
    assert H(t) != H(t.to(torch.float64))
    assert H(t) != H(t.reshape(4, 3))
    assert H(t.t()) != H(t.t().contiguous()), "strides are part of the key"
    assert H(t) != H(t.clone().requires_grad_(True))
    assert H(torch.nn.Parameter(t.clone())) != H(t), "a Parameter is not a plain tensor"
    assert H(t) != H(torch.arange(12.0).reshape(3, 4).add_(1e-6))
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    torch.manual_seed(0)
    b = torch.nn.Linear(3, 2)
    assert H(a) == H(b), "modules hash by their parameters and buffers"
    with torch.no_grad():
        b.weight[0, 0] += 1
    assert H(a) != H(b)


def test_errors_name_the_argument_and_the_path_at_fault(cache_root):
    import threading

    with pytest.raises(ptd.UnhashableArgumentError) as caught:
        keys.hash_arguments({"handle": threading.Lock()})
    assert caught.value.argument == "handle"

    @ptd.persistf()
    def f(x):
        return x

    with pytest.raises(ptd.NotCachedError) as missing:
        f.cache.get(1)
    assert missing.value.path == str(f.cache.path(1))
    assert isinstance(missing.value, KeyError) and isinstance(caught.value, TypeError)
