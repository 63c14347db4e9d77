"""moe_ep.Buffer: deep_ep's Buffer (names, argument order, defaults, return shapes) over
the C++ Buffer of one rank. High-throughput calls (intranode, or internode across emulated
nodes) live in layout.py, dispatch.py and combine.py, low-latency calls in low_latency.py;
modes moe_ep lacks raise NotImplementedError (unsupported.py)."""
from typing import Optional

from . import _C, groups
from . import low_latency as _ll
from .combine import combine as _combine
from .config import Config
from .dispatch import dispatch as _dispatch
from .event_overlap import EventOverlap
from .layout import get_dispatch_layout as _get_dispatch_layout
from .streams import current_stream_handle
from .unsupported import UnsupportedModes, not_available
from .views import view

_DEEP_EP_DEFAULT_NUM_SMS = 20


class Buffer(UnsupportedModes):
    # deep_ep's class attribute. While it keeps deep_ep's default (and set_num_sms was not
    # called) the configs are the library's tuned ones; otherwise they use this many SMs.
    num_sms: int = _DEEP_EP_DEFAULT_NUM_SMS
    _num_sms_set = False

    def __init__(self, group, num_nvl_bytes: int = 0, num_rdma_bytes: int = 0, low_latency_mode: bool = False,
                 num_qps_per_rank: int = 24, allow_nvlink_for_low_latency_mode: bool = True,
                 allow_mnnvl: bool = False, use_fabric: bool = False, explicitly_destroy: bool = False,
                 enable_shrink: bool = False, comm=None, *, timeout_ns: Optional[int] = None,
                 emulated_ranks_per_node: int = 0) -> None:
        """deep_ep's Buffer. Extra keywords: timeout_ns bounds every device wait;
        emulated_ranks_per_node > 0 splits the group into pretend nodes of that many ranks
        whose traffic between nodes goes through the RDMA transport emulated on peer memory
        (the multi-node path on one GPU, for tests and CI): low-latency calls, or, with
        num_rdma_bytes (get_internode_rdma_size_hint) and no low_latency_mode, the internode
        high-throughput dispatch/combine."""
        self.runtime = None
        if _C.num_cuda_devices() == 0:
            raise RuntimeError("moe_ep.Buffer: no CUDA device is present; moe_ep needs an NVIDIA GPU "
                               "(its kernels are built for sm_" + _C.cuda_architectures + ")")
        native_group = groups.resolve(group, comm)
        several_nodes = 0 < emulated_ranks_per_node < native_group.size or \
            native_group.num_ranks_per_node < native_group.size
        if num_rdma_bytes and not low_latency_mode and not several_nodes:
            raise not_available(f"Buffer(num_rdma_bytes={num_rdma_bytes}) on one node without low_latency_mode "
                                "or emulated_ranks_per_node", "an RDMA buffer for high-throughput calls within a node")
        self.group, self.comm, self._group = group, comm, native_group
        self.rank, self.group_size = native_group.rank, native_group.size
        self.num_nvl_bytes, self.num_rdma_bytes = num_nvl_bytes, num_rdma_bytes
        self.low_latency_mode, self.enable_shrink = low_latency_mode, enable_shrink
        self.explicitly_destroy = explicitly_destroy
        self._comm_stream = None
        self._configs = {}
        # num_rdma_bytes holds the low-latency region (every rank maps its peers' over NVLink)
        # or, on an internode high-throughput buffer, the transport window between nodes.
        self.runtime = _C.Buffer(native_group, num_nvl_bytes, num_rdma_bytes,
                                 _C.DEFAULT_TIMEOUT_NS if timeout_ns is None else timeout_ns,
                                 low_latency_mode=low_latency_mode, enable_shrink=enable_shrink,
                                 allow_nvlink_for_low_latency=allow_nvlink_for_low_latency_mode,
                                 emulated_ranks_per_node=emulated_ranks_per_node)
        # Nodes as the layout sees them: emulated ones on an internode buffer, else the group's.
        per_node = self.runtime.num_ranks_per_node if self.runtime.is_internode else native_group.num_ranks_per_node
        self._num_nodes = max(1, native_group.size // max(1, per_node))

    def _live(self):
        if self.runtime is None:
            raise RuntimeError("moe_ep.Buffer: used after destroy()")
        return self.runtime

    def destroy(self):
        """Releases the C++ buffer now (it waits for its own comm stream, never for peers).
        With in-process ranks, call it after every rank's last collective has completed."""
        self._comm_stream = None
        self.runtime = None

    # ---- static helpers (deep_ep's) ------------------------------------------------
    @staticmethod
    def is_sm90_compiled():
        return any(arch.strip().startswith("90") for arch in _C.cuda_architectures.split(","))

    @staticmethod
    def set_num_sms(new_num_sms: int) -> None:
        if new_num_sms <= 0 or new_num_sms % 2 != 0:
            raise ValueError(f"Buffer.set_num_sms: the SM count must be even and positive, got {new_num_sms}")
        Buffer.num_sms = new_num_sms
        Buffer._num_sms_set = True

    @staticmethod
    def capture() -> EventOverlap:
        """An event recorded on torch's current stream (pass it as previous_event)."""
        return EventOverlap(_C.Event.record(current_stream_handle()))

    @staticmethod
    def get_dispatch_config(num_ranks: int) -> Config:
        return Buffer._with_num_sms(_C.get_dispatch_config(num_ranks))

    @staticmethod
    def get_combine_config(num_ranks: int) -> Config:
        return Buffer._with_num_sms(_C.get_combine_config(num_ranks))

    @staticmethod
    def _with_num_sms(config):
        if Buffer._num_sms_set or Buffer.num_sms != _DEEP_EP_DEFAULT_NUM_SMS:
            config.num_sms = Buffer.num_sms
        return config

    @staticmethod
    def get_low_latency_rdma_size_hint(num_max_dispatch_tokens_per_rank: int, hidden: int, num_ranks: int,
                                       num_experts: int, *, ranks_per_node: int = 0,
                                       allow_nvlink_for_low_latency_mode: bool = True) -> int:
        """num_rdma_bytes that low-latency calls of up to these sizes need, in any group and mode
        (in-process groups without zero_copy / use_logfmt need less). Peers on other nodes
        (ranks_per_node < num_ranks; 0 assumes deep_ep's 8 per node) or no NVLink add a
        mirror slot per peer."""
        return _C.Buffer.low_latency_size_hint(num_max_dispatch_tokens_per_rank, hidden, num_ranks, num_experts,
                                               ranks_per_node, allow_nvlink_for_low_latency_mode)

    @staticmethod
    def intranode_size_hint(max_tokens_per_rank: int, num_ranks: int, hidden_bytes: int = 0) -> int:
        """moe_ep's exact num_nvl_bytes for dispatches of up to max_tokens_per_rank tokens; with
        hidden_bytes, also the staging that one-process-per-GPU groups need."""
        return _C.Buffer.intranode_size_hint(max_tokens_per_rank, num_ranks, hidden_bytes)

    @staticmethod
    def get_internode_rdma_size_hint(max_tokens_per_rank: int, hidden: int, num_ranks: int, ranks_per_node: int,
                                     num_topk: int = _C.MAX_TOPK) -> int:
        """num_rdma_bytes that internode high-throughput dispatches of up to max_tokens_per_rank
        tokens of `hidden` bf16 (fp8 rows are smaller) with up to num_topk experts, and their
        combines, need on a group of num_ranks in nodes of ranks_per_node (real or emulated)."""
        return _C.Buffer.internode_size_hint(max_tokens_per_rank, hidden, num_ranks, ranks_per_node, num_topk)

    def _config(self, kind, config):
        """The caller's config, else the tuned one capped to this buffer's share of the SMs."""
        if config is not None:
            return config
        key = (kind, Buffer.num_sms, Buffer._num_sms_set)
        if key not in self._configs:
            tuned = self.get_dispatch_config(self.group_size) if kind == "dispatch" \
                else self.get_combine_config(self.group_size)
            tuned.num_sms = min(tuned.num_sms, self._live().max_num_sms)
            self._configs[key] = tuned
        return self._configs[key]

    # ---- streams and raw memory ----------------------------------------------------
    def get_comm_stream(self):
        """The buffer's communication stream as a torch.cuda.ExternalStream."""
        if self._comm_stream is None:
            from ._torch import require_torch
            torch = require_torch("Buffer.get_comm_stream")
            runtime = self._live()
            self._comm_stream = torch.cuda.ExternalStream(runtime.comm_stream,
                                                          device=torch.device("cuda", runtime.device))
        return self._comm_stream

    def get_local_buffer_tensor(self, dtype, size=None, offset: int = 0, use_rdma_buffer: bool = False):
        raise NotImplementedError(
            "moe_ep: Buffer.get_local_buffer_tensor is not supported: moe_ep keeps its synchronization flags, "
            "send lists and staging inside the NVL buffer, so a writable view of it could corrupt the protocol; "
            "allocate your own tensor instead")

    # ---- high-throughput calls (intranode, or internode when the ranks span nodes) -------
    def get_dispatch_layout(self, topk_idx, num_experts: int, previous_event: Optional[EventOverlap] = None,
                            async_finish: bool = False, allocate_on_comm_stream: bool = False):
        return _get_dispatch_layout(self, topk_idx, num_experts, previous_event, async_finish,
                                    allocate_on_comm_stream)

    def dispatch(self, x, handle: Optional[tuple] = None, num_tokens_per_rank=None, num_tokens_per_rdma_rank=None,
                 is_token_in_rank=None, num_tokens_per_expert=None, topk_idx=None, topk_weights=None,
                 expert_alignment: int = 1, num_worst_tokens: int = 0, config: Optional[Config] = None,
                 previous_event: Optional[EventOverlap] = None, async_finish: bool = False,
                 allocate_on_comm_stream: bool = False):
        return _dispatch(self, x, handle, num_tokens_per_rank, num_tokens_per_rdma_rank, is_token_in_rank,
                         num_tokens_per_expert, topk_idx, topk_weights, expert_alignment, num_worst_tokens, config,
                         previous_event, async_finish, allocate_on_comm_stream)

    def combine(self, x, handle: tuple, topk_weights=None, bias=None, config: Optional[Config] = None,
                previous_event: Optional[EventOverlap] = None, async_finish: bool = False,
                allocate_on_comm_stream: bool = False):
        return _combine(self, x, handle, topk_weights, bias, config, previous_event, async_finish,
                        allocate_on_comm_stream)

    # ---- low-latency calls (Buffer(..., num_rdma_bytes, low_latency_mode=True)) ---------
    def clean_low_latency_buffer(self, num_max_dispatch_tokens_per_rank: int, hidden: int, num_experts: int) -> None:
        """Collective: zeroes every rank's low-latency flags (only needed after an error; the
        sizes are deep_ep's arguments, the whole region is cleaned)."""
        self._live().clean_low_latency_buffer()

    def low_latency_dispatch(self, x, topk_idx, num_max_dispatch_tokens_per_rank: int, num_experts: int,
                             cumulative_local_expert_recv_stats=None, dispatch_wait_recv_cost_stats=None,
                             use_fp8: bool = True, round_scale: bool = False, use_ue8m0: bool = False,
                             async_finish: bool = False, return_recv_hook: bool = False):
        return _ll.low_latency_dispatch(self, x, topk_idx, num_max_dispatch_tokens_per_rank, num_experts,
                                        cumulative_local_expert_recv_stats, dispatch_wait_recv_cost_stats, use_fp8,
                                        round_scale, use_ue8m0, async_finish, return_recv_hook)

    def low_latency_combine(self, x, topk_idx, topk_weights, handle: tuple, use_logfmt: bool = False,
                            zero_copy: bool = False, async_finish: bool = False, return_recv_hook: bool = False,
                            out=None, combine_wait_recv_cost_stats=None):
        return _ll.low_latency_combine(self, x, topk_idx, topk_weights, handle, use_logfmt, zero_copy, async_finish,
                                       return_recv_hook, out, combine_wait_recv_cost_stats)

    def get_next_low_latency_combine_buffer(self, handle: object):
        return _ll.get_next_low_latency_combine_buffer(self, handle)

    def _require_shrink(self, what):
        if not self.enable_shrink:
            raise ValueError(f"Buffer.{what}: rank masking needs Buffer(..., enable_shrink=True)")
        return self._live()

    def low_latency_update_mask_buffer(self, rank_to_mask: int, mask: bool = False):
        """Masks (or unmasks) a rank for this rank's low-latency calls, on the current stream."""
        runtime = self._require_shrink("low_latency_update_mask_buffer")
        runtime.low_latency_update_mask(rank_to_mask, mask, current_stream_handle())

    def low_latency_query_mask_buffer(self, mask_status):
        """Writes 1 for masked ranks into mask_status ([num_ranks] int32), on the current stream."""
        runtime = self._require_shrink("low_latency_query_mask_buffer")
        runtime.low_latency_query_mask(view(mask_status, "mask_status"), current_stream_handle())

    def low_latency_clean_mask_buffer(self):
        """Unmasks every rank (local), on the current stream."""
        self._require_shrink("low_latency_clean_mask_buffer").low_latency_clean_mask(current_stream_handle())

    # ---- moe_ep extras ---------------------------------------------------------------
    def check_error(self) -> None:
        """Raises an error that an earlier async call recorded on the device (e.g. a timeout)."""
        self._live().check_error()

    def reset(self) -> None:
        """Collective: clears flags and errors on every rank; earlier handles become invalid."""
        self._live().reset()
