"""The high-throughput scenario shared by the GPU tests: deterministic per-rank inputs (CPU),
one rank's calls through the deep_ep-compatible API, a torch reference computed here (not
the library's), and the checks: received order (by source rank, then token), bitwise-equal
copies, combine within bf16 rounding (|got - want| <= |want|/256 + 1e-3; across nodes plus
(sum of |rows|)/256: each node's forwarder rounds its partial sum to bf16 once). The same
scenario runs on emulated nodes; internode_reference.py checks what only they have."""
import dataclasses

import torch

import moe_ep

HIDDEN = 512
NUM_LOCAL_EXPERTS = 6
NUM_TOPK = 4
MAX_TOKENS = 512  # buffer capacity per rank; tokens(rank) stays below it


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    fp8: bool = False
    column_major_scales: bool = False
    topk: bool = True
    alignment: int = 1
    worst: bool = False
    num_biases: int = 0
    cached: bool = False
    overlap: bool = False     # previous_event + async_finish + allocate_on_comm_stream
    empty_rank: bool = False  # rank 1 has no tokens; some tokens go nowhere

    def __str__(self):
        return self.name


CASES = [
    Case("bf16_topk"),
    Case("bf16_topk_align128_bias1_cached", alignment=128, num_biases=1, cached=True),
    Case("bf16_no_topk_bias2", topk=False, num_biases=2),
    Case("fp8_topk_bias2_cached", fp8=True, num_biases=2, cached=True),
    Case("fp8_colmajor_scales_worst_align128", fp8=True, column_major_scales=True, worst=True, alignment=128),
    Case("bf16_worst_bias1_cached", worst=True, num_biases=1, cached=True),
    Case("bf16_overlap_bias1", overlap=True, num_biases=1),
    Case("bf16_empty_rank", empty_rank=True, num_biases=1),
]


def num_tokens(case, rank):
    return 0 if case.empty_rank and rank == 1 else 96 + 37 * rank


def num_experts(num_ranks):
    return NUM_LOCAL_EXPERTS * num_ranks


def worst_tokens(case, num_ranks):
    return sum(num_tokens(case, r) for r in range(num_ranks)) if case.worst else 0


