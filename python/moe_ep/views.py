"""torch tensors -> moe_ep._C.TensorView (pointer, dtype, shape, strides; no copy). None
gives an empty view (an absent optional argument). Errors name the argument. The DLPack
capsule is taken with stream=-1: the C++ calls order their work after the compute stream
themselves, so torch's per-export stream sync would only cost time."""
from . import _C

_ABSENT = _C.TensorView()


def view(tensor, name):
    if tensor is None:
        return _ABSENT
    if not tensor.is_cuda:
        raise ValueError(f"{name} must be a CUDA tensor, got one on {tensor.device}")
    if tensor.requires_grad:
        tensor = tensor.detach()
    try:
        return _C.view(tensor.__dlpack__(stream=-1))
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
