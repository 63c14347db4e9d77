"""GPU tests of moe_ep's deep_ep-compatible low-latency API (low_latency_dispatch /
low_latency_combine and friends) against the torch reference in low_latency_scenario.py.
In-process: 1/2/4 ranks on one GPU, one thread and one stream per rank, LL buffers built
as deep_ep users build them (num_nvl_bytes=0, get_low_latency_rdma_size_hint). Under
torchrun (torch.distributed, N>1 processes, one GPU each): the same cases, one rank per
process. Each path skips with its reason elsewhere."""
import os

os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")  # before CUDA starts (see conftest.py)

import threading  # noqa: E402

import pytest  # noqa: E402

import moe_ep  # noqa: E402  (before torch touches CUDA)

torch = pytest.importorskip("torch", reason="the GPU tests need PyTorch")

from low_latency_scenario import (CASES, HIDDEN, MAX_TOKENS, NUM_LOCAL_EXPERTS, Case,  # noqa: E402
                                  Reference, check_rank, expert_outputs, make_inputs, num_experts, run_rank,
                                  to_device)
from moe_ep import testing  # noqa: E402
from torchrun_group import UNDER_TORCHRUN, torchrun_world  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible)")
in_process_only = pytest.mark.skipif(UNDER_TORCHRUN, reason="under torchrun the one-rank-per-process tests run")


def rdma_bytes(num_ranks):
    return moe_ep.Buffer.get_low_latency_rdma_size_hint(MAX_TOKENS, HIDDEN, num_ranks, num_experts(num_ranks))


# ---- in-process ranks on one GPU -----------------------------------------------------

_clusters = {}


@pytest.fixture(scope="module")
def clusters():
    yield _clusters
    for cluster in _clusters.values():
        cluster.destroy()
    _clusters.clear()


def _cluster(clusters, num_ranks, enable_shrink=False, num_rdma_bytes=None, low_latency_mode=True, num_nvl_bytes=0,
             tag=""):
    key = (num_ranks, enable_shrink, num_rdma_bytes, low_latency_mode, num_nvl_bytes, tag)
    if key not in clusters:
        clusters[key] = testing.InProcessRanks(
            num_ranks, num_nvl_bytes, device=0, warm_bytes=64 << 20,
            num_rdma_bytes=rdma_bytes(num_ranks) if num_rdma_bytes is None else num_rdma_bytes,
            low_latency_mode=low_latency_mode, enable_shrink=enable_shrink)
    return clusters[key]


def _scenario(case, num_ranks, device, seed=0):
    inputs = [make_inputs(case, num_ranks, r, seed) for r in range(num_ranks)]
    return [to_device(inp, device) for inp in inputs], Reference(case, inputs, num_ranks)


def _run_case(cluster, case, num_ranks):
    device_inputs, ref = _scenario(case, num_ranks, cluster.device)
    torch.cuda.synchronize()  # inputs ready before any rank starts (no collective in flight yet)
    outputs = cluster.run(lambda rank, buffer: run_rank(buffer, case, device_inputs[rank], rank, num_ranks))
    for rank in range(num_ranks):
        check_rank(case, ref, rank, outputs[rank])


@in_process_only
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("num_ranks", [1, 2, 4])
def test_in_process(clusters, num_ranks, case):
    _run_case(_cluster(clusters, num_ranks), case, num_ranks)


@in_process_only
@pytest.mark.parametrize("case", [c for c in CASES if not c.duplicates], ids=str)
@pytest.mark.parametrize("num_ranks,ranks_per_node,allow_nvlink", [(4, 2, True), (2, 2, False)],
                         ids=["2x2", "1x2_all_rdma"])
def test_emulated_nodes(num_ranks, ranks_per_node, allow_nvlink, case):
    """Peers on other pretend nodes (or all, without NVLink) go through the emulated RDMA
    transport; results are those of one node. Sized with the hint's node-aware form."""
    hint = moe_ep.Buffer.get_low_latency_rdma_size_hint(MAX_TOKENS, HIDDEN, num_ranks, num_experts(num_ranks),
                                                        ranks_per_node=ranks_per_node,
                                                        allow_nvlink_for_low_latency_mode=allow_nvlink)
    assert hint > rdma_bytes(num_ranks)  # the mirror slots
    cluster = testing.InProcessRanks(num_ranks, 0, device=0, warm_bytes=64 << 20, num_rdma_bytes=hint,
                                     low_latency_mode=True, emulated_ranks_per_node=ranks_per_node,
                                     allow_nvlink_for_low_latency_mode=allow_nvlink)
    try:
        _run_case(cluster, case, num_ranks)
    finally:
        cluster.destroy()


