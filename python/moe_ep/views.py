"""torch tensors -> moe_ep._C.TensorView (pointer, dtype, shape, strides; no copy). None
gives an empty view (an absent optional argument). Errors name the argument. The DLPack
capsule comes from torch.utils.dlpack.to_dlpack, which neither syncs a stream (the C++
calls order their work after the compute stream themselves) nor runs Tensor.__dlpack__'s
Python-side checks: those cost about 10 us per tensor, and a low-latency call passes
several tensors (H100 host, bench/ll_host_cost.py)."""
from . import _C
from ._torch import require_torch

_ABSENT = _C.TensorView()
_to_dlpack = None  # torch's capsule export, looked up once


def _capsule(tensor):
    global _to_dlpack
    if _to_dlpack is None:
        dlpack = require_torch("moe_ep").utils.dlpack
        _to_dlpack = getattr(dlpack, "to_dlpack", None) or (lambda t: t.__dlpack__(stream=-1))
    return _to_dlpack(tensor)


def view(tensor, name):
    if tensor is None:
        return _ABSENT
    if not tensor.is_cuda:
        raise ValueError(f"{name} must be a CUDA tensor, got one on {tensor.device}")
    if tensor.requires_grad:
        tensor = tensor.detach()
    try:
        return _C.view(_capsule(tensor))
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
