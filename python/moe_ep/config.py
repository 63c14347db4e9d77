"""Config: deep_ep's constructor and size hints (the C++ struct, bound as moe_ep._C.Config).
Our kernels pull rows directly, so the chunk fields are accepted for compatibility and
only num_sms steers a launch."""
from ._C import Config

__all__ = ["Config"]
