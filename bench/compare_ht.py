"""High-throughput problems (ht-v3: FP8 + scales dispatch, ht-v3-bf16: BF16 dispatch; BF16
combine; ht-v3-node-per-rank: ht-v3 through the internode kernels, each rank its own node): moe_ep.Buffer get_dispatch_layout + dispatch + expert + combine, and the NCCL
all_to_all_single exchange of the same tokens, on the same tensors. One checked run first
(layout, received rows bitwise, combined values against a torch reference rebuilt from every
rank's inputs), then the timed loop, then the timed outputs are checked again."""
import compare_nccl as nccl
from compare_common import INPUT_SETS, Checks, Timer, dequantize, expert_factor, make_inputs, \
    max_over_ranks, mean_over_ranks, summarize


def expert(torch, recv, fp8, rank):
    """Every received row times this rank's factor, BF16 out (FP8 rows dequantized first)."""
    values = dequantize(*recv) if fp8 else recv.float()
    return (values * expert_factor(rank)).to(torch.bfloat16)


def reference(ctx, problem, route):
    """Per input set: the rows this rank must receive (from rebuilt inputs of every rank) and
    the combined values of its own tokens (fp32)."""
    torch, me = ctx.torch, ctx.rank
    received = [[] for _ in range(INPUT_SETS)]
    for src in range(ctx.world):
        inp = make_inputs(torch, problem, src, ctx.device, ctx.drop)
        sel = nccl.make_route(torch, inp["topk_idx"], problem.experts, ctx.world).is_token_in_rank[:, me]
        sel = sel.nonzero().flatten()
        for s, x in enumerate(inp["x"]):
            received[s].append(tuple(t.index_select(0, sel) for t in x) if problem.fp8 else x.index_select(0, sel))
    own = make_inputs(torch, problem, me, ctx.device, ctx.drop)
    combined = []
    for s in range(INPUT_SETS):
        parts = received[s]
        received[s] = tuple(torch.cat([p[i] for p in parts]) for i in range(2)) if problem.fp8 else torch.cat(parts)
        x = own["x"][s]
        want = torch.zeros(problem.tokens, problem.hidden, device=ctx.device)
        for dest in range(ctx.world):
            rows = expert(torch, x, problem.fp8, dest).float()
            want += torch.where(route.is_token_in_rank[:, dest:dest + 1], rows, torch.zeros_like(rows))
        combined.append(want)
    return received, combined


def check_recv(checks, name, got, want, fp8):
    if fp8:
        checks.equal(f"{name} recv_x", got[0], want[0])
        checks.equal(f"{name} recv_x_scales", got[1], want[1])
    else:
        checks.equal(f"{name} recv_x", got, want)


def check_combined(checks, name, got, want):
    checks.close(f"{name} combined", got, want, want.abs() / 256 + 1e-3)  # bf16 rounding of the fp32 sum


