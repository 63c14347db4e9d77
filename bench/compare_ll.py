"""Low-latency problem (ll-v3: BF16 tokens cast to FP8 in the dispatch, weighted BF16 combine):
moe_ep.Buffer.low_latency_dispatch / low_latency_combine with deep_ep's API, against NCCL
all_to_all_single doing the same token exchange (the FP8 cast in torch included in its
dispatch time; each token once per destination rank; the home rank applies the top-k
weights of each rank's experts in its combine). Our path is skipped, with the reason, where
moe_ep raises NotImplementedError; the NCCL path and its checks still run.
Checked against a torch reference rebuilt from every rank's inputs: the (source rank, token)
set of every local expert's slots exactly, the values within FP8 rounding."""
import compare_nccl as nccl
from compare_kernel_time import kernel_times
from compare_common import INPUT_SETS, Checks, Timer, dequantize, expert_factor, make_inputs, \
    max_over_ranks, mean_over_ranks, summarize


def make_buffer(ctx, problem):
    """(buffer, None), or (None, why) when moe_ep lacks low-latency mode."""
    if ctx.moe_ep is None:
        return None, "CPU dry run: our path needs a GPU"
    Buffer = ctx.moe_ep.Buffer
    try:
        num_rdma_bytes = Buffer.get_low_latency_rdma_size_hint(problem.tokens, problem.hidden, ctx.world,
                                                               problem.experts)
        buffer = Buffer(ctx.dist.group.WORLD, 0, num_rdma_bytes, low_latency_mode=True,
                        num_qps_per_rank=max(1, problem.experts // ctx.world))
    except NotImplementedError as error:
        return None, f"moe_ep has no low-latency mode yet ({error})"
    return buffer, None


def expert(torch, values, rank):
    return (values * expert_factor(rank)).to(torch.bfloat16)


class Reference:
    """Every rank's tokens and routing (rebuilt), stacked as [world * T, ...]; this rank's combine."""

    def __init__(self, ctx, problem, own):
        torch, T = ctx.torch, problem.tokens
        everyone = [make_inputs(torch, problem, r, ctx.device, ctx.drop) for r in range(ctx.world)]
        self.topk = torch.cat([e["topk_idx"] for e in everyone])
        self.x = [torch.cat([e["x"][s] for e in everyone]) for s in range(INPUT_SETS)]
        self.fp8 = [nccl.cast_fp8(torch, x) for x in self.x]
        owner = nccl.owner_ranks(torch, own["topk_idx"], problem.experts, ctx.world)
        w = own["topk_weights"] * expert_factor(owner.float())  # the owner rank's expert
        w = torch.where(owner >= 0, w, torch.zeros_like(w))
        self.combined, self.tolerance = [], []
        for s in range(INPUT_SETS):
            x = own["x"][s].float()
            amax = x.abs().view(T, -1, 128).amax(dim=2).repeat_interleave(128, dim=1)
            want = w.sum(dim=1, keepdim=True) * x
            self.combined.append(want)
            self.tolerance.append(w.sum(dim=1, keepdim=True) * (x.abs() / 8 + amax / 256) + want.abs() / 128 + 1e-3)


def row_weights(torch, route, own, problem, world):
    """Per sent row (token, destination): the sum of the token's top-k weights on that rank."""
    owner = nccl.owner_ranks(torch, own["topk_idx"], problem.experts, world)
    ranks = torch.arange(world, device=owner.device)
    per_rank = (own["topk_weights"].unsqueeze(2) * (owner.unsqueeze(2) == ranks.view(1, 1, -1))).sum(dim=1)
    return per_rank[route.order, route.dest]


def check_ours_recv(ctx, checks, problem, ref, s, recv_x, recv_count, handle):
    """Slots of each local expert: exactly the (source rank, token) pairs routed to it, values
    within FP8 rounding of the source rows."""
    torch, T = ctx.torch, problem.tokens
    local = problem.experts // ctx.world
    counts = recv_count.tolist()
    ranges = handle[1].tolist()  # [local experts][world]: (count << 32) | begin
    src_info = handle[0]
    for e in range(local):
        expert_id = ctx.rank * local + e
        want = (ref.topk == expert_id).any(dim=1).nonzero().flatten()  # rows of the stacked inputs
        if counts[e] != want.numel():
            checks.fail(f"ours recv_count[{e}] = {counts[e]}, want {want.numel()}")
            continue
        source = torch.full((counts[e],), -1, dtype=torch.int64, device=ctx.device)
        for r in range(ctx.world):
            n, begin = ranges[e][r] >> 32, ranges[e][r] & 0xFFFFFFFF
            source[begin:begin + n] = r
        keys = source * T + src_info[e, :counts[e]].to(torch.int64)
        if bool((source < 0).any()) or not torch.equal(keys.sort().values, want):
            checks.fail(f"ours expert {e}: the (source rank, token) pairs of its slots differ from the routing")
            continue
        got = dequantize(recv_x[0][e, :counts[e]], recv_x[1][e, :counts[e]])
        x = ref.x[s].index_select(0, keys).float()
        amax = x.abs().view(x.size(0), x.size(1) // 128, 128).amax(dim=2).repeat_interleave(128, dim=1)
        checks.close(f"ours expert {e} recv_x (dequantized)", got, x, x.abs() / 8 + amax / 256 + 1e-6)


def run(ctx, problem):
    torch, dist, T = ctx.torch, ctx.dist, problem.tokens
    own = make_inputs(torch, problem, ctx.rank, ctx.device, ctx.drop)
    route = nccl.make_route(torch, own["topk_idx"], problem.experts, ctx.world)
    weights_per_row = row_weights(torch, route, own, problem, ctx.world)
    ref = Reference(ctx, problem, own)
    buffer, skipped = make_buffer(ctx, problem)
    if skipped and ctx.rank == 0:
        print(f"{problem.name}: our path skipped: {skipped}", flush=True)
    timer, checks = Timer(torch, ctx.on_gpu), Checks(torch, ctx.rank)
    total = 1 + ctx.warmup + ctx.iterations
    for it in range(total):
        s = it % INPUT_SETS
        x = own["x"][s]
        if buffer is not None:
            ctx.align()
            with timer("ours-dispatch"):
                recv_x, recv_count, handle, _, _ = buffer.low_latency_dispatch(x, own["topk_idx"], T,
                                                                               problem.experts, use_fp8=True)
            y = expert(torch, dequantize(*recv_x), ctx.rank)
            ctx.align()
            with timer("ours-combine"):
                combined, _, _ = buffer.low_latency_combine(y, own["topk_idx"], own["topk_weights"], handle)
        ctx.align()
        with timer("nccl-dispatch"):
            x8, scales = nccl.cast_fp8(torch, x)
            with timer("nccl-dispatch-layout"):
                exchange = nccl.exchange_layout(torch, dist, route)
            (r8, rscales), _ = nccl.dispatch(torch, dist, route, [x8, scales], exchange)
        y_n = expert(torch, dequantize(r8, rscales), ctx.rank)
        ctx.align()
        with timer("nccl-combine"):
            with timer("nccl-combine-a2a"):
                back = nccl.send_back(torch, dist, exchange, y_n)
            n_combined = nccl.reduce_rows(torch, route, back, T, weights_per_row)
        if it == 0 or it == total - 1:
            ctx.sync()
            if buffer is not None:
                check_ours_recv(ctx, checks, problem, ref, s, recv_x, recv_count, handle)
                checks.close("ours combined", combined, ref.combined[s], ref.tolerance[s])
            sel = route_in(torch, ref, problem, ctx)
            checks.equal("nccl recv_x", r8, ref.fp8[s][0].index_select(0, sel))
            checks.equal("nccl recv_x_scales", rscales, ref.fp8[s][1].index_select(0, sel))
            checks.close("nccl combined", n_combined, ref.combined[s], ref.tolerance[s])
            checks.settle(dist, ctx.device, f"{problem.name} {'checked run' if it == 0 else 'timed outputs'}")
    ctx.sync()
    kernel_us = profile_ours(ctx, checks, problem, buffer, own, ref) if buffer is not None else {}
    pairs = mean_over_ranks(torch, dist, int((own["topk_idx"] >= 0).sum()), ctx.device)
    if buffer is not None:
        dist.barrier()
        buffer.destroy()
    skip = 1 + ctx.warmup

    def stats(name):
        times = timer.times_us(name, skip)
        return summarize(max_over_ranks(torch, dist, times, ctx.device)) if times else None

    H = problem.hidden
    return [{"problem": problem.name, "op": op, "num_ranks": ctx.world, "logical_bytes_per_rank": nbytes,
             "valid_pairs_per_rank": pairs, "num_sms": None, "ours": stats(f"ours-{op}"),
             "ours_skipped": skipped, "nccl": stats(f"nccl-{op}"), "ours_kernel_us": kernel_us.get(op),
             "ours_kernel_graph_us": kernel_us.get(op + "_graph"),
             "nccl_parts": {"layout_exchange" if op == "dispatch" else "all_to_all":
                            stats("nccl-dispatch-layout" if op == "dispatch" else "nccl-combine-a2a")},
             "checks": checks.count}
            for op, nbytes in (("dispatch", pairs * (H + H / 32 + 16)), ("combine", pairs * 2 * H))]


def profile_ours(ctx, checks, problem, buffer, own, ref):
    """Our calls' kernel time as DeepEP measures its own (compare_kernel_time), on input set 0
    with the experts' outputs fixed (DeepEP's simulated GEMM output); the last call's outputs
    are checked; eagerly, then replayed from a CUDA graph. {op[_graph]: us, the slowest rank's}."""
    torch, s = ctx.torch, 0
    x, idx = own["x"][s], own["topk_idx"]

    def dispatch():
        return buffer.low_latency_dispatch(x, idx, problem.tokens, problem.experts, use_fp8=True)

    recv_x = dispatch()[0]
    y = expert(torch, dequantize(*recv_x), ctx.rank)
    last = {}

    def calls():
        last["dispatch"] = dispatch()
        last["combined"] = buffer.low_latency_combine(y, idx, own["topk_weights"], last["dispatch"][2])[0]

    calls()  # fills `last`

    def poison():  # what the checks read: the valid slots' scales and sources, counts, the sums
        last["combined"].fill_(float("nan"))
        last["dispatch"][0][1].fill_(float("nan"))  # recv_x scales
        last["dispatch"][1].fill_(-1)  # recv_count
        last["dispatch"][2][0].fill_(-1)  # the handle's source token of each slot

    times = {}
    for in_graph, suffix in ((False, ""), (True, "_graph")):
        per_rank = kernel_times(ctx, calls, ("ll_dispatch", "ll_combine"), in_graph, poison)
        ctx.sync()
        check_ours_recv(ctx, checks, problem, ref, s, *last["dispatch"][:3])
        checks.close("ours combined (profiled)", last["combined"], ref.combined[s], ref.tolerance[s])
        checks.settle(ctx.dist, ctx.device, f"{problem.name} profiled calls{suffix}")
        missing = max_over_ranks(torch, ctx.dist, [0.0 if all(per_rank.values()) else 1.0], ctx.device)[0]
        if missing:  # decided together: a rank alone raising would leave its peers in the next collective
            raise RuntimeError(f"{problem.name}: the profiler saw none of our kernels on some rank (here {per_rank})")
        slowest = max_over_ranks(torch, ctx.dist, [per_rank["ll_dispatch"], per_rank["ll_combine"]], ctx.device)
        times.update({"dispatch" + suffix: slowest[0], "combine" + suffix: slowest[1]})
    return times


def route_in(torch, ref, problem, ctx):
    """Rows of the stacked inputs that this rank receives, grouped by source rank, token order."""
    owner = nccl.owner_ranks(torch, ref.topk, problem.experts, ctx.world)
    return (owner == ctx.rank).any(dim=1).nonzero().flatten()
