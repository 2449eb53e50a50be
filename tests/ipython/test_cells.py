"""Unit tests for ipython_ext.cells: what a ``%%persist`` cell reads, assigns and deletes.

Sets are compared exactly: an extra read only costs a cache miss, but a
missing one is a stale-cache bug, and either change must be noticed.
"""

import textwrap

import pytest

from ipython_ext.cells import CellNames, analyze_cell, normalized_cell_source, to_python


def names(source):
    return analyze_cell(textwrap.dedent(source))


def check(source, reads=(), assigns=(), deletes=(), after_binding=()):
    result = names(source)
    expected = CellNames(frozenset(reads), tuple(assigns), frozenset(deletes), frozenset(after_binding))
    assert result == expected, result


# -- assignment forms --------------------------------------------------------


def test_plain_assignment():
    check("x = f(1)", reads={"f"}, assigns=["x"])


def test_chained_assignment_order():
    check("a = b = c", reads={"c"}, assigns=["a", "b"])


def test_tuple_unpacking_and_starred():
    check("a, (b, *c), [d] = src", reads={"src"}, assigns=["a", "b", "c", "d"])


def test_augmented_assignment_reads_its_target():
    check("total += step", reads={"total", "step"}, assigns=["total"])


def test_augmented_assignment_after_binding_is_not_a_read():
    check("total = 0\ntotal += 1", assigns=["total"])


def test_annotated_assignment():
    check("x: int = 5\ny: str", reads={"int", "str"}, assigns=["x"])


def test_for_targets_and_loop_body():
    check(
        """
        for i, (k, v) in enumerate(pairs):
            acc = v
        """,
        reads={"enumerate", "pairs"},
        assigns=["i", "k", "v", "acc"],
    )


def test_async_for_target():
    check(
        """
        async def main():
            pass
        async for item in stream():
            last = item
        """,
        reads={"stream"},
        assigns=["main", "item", "last"],
    )


def test_with_targets():
    check(
        """
        with open(path) as fh, lock:
            text = fh.read()
        """,
        reads={"open", "path", "lock"},
        assigns=["fh", "text"],
    )


def test_with_target_is_definite_but_with_body_is_not():
    # A context manager may swallow an exception raised mid-body.
    check(
        """
        with open(path) as fh:
            text = fh.read()
        print(fh, text)
        """,
        reads={"open", "path", "print", "text"},
        assigns=["fh", "text"],
        after_binding={"text"},
    )


def test_imports():
    check(
        """
        import a.b
        import a.b as c
        from m import x as y, z
        from n import *
        import os
        """,
        assigns=["a", "c", "y", "z", "os"],
    )


def test_relative_import():
    check("from . import sibling\nfrom ..pkg.mod import thing", assigns=["sibling", "thing"])


# -- definitions -------------------------------------------------------------


def test_def_decorators_defaults_annotations_are_reads():
    check(
        """
        @register(registry)
        def f(a: A, b=default, *args: V, c=kw_default, **kw) -> Ret:
            return a + b + c
        """,
        reads={"register", "registry", "A", "default", "V", "kw_default", "Ret"},
        assigns=["f"],
    )


def test_class_bases_keywords_and_decorators_are_reads():
    check(
        """
        @dataclass
        class Point(Base, metaclass=Meta):
            x: int = 0
        """,
        reads={"dataclass", "Base", "Meta", "int"},
        assigns=["Point"],
    )


def test_function_body_free_name_is_a_read():
    check("def f(a):\n    return a + offset", reads={"offset"}, assigns=["f"])


def test_function_locals_are_not_reads():
    check(
        """
        def f(a, *rest, key=None, **kw):
            tmp = a
            for j in rest:
                tmp += j
            import math
            return math.floor(tmp) + key + len(kw)
        """,
        reads={"len"},
        assigns=["f"],
    )


def test_function_local_assigned_after_use_is_still_local():
    # Python decides locality for the whole body: this is UnboundLocalError, not a read.
    check("def f():\n    print(v)\n    v = 1", reads={"print"}, assigns=["f"])


def test_function_reading_name_bound_earlier_in_cell_is_not_a_read():
    check("scale = 2\ndef f(v):\n    return v * scale", assigns=["scale", "f"])


def test_function_reading_name_bound_later_in_cell_is_a_read():
    check("def f(v):\n    return v * scale\nscale = 2", reads={"scale"}, assigns=["f", "scale"])


