"""deep_ep's internode methods, with their exact signatures. On a buffer whose ranks span
nodes (real or emulated) they are Buffer.dispatch / Buffer.combine, which pick the internode
path themselves (as deep_ep's do); elsewhere they raise NotImplementedError, since a
silently wrong answer would be worse than a clear refusal."""


def not_available(call, feature):
    return NotImplementedError(
        f"moe_ep: {call} needs {feature}, which moe_ep does not implement yet (within one NVLink domain, "
        f"Buffer.dispatch / Buffer.combine and Buffer.low_latency_dispatch / low_latency_combine are available)")


class UnsupportedModes:
    """Mixin of Buffer: the methods of modes moe_ep has only in part."""

    def _require_internode(self, call):
        if getattr(self, "_num_nodes", 1) <= 1 or getattr(self, "low_latency_mode", True):
            raise NotImplementedError(
                f"moe_ep: Buffer.{call} is the path of high-throughput buffers whose ranks span nodes; this "
                f"buffer's do not (call Buffer.{call[len('internode_'):]}, which picks the path itself, or build "
                f"the buffer with emulated_ranks_per_node and num_rdma_bytes)")

    def internode_dispatch(self, x, handle=None, num_tokens_per_rank=None, num_tokens_per_rdma_rank=None,
                           is_token_in_rank=None, num_tokens_per_expert=None, topk_idx=None, topk_weights=None,
                           expert_alignment: int = 1, num_worst_tokens: int = 0, config=None, previous_event=None,
                           async_finish: bool = False, allocate_on_comm_stream: bool = False):
        self._require_internode("internode_dispatch")
        return self.dispatch(x, handle, num_tokens_per_rank, num_tokens_per_rdma_rank, is_token_in_rank,
                             num_tokens_per_expert, topk_idx, topk_weights, expert_alignment, num_worst_tokens,
                             config, previous_event, async_finish, allocate_on_comm_stream)

    def internode_combine(self, x, handle, topk_weights=None, bias=None, config=None, previous_event=None,
                          async_finish: bool = False, allocate_on_comm_stream: bool = False):
        self._require_internode("internode_combine")
        return self.combine(x, handle, topk_weights, bias, config, previous_event, async_finish,
                            allocate_on_comm_stream)
