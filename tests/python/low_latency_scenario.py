"""The low-latency scenario shared by the GPU tests: deterministic per-rank inputs (CPU),
one rank's calls through the deep_ep-compatible API, a torch reference written here (not
the library's), and the checks: per-expert rows compared as multisets keyed by (source
rank from layout_range, source token from src_info), FP8 codes and scales bit-exact against
a per-128-channel cast written from its definition, combine within bf16 rounding
(|got - ref| <= ulp_bf16(|ref|) + 1e-5 * sum_k |w_k y_k|, plus LogFMT's bound)."""
import dataclasses

import torch

HIDDEN = 1024            # 8 scale groups: 2 UE8M0 words
NUM_LOCAL_EXPERTS = 4
NUM_TOPK = 4
MAX_TOKENS = 64          # num_max_dispatch_tokens_per_rank
GROUP = 128


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    use_fp8: bool = True
    round_scale: bool = False
    use_ue8m0: bool = False
    hook: bool = False         # return_recv_hook on both calls
    async_finish: bool = False
    zero_copy: bool = False    # combine reads get_next_low_latency_combine_buffer
    out: bool = False          # combine writes a caller-given out=
    logfmt: bool = False
    empty_rank: bool = False   # rank 1 sends no tokens; some tokens go nowhere
    duplicates: bool = False   # some tokens name one expert in two slots
    int32_idx: bool = False    # topk_idx as int32 instead of topk_idx_t
    stats: bool = False        # the three optional statistics tensors

    def __str__(self):
        return self.name


CASES = [
    Case("bf16", use_fp8=False),
    Case("fp8"),
    Case("fp8_round_scale", round_scale=True),
    Case("fp8_ue8m0", round_scale=True, use_ue8m0=True),
    Case("bf16_hook_out", use_fp8=False, hook=True, out=True),
    Case("fp8_async_stats", async_finish=True, stats=True),
    Case("bf16_zero_copy", use_fp8=False, zero_copy=True),
    Case("fp8_logfmt_hook", logfmt=True, hook=True),
    Case("bf16_empty_rank_duplicates_int32", use_fp8=False, empty_rank=True, duplicates=True, int32_idx=True,
         stats=True),
]


def num_experts(num_ranks):
    return NUM_LOCAL_EXPERTS * num_ranks


def num_tokens(case, rank):
    return 0 if case.empty_rank and rank == 1 else MAX_TOKENS - (7 * rank) % MAX_TOKENS


def expert_factor(expert):
    """The test expert multiplies its rows by this (exact in float32 and bf16)."""
    return 0.5 + 0.25 * (expert % 7)


