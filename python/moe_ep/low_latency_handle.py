"""The handle of a low-latency dispatch: deep_ep's 5-tuple (src_info, layout_range,
num_max_dispatch_tokens_per_rank, hidden, num_experts), as a tuple subclass that also
carries what moe_ep's combine needs: combine_slots ([T, num_topk] int32, where each of
this rank's (token, k) landed on the expert's owner), num_topk, num_tokens, the id and
generation of the buffer that made it and whether its slots are absolute (see
moe_ep/low_latency.hpp). A plain tuple rebuilt from the same src_info tensor
is accepted too (engines that unpack and repack the handle)."""
import weakref

from . import _C
from .views import view

HANDLE_LEN = 5

# id(src_info) -> (weak ref to src_info, layout_range id, combine_slots, C++ handle): the extras
# of a live dispatch, found again for a repacked tuple. Nothing here holds src_info, so the
# entry goes when the handle's tensors do.
_by_src_info = {}


class LowLatencyHandle(tuple):
    """handle[0..4] as deep_ep's; .combine_slots, .num_topk, .num_tokens, .buffer_id,
    .buffer_generation are moe_ep's (read-only; pass the tuple back unchanged)."""

    def __new__(cls, src_info, layout_range, combine_slots, native):
        self = super().__new__(cls, (src_info, layout_range, native.num_max_dispatch_tokens_per_rank,
                                     native.hidden, native.num_experts))
        self._native = native
        self.combine_slots = combine_slots
        return self

    # A handle is immutable: copies are the handle itself (its device tensors are shared).
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    @property
    def num_topk(self):
        return self._native.num_topk

    @property
    def num_tokens(self):
        return self._native.num_tokens

    @property
    def buffer_id(self):
        return self._native.buffer_id

    @property
    def buffer_generation(self):
        return self._native.buffer_generation

    def __repr__(self):
        return (f"LowLatencyHandle(num_max_dispatch_tokens_per_rank={self[2]}, hidden={self[3]}, "
                f"num_experts={self[4]}, num_topk={self.num_topk}, num_tokens={self.num_tokens}, "
                f"buffer_id={self.buffer_id}, generation={self.buffer_generation})")


def pack(src_info, layout_range, combine_slots, native):
    """The handle of a dispatch whose C++ handle `native` (views of these tensors) was filled."""
    key = id(src_info)
    # The callback keeps its own reference to the table (module globals may be gone at exit).
    _by_src_info[key] = (weakref.ref(src_info, lambda _, key=key, table=_by_src_info: table.pop(key, None)),
                         id(layout_range), combine_slots, native)
    return LowLatencyHandle(src_info, layout_range, combine_slots, native)


def unpack(handle, what):
    """(moe_ep._C.LowLatencyHandle with fresh views, [the handle's device tensors])."""
    if not isinstance(handle, LowLatencyHandle):
        handle = _find(handle, what)
    src = handle._native
    native = _C.LowLatencyHandle()
    for name in ("num_max_dispatch_tokens_per_rank", "hidden", "num_experts", "num_topk", "num_tokens",
                 "buffer_id", "buffer_generation", "absolute_slots"):
        setattr(native, name, getattr(src, name))
    native.src_info = view(handle[0], f"{what}: handle[0] (src_info)")
    native.layout_range = view(handle[1], f"{what}: handle[1] (layout_range)")
    native.combine_slots = view(handle.combine_slots, f"{what}: handle.combine_slots")
    return native, [handle[0], handle[1], handle.combine_slots]


def _find(handle, what):
    """The LowLatencyHandle of a plain tuple holding a live dispatch's very tensors and sizes."""
    if not isinstance(handle, (tuple, list)) or len(handle) != HANDLE_LEN:
        got = type(handle).__name__ + (f" of {len(handle)}" if isinstance(handle, (tuple, list)) else "")
        raise ValueError(f"{what}: handle must be the {HANDLE_LEN}-tuple low_latency_dispatch returned, got {got}")
    entry = _by_src_info.get(id(handle[0]))
    if entry is not None and entry[0]() is handle[0] and entry[1] == id(handle[1]):
        found = LowLatencyHandle(handle[0], handle[1], entry[2], entry[3])
        if tuple(found[2:]) == tuple(handle[2:]):
            return found
    raise ValueError(f"{what}: this handle was not made by moe_ep's low_latency_dispatch (or its items were "
                     "replaced); pass back the handle the dispatch returned")