@in_process_only
def test_two_batches_in_flight_with_hooks(clusters):
    """deep_ep's two-micro-batch overlap: two dispatches (then two combines) await their hooks
    at once; a third call before the first hook is refused; results are as without hooks."""
    num_ranks, case = 2, Case("two_batches", hook=True)
    cluster = _cluster(clusters, num_ranks)
    (inputs_a, ref_a), (inputs_b, ref_b) = (_scenario(case, num_ranks, cluster.device, seed) for seed in (1, 2))
    torch.cuda.synchronize()
    experts = num_experts(num_ranks)

    def body(rank, buffer):
        a, b = inputs_a[rank], inputs_b[rank]
        dispatched = []
        for inp in (a, b):
            dispatched.append(buffer.low_latency_dispatch(inp["x"], inp["topk_idx"], MAX_TOKENS, experts,
                                                          return_recv_hook=True))
        with pytest.raises(ValueError):
            buffer.low_latency_dispatch(a["x"], a["topk_idx"], MAX_TOKENS, experts, return_recv_hook=True)
        for d in dispatched:
            d[4]()
        combined = []
        for inp, (recv, _, handle, _, _) in zip((a, b), dispatched):
            y = expert_outputs(recv[0], recv[1], case, rank)
            combined.append(buffer.low_latency_combine(y, inp["topk_idx"], inp["topk_weights"], handle,
                                                       return_recv_hook=True))
        for c in combined:
            c[2]()
        return [dict(recv_x=d[0][0], scales=d[0][1], recv_count=d[1], handle=d[2], combined=c[0],
                     buffer_id=buffer.runtime.id) for d, c in zip(dispatched, combined)]

    outputs = cluster.run(body)
    for rank in range(num_ranks):
        check_rank(case, ref_a, rank, outputs[rank][0])
        check_rank(case, ref_b, rank, outputs[rank][1])


@in_process_only
@pytest.mark.parametrize("use_fp8", [False, True], ids=["bf16", "fp8"])
def test_cuda_graph_replays_with_new_inputs(clusters, use_fp8):
    """Dispatch + expert + combine captured once per rank, replayed twice (the second time
    with new x, topk_idx and weights copied into the captured inputs)."""
    num_ranks, case = 2, Case("graph", use_fp8=use_fp8)
    cluster = _cluster(clusters, num_ranks)
    static, ref_first = _scenario(case, num_ranks, cluster.device, seed=3)
    fresh, ref_second = _scenario(case, num_ranks, cluster.device, seed=4)
    torch.cuda.synchronize()
    _run_case(cluster, case, num_ranks)  # warm up (kernels loaded, allocator blocks cached)
    graphs, outputs, capture_lock = [None] * num_ranks, [None] * num_ranks, threading.Lock()

    def capture(rank, buffer):
        with capture_lock:  # one capture at a time: torch.cuda.graph synchronizes the device on entry
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=torch.cuda.current_stream(), capture_error_mode="thread_local"):
                outputs[rank] = run_rank(buffer, case, static[rank], rank, num_ranks)
            graphs[rank] = graph

    cluster.run(capture)
    for ref, refill in ((ref_first, False), (ref_second, True)):
        if refill:
            for rank in range(num_ranks):
                for name, tensor in static[rank].items():
                    tensor.copy_(fresh[rank][name])
            torch.cuda.synchronize()
        cluster.run(lambda rank, buffer: graphs[rank].replay())
        for rank in range(num_ranks):
            check_rank(case, ref, rank, outputs[rank])
    del graphs[:], outputs[:]
    # torch.cuda.graph emptied the allocator's cache: warm it again for the tests that follow.
    cluster.run(lambda rank, buffer: cluster._warm_allocator(buffer, 64 << 20))


@in_process_only
def test_masking_api(clusters):
    num_ranks = 2
    cluster = _cluster(clusters, num_ranks, enable_shrink=True)

    def body(rank, buffer):
        peer = 1 - rank
        status = torch.full((num_ranks,), 7, dtype=torch.int32, device=cluster.device)

        def query():
            buffer.low_latency_query_mask_buffer(status)
            return status.tolist()  # waits for this rank's stream only

        assert query() == [0, 0]
        buffer.low_latency_update_mask_buffer(peer, True)
        assert query() == [int(r == peer) for r in range(num_ranks)]
        buffer.low_latency_update_mask_buffer(peer, False)
        assert query() == [0, 0]
        buffer.low_latency_update_mask_buffer(peer)  # deep_ep's default: mask=False
        assert query() == [0, 0]
        buffer.low_latency_update_mask_buffer(peer, True)
        buffer.low_latency_clean_mask_buffer()
        assert query() == [0, 0]

    cluster.run(body)
    _run_case(cluster, CASES[1], num_ranks)  # nobody masked: the full exchange
    plain = _cluster(clusters, num_ranks)
    with pytest.raises(ValueError, match="enable_shrink"):
        plain.buffers[0].low_latency_query_mask_buffer(torch.zeros(num_ranks, dtype=torch.int32, device=plain.device))


