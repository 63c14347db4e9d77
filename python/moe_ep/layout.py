"""Buffer.get_dispatch_layout: per-rank and per-expert token counts and the token -> rank
map from topk_idx, computed on the buffer's comm stream (local, no peers)."""
from . import _C
from .streams import CallStreams
from .views import view


def get_dispatch_layout(buffer, topk_idx, num_experts, previous_event, async_finish, allocate_on_comm_stream):
    streams = CallStreams(buffer.get_comm_stream(), topk_idx.device, previous_event, async_finish,
                          allocate_on_comm_stream)
    torch = streams.torch
    num_ranks, num_nodes = buffer.group_size, buffer._num_nodes
    num_tokens_per_rank = streams.empty((num_ranks,), torch.int32)
    num_tokens_per_rdma_rank = streams.empty((num_nodes,), torch.int32) if num_nodes > 1 else None
    num_tokens_per_expert = streams.empty((num_experts,), torch.int32)
    is_token_in_rank = streams.empty((topk_idx.size(0), num_ranks), torch.bool)

    args = _C.LayoutArgs()
    args.topk_idx = view(topk_idx, "topk_idx")
    args.num_experts = num_experts
    args.num_tokens_per_rank = view(num_tokens_per_rank, "num_tokens_per_rank")
    args.num_tokens_per_rdma_rank = view(num_tokens_per_rdma_rank, "num_tokens_per_rdma_rank")
    args.num_tokens_per_expert = view(num_tokens_per_expert, "num_tokens_per_expert")
    args.is_token_in_rank = view(is_token_in_rank, "is_token_in_rank")
    streams.fill(args.stream)
    streams.use(topk_idx)
    event = buffer._live().get_dispatch_layout(args)
    return num_tokens_per_rank, num_tokens_per_rdma_rank, num_tokens_per_expert, is_token_in_rank, \
        streams.finish(event)
