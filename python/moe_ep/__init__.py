"""moe_ep: MoE expert-parallel dispatch/combine, a drop-in for deep_ep (`import moe_ep as deep_ep`).
Importing needs no torch; Buffer and the tensor calls do. `topk_idx_t` (torch.int64) resolves lazily.
"""
from . import hardware_queues as _hardware_queues  # noqa: F401  (first: sees the env as the user left it)
from . import _C  # noqa: F401
from .buffer import Buffer
from .config import Config
from .event_overlap import EventOverlap

__version__ = "0.1.0"
__all__ = ["Buffer", "Config", "EventOverlap", "topk_idx_t"]


def __getattr__(name):
    if name == "topk_idx_t":
        from ._torch import require_torch
        return require_torch("moe_ep.topk_idx_t").int64
    raise AttributeError(f"module 'moe_ep' has no attribute {name!r}")