def test_recursive_function_does_not_read_itself():
    check("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)", assigns=["fact"])


def test_nested_functions_and_nonlocal():
    check(
        """
        def outer():
            count = 0
            def inner():
                nonlocal count
                count += step
                return count
            return inner
        """,
        reads={"step"},
        assigns=["outer"],
    )


def test_global_inside_def_assigns_and_reads():
    check(
        """
        def reset():
            global counter
            counter = 0
        """,
        reads={"counter"},
        assigns=["reset", "counter"],
    )


def test_global_inside_def_after_binding():
    check(
        """
        counter = 0
        def bump():
            global counter
            counter += 1
        bump()
        """,
        assigns=["counter", "bump"],
    )


def test_global_at_top_level_is_a_no_op():
    check("global x\nx = 1", assigns=["x"])


def test_lambda():
    check("f = lambda a, b=dflt: a + b + free", reads={"dflt", "free"}, assigns=["f"])


def test_lambda_recursion_via_its_own_name_is_a_read():
    # The lambda is created before `g` is bound, so `g` is conservatively a read.
    check("g = lambda n: n and g(n - 1)", reads={"g"}, assigns=["g"])


def test_class_body():
    check(
        """
        class C:
            a = 1
            b = a + outside
            def m(self):
                return a
        """,
        # `a` inside the method skips the class namespace: it is a global read.
        reads={"outside", "a"},
        assigns=["C"],
    )


def test_class_body_reads_global_before_binding_it():
    check("class C:\n    x = x", reads={"x"}, assigns=["C"])


def test_class_name_is_bound_only_after_its_body():
    check("class Node:\n    parent = Node", reads={"Node"}, assigns=["Node"])


def test_comprehension_inside_class_does_not_see_class_names():
    check("class C:\n    x = 1\n    ys = [x for _ in r]", reads={"x", "r"}, assigns=["C"])


# -- order and definiteness -----------------------------------------------------


def test_assigned_before_read_is_not_a_read():
    check("x = 1\ny = x", assigns=["x", "y"])


def test_read_before_assigned_is_a_read():
    check("y = x\nx = 1", reads={"x"}, assigns=["y", "x"])


def test_self_referencing_assignment_is_a_read():
    check("x = x + 1", reads={"x"}, assigns=["x"])


def test_assignment_only_inside_if_then_load_is_a_read():
    check(
        """
        if flag:
            x = 1
        print(x)
        """,
        reads={"flag", "print", "x"},
        assigns=["x"],
        after_binding={"x"},
    )


def test_assignment_only_in_else_branch_then_load_is_a_read():
    check(
        """
        if flag:
            pass
        else:
            x = 1
        print(x)
        """,
        reads={"flag", "print", "x"},
        assigns=["x"],
        after_binding={"x"},
    )


def test_assignment_in_both_if_branches_is_definite():
    check(
        """
        if flag:
            x = 1
        elif other:
            x = 2
        else:
            x = 3
        y = x
        """,
        reads={"flag", "other"},
        assigns=["x", "y"],
    )


def test_loop_body_assignment_is_not_definite():
    check("while cond():\n    x = 1\ny = x", reads={"cond", "x"}, assigns=["x", "y"], after_binding={"x"})


def test_loop_target_is_not_definite_after_the_loop():
    check("for i in r:\n    pass\nlast = i", reads={"r", "i"}, assigns=["i", "last"], after_binding={"i"})


def test_while_condition_walrus_is_definite():
    check("while (line := read()):\n    pass\nend = line", reads={"read"}, assigns=["line", "end"])


def test_short_circuit_walrus_is_not_definite():
    check("ok = a and (m := b)\nprint(m)", reads={"a", "b", "print", "m"}, assigns=["m", "ok"], after_binding={"m"})


def test_try_with_fallback_in_every_handler_is_definite():
    check(
        """
        try:
            import fast as impl
        except ImportError:
            import slow as impl
        impl.run()
        """,
        reads={"ImportError"},
        assigns=["impl"],
    )


def test_try_without_fallback_is_not_definite():
    check(
        """
        try:
            value = compute()
        except Exception:
            pass
        print(value)
        """,
        reads={"compute", "Exception", "print", "value"},
        assigns=["value"],
        after_binding={"value"},
    )


