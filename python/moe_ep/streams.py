"""The streams of one collective call: the caller's compute stream, the buffer's comm
stream, where outputs are allocated (allocate_on_comm_stream), and the rule that keeps
every tensor the comm stream touches alive and unreused until the call's event completes."""
from ._torch import require_torch
from .event_overlap import EventOverlap


def current_stream_handle(device=None):
    """The raw cudaStream_t (as int) of torch's current stream on this thread (on `device`,
    else the current device). From torch's raw-stream getter where it has one (what its
    compiled kernels use): torch.cuda.current_stream() builds a Stream object, about 8 us of
    host time per call (H100 host, bench/ll_host_cost.py)."""
    torch = require_torch("moe_ep")
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is None:
        return torch.cuda.current_stream(device).cuda_stream
    index = device.index if device is not None and device.index is not None else torch.cuda.current_device()
    return raw(index)


class CallStreams:
    def __init__(self, comm_stream, device, previous_event, async_finish, allocate_on_comm_stream):
        self.torch = require_torch("moe_ep.Buffer")
        self.compute_handle = current_stream_handle(device)
        self._compute = None  # the torch Stream, made only when a tensor is recorded on it
        self.comm = comm_stream
        self.device = device
        self.previous_event = previous_event
        self.async_finish = async_finish
        self.on_comm = allocate_on_comm_stream
        self.used = []       # caller's tensors the comm stream reads or writes
        self.allocated = []  # tensors this call allocates and returns

    def fill(self, options):
        """Fills a moe_ep._C.StreamOptions for this call."""
        options.compute_stream = self.compute_handle
        event = self.previous_event.event if self.previous_event is not None else None
        options.previous_event = event.handle if event is not None else 0
        options.async_finish = self.async_finish

    @property
    def compute(self):
        """The caller's compute stream (torch's current stream of the call's device)."""
        if self._compute is None:
            self._compute = self.torch.cuda.current_stream(self.device)
        return self._compute

    def empty(self, shape, dtype):
        """torch.empty on the allocation stream of this call."""
        if self.on_comm:
            with self.torch.cuda.stream(self.comm):
                tensor = self.torch.empty(shape, dtype=dtype, device=self.device)
        else:
            tensor = self.torch.empty(shape, dtype=dtype, device=self.device)
        self.allocated.append(tensor)
        return tensor

    def use(self, *tensors):
        self.used.extend(t for t in tensors if t is not None)

    def finish(self, event):
        """The call's EventOverlap, after recording tensors on the streams that use them."""
        if self.async_finish:
            for tensor in self.used + ([] if self.on_comm else self.allocated):
                tensor.record_stream(self.comm)
        if self.on_comm:
            for tensor in self.allocated:
                tensor.record_stream(self.compute)
        extra = tuple(self.used + self.allocated) if self.async_finish else None
        return EventOverlap(event, extra)