def make_inputs(case, num_ranks, rank):
    """CPU tensors of one rank: x (bf16, or fp8 + fp32 scales), top-k ids/weights, biases."""
    gen = torch.Generator().manual_seed(1000 * num_ranks + 17 * rank + len(case.name))
    tokens, experts = num_tokens(case, rank), num_experts(num_ranks)
    x = torch.randn(tokens, HIDDEN, generator=gen) * 4
    inputs = {"x": x.to(torch.float8_e4m3fn if case.fp8 else torch.bfloat16)}
    if case.fp8:
        inputs["scales"] = torch.rand(tokens, HIDDEN // 128, generator=gen) + 0.5
    ranks = torch.rand(tokens, experts, generator=gen).argsort(dim=1)[:, :NUM_TOPK]
    dropped = torch.rand(tokens, NUM_TOPK, generator=gen) < (0.3 if case.empty_rank else 0.1)
    if case.empty_rank and tokens > 0:
        dropped[: tokens // 8] = True  # tokens routed nowhere
    inputs["topk_idx"] = torch.where(dropped, torch.full_like(ranks, -1), ranks).to(torch.int64)
    inputs["topk_weights"] = torch.rand(tokens, NUM_TOPK, generator=gen) + 0.1
    inputs["biases"] = [torch.randn(tokens, HIDDEN, generator=gen).to(torch.bfloat16) for _ in range(case.num_biases)]
    return inputs


def to_device(case, inputs, device):
    out = {k: v.to(device) for k, v in inputs.items() if k not in ("biases", "scales")}
    out["biases"] = [b.to(device) for b in inputs["biases"]]
    if case.fp8:
        scales = inputs["scales"]
        if case.column_major_scales:  # [tokens, hidden/128] with strides (1, tokens)
            out["scales"] = torch.empty(scales.t().shape, dtype=scales.dtype, device=device).t()
            out["scales"].copy_(scales)
        else:
            out["scales"] = scales.to(device)
    return out


def expert_factor(recv_topk_idx, rank, rows, device):
    """1 + (first local expert id % 4) per row, or rank + 2 where a row has none (or no top-k)."""
    if recv_topk_idx is None:
        return torch.full((rows,), float(rank + 2), device=device)
    has = recv_topk_idx >= 0
    first = recv_topk_idx.gather(1, has.to(torch.int32).argmax(dim=1, keepdim=True)).squeeze(1)
    return torch.where(has.any(dim=1), 1.0 + (first % 4).float(), torch.full_like(first, rank + 2).float())


def transform(recv_x, recv_topk_idx, rank):
    """The expert: scales each received row by its expert factor (bf16 out)."""
    factor = expert_factor(recv_topk_idx, rank, recv_x.size(0), recv_x.device)
    return (recv_x.float() * factor[:, None]).to(torch.bfloat16)


def run_rank(buffer, case, inputs, rank, num_ranks):
    """One rank's calls: layout, dispatch, the expert transform, combine, cached dispatch."""
    out = {}
    layout = buffer.get_dispatch_layout(inputs["topk_idx"], num_experts(num_ranks))
    out["num_tokens_per_rank"], out["num_tokens_per_rdma_rank"], out["num_tokens_per_expert"], \
        out["is_token_in_rank"], _ = layout
    x = (inputs["x"], inputs["scales"]) if case.fp8 else inputs["x"]
    overlap = {}
    if case.overlap:
        overlap = {"previous_event": moe_ep.Buffer.capture(), "async_finish": True, "allocate_on_comm_stream": True}
    topk = {"topk_idx": inputs["topk_idx"], "topk_weights": inputs["topk_weights"]} if case.topk else {}
    recv_x, recv_topk_idx, recv_topk_weights, per_expert, handle, event = buffer.dispatch(
        x, num_tokens_per_rank=out["num_tokens_per_rank"], num_tokens_per_rdma_rank=out["num_tokens_per_rdma_rank"],
        is_token_in_rank=out["is_token_in_rank"], num_tokens_per_expert=out["num_tokens_per_expert"],
        expert_alignment=case.alignment, num_worst_tokens=worst_tokens(case, num_ranks), **topk, **overlap)
    if case.overlap:
        event.current_stream_wait()
    out.update(recv=recv_x, recv_topk_idx=recv_topk_idx, recv_topk_weights=recv_topk_weights,
               per_expert=per_expert, handle=handle)
    y = transform(recv_x[0] if case.fp8 else recv_x, recv_topk_idx, rank)
    bias = None if case.num_biases == 0 else inputs["biases"][0] if case.num_biases == 1 else tuple(inputs["biases"])
    if case.overlap:
        overlap["previous_event"] = moe_ep.Buffer.capture()
    combined_x, combined_weights, event = buffer.combine(y, handle, topk_weights=recv_topk_weights, bias=bias,
                                                         **overlap)
    if case.overlap:
        event.current_stream_wait()
    out.update(combined_x=combined_x, combined_weights=combined_weights)
    if case.cached:
        cached = buffer.dispatch(x, handle=handle)
        assert cached[1:5] == (None, None, None, None)
        out["cached"] = cached[0]
    return out


# ---- torch reference ---------------------------------------------------------------


def reference_layout(topk_idx, num_ranks):
    experts = num_experts(num_ranks)
    owner = torch.where(topk_idx >= 0, topk_idx // NUM_LOCAL_EXPERTS, torch.full_like(topk_idx, -1))
    is_token_in_rank = torch.stack([(owner == r).any(dim=1) for r in range(num_ranks)], dim=1) \
        if topk_idx.size(0) else torch.zeros(0, num_ranks, dtype=torch.bool)
    per_expert = torch.bincount(topk_idx[topk_idx >= 0], minlength=experts).to(torch.int32)
    return is_token_in_rank.sum(dim=0).to(torch.int32), per_expert, is_token_in_rank


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def as_bits(t):
    """The same bytes as an integer tensor (CPU indexing/cat of float8 is not guaranteed)."""
    return t.view(_SAME_SIZE_INT[t.element_size()])


def cat_rows(parts):
    return torch.cat([as_bits(p) for p in parts]).view(parts[0].dtype) if parts else None


def reference_receive(inputs, layouts, rank):
    """What `rank` receives: rows grouped by source rank, in source token order."""
    lo = rank * NUM_LOCAL_EXPERTS
    rows = {"x": [], "scales": [], "topk_idx": [], "topk_weights": [], "src_idx": [], "count": []}
    for inp, layout in zip(inputs, layouts):
        sel = layout[2][:, rank].nonzero().flatten()
        idx = inp["topk_idx"][sel]
        local = (idx >= lo) & (idx < lo + NUM_LOCAL_EXPERTS)
        rows["x"].append(as_bits(inp["x"])[sel].view(inp["x"].dtype))
        if "scales" in inp:
            rows["scales"].append(inp["scales"][sel])
        rows["topk_idx"].append(torch.where(local, idx - lo, torch.full_like(idx, -1)))
        weights = inp["topk_weights"][sel]
        rows["topk_weights"].append(torch.where(local, weights, torch.zeros_like(weights)))
        rows["src_idx"].append(sel.to(torch.int32))
        rows["count"].append(sel.numel())
    return {k: (v if k == "count" else cat_rows(v)) for k, v in rows.items()}


def reference(case, inputs, num_ranks):
    layouts = [reference_layout(inp["topk_idx"], num_ranks) for inp in inputs]
    received = [reference_receive(inputs, layouts, r) for r in range(num_ranks)]
    counts = torch.tensor([[received[d]["count"][s] for d in range(num_ranks)] for s in range(num_ranks)])
    rank_prefix_matrix = counts.cumsum(dim=0).to(torch.int32)
    for rank, recv in enumerate(received):
        recv["prefix"] = rank_prefix_matrix
        topk = recv["topk_idx"] if case.topk else None
        recv["y"] = transform(recv["x"], topk, rank)
        ids = recv["topk_idx"]
        per_expert = [int((ids == e).any(dim=1).sum()) for e in range(NUM_LOCAL_EXPERTS)]
        recv["per_expert"] = [-(-c // case.alignment) * case.alignment for c in per_expert]
    for rank, inp in enumerate(inputs):
        want, sum_abs = torch.zeros(inp["x"].size(0), HIDDEN), torch.zeros(inp["x"].size(0), HIDDEN)
        for dest in range(num_ranks):
            sel = layouts[rank][2][:, dest].nonzero().flatten()
            start = int(rank_prefix_matrix[rank - 1, dest]) if rank > 0 else 0
            rows = received[dest]["y"][start:start + sel.numel()].float()
            want[sel] += rows
            sum_abs[sel] += rows.abs()
        for bias in inp["biases"]:
            want += bias.float()
        received[rank]["combined_x"], received[rank]["combined_sum_abs"] = want, sum_abs
        received[rank]["combined_weights"] = torch.where(inp["topk_idx"] >= 0, inp["topk_weights"],
                                                         torch.zeros_like(inp["topk_weights"]))
    return layouts, received


# ---- checks ------------------------------------------------------------------------


def assert_bitwise(name, got, want):
    got = got.cpu().contiguous()
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
    same = as_bits(got) == as_bits(want.contiguous())
    if not bool(same.all()):
        bad = (~same).nonzero()[0].tolist()
        raise AssertionError(f"{name}: {int((~same).sum())} elements differ, first at {bad}")


def assert_close_bf16(name, got, want, partials=None):
    """Within bf16 rounding of want, plus partials / 256 (a bf16 rounding of partial sums)."""
    got = got.cpu().float()
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    error = (got - want).abs()
    bound = want.abs() / 256 + 1e-3
    if partials is not None:
        bound = bound + partials / 256
    if not bool((error <= bound).all()):
        worst = (error - bound).argmax().item()
        raise AssertionError(f"{name}: {int((error > bound).sum())} elements off; worst at flat {worst}: "
                             f"got {got.flatten()[worst]} want {want.flatten()[worst]}")


# Slots of rank_prefix_matrix and recv_src_idx in deep_ep's intranode 6-tuple and internode
# 10-tuple (gbl_channel_prefix_matrix and recv_src_meta there; see moe_ep/handle.py).
HANDLE_SLOTS = {False: (0, 3), True: (2, 7)}


def check_rank(case, rank, out, layouts, received, internode=False):
    """What every layout checks; with emulated nodes also check_internode (internode_reference.py)."""
    recv = received[rank]
    rows = recv["x"].size(0)
    num_tokens_per_rank, per_expert, is_token_in_rank = layouts[rank]
    assert_bitwise("num_tokens_per_rank", out["num_tokens_per_rank"], num_tokens_per_rank)
    assert_bitwise("num_tokens_per_expert", out["num_tokens_per_expert"], per_expert)
    assert_bitwise("is_token_in_rank", out["is_token_in_rank"], is_token_in_rank)
    if not internode:
        assert out["num_tokens_per_rdma_rank"] is None
    recv_x, recv_scales = out["recv"] if case.fp8 else (out["recv"], None)
    if case.worst:
        expected_rows = worst_tokens(case, len(received))
        assert out["per_expert"] == []
    else:
        expected_rows = rows
        assert out["per_expert"] == recv["per_expert"]
    assert recv_x.size(0) == expected_rows
    assert_bitwise("recv_x", recv_x[:rows], recv["x"])
    if case.fp8:
        assert_bitwise("recv_x_scales", recv_scales[:rows], recv["scales"])
    if case.topk:
        assert_bitwise("recv_topk_idx", out["recv_topk_idx"][:rows], recv["topk_idx"])
        assert_bitwise("recv_topk_weights", out["recv_topk_weights"][:rows], recv["topk_weights"])
    else:
        assert out["recv_topk_idx"] is None and out["recv_topk_weights"] is None
    handle = out["handle"]
    assert len(handle) == (10 if internode else 6)
    prefix_slot, src_slot = HANDLE_SLOTS[internode]
    assert_bitwise(f"handle[{prefix_slot}] rank_prefix_matrix", handle[prefix_slot], recv["prefix"])
    assert_bitwise(f"handle[{src_slot}] recv_src_idx", handle[src_slot][:rows], recv["src_idx"])
    assert_close_bf16("combined_x", out["combined_x"], recv["combined_x"],
                      recv["combined_sum_abs"] if internode else None)
    if case.topk:
        torch.testing.assert_close(out["combined_weights"].cpu(), recv["combined_weights"], rtol=1e-6, atol=1e-6)
    else:
        assert out["combined_weights"] is None
    if case.cached:
        cached_x, cached_scales = out["cached"] if case.fp8 else (out["cached"], None)
        assert cached_x.size(0) == expected_rows
        assert_bitwise("cached recv_x", cached_x[:rows], recv["x"])
        if case.fp8:
            assert_bitwise("cached recv_x_scales", cached_scales[:rows], recv["scales"])
