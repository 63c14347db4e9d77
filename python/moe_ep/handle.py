"""The handle of a high-throughput dispatch, shaped like deep_ep's.

Intranode (one node), deep_ep's 6-tuple:
  (rank_prefix_matrix, meta, None, recv_src_idx, is_token_in_rank, send_pos)
Internode (ranks on several real or emulated nodes), deep_ep's 10-tuple, slot by slot
(deep_ep's name -> what moe_ep keeps there):
  0 is_token_in_rank                 -> is_token_in_rank [num_tokens, num_ranks] bool
  1 rdma_channel_prefix_matrix       -> meta (below)
  2 gbl_channel_prefix_matrix        -> rank_prefix_matrix [num_ranks, num_ranks] int32
  3 recv_rdma_channel_prefix_matrix  -> None
  4 recv_rdma_rank_prefix_sum        -> forwarded_prefix [num_nodes] int32
  5 recv_gbl_channel_prefix_matrix   -> send_pos [num_tokens, num_ranks] int32
  6 recv_gbl_rank_prefix_sum         -> None
  7 recv_src_meta                    -> recv_src_idx [num_recv_rows] int32
  8 send_rdma_head                   -> rdma_send_pos [num_tokens, num_nodes] int32
  9 send_nvl_head                    -> forward_rows [num_forward_rows, ranks_per_node] int32
Slot 1 holds `meta`, a CPU int64 tensor [buffer_id, buffer_generation, num_recv_rows,
num_tokens] (internode: then num_forward_rows) from which combine and cached dispatch
rebuild the C++ DispatchHandle; engines read only the tensors and pass the tuple back."""
from . import _C
from .views import view

INTRANODE_LEN, INTERNODE_LEN = 6, 10
_META_SLOT = 1
_META = {
    INTRANODE_LEN: ("buffer_id", "buffer_generation", "num_recv_rows", "num_tokens"),
    INTERNODE_LEN: ("buffer_id", "buffer_generation", "num_recv_rows", "num_tokens", "num_forward_rows"),
}
# slot -> the C++ DispatchHandle field kept there
_SLOTS = {
    INTRANODE_LEN: {0: "rank_prefix_matrix", 3: "recv_src_idx", 4: "is_token_in_rank", 5: "send_pos"},
    INTERNODE_LEN: {0: "is_token_in_rank", 2: "rank_prefix_matrix", 4: "forwarded_prefix", 5: "send_pos",
                    7: "recv_src_idx", 8: "rdma_send_pos", 9: "forward_rows"},
}


def pack(torch, native, tensors):
    """The tuple of a dispatch: `tensors` maps each DispatchHandle field of the handle's
    kind (internode when it has forward_rows) to its torch tensor."""
    length = INTERNODE_LEN if "forward_rows" in tensors else INTRANODE_LEN
    handle = [None] * length
    handle[_META_SLOT] = torch.tensor([getattr(native, name) for name in _META[length]], dtype=torch.int64)
    for slot, field in _SLOTS[length].items():
        handle[slot] = tensors[field]
    return tuple(handle)


def _kind(length):
    return "internode 10-tuple" if length == INTERNODE_LEN else "intranode 6-tuple"


def unpack(handle, internode=None):
    """(moe_ep._C.DispatchHandle, [the handle's device tensors]). With `internode` (the
    buffer's kind), a handle of the other kind is refused."""
    length = len(handle) if isinstance(handle, (tuple, list)) else None
    if length not in _SLOTS:
        got = f"a {type(handle).__name__} of {length}" if length is not None else type(handle).__name__
        raise ValueError(f"handle: expected the {INTRANODE_LEN}-tuple (intranode) or {INTERNODE_LEN}-tuple "
                         f"(internode) a dispatch returns, got {got}")
    if internode is not None and internode != (length == INTERNODE_LEN):
        raise ValueError(f"handle: an {_kind(length)} given to a buffer whose dispatch returns the "
                         f"{_kind(INTERNODE_LEN if internode else INTRANODE_LEN)} (a handle of another buffer?)")
    fields = _META[length]
    meta = handle[_META_SLOT]
    if getattr(meta, "shape", None) != (len(fields),) or getattr(meta, "is_cuda", True):
        raise ValueError(f"handle: slot {_META_SLOT} of the {_kind(length)} is not moe_ep's CPU "
                         f"[{', '.join(fields)}] tensor (a handle from another library or a modified tuple?)")
    native = _C.DispatchHandle()
    for name, value in zip(fields, meta.tolist()):
        setattr(native, name, value)
    tensors = []
    for slot, field in _SLOTS[length].items():
        setattr(native, field, view(handle[slot], f"handle[{slot}] ({field})"))
        tensors.append(handle[slot])
    return native, tensors
