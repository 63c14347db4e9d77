"""Buffer.dispatch (intranode, or internode when the buffer's ranks span nodes): count
(dispatch_notify), allocate the receive tensors with torch from the counts, then copy
(dispatch_receive). With a handle, a cached dispatch reuses its routing and returns only
the received x (and scales)."""
from . import _C
from .handle import pack, unpack
from .streams import CallStreams
from .views import view


def _split_x(x):
    if isinstance(x, tuple):
        if len(x) != 2:
            raise ValueError(f"x: expected a tensor or (x, x_scales), got a tuple of {len(x)}")
        return x
    return x, None


def _allocate_receive(streams, rows, x, x_scales, topk_idx, topk_weights):
    """Receive tensors of `rows` rows as the C++ outputs and as what dispatch returns."""
    torch = streams.torch
    outputs = _C.DispatchOutputs()
    recv_x = streams.empty((rows, x.size(1)), x.dtype)
    outputs.recv_x = view(recv_x, "recv_x")
    recv_x_scales = None
    if x_scales is not None:
        num_scales = x_scales.size(1) if x_scales.dim() == 2 else 1
        recv_x_scales = streams.empty((rows, num_scales), torch.float32)
        outputs.recv_x_scales = view(recv_x_scales, "recv_x_scales")
        if x_scales.dim() == 1:
            recv_x_scales = recv_x_scales.view(-1)
    recv_topk_idx = recv_topk_weights = None
    if topk_idx is not None:
        recv_topk_idx = streams.empty((rows, topk_idx.size(1)), torch.int64)
        outputs.recv_topk_idx = view(recv_topk_idx, "recv_topk_idx")
    if topk_weights is not None:
        recv_topk_weights = streams.empty((rows, topk_weights.size(1)), torch.float32)
        outputs.recv_topk_weights = view(recv_topk_weights, "recv_topk_weights")
    recv = (recv_x, recv_x_scales) if x_scales is not None else recv_x
    return outputs, recv, recv_topk_idx, recv_topk_weights


def dispatch(buffer, x, handle, num_tokens_per_rank, num_tokens_per_rdma_rank, is_token_in_rank,
             num_tokens_per_expert, topk_idx, topk_weights, expert_alignment, num_worst_tokens, config,
             previous_event, async_finish, allocate_on_comm_stream):
    runtime = buffer._live()
    x, x_scales = _split_x(x)
    streams = CallStreams(buffer.get_comm_stream(), x.device, previous_event, async_finish, allocate_on_comm_stream)
    args = _C.DispatchArgs()
    args.x = view(x, "x")
    args.x_scales = view(x_scales, "x_scales")
    args.topk_idx = view(topk_idx, "topk_idx")
    args.topk_weights = view(topk_weights, "topk_weights")
    args.expert_alignment = expert_alignment
    args.num_worst_tokens = num_worst_tokens
    args.config = buffer._config("dispatch", config)
    streams.fill(args.stream)
    streams.use(x, x_scales, topk_idx, topk_weights)
    internode = runtime.is_internode
    if handle is not None:
        return _cached(runtime, streams, args, handle, internode, x, x_scales)

    args.num_tokens_per_rank = view(num_tokens_per_rank, "num_tokens_per_rank")
    args.num_tokens_per_expert = view(num_tokens_per_expert, "num_tokens_per_expert")
    args.is_token_in_rank = view(is_token_in_rank, "is_token_in_rank")
    streams.use(num_tokens_per_rank, num_tokens_per_expert, is_token_in_rank)
    if internode:  # on one node deep_ep's layout gives None; a tensor there is ignored, as deep_ep does
        args.num_tokens_per_rdma_rank = view(num_tokens_per_rdma_rank, "num_tokens_per_rdma_rank")
        streams.use(num_tokens_per_rdma_rank)
    torch, num_ranks = streams.torch, buffer.group_size
    native = _C.DispatchHandle()
    tensors = {"is_token_in_rank": is_token_in_rank}
    _allocate_handle(streams, native, tensors, rank_prefix_matrix=(num_ranks, num_ranks),
                     send_pos=(x.size(0), num_ranks))
    if internode:
        _allocate_handle(streams, native, tensors, rdma_send_pos=(x.size(0), buffer._num_nodes),
                         forwarded_prefix=(buffer._num_nodes,))
    counts = runtime.dispatch_notify(args, native, False)

    rows = counts.num_recv_rows
    _allocate_handle(streams, native, tensors, recv_src_idx=(rows,))
    if internode:
        _allocate_handle(streams, native, tensors, forward_rows=(counts.num_forward_rows, runtime.num_ranks_per_node))
    outputs, recv, recv_topk_idx, recv_topk_weights = _allocate_receive(
        streams, rows, x, x_scales, topk_idx, topk_weights)
    event = runtime.dispatch_receive(args, native, outputs, False)
    handle = pack(torch, native, tensors)
    per_expert = [] if num_worst_tokens > 0 else list(counts.num_recv_tokens_per_expert)
    return recv, recv_topk_idx, recv_topk_weights, per_expert, handle, streams.finish(event)


def _allocate_handle(streams, native, tensors, **shapes):
    """int32 handle tensors of these shapes, set on the C++ handle and kept in `tensors`."""
    for field, shape in shapes.items():
        tensors[field] = streams.empty(shape, streams.torch.int32)
        setattr(native, field, view(tensors[field], field))


def _cached(runtime, streams, args, handle, internode, x, x_scales):
    native, handle_tensors = unpack(handle, internode)
    streams.use(*handle_tensors)
    counts = runtime.dispatch_notify(args, native, True)
    outputs, recv, _, _ = _allocate_receive(streams, counts.num_recv_rows, x, x_scales, None, None)
    event = runtime.dispatch_receive(args, native, outputs, True)
    return recv, None, None, None, None, streams.finish(event)
