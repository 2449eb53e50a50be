"""The data stack as arguments and results: for each type, (a value, an equal value built anew, another value).

Imported by a fresh process per run, so equal values share nothing but their construction. Each
builder imports its library itself: a library that is not installed is reported by name, and the
test decides whether that may be skipped.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
import fractions
import re
from collections.abc import Callable
from typing import Any


def _numpy_dtypes():
    import numpy as np

    def build(shift: int):
        return {
            "bool": np.array([True, False, bool(shift)]),
            "int8": np.array([1, -2, 3 + shift], dtype=np.int8),
            "uint64": np.array([1, 2, 3 + shift], dtype=np.uint64),
            "float16": np.array([0.5, np.nan, 1.0 + shift], dtype=np.float16),
            "float64": np.array([0.5, np.inf, 1.0 + shift]),
            "complex128": np.array([1 + 2j, 3j + shift]),
            "datetime64": np.array(["2024-01-01", "2024-02-29"], dtype=f"M8[{'D' if shift == 0 else 's'}]"),
            "timedelta64": np.array([1, 2 + shift], dtype="m8[ms]"),
            "bytes": np.array([b"ab", b"c" * (1 + shift)]),
            "unicode": np.array(["é", "x" * (1 + shift)]),
            "structured": np.array([(1, np.datetime64(2 + shift, "ns"))], dtype=[("a", "i4"), ("t", "M8[ns]")]),
            "object": np.array([{"k": 1}, "s", 1 + shift], dtype=object),
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3) + shift),
        }

    return build(0), build(0), build(1)


def _numpy_nan_patterns():
    import numpy as np

    with np.errstate(all="ignore"):
        made = np.array([0.0, 1.0]) / np.array([0.0, 1.0])  # numpy's NaN (sign bit set on x86)
    return made, np.array([float("nan"), 1.0]), np.array([float("nan"), 2.0])


def _numpy_generator():
    import numpy as np

    def drawn(n: int):
        rng = np.random.default_rng(7)
        rng.random(n)
        return rng

    return drawn(3), drawn(3), drawn(4)


def _pandas_read_csv():
    import io

    import pandas as pd

    def frame(last: str):
        text = f"when,city,n,price\n2024-01-01,Paris,1,1.5\n2024-01-02,Lyon,,2.5\n{last},Paris,3,\n"
        df = pd.read_csv(io.StringIO(text), parse_dates=["when"])
        df["city"] = df["city"].astype("category")
        df["n"] = df["n"].astype("Int64")
        df["at"] = df["when"].dt.tz_localize("Europe/Paris")
        return df.set_index("when")

    return frame("2024-01-03"), frame("2024-01-03"), frame("2024-01-04")


def _pandas_arrow_dtypes():
    import pandas as pd

    def frame(x: int):
        return pd.DataFrame(
            {
                "s": pd.Series(["a", None, "c"], dtype="string[pyarrow]"),
                "i": pd.Series([1, None, x], dtype="int64[pyarrow]"),
            }
        )

    return frame(3), frame(3), frame(4)


def _pandas_text_columns():
    """Long enough for the bulk paths: Arrow strings from their buffers, object strings framed at once."""
    import pandas as pd

    def frame(last: str):
        words = [f"w{i % 37}\u00e9" for i in range(300)]
        return pd.DataFrame(
            {
                "s": pd.Series([*words[:-1], last], dtype="string[pyarrow]"),
                "o": pd.Series([*words[:-2], None, last], dtype=object),
                "c": pd.Categorical([*words[:-1], last]),
            }
        )

    return frame("z"), frame("z"), frame("y")


def _pandas_categorical_categories():
    import pandas as pd

    def cat(categories, ordered=False):
        return pd.Series(pd.Categorical(["a", "b"], categories=categories, ordered=ordered))

    return cat(["a", "b"]), cat(["a", "b"]), cat(["a", "b", "z"])


def _pandas_categorical_ordered():
    import pandas as pd

    def cat(ordered):
        return pd.Categorical(["a", "b"], categories=["a", "b"], ordered=ordered)

    return cat(False), cat(False), cat(True)


def _polars():
    import polars as pl

    def frame(x: int):
        return pl.DataFrame({"s": ["a", "b"], "d": [dt.date(2024, 1, 1), dt.date(2024, 1, x)], "f": [1.5, None]})

    return frame(2), frame(2), frame(3)


def _pyarrow():
    import pyarrow as pa

    def table(x: str):
        return pa.table({"s": ["a", x], "t": pa.array([1, 2], type=pa.timestamp("us", tz="UTC"))})

    return table("b"), table("b"), table("c")


def _scipy_sparse():
    import numpy as np
    import scipy.sparse as sp

    return sp.csr_matrix(np.eye(3)), sp.csr_matrix(np.eye(3)), sp.csr_matrix(2 * np.eye(3))


def _xarray():
    import numpy as np
    import xarray as xr

    def ds(x: float):
        return xr.Dataset({"t": (("x",), np.array([1.0, x]))}, coords={"x": [10, 20]}, attrs={"units": "K"})

    return ds(2.0), ds(2.0), ds(3.0)


def _torch_tensor():
    import torch

    return torch.arange(12.0).reshape(3, 4), torch.arange(12.0).reshape(3, 4), torch.arange(12.0).reshape(4, 3)


def _torch_bfloat16_nan():
    import torch

    def t(x: float):
        return torch.tensor([float("nan"), x], dtype=torch.bfloat16)

    return t(1.0), t(1.0), t(2.0)


def _torch_module():
    import torch

    def model(seed: int):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))

    return model(0), model(0), model(1)


try:
    import pydantic

    class Settings(pydantic.BaseModel):
        lr: float
        layers: list[int]
except ImportError:
    pydantic = None

try:
    import attrs

    @attrs.define
    class Point:
        x: int
        y: int
except ImportError:
    attrs = None


def _pydantic():
    import pydantic  # noqa: F401  (reported by name when missing)

    return Settings(lr=0.1, layers=[2, 3]), Settings(lr=0.1, layers=[2, 3]), Settings(lr=0.2, layers=[2, 3])


@dataclasses.dataclass(frozen=True)
class Frozen:
    lr: float
    tags: tuple = ()


def _dataclass():
    return Frozen(0.1, ("a",)), Frozen(0.1, ("a",)), Frozen(0.1, ("b",))


def _attrs():
    import attrs  # noqa: F401

    return Point(1, 2), Point(1, 2), Point(1, 3)


def _sklearn_estimator():
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0), Ridge(alpha=1.0), Ridge(alpha=100.0)


def _sklearn_fitted():
    import numpy as np
    from sklearn.linear_model import Ridge

    X, y = np.arange(20.0).reshape(10, 2), np.arange(10.0)
    return Ridge().fit(X, y), Ridge().fit(X, y), Ridge()


def _sklearn_pipeline():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return (make_pipeline(StandardScaler(), Ridge()), make_pipeline(StandardScaler(), Ridge()),
            make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5)))


def _sklearn_class():
    from sklearn.linear_model import Lasso, Ridge

    return Ridge, Ridge, Lasso


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Base(abc.ABC):
    @abc.abstractmethod
    def run(self) -> None: ...


def _classes_with_metaclasses():
    return (Color, Base, fractions.Fraction), (Color, Base, fractions.Fraction), (Color, Base, int)


def _regex():
    return re.compile(r"a+b", re.I), re.compile(r"a+b", re.I), re.compile(r"a+b")


def _aware_datetimes():
    from zoneinfo import ZoneInfo

    moment = dt.datetime(2024, 1, 15, 12, 0)
    paris = moment.replace(tzinfo=ZoneInfo("Europe/Paris"))
    fixed = moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=1)))
    return paris, moment.replace(tzinfo=ZoneInfo("Europe/Paris")), fixed


# name -> (builder, the library it needs)
CASES: dict[str, tuple[Callable[[], tuple[Any, Any, Any]], str | None]] = {
    "numpy NaN patterns": (_numpy_nan_patterns, "numpy"),
    "numpy Generator": (_numpy_generator, "numpy"),
    "pandas read_csv": (_pandas_read_csv, "pandas"),
    "pandas pyarrow dtypes": (_pandas_arrow_dtypes, "pyarrow"),
    "pandas text columns": (_pandas_text_columns, "pyarrow"),
    "pandas categories": (_pandas_categorical_categories, "pandas"),
    "pandas ordered": (_pandas_categorical_ordered, "pandas"),
    "polars": (_polars, "polars"),
    "pyarrow": (_pyarrow, "pyarrow"),
    "scipy.sparse": (_scipy_sparse, "scipy"),
    "xarray": (_xarray, "xarray"),
    "torch tensor": (_torch_tensor, "torch"),
    "torch bfloat16 NaN": (_torch_bfloat16_nan, "torch"),
    "torch module": (_torch_module, "torch"),
    "pydantic": (_pydantic, "pydantic"),
    "dataclass": (_dataclass, None),
    "attrs": (_attrs, "attrs"),
    "scikit-learn estimator": (_sklearn_estimator, "sklearn"),
    "scikit-learn fitted": (_sklearn_fitted, "sklearn"),
    "scikit-learn pipeline": (_sklearn_pipeline, "sklearn"),
    "scikit-learn class": (_sklearn_class, "sklearn"),
    "ABC and Enum classes": (_classes_with_metaclasses, None),
    "re.Pattern": (_regex, None),
    "aware datetime": (_aware_datetimes, None),
}


def _numpy_dtype_case(kind: str) -> Callable[[], tuple[Any, Any, Any]]:
    def build() -> tuple[Any, Any, Any]:
        a, b, c = _numpy_dtypes()
        return a[kind], b[kind], c[kind]

    return build


for _kind in ("bool", "int8", "uint64", "float16", "float64", "complex128", "datetime64", "timedelta64",
              "bytes", "unicode", "structured", "object", "fortran"):
    CASES[f"numpy {_kind}"] = (_numpy_dtype_case(_kind), "numpy")
