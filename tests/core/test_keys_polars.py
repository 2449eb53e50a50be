"""polars frames key from their buffers, canonically.

A polars DataFrame or Series hashes from its columns' memory (numbers and times as their
physical values, text through Arrow), not from its pickled state: equal frames key equal
in every process whatever their chunking or the order their categories were first seen;
nulls, NaNs and empty strings are different values.
"""

from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import Future

import polars as pl
import pytest

from persist_to_disk import keys


_FRAME = '''
import datetime as dt
import polars as pl

def frame(n=1000, city_order=("Paris", "Oslo", "Lima")):
    seen_first = pl.Series(list(city_order), dtype=pl.Categorical)  # codes follow the order strings were seen
    cities = [city_order[0], city_order[1], city_order[2]]
    return pl.DataFrame({
        "name": [f"user {i}" if i % 7 else None for i in range(n)],
        "city": pl.Series([sorted(cities)[i % 3] for i in range(n)], dtype=pl.Categorical),
        "score": [float(i) / 3 if i % 11 else None for i in range(n)],
        "ratio": [float("nan") if i % 13 == 0 else i / 5 for i in range(n)],
        "count": pl.Series([i if i % 5 else None for i in range(n)], dtype=pl.Int32),
        "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 366) for i in range(n)],
        "at": pl.Series([dt.datetime(2024, 1, 1, i % 24) for i in range(n)]).dt.replace_time_zone("UTC"),
        "clock": [dt.time(i % 24, i % 60) for i in range(n)],
        "flag": [i % 3 == 0 if i % 4 else None for i in range(n)],
        "level": pl.Series(["low", "high"] * (n // 2), dtype=pl.Enum(["low", "high"])),
    }), seen_first
'''
exec(_FRAME)  # defines frame()


def test_a_frame_keys_the_same_whatever_its_chunking() -> None:
    df, _ = frame()
    chunked = pl.concat([df[:300], df[300:650], df[650:]], rechunk=False)
    assert chunked["name"].n_chunks() == 3
    assert keys.hash_value(chunked) == keys.hash_value(df)
    assert keys.hash_value(chunked.rechunk()) == keys.hash_value(df)
    assert keys.hash_value(chunked["name"]) == keys.hash_value(df["name"])
    assert keys.hash_value(df[100:]) == keys.hash_value(pl.DataFrame(df[100:].to_dicts(), schema=df.schema))


