"""In-process ranks for tests, benchmarks and users' CI: N Buffers on one GPU, each rank
driven by its own thread with its own torch stream. The rules (README): keep the memory
pool's freed memory, never let a rank thread grow/free device memory or synchronize the
whole device while a collective is in flight (InProcessRanks warms torch's allocator on
every rank stream first), and import moe_ep before CUDA starts."""
import threading

from . import _C, hardware_queues
from ._torch import require_torch
from .buffer import Buffer


class RankFailure(RuntimeError):
    """One or more rank threads raised; `errors` maps rank -> exception."""

    def __init__(self, errors):
        self.errors = errors
        lines = "; ".join(f"rank {r}: {type(e).__name__}: {e}" for r, e in sorted(errors.items()))
        super().__init__(f"{len(errors)} rank(s) failed: {lines}")


def run_threads(num_ranks, body):
    """Runs body(rank) on one thread per rank; returns the results in rank order."""
    results, errors = [None] * num_ranks, {}

    def run(rank):
        try:
            results[rank] = body(rank)
        except BaseException as error:  # noqa: BLE001 - reported with its rank
            errors[rank] = error

    threads = [threading.Thread(target=run, args=(r,), name=f"moe_ep-rank-{r}") for r in range(num_ranks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        first = errors[min(errors)]
        raise RankFailure(errors) from first
    return results


def in_process_buffers(num_ranks, num_nvl_bytes, device=0, timeout_ns=None, num_rdma_bytes=0,
                       low_latency_mode=False, enable_shrink=False, **buffer_kwargs):
    """N Buffers of one in-process group on `device` (construction is collective). Low-latency
    buffers: num_rdma_bytes (e.g. Buffer.get_low_latency_rdma_size_hint) and low_latency_mode.
    buffer_kwargs go to every Buffer (e.g. emulated_ranks_per_node)."""
    hardware_queues.check_in_process(num_ranks)
    _C.keep_pool_memory(device)
    groups = _C.make_in_process_group([device] * num_ranks)
    return run_threads(num_ranks, lambda r: Buffer(groups[r], num_nvl_bytes, num_rdma_bytes,
                                                   low_latency_mode=low_latency_mode, enable_shrink=enable_shrink,
                                                   timeout_ns=timeout_ns, **buffer_kwargs))


class InProcessRanks:
    """Buffers, one compute stream per rank, and run(body) calling body(rank, buffer) on each
    rank's thread with its stream current (synchronized before the thread ends). The streams
    are moe_ep's own (not torch's pool of 64+, which wraps around the hardware queues)."""

    def __init__(self, num_ranks, num_nvl_bytes, device=0, warm_bytes=256 << 20, timeout_ns=None, num_rdma_bytes=0,
                 low_latency_mode=False, enable_shrink=False, **buffer_kwargs):
        self.torch = require_torch("moe_ep.testing.InProcessRanks")
        self.num_ranks, self.device = num_ranks, device
        self.buffers = in_process_buffers(num_ranks, num_nvl_bytes, device, timeout_ns, num_rdma_bytes,
                                          low_latency_mode, enable_shrink, **buffer_kwargs)
        self._owned_streams = [_C.Stream(device) for _ in range(num_ranks)]
        self.streams = [self.torch.cuda.ExternalStream(s.handle, device=self.torch.device("cuda", device))
                        for s in self._owned_streams]
        self.run(lambda rank, buffer: self._warm_allocator(buffer, warm_bytes))

    def _warm_allocator(self, buffer, warm_bytes):
        """Leaves cached blocks (large and small pools) on this rank's stream and on its
        buffer's comm stream (allocate_on_comm_stream), so calls need no new device memory."""
        torch = self.torch
        for stream in (torch.cuda.current_stream(), buffer.get_comm_stream()):
            with torch.cuda.stream(stream):
                large = torch.empty(warm_bytes, dtype=torch.uint8, device=self.device)
                small = [torch.empty(1 << 19, dtype=torch.uint8, device=self.device) for _ in range(64)]
                del large, small

    def run(self, body):
        torch = self.torch

        def on_rank(rank):
            torch.cuda.set_device(self.device)
            stream = self.streams[rank]
            with torch.cuda.stream(stream):
                result = body(rank, self.buffers[rank])
            stream.synchronize()
            return result

        return run_threads(self.num_ranks, on_rank)

    def destroy(self):
        for buffer in self.buffers:
            buffer.destroy()
