"""Buffer.low_latency_dispatch / low_latency_combine (decode): fixed-size per-expert slots,
no host sync. Outputs come from torch on the caller's stream (deep_ep's shapes; FP8 scales
column-major: [E, S, N] transposed). With return_recv_hook the call only sends and the
returned hook receives; it keeps the call's tensors (x of a combine, the outputs of a
dispatch) alive until it ran, as the C++ contract requires."""
from . import _C
from .low_latency_handle import pack, unpack
from .streams import CallStreams
from .views import view

_SCALE_GROUP = 128         # channels per FP8 scale
_UE8M0_PER_INT32 = 4       # UE8M0 exponent bytes packed per int32


class _Hook:
    """The receive half: calls the C++ hook once, then lets the tensors of the call go
    (the receive was launched on the stream the tensors were allocated and used on). The
    hook of a call that launched nothing (test fault injection: a skipped call) does nothing."""

    __slots__ = ("_native", "_keep", "_what")

    def __init__(self, native, keep, what):
        self._native, self._keep, self._what = native, keep, what

    def __call__(self):
        if self._native is None:
            raise RuntimeError(f"moe_ep: the receive hook of this {self._what} was already called (it receives once)")
        native, self._native = self._native, None
        try:
            if getattr(native, "pending", True):
                native()
        finally:
            self._keep = None


def _call_streams(buffer, device, async_finish, return_recv_hook, what):
    if async_finish and return_recv_hook:
        raise ValueError(f"{what}: async_finish and return_recv_hook cannot both be set (as in deep_ep): with a "
                         "hook, the receive runs on the current stream when the hook is called")
    return CallStreams(buffer.get_comm_stream(), device, None, async_finish, False)


def _require_2d(tensor, name, what):
    if getattr(tensor, "dim", None) is None or tensor.dim() != 2:
        shape = tuple(tensor.shape) if hasattr(tensor, "shape") else type(tensor).__name__
        raise ValueError(f"{what}: {name} must be a 2-D CUDA tensor, got {shape}")


def _finish(streams, call, keep, return_recv_hook, what):
    hook = _Hook(call.hook, keep, what) if return_recv_hook else None
    return streams.finish(call.event), hook


