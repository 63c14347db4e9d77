"""Buffer.combine: each token's returned rows summed (unweighted, in fp32) on its home rank,
plus up to two biases; top-k weights reduced the same way. Internode, each node's rows are
first summed at its forwarder and sent home as one bf16 partial per token."""
from . import _C
from .handle import unpack
from .streams import CallStreams
from .views import view


def _split_bias(bias):
    if bias is None:
        return None, None
    if isinstance(bias, (tuple, list)):
        if len(bias) != 2:
            raise ValueError(f"bias: expected a tensor or a 2-tuple of tensors, got {len(bias)} items")
        bias0, bias1 = bias
        return (bias1, None) if bias0 is None else (bias0, bias1)
    return bias, None


def combine(buffer, x, handle, topk_weights, bias, config, previous_event, async_finish, allocate_on_comm_stream):
    runtime = buffer._live()
    native, handle_tensors = unpack(handle, runtime.is_internode)
    bias0, bias1 = _split_bias(bias)
    streams = CallStreams(buffer.get_comm_stream(), x.device, previous_event, async_finish, allocate_on_comm_stream)
    torch = streams.torch
    combined_x = streams.empty((native.num_tokens, x.size(-1)), x.dtype)
    combined_topk_weights = None
    if topk_weights is not None:
        combined_topk_weights = streams.empty((native.num_tokens, topk_weights.size(-1)), torch.float32)

    args = _C.CombineArgs()
    args.x = view(x, "x")
    args.topk_weights = view(topk_weights, "topk_weights")
    args.bias0 = view(bias0, "bias[0]")
    args.bias1 = view(bias1, "bias[1]")
    args.combined_x = view(combined_x, "combined_x")
    args.combined_topk_weights = view(combined_topk_weights, "combined_topk_weights")
    args.config = buffer._config("combine", config)
    streams.fill(args.stream)
    streams.use(x, topk_weights, bias0, bias1, *handle_tensors)
    event = runtime.combine(args, native)
    return combined_x, combined_topk_weights, streams.finish(event)