def run(ctx, problem):
    torch, dist, fp8 = ctx.torch, ctx.dist, problem.fp8
    inp = make_inputs(torch, problem, ctx.rank, ctx.device, ctx.drop)
    route = nccl.make_route(torch, inp["topk_idx"], problem.experts, ctx.world)
    ref_recv, ref_combined = reference(ctx, problem, route)
    buffer = ours = None
    if ctx.moe_ep is not None:
        hidden_bytes = problem.hidden * 2
        nodes = {}
        if problem.node_per_rank:  # RDMA emulated over NVLink peer memory between the GPUs
            nodes = dict(emulated_ranks_per_node=1, num_rdma_bytes=ctx.moe_ep.Buffer.get_internode_rdma_size_hint(
                problem.tokens, problem.hidden, ctx.world, 1, problem.topk))
        buffer = ctx.moe_ep.Buffer(dist.group.WORLD, ctx.moe_ep.Buffer.intranode_size_hint(
            problem.tokens, ctx.world, hidden_bytes), **nodes)
        layout = buffer.get_dispatch_layout(inp["topk_idx"], problem.experts)
        ours = {"layout": layout, "args": dict(num_tokens_per_rank=layout[0], is_token_in_rank=layout[3],
                                               num_tokens_per_expert=layout[2], topk_idx=inp["topk_idx"],
                                               topk_weights=inp["topk_weights"])}
    timer = Timer(torch, ctx.on_gpu)
    checks = Checks(torch, ctx.rank)
    total = 1 + ctx.warmup + ctx.iterations
    for it in range(total):
        s = it % INPUT_SETS
        x = inp["x"][s]
        if buffer is not None:
            ctx.align()
            with timer("ours-dispatch"):
                recv, _, _, _, handle, _ = buffer.dispatch(x, **ours["args"])
            y = expert(torch, recv, fp8, ctx.rank)
            ctx.align()
            with timer("ours-combine"):
                combined, _, _ = buffer.combine(y, handle)
        ctx.align()
        with timer("nccl-dispatch"):
            with timer("nccl-dispatch-layout"):
                exchange = nccl.exchange_layout(torch, dist, route)
            received, _ = nccl.dispatch(torch, dist, route, list(x) if fp8 else [x], exchange)
        n_recv = tuple(received) if fp8 else received[0]
        y_n = expert(torch, n_recv, fp8, ctx.rank)
        ctx.align()
        with timer("nccl-combine"):
            with timer("nccl-combine-a2a"):
                back = nccl.send_back(torch, dist, exchange, y_n)
            n_combined = nccl.reduce_rows(torch, route, back, problem.tokens)
        if it == 0 or it == total - 1:  # the first run, before timing; the last timed one
            label = "checked run" if it == 0 else "timed outputs"
            ctx.sync()
            if buffer is not None:
                if it == 0:
                    check_layout(torch, checks, ours["layout"], route, inp["topk_idx"], problem.experts)
                check_recv(checks, "ours", recv, ref_recv[s], fp8)
                check_combined(checks, "ours", combined, ref_combined[s])
            check_recv(checks, "nccl", n_recv, ref_recv[s], fp8)
            check_combined(checks, "nccl", n_combined, ref_combined[s])
            checks.settle(dist, ctx.device, f"{problem.name} {label}")
    ctx.sync()
    recv_rows = mean_over_ranks(torch, dist, sum(exchange.recv_splits), ctx.device)
    row_bytes = problem.hidden * (1 + 4 / 128) if fp8 else problem.hidden * 2
    sms = {}
    if buffer is not None:
        sms = {"dispatch": buffer._config("dispatch", None).num_sms,
               "combine": buffer._config("combine", None).num_sms}
        ctx.sync()
        dist.barrier()
        buffer.destroy()
    skip = 1 + ctx.warmup

    def stats(name):
        times = timer.times_us(name, skip)
        return summarize(max_over_ranks(torch, dist, times, ctx.device)) if times else None

    rows = []
    for op, nbytes in (("dispatch", recv_rows * row_bytes), ("combine", recv_rows * problem.hidden * 2)):
        rows.append({"problem": problem.name, "op": op, "num_ranks": ctx.world, "logical_bytes_per_rank": nbytes,
                     "recv_rows_per_rank": recv_rows, "num_sms": sms.get(op),
                     "ours": stats(f"ours-{op}"), "nccl": stats(f"nccl-{op}"),
                     "nccl_parts": {"layout_exchange" if op == "dispatch" else "all_to_all":
                                    stats("nccl-dispatch-layout" if op == "dispatch" else "nccl-combine-a2a")},
                     "checks": checks.count})
    return rows


def check_layout(torch, checks, layout, route, topk_idx, num_experts):
    num_tokens_per_rank, _, num_tokens_per_expert, is_token_in_rank, _ = layout
    checks.equal("ours num_tokens_per_rank", num_tokens_per_rank, route.counts.to(torch.int32))
    checks.equal("ours is_token_in_rank", is_token_in_rank, route.is_token_in_rank)
    valid = topk_idx[topk_idx >= 0]
    checks.equal("ours num_tokens_per_expert", num_tokens_per_expert,
                 torch.bincount(valid, minlength=num_experts).to(torch.int32))
