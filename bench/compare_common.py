"""Shared pieces of bench/nccl_compare.py: the standard problems (BENCHMARKS.md), their
deterministic per-rank inputs (any rank can rebuild any other rank's, for the reference),
per-iteration timers whose times are maxed over ranks, and checks that every rank settles
together (a failed check on one rank stops all ranks instead of hanging them)."""
import contextlib
import dataclasses
import statistics
import time

SEED = 1234
INPUT_SETS = 2  # rotated so that L2 does not hold the inputs


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    tokens: int          # per rank
    hidden: int
    topk: int
    experts: int
    fp8: bool            # FP8 dispatch payload (ht: e4m3 + fp32 scales given; ll: cast in the kernel)
    low_latency: bool
    node_per_rank: bool = False  # ht: every rank its own emulated node (the internode kernels)

    def shrunk(self):
        """The same shape of problem, small enough for the CPU dry run."""
        return dataclasses.replace(self, tokens=16 if self.low_latency else 64, hidden=256, experts=16, topk=4)


PROBLEMS = {p.name: p for p in (
    Problem("ht-v3", 4096, 7168, 8, 256, fp8=True, low_latency=False),
    Problem("ht-v3-bf16", 4096, 7168, 8, 256, fp8=False, low_latency=False),
    Problem("ht-v3-node-per-rank", 4096, 7168, 8, 256, fp8=True, low_latency=False, node_per_rank=True),
    Problem("ll-v3", 128, 7168, 8, 256, fp8=True, low_latency=True),
    # DeepEP V1's low-latency anchors in BENCHMARKS.md: ll-v3 with 288 experts.
    Problem("ll-v3-e288", 128, 7168, 8, 288, fp8=True, low_latency=True),
)}


def expert_factor(rank):
    """The 'expert' of the benchmark: every received row is multiplied by this (exact in fp32)."""
    return 1.0 + 0.25 * rank


def make_inputs(torch, problem, rank, device, drop):
    """Router scores abs(randn) + 1, top-k of them (near-uniform experts), `drop` of the slots set
    to -1; weights rand + 0.1; INPUT_SETS payloads randn + 0.5 (never zeros). HT FP8: (e4m3, fp32
    scales [T, hidden/128]); otherwise BF16."""
    T, H, E, K = problem.tokens, problem.hidden, problem.experts, problem.topk
    gen = torch.Generator(device=device).manual_seed(SEED + 7919 * rank)
    scores = torch.randn(T, E, device=device, generator=gen).abs() + 1
    topk_idx = scores.topk(K, dim=1).indices.to(torch.int64)
    if drop > 0:
        topk_idx = topk_idx.masked_fill(torch.rand(T, K, device=device, generator=gen) < drop, -1)
    weights = torch.rand(T, K, device=device, generator=gen) + 0.1
    sets = []
    for _ in range(INPUT_SETS):
        x = torch.randn(T, H, device=device, generator=gen) + 0.5
        if problem.fp8 and not problem.low_latency:
            scales = torch.rand(T, H // 128, device=device, generator=gen) + 0.5
            sets.append((x.to(torch.float8_e4m3fn), scales))
        else:
            sets.append(x.to(torch.bfloat16))
    return {"topk_idx": topk_idx, "topk_weights": weights, "x": sets}


def dequantize(x, scales):
    """fp32 values of FP8 rows with one scale per 128 channels (any leading dims)."""
    return x.float() * scales.float().repeat_interleave(128, dim=-1)


class Timer:
    """Named regions, one time per call: CUDA events on the current stream (GPU) or wall time (CPU)."""

    def __init__(self, torch, on_gpu):
        self.torch, self.on_gpu, self.records = torch, on_gpu, {}

    @contextlib.contextmanager
    def __call__(self, name):
        if self.on_gpu:
            start, end = (self.torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            yield
            end.record()
            self.records.setdefault(name, []).append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.records.setdefault(name, []).append(time.perf_counter() - t0)

    def times_us(self, name, skip):
        """This rank's times of `name` in us, the first `skip` (warm-up) dropped; call after a sync."""
        rows = self.records.get(name, [])[skip:]
        if self.on_gpu:
            return [start.elapsed_time(end) * 1e3 for start, end in rows]
        return [t * 1e6 for t in rows]


def max_over_ranks(torch, dist, values, device):
    """Element-wise maximum over ranks (per iteration: the slowest rank)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def mean_over_ranks(torch, dist, value, device):
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def summarize(times_us):
    ordered = sorted(times_us)

    def pick(q):
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"median_us": statistics.median(ordered), "p10_us": pick(0.1), "p99_us": pick(0.99),
            "iterations": len(ordered)}


_SAME_SIZE_INT = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


class Checks:
    """Collects failed checks of one rank; settle() makes every rank agree and stops them all."""

    def __init__(self, torch, rank):
        self.torch, self.rank, self.failures, self.count = torch, rank, [], 0

    def bits(self, t):
        return t.contiguous().view(getattr(self.torch, _SAME_SIZE_INT[t.element_size()]))

    def equal(self, name, got, want):
        self.count += 1
        if tuple(got.shape) != tuple(want.shape):
            self.failures.append(f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
        elif got.dtype != want.dtype:
            self.failures.append(f"{name}: dtype {got.dtype} != {want.dtype}")
        elif not bool((self.bits(got) == self.bits(want)).all()):
            bad = (self.bits(got) != self.bits(want)).nonzero()
            self.failures.append(f"{name}: {bad.size(0)} elements differ, first at {bad[0].tolist()}")

    def close(self, name, got, want, tol):
        """|got - want| <= tol element-wise (fp32 comparison)."""
        self.count += 1
        if tuple(got.shape) != tuple(want.shape):
            self.failures.append(f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
            return
        error = (got.float() - want.float()).abs()
        bad = error > tol
        if bool(bad.any()):
            first = bad.nonzero()[0].tolist()
            self.failures.append(f"{name}: {int(bad.sum())} elements off, first at {first}: got "
                                 f"{got.float()[tuple(first)].item()} want {want.float()[tuple(first)].item()}")

    def fail(self, message):
        self.count += 1
        self.failures.append(message)

    def settle(self, dist, device, label):
        """Collective: raises SystemExit on every rank when any rank had a failure."""
        bad = self.torch.tensor([len(self.failures)], dtype=self.torch.int64, device=device)
        dist.all_reduce(bad)
        for failure in self.failures:
            print(f"WRONG RESULT [{label}] rank {self.rank}: {failure}", flush=True)
        if bad.item():
            raise SystemExit(f"{label}: {bad.item()} failed check(s) over all ranks (see WRONG RESULT lines)")
        self.failures = []


@dataclasses.dataclass
class Context:
    """One rank's view of the run."""
    torch: object
    dist: object
    rank: int
    world: int
    device: object
    on_gpu: bool
    moe_ep: object       # the module, or None in the CPU dry run (our path needs a GPU)
    iterations: int
    warmup: int
    drop: float

    def align(self):
        """Lines up the ranks' streams before a timed region (a one-element all_reduce)."""
        self.dist.all_reduce(self.torch.ones(1, device=self.device))

    def sync(self):
        if self.on_gpu:
            self.torch.cuda.synchronize()