def make_inputs(case, num_ranks, rank, seed=0):
    """CPU tensors of one rank: x bf16 [tokens, HIDDEN], topk_idx [tokens, NUM_TOPK], weights fp32."""
    gen = torch.Generator().manual_seed(7919 * num_ranks + 31 * rank + 101 * seed + len(case.name))
    tokens, experts = num_tokens(case, rank), num_experts(num_ranks)
    x = torch.randn(tokens, HIDDEN, generator=gen)
    x *= torch.exp2(torch.randint(-6, 7, (tokens, HIDDEN // GROUP), generator=gen).float()).repeat_interleave(GROUP, 1)
    if tokens > 3:
        x[1] = 0.0                     # amax floor (1e-4)
        x[2, :GROUP] = 1e-3            # one outlier in a group: zero and subnormal e4m3 codes
        x[2, 0] = 1000.0
        x[3, GROUP:2 * GROUP] *= 300   # a large one
    x = x.to(torch.bfloat16)
    topk = min(NUM_TOPK, experts)
    ranked = torch.rand(tokens, experts, generator=gen).argsort(dim=1)[:, :topk]
    idx = torch.full((tokens, NUM_TOPK), -1, dtype=torch.int64)
    idx[:, :topk] = ranked
    dropped = torch.rand(tokens, NUM_TOPK, generator=gen) < (0.3 if case.empty_rank else 0.1)
    if case.empty_rank and tokens > 0:
        dropped[: tokens // 8] = True  # tokens routed nowhere
    idx = torch.where(dropped, torch.full_like(idx, -1), idx)
    if case.duplicates and tokens > 0:
        rows = torch.arange(0, tokens, 5)
        idx[rows, NUM_TOPK - 1] = idx[rows, 0]  # the same expert in slots 0 and 3 (or two holes)
    weights = torch.rand(tokens, NUM_TOPK, generator=gen) + 0.1
    return {"x": x, "topk_idx": idx.to(torch.int32) if case.int32_idx else idx, "topk_weights": weights}


def to_device(inputs, device):
    return {k: v.to(device) for k, v in inputs.items()}


# ---- the rank's calls ----------------------------------------------------------------


def scales_to_float(scales, case):
    """Per-group scale_inv as float [.., S_groups] from fp32 scales or packed UE8M0 int32 words."""
    if not case.use_ue8m0:
        return scales.float()
    words = scales.contiguous()
    shifts = torch.arange(4, device=words.device, dtype=torch.int32) * 8
    exponents = (words.unsqueeze(-1) >> shifts) & 0xff                   # [.., W, 4]
    exponents = exponents.flatten(-2)[..., : HIDDEN // GROUP]
    return (exponents.to(torch.int32) << 23).view(torch.float32)


def dequantize(recv_x, scales, case):
    if not case.use_fp8:
        return recv_x.float()
    return recv_x.float() * scales_to_float(scales, case).repeat_interleave(GROUP, dim=-1)


def expert_outputs(recv_x, scales, case, rank):
    """The test expert: local expert e of this rank scales its rows by expert_factor(global id)."""
    experts = torch.arange(recv_x.size(0), device=recv_x.device) + rank * NUM_LOCAL_EXPERTS
    factor = 0.5 + 0.25 * (experts % 7).float()  # expert_factor, computed on the device (graph-capturable)
    return (dequantize(recv_x, scales, case) * factor[:, None, None]).to(torch.bfloat16)


def run_rank(buffer, case, inputs, rank, num_ranks):
    """One rank's dispatch, expert, combine; returns what the checks read."""
    out = {}
    x, topk_idx, topk_weights = inputs["x"], inputs["topk_idx"], inputs["topk_weights"]
    stats = {}
    if case.stats:
        stats["cumulative_local_expert_recv_stats"] = torch.arange(
            NUM_LOCAL_EXPERTS, dtype=torch.int32, device=x.device) * 1000
        stats["dispatch_wait_recv_cost_stats"] = torch.zeros(num_ranks, dtype=torch.int64, device=x.device)
        out["stats_before"] = stats["cumulative_local_expert_recv_stats"].clone()
    recv, recv_count, handle, event, hook = buffer.low_latency_dispatch(
        x, topk_idx, MAX_TOKENS, num_experts(num_ranks), **stats, use_fp8=case.use_fp8,
        round_scale=case.round_scale, use_ue8m0=case.use_ue8m0, async_finish=case.async_finish,
        return_recv_hook=case.hook)
    if case.hook:
        assert callable(hook)
        hook()
    else:
        assert hook is None
    if case.async_finish:
        assert event.event is not None and event.extra_tensors
        event.current_stream_wait()
    recv_x, scales = recv if case.use_fp8 else (recv, None)
    y = expert_outputs(recv_x, scales, case, rank)
    combine_x = y
    if case.zero_copy:
        combine_x = buffer.get_next_low_latency_combine_buffer(handle)
        assert combine_x.shape == y.shape and combine_x.dtype == torch.bfloat16
        combine_x.copy_(y)
    given_out = torch.empty(x.size(0), HIDDEN, dtype=torch.bfloat16, device=x.device) if case.out else None
    combine_stats = {}
    if case.stats:
        combine_stats["combine_wait_recv_cost_stats"] = torch.zeros(num_ranks, dtype=torch.int64, device=x.device)
    combined, event, hook = buffer.low_latency_combine(
        combine_x, topk_idx, topk_weights, handle, use_logfmt=case.logfmt, zero_copy=case.zero_copy,
        async_finish=case.async_finish, return_recv_hook=case.hook, out=given_out, **combine_stats)
    if case.hook:
        hook()
    else:
        assert hook is None
    if case.async_finish:
        event.current_stream_wait()
    if case.out:
        assert combined is given_out
    out.update(recv_x=recv_x, scales=scales, recv_count=recv_count, handle=handle, combined=combined,
               buffer_id=buffer.runtime.id, **stats, **combine_stats)
    return out


# ---- torch reference ---------------------------------------------------------------

_INV_448 = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(448.0, dtype=torch.float32)


def cast_fp8_per_128(x, round_scale):
    """(e4m3 codes as uint8 [n, H], scale_inv fp32 [n, H/128], UE8M0 int32 [n, ceil(H/512)])."""
    n = x.size(0)
    groups = x.float().view(n, x.size(1) // GROUP, GROUP)
    amax = groups.abs().amax(dim=-1).clamp_min(1e-4)
    if round_scale:
        bits = (amax * _INV_448).view(torch.int32)
        exponent = ((bits >> 23) & 0xff) - 127 + ((bits & 0x7fffff) != 0).to(torch.int32)
        scale = ((127 - exponent) << 23).view(torch.float32)
        scale_inv = ((127 + exponent) << 23).view(torch.float32)
    else:
        scale = torch.tensor(448.0) / amax
        scale_inv = amax * _INV_448
    q = (groups * scale[..., None]).view(n, -1).to(torch.float8_e4m3fn).view(torch.uint8)
    exponent_bytes = (scale_inv.view(torch.int32) >> 23) & 0xff
    num_words = -(-exponent_bytes.size(1) // 4)
    padded = torch.zeros(n, num_words * 4, dtype=torch.int64)
    padded[:, : exponent_bytes.size(1)] = exponent_bytes.to(torch.int64)
    words = (padded.view(n, num_words, 4) << torch.tensor([0, 8, 16, 24])).sum(-1)
    words = torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)
    return q, scale_inv, words


class Reference:
    """All ranks' rows in one table (global row = offset[rank] + token) and what each
    (owner rank, local expert) must receive and each home rank must get back."""

    def __init__(self, case, inputs, num_ranks):
        self.case, self.num_ranks = case, num_ranks
        self.tokens = [inp["x"].size(0) for inp in inputs]
        self.offsets = [sum(self.tokens[:r]) for r in range(num_ranks)]
        self.x = torch.cat([inp["x"] for inp in inputs])
        if case.use_fp8:
            self.q, self.scales, self.ue8m0 = cast_fp8_per_128(self.x, case.round_scale)
            self.deq = self.q.view(torch.float8_e4m3fn).float() * self.scales.repeat_interleave(GROUP, dim=1)
        else:
            self.deq = self.x.float()
        experts = num_experts(num_ranks)
        self.rows = [[[] for _ in range(NUM_LOCAL_EXPERTS)] for _ in range(num_ranks)]
        for src, inp in enumerate(inputs):
            for t, k in (inp["topk_idx"] >= 0).nonzero().tolist():
                expert = int(inp["topk_idx"][t, k])
                assert expert < experts
                self.rows[expert // NUM_LOCAL_EXPERTS][expert % NUM_LOCAL_EXPERTS].append(self.offsets[src] + t)
        self.combined = [self._combine(inp, home) for home, inp in enumerate(inputs)]

    def _combine(self, inp, home):
        """(want fp64 [tokens, H], error bound [tokens, H])."""
        tokens = inp["x"].size(0)
        want = torch.zeros(tokens, HIDDEN, dtype=torch.float64)
        magnitude = torch.zeros(tokens, HIDDEN, dtype=torch.float64)
        logfmt = torch.zeros(tokens, HIDDEN, dtype=torch.float64)
        for k in range(NUM_TOPK):
            expert = inp["topk_idx"][:, k].to(torch.int64)
            valid = expert >= 0
            factor = torch.tensor([expert_factor(int(e)) for e in expert.tolist()])
            rows = self.offsets[home] + torch.arange(tokens)
            y = (self.deq[rows] * factor[:, None].float()).to(torch.bfloat16).double()
            y = torch.where(valid[:, None], y, torch.zeros_like(y))
            w = inp["topk_weights"][:, k].double()[:, None]
            want += w * y
            magnitude += (w * y).abs()
            group_max = y.abs().view(tokens, HIDDEN // GROUP, GROUP).amax(-1).repeat_interleave(GROUP, dim=1)
            logfmt += w.abs() * (0.07 * y.abs() + group_max * 2.0 ** -20)
        ulp = torch.exp2(torch.floor(torch.log2(want.abs().clamp_min(2.0 ** -126))) - 7)
        bound = ulp + 1e-5 * magnitude + (logfmt if self.case.logfmt else 0)
        return want, bound


# ---- checks ------------------------------------------------------------------------


def _decode_layout_range(layout_range, count, owner, expert):
    """Source rank of each of the count valid rows, from layout_range (checked to tile [0, count))."""
    src_rank = torch.full((count,), -1, dtype=torch.int64)
    pieces = []
    for src, value in enumerate(layout_range.tolist()):
        n, begin = value >> 32, value & 0xFFFFFFFF
        if n:
            pieces.append((begin, n, src))
            src_rank[begin:begin + n] = src
    pieces.sort()
    cursor = 0
    for begin, n, src in pieces:
        assert begin == cursor, f"rank {owner} expert {expert}: layout_range pieces {pieces} do not tile [0, {count})"
        cursor += n
    assert cursor == count, f"rank {owner} expert {expert}: layout_range counts sum to {cursor}, recv_count {count}"
    return src_rank


def assert_equal(name, got, want):
    if got.shape != want.shape or not bool((got == want).all()):
        bad = (got != want).nonzero()[:1].tolist() if got.shape == want.shape else "shape"
        raise AssertionError(f"{name}: got {tuple(got.shape)} != want {tuple(want.shape)}, first difference {bad}")


def check_rank(case, ref, rank, out):
    num_ranks, rows_per_expert = ref.num_ranks, ref.num_ranks * MAX_TOKENS
    recv_x, scales, recv_count, handle = out["recv_x"], out["scales"], out["recv_count"].cpu(), out["handle"]
    # Shapes, dtypes, strides (deep_ep's).
    assert recv_x.shape == (NUM_LOCAL_EXPERTS, rows_per_expert, HIDDEN)
    assert recv_x.dtype == (torch.float8_e4m3fn if case.use_fp8 else torch.bfloat16)
    assert recv_count.shape == (NUM_LOCAL_EXPERTS,) and recv_count.dtype == torch.int32
    if case.use_fp8:
        num_scales = HIDDEN // GROUP // 4 if case.use_ue8m0 else HIDDEN // GROUP
        assert scales.shape == (NUM_LOCAL_EXPERTS, rows_per_expert, num_scales)
        assert scales.dtype == (torch.int32 if case.use_ue8m0 else torch.float32)
        assert scales.stride() == (rows_per_expert * num_scales, 1, rows_per_expert), scales.stride()
    else:
        assert scales is None
    assert len(handle) == 5 and isinstance(handle, tuple)
    src_info, layout_range = handle[0].cpu(), handle[1].cpu()
    assert handle[2:] == (MAX_TOKENS, HIDDEN, num_experts(num_ranks))
    assert src_info.shape == (NUM_LOCAL_EXPERTS, rows_per_expert) and src_info.dtype == torch.int32
    assert layout_range.shape == (NUM_LOCAL_EXPERTS, num_ranks) and layout_range.dtype == torch.int64
    assert handle.combine_slots.shape == (MAX_TOKENS, NUM_TOPK) and handle.combine_slots.dtype == torch.int32
    assert handle.num_topk == NUM_TOPK and handle.num_tokens == ref.tokens[rank]
    assert handle.buffer_id == out["buffer_id"]

    recv_x_cpu = recv_x.cpu()
    scales_cpu = scales.cpu() if scales is not None else None
    for e in range(NUM_LOCAL_EXPERTS):
        want_rows = torch.tensor(sorted(ref.rows[rank][e]), dtype=torch.int64)
        count = int(recv_count[e])
        where = f"rank {rank} expert {e}"
        assert count == want_rows.numel(), f"{where}: recv_count {count}, want {want_rows.numel()}"
        src_rank = _decode_layout_range(layout_range[e], count, rank, e)
        src_token = src_info[e, :count].to(torch.int64)
        limits = torch.tensor(ref.tokens, dtype=torch.int64)[src_rank]
        assert bool(((src_token >= 0) & (src_token < limits)).all()), f"{where}: src_info out of range"
        got_rows = torch.tensor(ref.offsets, dtype=torch.int64)[src_rank] + src_token
        assert_equal(f"{where}: (source rank, token) multiset", got_rows.sort().values, want_rows)
        # Contents, keyed by the row's own source (the rows of one key are identical).
        if case.use_fp8:
            assert_equal(f"{where}: fp8 codes", recv_x_cpu[e, :count].view(torch.uint8), ref.q[got_rows])
            want_scales = ref.ue8m0[got_rows] if case.use_ue8m0 else ref.scales[got_rows]
            assert_equal(f"{where}: scales", scales_cpu[e, :count], want_scales)
            got_deq = dequantize(recv_x_cpu[e, :count], scales_cpu[e, :count], case)
            x = ref.x[got_rows].float()
            group_max = x.abs().view(count, HIDDEN // GROUP, GROUP).amax(-1).clamp_min(1e-4).repeat_interleave(GROUP, 1)
            assert bool(((got_deq - x).abs() <= x.abs() / 8 + group_max * 2.0 ** -8).all()), f"{where}: dequant"
        else:
            assert_equal(f"{where}: bf16 rows", recv_x_cpu[e, :count].view(torch.int16),
                         ref.x[got_rows].view(torch.int16))

    if case.stats:
        assert_equal("cumulative_local_expert_recv_stats", out["cumulative_local_expert_recv_stats"].cpu(),
                     out["stats_before"].cpu() + recv_count)
        for name in ("dispatch_wait_recv_cost_stats", "combine_wait_recv_cost_stats"):
            stat = out[name].cpu()
            assert stat.shape == (num_ranks,) and stat.dtype == torch.int64 and bool((stat >= 0).all()), name

    want, bound = ref.combined[rank]
    combined = out["combined"].cpu()
    assert combined.shape == (ref.tokens[rank], HIDDEN) and combined.dtype == torch.bfloat16
    error = (combined.double() - want).abs()
    if not bool((error <= bound).all()):
        worst = (error - bound).argmax().item()
        raise AssertionError(f"rank {rank} combined: {int((error > bound).sum())} elements off; worst at flat "
                             f"{worst}: got {combined.flatten()[worst].item()} want {want.flatten()[worst].item()} "
                             f"bound {bound.flatten()[worst].item()}")
