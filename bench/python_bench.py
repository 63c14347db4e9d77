"""API-level (Python) benchmark of moe_ep's deep_ep-compatible intranode calls on N
in-process ranks sharing one GPU: ht-v3 (FP8 dispatch + scales, BF16 combine) and
optionally ht-v3-bf16, BENCHMARKS.md accounting. Per op all ranks start after a host
barrier; time = last end - first start over ranks (CUDA events on the ranks' streams),
median/p10/p99 over iterations, 2 input sets rotated; the last combine is checked exactly.
Usage: python bench/python_bench.py [--ranks 1,2,4,8] [--iterations 50] [--problems ht-v3,ht-v3-bf16]"""
import argparse
import json
import os
import statistics
import sys
import threading

os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")
import moe_ep  # noqa: E402  (before torch starts CUDA)
from moe_ep import testing  # noqa: E402

HIDDEN, TOPK, EXPERTS, INPUT_SETS, WARMUP = 7168, 8, 256, 2, 5


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def copy_bandwidth(torch):
    """Bytes/s of a 1 GiB device-to-device copy, counting bytes read plus written."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * src.numel() / statistics.median(times)


def make_rank_inputs(torch, fp8, num_tokens, drop, seed):
    """Router scores abs(randn) + 1, top-8 of them; `drop` of the slots set to -1."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    scores = torch.randn(num_tokens, EXPERTS, device="cuda", generator=gen).abs() + 1
    topk_idx = scores.topk(TOPK, dim=1).indices.to(torch.int64)
    if drop > 0:
        mask = torch.rand(num_tokens, TOPK, device="cuda", generator=gen) < drop
        topk_idx = topk_idx.masked_fill(mask, -1)
    weights = torch.rand(num_tokens, TOPK, device="cuda", generator=gen) + 0.1
    sets = []
    for _ in range(INPUT_SETS):
        x = torch.randn(num_tokens, HIDDEN, device="cuda", generator=gen) + 0.5
        if fp8:
            scales = torch.rand(num_tokens, HIDDEN // 128, device="cuda", generator=gen) + 0.5
            sets.append((x.to(torch.float8_e4m3fn), scales))
        else:
            sets.append(x.to(torch.bfloat16))
    return {"topk_idx": topk_idx, "topk_weights": weights, "x": sets}


def span_us(starts, ends):
    origin = starts[0]
    return max(origin.elapsed_time(e) for e in ends) * 1e3 - min(origin.elapsed_time(s) for s in starts) * 1e3


def bench_problem(torch, cluster, problem, num_tokens, iterations, drop, copy_bw):
    fp8 = problem == "ht-v3"
    R = cluster.num_ranks
    inputs = [make_rank_inputs(torch, fp8, num_tokens, drop, 7919 * r + 13) for r in range(R)]
    torch.cuda.synchronize()
    total = iterations + WARMUP + 1
    timing = torch.cuda.Event
    events = [[[timing(enable_timing=True) for _ in range(4)] for _ in range(R)] for _ in range(total)]
    barrier = threading.Barrier(R, timeout=120)  # a failed rank breaks it instead of hanging the rest
    stats = [{} for _ in range(R)]

    def rank_body(rank, buffer):
        inp = inputs[rank]
        layout = buffer.get_dispatch_layout(inp["topk_idx"], EXPERTS)
        for it in range(total):
            x = inp["x"][it % INPUT_SETS]
            ev = events[it][rank]
            barrier.wait()
            ev[0].record()
            recv, _, _, _, handle, _ = buffer.dispatch(
                x, num_tokens_per_rank=layout[0], is_token_in_rank=layout[3], num_tokens_per_expert=layout[2],
                topk_idx=inp["topk_idx"], topk_weights=inp["topk_weights"])
            ev[1].record()
            y = recv[0].to(torch.bfloat16) if fp8 else recv
            barrier.wait()
            ev[2].record()
            combined, _, _ = buffer.combine(y, handle)
            ev[3].record()
        stats[rank] = {"recv_rows": y.size(0), "combined": combined, "x": x, "is_token_in_rank": layout[3],
                       "num_sms": buffer._config("dispatch", None).num_sms}

    cluster.run(rank_body)
    rows = []
    for slot, name in ((0, "dispatch"), (2, "combine")):
        times = [span_us([events[it][r][slot] for r in range(R)], [events[it][r][slot + 1] for r in range(R)])
                 for it in range(WARMUP + 1, total)]
        cold = span_us([events[0][r][slot] for r in range(R)], [events[0][r][slot + 1] for r in range(R)])
        rows.append(row(name, problem, R, stats, times, cold, fp8, copy_bw, drop))
    torch.cuda.synchronize()  # the ranks' streams: their last combine must be complete before the check
    check(torch, stats, fp8)
    return rows


def row(name, problem, R, stats, times, cold, fp8, copy_bw, drop):
    recv = [s["recv_rows"] for s in stats]
    sent = [int(s["is_token_in_rank"].any(dim=1).sum()) for s in stats]
    tokens = [s["x"][0].size(0) if fp8 else s["x"].size(0) for s in stats]
    row_bytes = HIDDEN * (1 + 4 / 128) if (fp8 and name == "dispatch") else HIDDEN * 2
    median = statistics.median(times)
    if name == "dispatch":
        floor_bytes = sum((s + r) * row_bytes for s, r in zip(sent, recv))
    else:
        floor_bytes = sum(r * HIDDEN * 2 + t * HIDDEN * 2 for r, t in zip(recv, tokens))
    floor_us = floor_bytes / copy_bw * 1e6
    return {"bench": "py-" + name, "problem": problem + ("-drop10" if drop else ""), "num_ranks": R,
            "num_sms": stats[0]["num_sms"], "median_us": median, "p10_us": percentile(times, 0.1),
            "p99_us": percentile(times, 0.99), "cold_us": cold,
            "logical_GBps_per_rank": statistics.mean(recv) * row_bytes / median / 1e3,
            "floor_us": floor_us, "efficiency": floor_us / median}


def check(torch, stats, fp8):
    """combined == x (as bf16) times the number of ranks the token went to, exactly (values: the
    kernel's fp32 sum starts from +0, so a -0 input comes back as +0)."""
    for rank, s in enumerate(stats):
        x = (s["x"][0] if fp8 else s["x"]).float()
        want = (x * s["is_token_in_rank"].sum(dim=1, keepdim=True).float()).to(torch.bfloat16)
        got = s["combined"]
        if not torch.equal(got.float(), want.float()):
            bad = (got.float() != want.float()).nonzero()
            t, c = bad[0].tolist()
            raise SystemExit(f"WRONG RESULT: rank {rank} combine differs from the expected sum in {bad.size(0)} "
                             f"elements; first [{t}][{c}]: got {got[t, c].item()} want {want[t, c].item()} "
                             f"(x {x[t, c].item()}, ranks {int(s['is_token_in_rank'][t].sum())})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", default="1,2,4,8")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--problems", default="ht-v3")
    parser.add_argument("--json", default=os.path.join(os.environ["OUT"], "bench-python") if "OUT" in os.environ
                        else None, help="directory for one JSON file per (problem, ranks)")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("SKIPPED: PyTorch is not installed; the Python benchmark needs it")
        return 0
    if not torch.cuda.is_available():
        print("SKIPPED: no CUDA device; the Python benchmark needs a GPU")
        return 0
    copy_bw = copy_bandwidth(torch)
    gpu = torch.cuda.get_device_name(0)
    print(f"GPU: {gpu}, device-to-device copy {copy_bw / 1e9:.0f} GB/s (read+write); API-level times (Python)")
    results = []
    for R in (int(r) for r in args.ranks.split(",")):
        nvl_bytes = moe_ep.Buffer.intranode_size_hint(args.tokens, R)
        cluster = testing.InProcessRanks(R, nvl_bytes, warm_bytes=1 << 30)
        for problem in args.problems.split(","):
            for drop in (0.0, 0.1):
                results += bench_problem(torch, cluster, problem, args.tokens, args.iterations, drop, copy_bw)
        cluster.destroy()
    if args.json:
        write_json(args.json, gpu, copy_bw, results)
    print(f"\n{'bench':<12} {'problem':<17} {'ranks':>5} {'sms':>4} {'median_us':>10} {'p10_us':>9} {'p99_us':>9} "
          f"{'cold_us':>9} {'GB/s/rank':>10} {'floor_us':>9} {'eff':>5}")
    for r in results:
        print(f"{r['bench']:<12} {r['problem']:<17} {r['num_ranks']:>5} {r['num_sms']:>4} {r['median_us']:>10.1f} "
              f"{r['p10_us']:>9.1f} {r['p99_us']:>9.1f} {r['cold_us']:>9.1f} {r['logical_GBps_per_rank']:>10.1f} "
              f"{r['floor_us']:>9.1f} {r['efficiency']:>5.2f}")
    return 0


def write_json(directory, gpu, copy_bw, results):
    os.makedirs(directory, exist_ok=True)
    safe_gpu = "".join(c if c.isalnum() else "_" for c in gpu)
    for key in sorted({(r["problem"], r["num_ranks"]) for r in results}):
        rows = [r for r in results if (r["problem"], r["num_ranks"]) == key]
        with open(os.path.join(directory, f"{safe_gpu}-{key[0]}-{key[1]}.json"), "w") as out:
            json.dump({"gpu": gpu, "copy_bandwidth_Bps": copy_bw, "api": "python", "rows": rows}, out, indent=1)


if __name__ == "__main__":
    sys.exit(main())