@in_process_only
def test_clean_low_latency_buffer(clusters):
    num_ranks = 2
    cluster = _cluster(clusters, num_ranks)
    cluster.run(lambda rank, buffer: buffer.clean_low_latency_buffer(MAX_TOKENS, HIDDEN, num_experts(num_ranks)))
    _run_case(cluster, CASES[0], num_ranks)


@in_process_only
def test_bad_input_raises_value_error_and_buffer_stays_usable(clusters):
    num_ranks = 2
    cluster = _cluster(clusters, num_ranks)
    case = CASES[0]
    inputs, _ = _scenario(case, num_ranks, cluster.device)
    torch.cuda.synchronize()
    experts = num_experts(num_ranks)

    def bad_dispatch(rank, buffer):
        x, idx = inputs[rank]["x"], inputs[rank]["topk_idx"]

        def dispatch(x=x, idx=idx, max_tokens=MAX_TOKENS, num_experts=experts, **kwargs):
            return buffer.low_latency_dispatch(x, idx, max_tokens, num_experts, **kwargs)

        with pytest.raises(ValueError, match="x"):
            dispatch(x=x.float())                                   # not bf16
        with pytest.raises(ValueError, match="hidden|128"):
            dispatch(x=x[:, : HIDDEN - 64].contiguous())            # hidden % 128 != 0
        with pytest.raises(ValueError, match="x"):
            dispatch(x=x[0])                                        # not 2-D
        misaligned = torch.empty(x.numel() + 8, dtype=x.dtype, device=x.device)[1:1 + x.numel()].view_as(x)
        with pytest.raises(ValueError, match="16-byte aligned"):
            dispatch(x=misaligned)                                  # one element past a 16-byte boundary
        with pytest.raises(ValueError, match="topk_idx"):
            dispatch(idx=idx[:-1])                                  # rows differ from x
        with pytest.raises(ValueError, match="topk_idx"):
            dispatch(idx=idx.float())                               # not an integer type
        with pytest.raises(ValueError, match="top-?k|topk"):
            dispatch(idx=torch.zeros(x.size(0), 17, dtype=torch.int64, device=x.device))  # top-k > 16
        with pytest.raises(ValueError, match="round_scale"):
            dispatch(use_ue8m0=True)                                # UE8M0 needs round_scale
        with pytest.raises(ValueError, match="num_experts"):
            dispatch(num_experts=experts + 1)
        with pytest.raises(ValueError, match="num_max_dispatch_tokens_per_rank"):
            dispatch(max_tokens=moe_ep._C.MAX_LOW_LATENCY_TOKENS + 1)
        with pytest.raises(ValueError, match="num_max_dispatch_tokens_per_rank"):
            dispatch(max_tokens=0)
        with pytest.raises(ValueError):
            dispatch(max_tokens=8)                                  # more tokens than slots
        with pytest.raises(ValueError, match="async_finish"):
            dispatch(async_finish=True, return_recv_hook=True)
        with pytest.raises(ValueError, match="cumulative_local_expert_recv_stats"):
            dispatch(cumulative_local_expert_recv_stats=torch.zeros(NUM_LOCAL_EXPERTS, dtype=torch.int64,
                                                                    device=x.device))

    cluster.run(bad_dispatch)

    def bad_combine(rank, buffer):
        inp = inputs[rank]
        recv, _, handle, _, _ = buffer.low_latency_dispatch(inp["x"], inp["topk_idx"], MAX_TOKENS, experts,
                                                             use_fp8=False)
        y = expert_outputs(recv, None, case, rank)
        idx, weights = inp["topk_idx"], inp["topk_weights"]

        def combine(x=y, weights=weights, handle=handle, **kwargs):
            return buffer.low_latency_combine(x, idx, weights, handle, **kwargs)

        with pytest.raises(ValueError):
            combine(x=y[..., : HIDDEN - 128].contiguous())          # hidden differs from the dispatch
        with pytest.raises(ValueError):
            combine(x=y.float())                                    # not bf16
        with pytest.raises(ValueError):
            combine(weights=weights.to(torch.int32))
        with pytest.raises(ValueError):
            combine(out=torch.empty(idx.size(0), HIDDEN, dtype=torch.float32, device=y.device))
        with pytest.raises(ValueError):
            combine(out=torch.empty(idx.size(0) + 1, HIDDEN, dtype=torch.bfloat16, device=y.device))
        with pytest.raises(ValueError, match="not made by moe_ep"):
            combine(handle=(handle[0].clone(), handle[1], MAX_TOKENS, HIDDEN, experts))
        with pytest.raises(ValueError, match="5-tuple"):
            combine(handle=handle[:4])
        with pytest.raises(ValueError, match="async_finish"):
            combine(async_finish=True, return_recv_hook=True)
        combined, _, _ = combine(handle=tuple(handle))  # a repacked plain tuple is accepted
        return combined

    cluster.run(bad_combine)
    _run_case(cluster, CASES[1], num_ranks)


