"""The handle of an intranode dispatch, shaped like deep_ep's 6-tuple:
(rank_prefix_matrix, meta, None, recv_src_idx, is_token_in_rank, send_pos).
Slot 1 (deep_ep's channel_prefix_matrix) holds `meta`, a CPU int64 tensor
[buffer_id, buffer_generation, num_recv_rows, num_tokens] from which combine and cached
dispatch rebuild the C++ DispatchHandle; engines read only slot 0 and pass the rest back."""
from . import _C
from .views import view

HANDLE_LEN = 6


def pack(torch, native, rank_prefix_matrix, recv_src_idx, is_token_in_rank, send_pos):
    meta = torch.tensor([native.buffer_id, native.buffer_generation, native.num_recv_rows, native.num_tokens],
                        dtype=torch.int64)
    return (rank_prefix_matrix, meta, None, recv_src_idx, is_token_in_rank, send_pos)


def unpack(handle):
    """(moe_ep._C.DispatchHandle, [the handle's device tensors])."""
    if not isinstance(handle, (tuple, list)) or len(handle) != HANDLE_LEN:
        raise ValueError(f"handle: expected the {HANDLE_LEN}-tuple an intranode dispatch returns, "
                         f"got {type(handle).__name__}")
    rank_prefix_matrix, meta, _, recv_src_idx, is_token_in_rank, send_pos = handle
    if getattr(meta, "shape", None) != (4,) or getattr(meta, "is_cuda", True):
        raise ValueError("handle: slot 1 is not moe_ep's CPU [buffer_id, generation, num_recv_rows, num_tokens] "
                         "tensor (a handle from another library or a modified tuple?)")
    buffer_id, generation, num_recv_rows, num_tokens = meta.tolist()
    native = _C.DispatchHandle()
    native.rank_prefix_matrix = view(rank_prefix_matrix, "handle[0] (rank_prefix_matrix)")
    native.recv_src_idx = view(recv_src_idx, "handle[3] (recv_src_idx)")
    native.is_token_in_rank = view(is_token_in_rank, "handle[4] (is_token_in_rank)")
    native.send_pos = view(send_pos, "handle[5] (send_pos)")
    native.buffer_id = buffer_id
    native.buffer_generation = generation
    native.num_recv_rows = num_recv_rows
    native.num_tokens = num_tokens
    return native, [rank_prefix_matrix, recv_src_idx, is_token_in_rank, send_pos]
