"""deep_ep's internode and low-latency methods, with their exact signatures, raising
NotImplementedError: moe_ep has no RDMA transport or low-latency kernels yet, and a
silently wrong answer would be worse than a clear refusal."""


def not_available(call, feature):
    return NotImplementedError(
        f"moe_ep: {call} needs {feature}, which moe_ep does not implement yet (intranode high-throughput "
        f"dispatch/combine within one NVLink domain is available: Buffer.dispatch / Buffer.combine)")


_INTERNODE = "the internode (RDMA) transport"
_LOW_LATENCY = "low-latency mode"


class UnsupportedModes:
    """Mixin of Buffer: the methods of modes moe_ep does not have."""

    @staticmethod
    def get_low_latency_rdma_size_hint(num_max_dispatch_tokens_per_rank: int, hidden: int, num_ranks: int,
                                       num_experts: int) -> int:
        raise not_available("Buffer.get_low_latency_rdma_size_hint", _LOW_LATENCY)

    def internode_dispatch(self, x, handle=None, num_tokens_per_rank=None, num_tokens_per_rdma_rank=None,
                           is_token_in_rank=None, num_tokens_per_expert=None, topk_idx=None, topk_weights=None,
                           expert_alignment: int = 1, num_worst_tokens: int = 0, config=None, previous_event=None,
                           async_finish: bool = False, allocate_on_comm_stream: bool = False):
        raise not_available("Buffer.internode_dispatch", _INTERNODE)

    def internode_combine(self, x, handle, topk_weights=None, bias=None, config=None, previous_event=None,
                          async_finish: bool = False, allocate_on_comm_stream: bool = False):
        raise not_available("Buffer.internode_combine", _INTERNODE)

    def clean_low_latency_buffer(self, num_max_dispatch_tokens_per_rank: int, hidden: int, num_experts: int) -> None:
        raise not_available("Buffer.clean_low_latency_buffer", _LOW_LATENCY)

    def low_latency_dispatch(self, x, topk_idx, num_max_dispatch_tokens_per_rank: int, num_experts: int,
                             cumulative_local_expert_recv_stats=None, dispatch_wait_recv_cost_stats=None,
                             use_fp8: bool = True, round_scale: bool = False, use_ue8m0: bool = False,
                             async_finish: bool = False, return_recv_hook: bool = False):
        raise not_available("Buffer.low_latency_dispatch", _LOW_LATENCY)

    def low_latency_combine(self, x, topk_idx, topk_weights, handle: tuple, use_logfmt: bool = False,
                            zero_copy: bool = False, async_finish: bool = False, return_recv_hook: bool = False,
                            out=None, combine_wait_recv_cost_stats=None):
        raise not_available("Buffer.low_latency_combine", _LOW_LATENCY)

    def low_latency_update_mask_buffer(self, rank_to_mask: int, mask: bool = False):
        raise not_available("Buffer.low_latency_update_mask_buffer", _LOW_LATENCY)

    def low_latency_query_mask_buffer(self, mask_status):
        raise not_available("Buffer.low_latency_query_mask_buffer", _LOW_LATENCY)

    def low_latency_clean_mask_buffer(self):
        raise not_available("Buffer.low_latency_clean_mask_buffer", _LOW_LATENCY)

    def get_next_low_latency_combine_buffer(self, handle: object):
        raise not_available("Buffer.get_next_low_latency_combine_buffer", _LOW_LATENCY)

