"""Host cost of the Python low-latency calls (what an engine pays per call when it does not
replay a CUDA graph): one in-process rank, ll-v3 shape (7168 hidden, 256 experts, top-8,
128 tokens, FP8 dispatch). Per call: wall time of the Python call alone (median over calls,
nothing synchronized in between); per dispatch + combine pair, next to the time per pair
of pairs enqueued back to back (CUDA events around the series). Host time near the
back-to-back time means a loop of eager calls is bound by the host.
Usage: python bench/ll_host_cost.py [--calls 200] [--tokens 128]"""
import argparse
import os
import statistics
import time

os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")
import moe_ep  # noqa: E402  (before torch starts CUDA)
from moe_ep import testing  # noqa: E402

HIDDEN, EXPERTS, TOPK = 7168, 256, 8


def timed_gpu(torch, call, calls):
    """GPU time per call, us, of `calls` calls enqueued back to back."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    tokens = args.tokens
    hint = moe_ep.Buffer.get_low_latency_rdma_size_hint(tokens, HIDDEN, 1, EXPERTS)
    ranks = testing.InProcessRanks(1, 0, num_rdma_bytes=hint, low_latency_mode=True)

    def body(rank, buffer):
        torch = ranks.torch
        x = torch.randn(tokens, HIDDEN, dtype=torch.bfloat16, device="cuda")
        topk_idx = torch.argsort(torch.rand(tokens, EXPERTS, device="cuda"), dim=1)[:, :TOPK].contiguous()
        weights = torch.rand(tokens, TOPK, device="cuda")
        expert_out = torch.randn(EXPERTS, tokens, HIDDEN, dtype=torch.bfloat16, device="cuda")
        handle = None

        def dispatch():
            nonlocal handle
            _, _, handle, _, _ = buffer.low_latency_dispatch(x, topk_idx, tokens, EXPERTS, use_fp8=True)

        def combine():
            buffer.low_latency_combine(expert_out, topk_idx, weights, handle)

        def pair():
            dispatch()
            combine()

        for _ in range(20):  # warm-up
            pair()
        torch.cuda.current_stream().synchronize()
        host = {"dispatch": [], "combine": []}
        for _ in range(args.calls):  # each call timed alone, nothing synchronized in between
            for name, call in (("dispatch", dispatch), ("combine", combine)):
                start = time.perf_counter()
                call()
                host[name].append((time.perf_counter() - start) * 1e6)
        torch.cuda.current_stream().synchronize()
        gpu_pair = timed_gpu(torch, pair, args.calls)
        rows = [(name, statistics.median(times), None) for name, times in host.items()]
        rows.append(("pair", sum(statistics.median(times) for times in host.values()), gpu_pair))
        return rows

    rows = ranks.run(body)[0]
    ranks.destroy()
    print(f"{'call':10} {'host_us':>9} {'gpu_us':>9}  (1 rank, {tokens} tokens, ll-v3; gpu = per call, back to back)")
    for name, host_us, gpu_us in rows:
        print(f"{name:10} {host_us:9.1f} {'-' if gpu_us is None else f'{gpu_us:.1f}':>9}")


if __name__ == "__main__":
    main()