def test_finally_body_is_definite():
    check("try:\n    a = f()\nfinally:\n    b = 2\nc = a + b", reads={"f"}, assigns=["a", "b", "c"])


def test_except_as_name_is_bound_in_handler_but_not_assigned():
    check(
        """
        try:
            risky()
        except ValueError as err:
            msg = str(err)
        """,
        reads={"risky", "ValueError", "str"},
        assigns=["msg"],
    )


def test_except_as_name_is_unbound_after_the_handler():
    check(
        """
        err = None
        try:
            risky()
        except ValueError as err:
            pass
        print(err)
        """,
        reads={"risky", "ValueError", "print", "err"},
        assigns=["err"],
        after_binding={"err"},  # bound by the cell, or unbound by the handler: never the namespace's
    )


def test_match_captures_bind_at_top_level():
    check(
        """
        match point:
            case Point(x=0, y=yy) as p:
                hit = p
            case {"k": v, **rest}:
                pass
        """,
        reads={"point", "Point"},
        assigns=["yy", "p", "hit", "v", "rest"],
    )


# -- comprehensions and walrus ---------------------------------------------------


def test_comprehension_variables_are_neither_reads_nor_assigns():
    check("[y for y in data]", reads={"data"})


def test_nested_comprehension_and_conditions():
    check(
        "out = {k: [v * w for w in ws if w > lo] for k, v in items.items() if k}",
        reads={"items", "ws", "lo"},
        assigns=["out"],
    )


def test_comprehension_iterable_bound_earlier_is_not_a_read():
    check("data = load()\nsq = [x * x for x in data]", reads={"load"}, assigns=["data", "sq"])


def test_generator_expression():
    check("total = sum(x for x in xs)", reads={"sum", "xs"}, assigns=["total"])


def test_walrus_inside_comprehension_binds_at_top_level():
    check(
        "hits = [y for x in data if (y := f(x))]",
        reads={"data", "f"},
        assigns=["y", "hits"],
    )


def test_walrus_bound_name_in_comprehension_element_is_not_a_read():
    check("hits = [y for x in data if a(x) if (y := f(x))]", reads={"data", "a", "f"}, assigns=["y", "hits"])


def test_short_circuit_walrus_in_comprehension_condition_is_not_definite():
    check("hits = [y for x in data if a(x) or (y := f(x))]", reads={"data", "a", "f", "y"}, assigns=["y", "hits"])


def test_walrus_inside_comprehension_is_not_definite():
    # `data` may be empty: a later load of `y` may see the namespace's `y`.
    check("[y := f(x) for x in data]\nprint(y)", reads={"data", "f", "print", "y"}, assigns=["y"], after_binding={"y"})


def test_walrus_at_top_level():
    check("if (n := len(a)) > 3:\n    pass\nm = n", reads={"len", "a"}, assigns=["n", "m"])


def test_walrus_in_comprehension_inside_function_is_local():
    check("def f(xs):\n    [t := x for x in xs]\n    return t", assigns=["f"])


# -- del -------------------------------------------------------------------------


def test_del():
    check("tmp = load()\nkeep = tmp * 2\ndel tmp", reads={"load"}, assigns=["keep"], deletes={"tmp"})


def test_del_of_namespace_name():
    check("del old", deletes={"old"})


def test_del_then_rebind_is_not_a_delete():
    check("del x\nx = 1", assigns=["x"])


def test_load_after_del_is_a_read():
    check("x = 1\ndel x\ny = x", reads={"x"}, assigns=["y"], deletes={"x"}, after_binding={"x"})


def test_del_of_attribute_and_item_reads_the_object():
    check("del obj.attr, table[key]", reads={"obj", "table", "key"})


# -- attribute and subscript targets --------------------------------------------------


def test_attribute_and_subscript_targets_read_and_do_not_bind():
    check("a.x = 1\nb[i] = 2\nc.d.e += 3", reads={"a", "b", "i", "c"})


def test_mutating_a_cell_bound_object_is_not_a_read():
    check("a = []\na.append(1)\na[0] = 2", assigns=["a"])


# -- IPython syntax --------------------------------------------------------------


@pytest.fixture
def ipython():
    pytest.importorskip("IPython")


