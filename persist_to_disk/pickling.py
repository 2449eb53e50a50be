"""How values are pickled into entries: protocol 5, large buffers out of band.

numpy arrays hand pickle their memory as out-of-band buffers by themselves. A plain torch
CPU tensor does not: torch pickles its storage through ``torch.save`` into bytes, in band
(two copies in memory, then written). Here such a tensor is pickled as
``torch.from_numpy(<its numpy view>)``, so its memory goes out of band like an array's, is
written straight from the tensor and, on load, the tensor is rebuilt on the entry's pages.
Anything else a tensor can carry (a gradient, ``requires_grad``, a subclass, a dtype numpy
lacks, another device, a non-contiguous view) keeps torch's own pickling.
"""

from __future__ import annotations

import copyreg
import sys
from typing import Any


def dispatch_table() -> dict[type, Any]:
    """copyreg's table plus the tensor reducer when torch is imported (a value can hold a tensor only then)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return copyreg.dispatch_table
    return {**copyreg.dispatch_table, torch.Tensor: _reduce_tensor}


def _reduce_tensor(tensor: Any) -> tuple:
    torch = sys.modules["torch"]
    plain = (
        tensor.device.type == "cpu"
        and tensor.layout is torch.strided
        and not tensor.requires_grad
        and tensor.grad is None
        and not tensor.is_quantized
        and not tensor.is_conj()
        and not tensor.is_neg()
        and tensor.is_contiguous()
        and not getattr(tensor, "__dict__", None)  # attributes set on it
    )
    if plain:
        try:
            return torch.from_numpy, (tensor.numpy(),)
        except (TypeError, RuntimeError):  # bfloat16 and other dtypes numpy has not
            pass
    return tensor.__reduce_ex__(5)
