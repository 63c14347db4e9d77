"""Kernel time of our low-latency calls as DeepEP's tests measure theirs (its bench_kineto):
one profiled round of back-to-back dispatch + combine calls on the same inputs, after an
unprofiled round, each round started behind a large GEMM and an all_reduce so that host
launch skew does not land in the kernels; per call, the CUDA time of our kernels whose name
holds the op's, from torch.profiler (CUPTI), averaged over the round. No L2 flush (none in
DeepEP's either): the inputs of one call are in L2 for the next. The published anchors in
BENCHMARKS.md (DeepEP V1 low latency on H100) were measured this way. With `in_graph` the
round's calls are captured once in a CUDA graph and each round replays it: no host time
between the kernels, so no rank's kernel waits for a peer whose host was late."""

CALLS_PER_ROUND = 30  # as DeepEP's bench_kineto


def _align(ctx):
    """A large GEMM, then the ranks' streams lined up (ctx.align): every rank starts the round
    together."""
    lhs = ctx.torch.randn(8192, 8192, device=ctx.device)
    (lhs @ lhs).sum()
    ctx.align()


def _device_us(event):
    """Total CUDA time of a profiler average (us); the attribute's name depends on torch."""
    for name in ("device_time_total", "self_device_time_total", "cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    raise RuntimeError("torch.profiler event without a device time")


def kernel_times(ctx, calls, kernel_tags, in_graph=False, poison=None):
    """Per call, us of device time of the kernels whose names hold each tag: {tag: us}.
    `calls()` runs one dispatch + combine; CALLS_PER_ROUND of them per round. `poison()`
    runs after the capture (the graph's outputs are its own), before the rounds."""
    torch = ctx.torch

    def eager_round():
        for _ in range(CALLS_PER_ROUND):
            calls()

    run_round = eager_round
    if in_graph:
        graph = torch.cuda.CUDAGraph()
        ctx.sync()
        with torch.cuda.graph(graph):
            eager_round()
        run_round = graph.replay
    if poison is not None:
        poison()
    schedule = torch.profiler.schedule(wait=0, warmup=1, active=1, repeat=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA], schedule=schedule) as prof:
        for _ in range(2):  # warm-up round, profiled round
            _align(ctx)
            run_round()
            ctx.sync()
            prof.step()
    totals = {tag: 0.0 for tag in kernel_tags}
    for event in prof.key_averages():
        for tag in kernel_tags:
            if tag in event.key:
                totals[tag] += _device_us(event)
    return {tag: total / CALLS_PER_ROUND for tag, total in totals.items()}
