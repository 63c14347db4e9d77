"""moe_ep.Buffer: deep_ep's Buffer (names, argument order, defaults, return shapes) over
the C++ Buffer of one rank. Intranode high-throughput calls live in layout.py,
dispatch.py and combine.py; modes moe_ep lacks raise NotImplementedError (unsupported.py)."""
from typing import Optional

from . import _C, groups
from .combine import combine as _combine
from .config import Config
from .dispatch import dispatch as _dispatch
from .event_overlap import EventOverlap
from .layout import get_dispatch_layout as _get_dispatch_layout
from .streams import current_stream_handle
from .unsupported import UnsupportedModes, not_available

_DEEP_EP_DEFAULT_NUM_SMS = 20


class Buffer(UnsupportedModes):
    # deep_ep's class attribute. While it keeps deep_ep's default (and set_num_sms was not
    # called) the configs are the library's tuned ones; otherwise they use this many SMs.
    num_sms: int = _DEEP_EP_DEFAULT_NUM_SMS
    _num_sms_set = False

    def __init__(self, group, num_nvl_bytes: int = 0, num_rdma_bytes: int = 0, low_latency_mode: bool = False,
                 num_qps_per_rank: int = 24, allow_nvlink_for_low_latency_mode: bool = True,
                 allow_mnnvl: bool = False, use_fabric: bool = False, explicitly_destroy: bool = False,
                 enable_shrink: bool = False, comm=None, *, timeout_ns: Optional[int] = None) -> None:
        self.runtime = None
        if _C.num_cuda_devices() == 0:
            raise RuntimeError("moe_ep.Buffer: no CUDA device is present; moe_ep needs an NVIDIA GPU "
                               "(its kernels are built for sm_" + _C.cuda_architectures + ")")
        if low_latency_mode:
            raise not_available("Buffer(low_latency_mode=True)", "low-latency mode")
        if num_rdma_bytes:
            raise not_available(f"Buffer(num_rdma_bytes={num_rdma_bytes})",
                                "the RDMA transport (internode and low-latency modes)")
        native_group = groups.resolve(group, comm)
        self.group, self.comm, self._group = group, comm, native_group
        self.rank, self.group_size = native_group.rank, native_group.size
        self._num_nodes = max(1, native_group.size // max(1, native_group.num_ranks_per_node))
        self.num_nvl_bytes, self.num_rdma_bytes = num_nvl_bytes, 0
        self.low_latency_mode, self.explicitly_destroy = False, explicitly_destroy
        self._comm_stream = None
        self._configs = {}
        self.runtime = _C.Buffer(native_group, num_nvl_bytes, 0,
                                 _C.DEFAULT_TIMEOUT_NS if timeout_ns is None else timeout_ns)

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
    def intranode_size_hint(max_tokens_per_rank: int, num_ranks: int, hidden_bytes: int = 0) -> int:
        """moe_ep's exact num_nvl_bytes for dispatches of up to max_tokens_per_rank tokens; with
        hidden_bytes, also the staging that one-process-per-GPU groups need."""
        return _C.Buffer.intranode_size_hint(max_tokens_per_rank, num_ranks, hidden_bytes)

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

    # ---- intranode high-throughput calls ---------------------------------------------
    def get_dispatch_layout(self, topk_idx, num_experts: int, previous_event: Optional[EventOverlap] = None,
                            async_finish: bool = False, allocate_on_comm_stream: bool = False):
        return _get_dispatch_layout(self, topk_idx, num_experts, previous_event, async_finish,
                                    allocate_on_comm_stream)

    def dispatch(self, x, handle: Optional[tuple] = None, num_tokens_per_rank=None, num_tokens_per_rdma_rank=None,
                 is_token_in_rank=None, num_tokens_per_expert=None, topk_idx=None, topk_weights=None,
                 expert_alignment: int = 1, num_worst_tokens: int = 0, config: Optional[Config] = None,
                 previous_event: Optional[EventOverlap] = None, async_finish: bool = False,
                 allocate_on_comm_stream: bool = False):
        return _dispatch(self, x, handle, num_tokens_per_rank, is_token_in_rank, num_tokens_per_expert, topk_idx,
                         topk_weights, expert_alignment, num_worst_tokens, config, previous_event, async_finish,
                         allocate_on_comm_stream)

    def combine(self, x, handle: tuple, topk_weights=None, bias=None, config: Optional[Config] = None,
                previous_event: Optional[EventOverlap] = None, async_finish: bool = False,
                allocate_on_comm_stream: bool = False):
        return _combine(self, x, handle, topk_weights, bias, config, previous_event, async_finish,
                        allocate_on_comm_stream)

    # ---- moe_ep extras ---------------------------------------------------------------
    def check_error(self) -> None:
        """Raises an error that an earlier async call recorded on the device (e.g. a timeout)."""
        self._live().check_error()

    def reset(self) -> None:
        """Collective: clears flags and errors on every rank; earlier handles become invalid."""
        self._live().reset()