def test_to_python_translates_magics(ipython):
    assert to_python("%time y = g(x)").strip() == "get_ipython().run_line_magic('time', 'y = g(x)')"
    assert to_python("files = !ls").strip() == "files = get_ipython().getoutput('ls')"
    assert to_python("x = 1\n") == "x = 1\n"


def test_time_magic(ipython):
    check("%time y = g(x)", reads={"get_ipython", "g", "x"}, assigns=["y"])


def test_time_cell_magic(ipython):
    check("%%time\na = f()\nb = a + 1\n", reads={"get_ipython", "f"}, assigns=["a", "b"])


def test_timeit_does_not_bind(ipython):
    check("%timeit y = g(x)", reads={"get_ipython", "g", "x"})


def test_capture_cell_magic_binds_its_variable(ipython):
    check("%%capture out\nprint(v)\n", reads={"get_ipython", "print", "v"}, assigns=["out"])


def test_shell_output_assignment(ipython):
    check("files = !ls", reads={"get_ipython", "ls"}, assigns=["files"])


def test_shell_command_variable_expansion_is_a_read(ipython):
    check("!cp {src} $dst", reads={"get_ipython", "cp", "src", "dst"})


def test_line_magic_and_help(ipython):
    # The magic's own name is not a variable; its argument may interpolate one.
    check("%matplotlib inline\n?obj", reads={"get_ipython", "inline", "obj"})


# -- normalized_cell_source ------------------------------------------------------------


BASE = '''
"""Cell banner."""
def f(x):
    """Add one."""
    return x + 1


class C:
    "Doc."
    y = 2

z = f(C.y)
'''

REFORMATTED = '''"""Cell banner."""
# a comment
def f( x ):
    """Add one -- with a better docstring."""
    return (x+1)   # trailing comment
class C:
    y   =   2
z=f(C.y)
'''


def test_normalized_source_ignores_comments_formatting_and_docstrings():
    assert normalized_cell_source(BASE) == normalized_cell_source(REFORMATTED)


def test_normalized_source_changes_with_a_constant():
    assert normalized_cell_source(BASE) != normalized_cell_source(BASE.replace("x + 1", "x + 2"))


def test_normalized_source_distinguishes_int_and_float_constants():
    assert normalized_cell_source("x = 1") != normalized_cell_source("x = 1.0")


def test_normalized_source_keeps_leading_cell_string():
    assert normalized_cell_source('"a"\nx = 1') != normalized_cell_source('"b"\nx = 1')


def test_normalized_source_keeps_non_leading_strings_in_functions():
    a = normalized_cell_source('def f():\n    x = 1\n    "note"\n')
    b = normalized_cell_source('def f():\n    x = 1\n    "other"\n')
    assert a != b


def test_normalized_source_of_magic(ipython):
    assert normalized_cell_source("%time y = g(x)  # c") == normalized_cell_source("%time y = g(x)")
    assert normalized_cell_source("%time y = g(x)") != normalized_cell_source("%time y = g(z)")


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize("func", [analyze_cell, normalized_cell_source])
def test_syntax_error_propagates(func):
    with pytest.raises(SyntaxError):
        func("def f(:\n    pass")


# -- reads after the cell's own binding (a loop variable left behind) -----------------------------


@pytest.mark.parametrize(
    "source, after_binding",
    [
        ("for seed in range(3):\n    model = seed\nprint(model, seed)", {"model", "seed"}),
        ("for i in r: pass\nfor j in r2: print(i)", {"i"}),  # the first loop is over before the second
        ("x = x + 1", set()),  # read before any binding: a real input
        ("if c: x = 0\nx = x + 1", set()),  # may read the namespace's x and then bind it
        ("if c: x = 1\nprint(x)\nif d: x = 2", set()),  # bound again after the read
        ("for i in r:\n    if c: x = i\n    print(x)", set()),  # the next iteration binds after this read
        ("while n > 0:\n    n = n - 1\nprint(n)", set()),  # the loop's test reads it before the body binds
        ("def f():\n    global x\n    x = 1\nif c: f()\nprint(x)", set()),  # f may bind it at any time
        ("for i in r: pass\nf = lambda: i", set()),  # read when f is called, maybe in a later cell
    ],
)
def test_reads_after_the_cells_own_binding(source, after_binding):
    result = names(source)
    assert result.reads_after_binding == frozenset(after_binding)
    assert result.reads_after_binding <= result.reads