def test_a_frame_keys_the_same_in_every_process(python: str) -> None:
    """Other hash seeds, categories first seen in another order (other physical codes), and other
    strings met as categories before (polars' categories are shared by every column in a process)."""
    script = _FRAME + (
        "import sys\n"
        "seen = pl.Series(sys.argv[2].split(','), dtype=pl.Categorical)  # met as categories before (kept)\n"
        "from persist_to_disk import keys\n"
        "print(keys.hash_value(frame(city_order=tuple(sys.argv[1].split(',')))[0]))\n"
    )
    digests = set()
    for seed, order, seen_before in (("1", "Paris,Oslo,Lima", "x"), ("2", "Lima,Oslo,Paris", "Zagreb,Accra,Oslo")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([python, "-c", script, order, seen_before], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert digests == {keys.hash_value(frame()[0])}


def test_every_value_null_and_nan_counts() -> None:
    df, _ = frame(n=100)
    digest = keys.hash_value(df)
    changes = {
        "a name": df.with_columns(pl.when(pl.int_range(pl.len()) == 50).then(pl.lit("x")).otherwise("name").alias("name")),
        "a null for an empty string": df.with_columns(pl.col("name").fill_null("")),
        "a null for 'None'": df.with_columns(pl.col("name").fill_null("None")),
        "a NaN for a null": df.with_columns(pl.col("score").fill_null(float("nan"))),
        "a null for a NaN": df.with_columns(pl.col("ratio").fill_nan(None)),
        "a null for 0": df.with_columns(pl.col("count").fill_null(0)),
        "the int width": df.with_columns(pl.col("count").cast(pl.Int64)),
        "the time zone": df.with_columns(pl.col("at").dt.convert_time_zone("Europe/Paris")),
        "categories as text": df.with_columns(pl.col("city").cast(pl.String)),
        "the column order": df.select(list(reversed(df.columns))),
        "a column name": df.rename({"score": "points"}),
        "a row less": df[:-1],
    }
    got = {what: keys.hash_value(changed) for what, changed in changes.items()}
    assert all(d != digest for d in got.values()), [w for w, d in got.items() if d == digest]
    assert len(set(got.values())) == len(got)
    assert keys.hash_value(df["score"]) != keys.hash_value(df["score"].rename("points"))


def test_text_keys_by_each_string_not_their_concatenation() -> None:
    def text(*values: str) -> str:
        return keys.hash_value(pl.Series("t", list(values)))

    assert text("ab", "c") != text("a", "bc")
    assert text("a", "") != text("", "a") != text("a")
    assert text("é", "\x00") == text("é", "\x00") != text("é", "")
    cats = pl.Series("t", ["ab", "c"], dtype=pl.Categorical)
    assert keys.hash_value(cats) != keys.hash_value(pl.Series("t", ["a", "bc"], dtype=pl.Categorical))
    assert keys.hash_value(cats) != keys.hash_value(pl.Series("t", ["c", "ab"], dtype=pl.Categorical))


def test_a_frame_is_hashed_from_its_buffers_not_its_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    df, _ = frame()

    def refuse(self, *args):
        raise AssertionError("pickled to be hashed")

    monkeypatch.setattr(pl.DataFrame, "__getstate__", refuse)
    monkeypatch.setattr(pl.DataFrame, "__reduce_ex__", refuse, raising=False)
    monkeypatch.setattr(pl.Series, "__getstate__", refuse)
    assert keys.hash_value(df) == keys.hash_value(df.clone())
    assert keys.hash_value(df["name"]) == keys.hash_value(df["name"].clone())


@pytest.mark.skipif(not hasattr(pl, "Int128"), reason="this polars has no 128-bit integers")
def test_128_bit_integer_columns_key_through_their_pickled_state() -> None:
    """numpy has no 128-bit integers: such a frame was refused as unhashable."""
    def frame(x: int) -> pl.DataFrame:
        return pl.DataFrame({"id": pl.Series([1, x], dtype=pl.Int128), "n": [1.0, 2.0]})

    assert keys.hash_value(frame(2)) == keys.hash_value(frame(2))
    assert keys.hash_value(frame(2)) != keys.hash_value(frame(3))
    assert keys.hash_value(frame(2)["id"]) != keys.hash_value(frame(3)["id"])


def test_nested_columns_key_through_their_pickled_state() -> None:
    nested = pl.DataFrame({"tags": [["a", "b"], ["c"]], "n": [1, 2]})
    assert keys.hash_value(nested) == keys.hash_value(pl.DataFrame({"tags": [["a", "b"], ["c"]], "n": [1, 2]}))
    assert keys.hash_value(nested) != keys.hash_value(pl.DataFrame({"tags": [["a", "b"], ["d"]], "n": [1, 2]}))


def test_text_and_categoricals_key_the_same_on_older_polars(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the newer polars APIs (CompatLevel, a Categorical's categories), text goes through Arrow as
    polars converts it and categoricals through an Arrow dictionary: the keys do not change."""
    df, _ = frame()
    sliced = df[123:877]
    current = [keys.hash_value(df), keys.hash_value(sliced), keys.hash_value(df["city"][5:])]
    if not hasattr(pl, "CompatLevel") and not hasattr(getattr(pl, "Categories", None), "to_series"):
        pytest.skip(f"polars {pl.__version__} has neither newer API: both ways are the same code")
    monkeypatch.delattr(pl, "CompatLevel", raising=False)
    monkeypatch.delattr(getattr(pl, "Categories", object), "to_series", raising=False)
    assert [keys.hash_value(df), keys.hash_value(sliced), keys.hash_value(df["city"][5:])] == current


def _texts() -> dict[str, pl.Series]:
    short = pl.Series("t", [f"u{i}" for i in range(1000)])
    return {
        "short": short,
        "12 bytes at most": pl.Series("t", ["x" * 12, "é" * 6, "", "a"]),
        "one of 13 bytes": pl.Series("t", ["x" * 13, "é" * 6, "", "a"]),
        "short and long": pl.Series("t", ["short", "a string longer than twelve bytes", "", "z"] * 50),
        "empty": pl.Series("t", [], dtype=pl.String),
        "with nulls": pl.Series("t", ["a", None, "bb", None]),
        "chunked": pl.concat([short[:300], short[300:]], rechunk=False),
        "sliced": short[17:900],
        "long, sliced": pl.Series("t", [f"a rather long string {i}" for i in range(100)])[3:50],
    }


def test_short_text_keys_the_same_from_string_views_or_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strings of up to 12 bytes are keyed by Arrow string views (polars' own form, no conversion);
    a polars that gives offsets instead frames them as the same views, so the keys do not change."""
    texts = _texts()
    current = {what: keys.hash_value(series) for what, series in texts.items()}
    assert current["chunked"] == current["short"]
    assert current["sliced"] == keys.hash_value(pl.Series("t", texts["short"].to_list()[17:900]))
    assert len(set(current.values())) == len(current) - 1  # every other one differs
    if not hasattr(pl, "CompatLevel"):
        pytest.skip(f"polars {pl.__version__} gives no string views: both ways are the same code")
    monkeypatch.delattr(pl, "CompatLevel")
    assert {what: keys.hash_value(series) for what, series in texts.items()} == current


def test_short_text_keys_by_every_byte_and_length() -> None:
    def text(*values: str) -> str:
        return keys.hash_value(pl.Series("t", list(values)))

    twelve = "abcdefghijkl"
    variants = [
        (twelve, "m"), (twelve[:-1] + "x", "m"), (twelve, "n"),  # every byte counts
        (twelve, ""), (twelve, "\x00"), (twelve[:11], "\x00"),  # lengths count, NULs are bytes
        ("a\x00", "b"), ("a", "\x00b"), ("a", "b"),
    ]
    assert len({text(*v) for v in variants}) == len(variants)


@pytest.mark.parametrize("used", [3, 300, 70_000])  # ranks in one, two and four bytes
def test_categoricals_key_by_rank_whatever_their_count(monkeypatch: pytest.MonkeyPatch, used: int) -> None:
    names = [f"c{(i * 7919) % used:05d}" for i in range(max(used, 1000))]
    column = pl.Series("c", names, dtype=pl.Categorical)
    swapped = pl.Series("c", [names[1], names[0], *names[2:]], dtype=pl.Categorical)
    digest = keys.hash_value(column)
    assert keys.hash_value(swapped) != digest
    assert keys.hash_value(column[1:]) == keys.hash_value(pl.Series("c", names[1:], dtype=pl.Categorical))
    monkeypatch.delattr(getattr(pl, "Categories", object), "to_series", raising=False)  # through Arrow
    assert keys.hash_value(column) == digest


_LONG_CATEGORICAL = """
import sys
import polars as pl
from persist_to_disk import keys
if sys.argv[1]:  # categories no row of the column uses (kept: polars forgets those of a column gone)
    seen = pl.Series(sys.argv[1].split(","), dtype=pl.Categorical)
names = [f"k{(i * 7919) % 50:02d}" for i in range(200_000)]
print(keys.hash_value(pl.Series("c", names, dtype=pl.Categorical)))
"""


def test_a_categorical_keys_the_same_searched_or_counted(python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to 256 categories, rows are ranked among them all and each rank searched for; in a fresh process
    the column uses them all and those ranks are fed: the same key as counting, then ranking the used ones
    (what a process whose categories hold values no row uses does)."""
    from persist_to_disk import polarsframes

    monkeypatch.setattr(polarsframes, "_SEARCHED_MAX", 0)  # here: count first, then rank the used ones
    names = [f"k{(i * 7919) % 50:02d}" for i in range(200_000)]
    expected = keys.hash_value(pl.Series("c", names, dtype=pl.Categorical))
    for seen_before in ("", "zz,k07,aa"):
        out = subprocess.run([python, "-c", _LONG_CATEGORICAL, seen_before], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(expected), seen_before


def test_a_global_read_after_long_text_keeps_its_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long text is tried as views, then rewound: what follows it in the key still counts, and the key is
    the one an older polars (text with offsets, no rewind) gives."""
    text = pl.DataFrame({"t": ["short", "a string longer than twelve bytes"] * 100})

    def key(label: str) -> str:
        extra = [(keys.extra_label("text"), text), (keys.extra_label(label), 1)]
        return keys.hash_call({"x": 1}, prefix=b"p", extra=extra)[0]

    assert key("b") != key("c")
    current = key("b")
    monkeypatch.delattr(pl, "CompatLevel", raising=False)
    assert key("b") == current


_SEARCHED = """
import sys
import polars as pl
from persist_to_disk import keys, polarsframes
found = []
search = polarsframes._every_rank_occurs
polarsframes._every_rank_occurs = lambda ranks, size: found.append(search(ranks, size)) or found[-1]
names = sys.argv[1].split(",")
column = pl.Series("c", [sys.argv[2], *names] if sys.argv[2] else names, dtype=pl.Categorical)
print(keys.hash_value(column[1:] if sys.argv[2] else column), found)  # (sliced: a category no row uses)
"""


def test_a_categorical_keys_as_counted_whether_its_ranks_are_all_found_or_not(
    python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a fresh process the search finds every rank of frequent categories; categories met only at the
    end of a column make it run out of its budget, and a category no row uses is never found: the last
    two count instead. Each key is the one counting alone gives."""
    from persist_to_disk import polarsframes

    frequent = [f"k{(i * 7919) % 50:02d}" for i in range(20_000)]
    rare = ["common"] * 5_000 + [f"rare{i:03d}" for i in range(200)]
    cases = {"found": (frequent, "", "True"), "budget": (rare, "", "False"), "unused": (frequent, "zz-unused", "False")}
    monkeypatch.setattr(polarsframes, "_SEARCHED_MAX", 0)  # here: count first, then rank the used ones
    for case, (names, seen_before, found) in cases.items():
        out = subprocess.run([python, "-c", _SEARCHED, ",".join(names), seen_before], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        counted = keys.hash_value(pl.Series("c", names, dtype=pl.Categorical))
        assert out.stdout.split() == [counted, f"[{found}]"], case


def _wide_frame(rows: int = 50_000) -> dict[str, list]:
    """Float columns past OVERLAP_MIN_BYTES in all, short text, a categorical, and columns with nulls."""
    return {
        "a": [i / 7 for i in range(rows)],
        "b": [i / 11 for i in range(rows)],
        "c": [i / 13 for i in range(rows)],
        "name": [f"n{i % 997}" for i in range(rows)],
        "kind": pl.Series([f"k{i % 31}" for i in range(rows)], dtype=pl.Categorical),
        "note": [f"x{i}" if i % 9 else None for i in range(rows)],
        "score": [i / 3 if i % 5 else None for i in range(rows)],
        "d": [i / 17 for i in range(rows)],
    }


class _BackLate(Future):
    """A look's result that says it is not back yet while its column is fed."""

    def done(self) -> bool:
        return False


def _looks_run_now(future: type[Future]):
    """``_look_ahead`` with every look run before any column is fed, its result in a ``future``."""

    def look_ahead(jobs: list) -> dict:
        looks = {}
        for job in jobs:
            looks[job] = future()
            looks[job].set_result(job.look())
        return looks

    return look_ahead


@pytest.mark.parametrize("back", ["before each column is fed", "after every column is fed"])
def test_a_wide_frame_keys_the_same_with_its_columns_looked_at_ahead(monkeypatch: pytest.MonkeyPatch, back: str) -> None:
    """A large frame's float and short text columns are fed as they are while another thread looks for
    a NaN or a long string (and works out a categorical's ranks). A column found wrong is fed again the
    usual way: alone when its look was back as it was fed, else the stream goes back to it at the end
    and feeds it and the rest again. The key is the one hashing each column the usual way gives, every
    NaN the same."""
    import numpy as np

    from persist_to_disk import arrays, polarsframes

    base = _wide_frame()
    nan_at = len(base["b"]) - 3
    odd_nan = float(np.frombuffer(b"\x01\x00\x00\x00\x00\x00\xf8\xff", "<f8")[0])  # sign set, a payload
    long_at = len(base["name"]) - 10  # past the sample the choice of way looks at
    frames = {
        "plain": base,
        "a NaN in the second float column": {**base, "b": [*base["b"][:nan_at], float("nan"), *base["b"][nan_at + 1 :]]},
        "another NaN there": {**base, "b": [*base["b"][:nan_at], odd_nan, *base["b"][nan_at + 1 :]]},
        "a long string late": {**base, "name": [*base["name"][:long_at], "a string of 23 bytes...", *base["name"][long_at + 1 :]]},
    }
    frames["both"] = {**frames["a long string late"], "d": [float("nan"), *base["d"][1:]]}
    built = {what: pl.DataFrame(columns) for what, columns in frames.items()}
    assert sum(built["plain"][c].to_numpy().nbytes for c in "abcd") >= arrays.OVERLAP_MIN_BYTES

    usual: list[str] = []
    feed_column = polarsframes._feed_polars_column
    monkeypatch.setattr(polarsframes, "_feed_polars_column", lambda h, c, pl: usual.append(c.name) or feed_column(h, c, pl))
    monkeypatch.setattr(polarsframes, "_look_ahead", _looks_run_now(Future if back.startswith("before") else _BackLate))
    ahead = {}
    for what, frame in built.items():
        ahead[what] = keys.hash_value(frame)
        usual.append(what)
    if back.startswith("before"):  # each column found wrong fed again alone, right away
        fed_again = {"plain": [], "a NaN in the second float column": ["b"], "another NaN there": ["b"],
                     "a long string late": ["name"], "both": ["name", "d"]}
    else:  # back to the first column found wrong, and all from there
        from_b, from_name = ["b", "c", "name", "kind", "note", "score", "d"], ["name", "kind", "note", "score", "d"]
        fed_again = {"plain": [], "a NaN in the second float column": from_b, "another NaN there": from_b,
                     "a long string late": from_name, "both": from_name}
    expected = []
    for what, again in fed_again.items():  # those with nulls are always fed the usual way
        expected += sorted(["note", "score", *again], key=list(base).index) if back.startswith("before") else ["note", "score", *again]
        expected.append(what)
    assert usual == expected

    monkeypatch.undo()
    monkeypatch.setattr(arrays, "HASHING_THREADS", 1)  # no thread to look ahead: each column the usual way
    assert {what: keys.hash_value(frame) for what, frame in built.items()} == ahead
    assert ahead["a NaN in the second float column"] == ahead["another NaN there"]
    assert len(set(ahead.values())) == len(ahead) - 1


def test_a_frame_looked_at_ahead_uses_the_look_ahead_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The looks really run on the hashing pool (the tests above run them in place), and an error in one
    reaches the caller instead of leaving it waiting."""
    from persist_to_disk import arrays, polarsframes

    frame = pl.DataFrame(_wide_frame())
    threads = []
    real = polarsframes._Floats.look
    monkeypatch.setattr(polarsframes._Floats, "look", lambda job: threads.append(threading.current_thread()) or real(job))
    digest = keys.hash_value(frame)
    assert threads and all(thread is not threading.main_thread() for thread in threads)

    class Stop(BaseException):
        pass

    def fail(job):
        raise Stop

    monkeypatch.setattr(polarsframes._Floats, "look", fail)
    with pytest.raises(Stop):
        keys.hash_value(frame)
    monkeypatch.undo()
    monkeypatch.setattr(arrays, "HASHING_THREADS", 1)
    assert keys.hash_value(frame) == digest
