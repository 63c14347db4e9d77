"""deep_ep's internode methods, with their exact signatures, raising NotImplementedError:
moe_ep has no RDMA transport yet (low-latency mode maps its peers over NVLink instead), and
a silently wrong answer would be worse than a clear refusal."""


def not_available(call, feature):
    return NotImplementedError(
        f"moe_ep: {call} needs {feature}, which moe_ep does not implement yet (within one NVLink domain, "
        f"Buffer.dispatch / Buffer.combine and Buffer.low_latency_dispatch / low_latency_combine are available)")


_INTERNODE = "the internode (RDMA) transport"


class UnsupportedModes:
    """Mixin of Buffer: the methods of modes moe_ep does not have."""

    def internode_dispatch(self, x, handle=None, num_tokens_per_rank=None, num_tokens_per_rdma_rank=None,
                           is_token_in_rank=None, num_tokens_per_expert=None, topk_idx=None, topk_weights=None,
                           expert_alignment: int = 1, num_worst_tokens: int = 0, config=None, previous_event=None,
                           async_finish: bool = False, allocate_on_comm_stream: bool = False):
        raise not_available("Buffer.internode_dispatch", _INTERNODE)

    def internode_combine(self, x, handle, topk_weights=None, bias=None, config=None, previous_event=None,
                          async_finish: bool = False, allocate_on_comm_stream: bool = False):
        raise not_available("Buffer.internode_combine", _INTERNODE)