@in_process_only
def test_handle_checks_and_buffer_size(clusters):
    """Single-rank buffers: a handle used on another buffer or after reset(), a buffer whose
    num_rdma_bytes is too small, and low-latency calls on an intranode buffer are refused."""
    case = CASES[0]
    first, second = _cluster(clusters, 1), _cluster(clusters, 1, tag="second")
    (inputs,), _ = _scenario(case, 1, first.device)
    x, idx, weights = inputs["x"], inputs["topk_idx"], inputs["topk_weights"]
    torch.cuda.synchronize()

    def dispatch(buffer):
        recv, _, handle, _, _ = buffer.low_latency_dispatch(x, idx, MAX_TOKENS, num_experts(1), use_fp8=False)
        return expert_outputs(recv, None, case, 0), handle

    def body(rank, buffer):
        y, handle = dispatch(buffer)
        with pytest.raises(ValueError):
            second.buffers[0].low_latency_combine(y, idx, weights, handle)   # made by another buffer
        with pytest.raises(ValueError):
            second.buffers[0].get_next_low_latency_combine_buffer(handle)
        buffer.low_latency_combine(y, idx, weights, handle)
        y, handle = dispatch(buffer)
        buffer.low_latency_combine(y, idx, weights, handle)
        buffer.reset()
        with pytest.raises(ValueError):
            buffer.low_latency_combine(y, idx, weights, handle)              # from before reset()

    first.run(body)
    _run_case(first, case, 1)

    def refused(match=None):
        def body(rank, buffer):
            with pytest.raises(ValueError, match=match):
                dispatch(buffer)
        return body

    _cluster(clusters, 1, num_rdma_bytes=64 << 10).run(refused("bytes"))  # names needed and available bytes
    _cluster(clusters, 1, low_latency_mode=False, num_rdma_bytes=0,
             num_nvl_bytes=moe_ep.Buffer.intranode_size_hint(MAX_TOKENS, 1)).run(refused())


@in_process_only
def test_zero_copy_buffer_is_a_view_of_the_buffer(clusters):
    """get_next_low_latency_combine_buffer: deep_ep's shape, bf16, on the buffer's device, and
    it keeps the C++ buffer alive after destroy() (the memory it views belongs to it)."""
    cluster = _cluster(clusters, 1, tag="zero_copy")
    (inputs,), _ = _scenario(CASES[0], 1, cluster.device)
    torch.cuda.synchronize()

    def body(rank, buffer):
        inp = inputs
        recv, _, handle, _, _ = buffer.low_latency_dispatch(inp["x"], inp["topk_idx"], MAX_TOKENS, num_experts(1),
                                                             use_fp8=False)
        view = buffer.get_next_low_latency_combine_buffer(handle)
        assert view.shape == (NUM_LOCAL_EXPERTS, MAX_TOKENS, HIDDEN) and view.dtype == torch.bfloat16
        assert view.device == recv.device and view.is_contiguous()
        view.copy_(recv)
        combined, _, _ = buffer.low_latency_combine(view, inp["topk_idx"], inp["topk_weights"], handle,
                                                    zero_copy=True)
        return view, combined

    view, _ = cluster.run(body)[0]
    cluster.destroy()  # (again at teardown: destroy() is idempotent)
    view.zero_()  # still valid memory: the tensor holds the C++ buffer
    torch.cuda.synchronize()


# ---- one rank per process (torchrun) -------------------------------------------------


@pytest.fixture(scope="module")
def process_buffer():
    dist = torch.distributed
    world = torchrun_world(torch, "tests/python/test_low_latency.py")
    # As deep_ep's low-latency users build it: no NVL bytes, the RDMA size hint, low_latency_mode.
    buffer = moe_ep.Buffer(dist.group.WORLD, num_rdma_bytes=rdma_bytes(world), low_latency_mode=True,
                           num_qps_per_rank=NUM_LOCAL_EXPERTS)
    yield buffer
    torch.cuda.synchronize()
    dist.barrier()
    buffer.destroy()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_one_rank_per_process(process_buffer, case):
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    inputs = [make_inputs(case, world, r) for r in range(world)]
    ref = Reference(case, inputs, world)
    out = run_rank(process_buffer, case, to_device(inputs[rank], torch.cuda.current_device()), rank, world)
    torch.cuda.synchronize()
    check_rank(case, ref, rank, out)