def low_latency_dispatch(buffer, x, topk_idx, num_max_dispatch_tokens_per_rank, num_experts,
                         cumulative_local_expert_recv_stats, dispatch_wait_recv_cost_stats, use_fp8, round_scale,
                         use_ue8m0, async_finish, return_recv_hook):
    what = "low_latency_dispatch"
    runtime = buffer._live()
    _require_2d(x, "x ([num_tokens, hidden] bf16)", what)
    _require_2d(topk_idx, "topk_idx ([num_tokens, num_topk])", what)
    num_ranks, max_tokens = buffer.group_size, num_max_dispatch_tokens_per_rank
    if num_experts <= 0 or num_experts % num_ranks != 0:
        raise ValueError(f"{what}: num_experts={num_experts} is not a positive multiple of the {num_ranks} ranks")
    if not 1 <= max_tokens <= _C.MAX_LOW_LATENCY_TOKENS:
        raise ValueError(f"{what}: num_max_dispatch_tokens_per_rank={max_tokens} outside "
                         f"[1, {_C.MAX_LOW_LATENCY_TOKENS}]")
    if use_ue8m0 and not round_scale:
        raise ValueError(f"{what}: use_ue8m0=True needs round_scale=True (UE8M0 scales are powers of two)")
    streams = _call_streams(buffer, x.device, async_finish, return_recv_hook, what)
    torch = streams.torch
    num_local_experts, rows, hidden = num_experts // num_ranks, num_ranks * max_tokens, x.size(1)

    recv_x = streams.empty((num_local_experts, rows, hidden), torch.float8_e4m3fn if use_fp8 else torch.bfloat16)
    recv_x_scales = None
    if use_fp8:
        num_scales = hidden // _SCALE_GROUP
        if use_ue8m0:  # four exponent bytes per int32, the last word zero-padded
            num_scales = -(-num_scales // _UE8M0_PER_INT32)
        # Column-major in the last two dims (strides (N * S, 1, N)), as deep_ep returns them.
        recv_x_scales = streams.empty((num_local_experts, num_scales, rows),
                                      torch.int32 if use_ue8m0 else torch.float32).transpose(1, 2)
    recv_count = streams.empty((num_local_experts,), torch.int32)
    src_info = streams.empty((num_local_experts, rows), torch.int32)
    layout_range = streams.empty((num_local_experts, num_ranks), torch.int64)
    combine_slots = streams.empty((max_tokens, topk_idx.size(1)), torch.int32)

    args = _C.LowLatencyDispatchArgs()
    args.x = view(x, "x")
    args.topk_idx = view(topk_idx, "topk_idx")
    args.num_max_dispatch_tokens_per_rank = max_tokens
    args.num_experts = num_experts
    args.cumulative_local_expert_recv_stats = view(cumulative_local_expert_recv_stats,
                                                   "cumulative_local_expert_recv_stats")
    args.dispatch_wait_recv_cost_stats = view(dispatch_wait_recv_cost_stats, "dispatch_wait_recv_cost_stats")
    args.use_fp8, args.round_scale, args.use_ue8m0 = use_fp8, round_scale, use_ue8m0
    args.return_recv_hook = return_recv_hook
    streams.fill(args.stream)
    outputs = _C.LowLatencyDispatchOutputs()
    outputs.recv_x = view(recv_x, "recv_x")
    outputs.recv_x_scales = view(recv_x_scales, "recv_x_scales")
    outputs.recv_count = view(recv_count, "recv_count")
    native = _C.LowLatencyHandle()
    native.src_info = view(src_info, "src_info")
    native.layout_range = view(layout_range, "layout_range")
    native.combine_slots = view(combine_slots, "combine_slots")
    native.num_max_dispatch_tokens_per_rank, native.hidden, native.num_experts = max_tokens, hidden, num_experts
    native.num_topk, native.num_tokens = topk_idx.size(1), x.size(0)
    stats = (cumulative_local_expert_recv_stats, dispatch_wait_recv_cost_stats)
    streams.use(x, topk_idx, *stats)

    call = runtime.low_latency_dispatch(args, outputs, native)
    handle = pack(src_info, layout_range, combine_slots, native)
    keep = (x, topk_idx, *stats, *streams.allocated)
    event, hook = _finish(streams, call, keep, return_recv_hook, what)
    recv = (recv_x, recv_x_scales) if use_fp8 else recv_x
    return recv, recv_count, handle, event, hook


def low_latency_combine(buffer, x, topk_idx, topk_weights, handle, use_logfmt, zero_copy, async_finish,
                        return_recv_hook, out, combine_wait_recv_cost_stats):
    what = "low_latency_combine"
    runtime = buffer._live()
    native, handle_tensors = unpack(handle, what)
    _require_2d(topk_idx, "topk_idx ([num_tokens, num_topk], the dispatch's)", what)
    streams = _call_streams(buffer, x.device, async_finish, return_recv_hook, what)
    if out is None:
        out = streams.empty((topk_idx.size(0), native.hidden), streams.torch.bfloat16)
    else:
        streams.use(out)

    args = _C.LowLatencyCombineArgs()
    args.x = view(x, "x")
    args.topk_idx = view(topk_idx, "topk_idx")
    args.topk_weights = view(topk_weights, "topk_weights")
    args.out = view(out, "out")
    args.combine_wait_recv_cost_stats = view(combine_wait_recv_cost_stats, "combine_wait_recv_cost_stats")
    args.use_logfmt, args.zero_copy, args.return_recv_hook = use_logfmt, zero_copy, return_recv_hook
    streams.fill(args.stream)
    streams.use(x, topk_idx, topk_weights, combine_wait_recv_cost_stats, *handle_tensors)

    call = runtime.low_latency_combine(args, native)
    event, hook = _finish(streams, call, tuple(streams.used + streams.allocated), return_recv_hook, what)
    return out, event, hook


def get_next_low_latency_combine_buffer(buffer, handle):
    """The [E, N, hidden] bf16 tensor (library memory) that a zero_copy combine reads."""
    runtime = buffer._live()
    native, _ = unpack(handle, "get_next_low_latency_combine_buffer")
    from ._torch import require_torch
    torch = require_torch("Buffer.get_next_low_latency_combine_buffer")
    return torch.from_dlpack(runtime.next_low_latency_combine_buffer(native))
