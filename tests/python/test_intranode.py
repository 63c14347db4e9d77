"""GPU tests of moe_ep's deep_ep-compatible high-throughput API against the torch reference
in intranode_scenario.py. In-process: 1/2/4/8 ranks on one GPU, one thread and one stream
per rank, and emulated nodes 2x2 and 2x1 (the internode path: num_rdma_bytes from the size
hint; internode_reference.py checks what it adds). Under torchrun (torch.distributed, N>1
processes, one GPU each): the same scenario, one rank per process. Each path skips with its
reason elsewhere."""
import os

os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")  # before CUDA starts (see conftest.py)

import pytest  # noqa: E402

import moe_ep  # noqa: E402  (before torch touches CUDA)

torch = pytest.importorskip("torch", reason="the GPU tests need PyTorch")

from internode_reference import check_internode  # noqa: E402
from intranode_scenario import (CASES, HIDDEN, MAX_TOKENS, NUM_TOPK, check_rank, make_inputs,  # noqa: E402
                                reference, run_rank, to_device)
from moe_ep import _C, testing  # noqa: E402
from torchrun_group import UNDER_TORCHRUN, torchrun_world  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible)")


def _scenario(case, num_ranks):
    inputs = [make_inputs(case, num_ranks, r) for r in range(num_ranks)]
    return inputs, reference(case, inputs, num_ranks)


# ---- in-process ranks on one GPU -----------------------------------------------------

_clusters = {}


@pytest.fixture(scope="module")
def clusters():
    yield _clusters
    for cluster in _clusters.values():
        cluster.destroy()
    _clusters.clear()


# (num_ranks, ranks_per_node): one node, or emulated nodes (the internode path on one GPU).
LAYOUTS = [(1, 1), (2, 2), (4, 4), (8, 8), (4, 2), (2, 1)]


def _layout_id(layout):
    num_ranks, per_node = layout
    return str(num_ranks) if per_node == num_ranks else f"{num_ranks // per_node}x{per_node}"


def _cluster(clusters, num_ranks, per_node=None):
    per_node = per_node or num_ranks
    if (num_ranks, per_node) not in clusters:
        nvl_bytes = moe_ep.Buffer.intranode_size_hint(MAX_TOKENS, num_ranks)
        nodes = {}
        if per_node < num_ranks:  # emulated nodes: the internode path
            rdma_bytes = moe_ep.Buffer.get_internode_rdma_size_hint(MAX_TOKENS, HIDDEN, num_ranks, per_node, NUM_TOPK)
            nodes = {"emulated_ranks_per_node": per_node, "num_rdma_bytes": rdma_bytes}
        clusters[(num_ranks, per_node)] = testing.InProcessRanks(num_ranks, nvl_bytes, device=0, warm_bytes=64 << 20,
                                                                 **nodes)
    return clusters[(num_ranks, per_node)]


@pytest.mark.skipif(UNDER_TORCHRUN, reason="under torchrun the one-rank-per-process test runs instead")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_in_process(clusters, layout, case):
    num_ranks, per_node = layout
    cluster = _cluster(clusters, num_ranks, per_node)
    inputs, (layouts, received) = _scenario(case, num_ranks)
    device_inputs = [to_device(case, inp, cluster.device) for inp in inputs]
    torch.cuda.synchronize()  # inputs ready before any rank starts (no collective in flight yet)
    outputs = cluster.run(lambda rank, buffer: run_rank(buffer, case, device_inputs[rank], rank, num_ranks))
    internode = per_node < num_ranks
    for rank in range(num_ranks):
        check_rank(case, rank, outputs[rank], layouts, received, internode)
        if internode:
            check_internode(case, rank, outputs[rank], layouts, received, per_node)


@pytest.mark.skipif(UNDER_TORCHRUN, reason="under torchrun the one-rank-per-process test runs instead")
def test_bad_input_raises_value_error_and_buffer_stays_usable(clusters):
    cluster = _cluster(clusters, 2)
    case = CASES[0]
    inputs = [to_device(case, make_inputs(case, 2, r), cluster.device) for r in range(2)]
    torch.cuda.synchronize()

    def bad_dtype(rank, buffer):
        with pytest.raises(ValueError, match="x: tensor of DLPack dtype"):
            buffer.dispatch(inputs[rank]["x"].half())

    cluster.run(bad_dtype)

    def bad_alignment(rank, buffer):
        layout = buffer.get_dispatch_layout(inputs[rank]["topk_idx"], 12)
        with pytest.raises(ValueError, match="expert_alignment"):
            buffer.dispatch(inputs[rank]["x"], num_tokens_per_rank=layout[0], is_token_in_rank=layout[3],
                            num_tokens_per_expert=layout[2], expert_alignment=0)

    cluster.run(bad_alignment)
    test_in_process(clusters, (2, 2), case)


@pytest.mark.skipif(UNDER_TORCHRUN, reason="in-process ranks; not under torchrun")
def test_internode_buffer_refuses_an_intranode_handle(clusters):
    cluster = _cluster(clusters, 2, 1)
    assert all(b.runtime.is_internode and b._num_nodes == 2 for b in cluster.buffers)
    x = torch.zeros(4, HIDDEN, dtype=torch.bfloat16, device=cluster.device)
    intranode = (None, torch.zeros(4, dtype=torch.int64), None, None, None, None)

    def body(rank, buffer):  # refused in Python before any launch: no rank waits on another
        with pytest.raises(ValueError, match="intranode 6-tuple given to a buffer"):
            buffer.dispatch(x, handle=intranode)
        with pytest.raises(ValueError, match="intranode 6-tuple given to a buffer"):
            buffer.combine(x, intranode)

    cluster.run(body)


@pytest.mark.skipif(UNDER_TORCHRUN, reason="in-process ranks; not under torchrun")
def test_num_rdma_bytes_without_low_latency_needs_emulated_nodes():
    group = _C.make_in_process_group([0])[0]
    with pytest.raises(NotImplementedError, match="emulated_ranks_per_node"):
        moe_ep.Buffer(group, moe_ep.Buffer.intranode_size_hint(MAX_TOKENS, 1), 1 << 20)


# ---- one rank per process (torchrun) -------------------------------------------------


@pytest.fixture(scope="module")
def process_buffers():
    """One buffer per node shape: every process on one node, and each process its own
    emulated node (the internode kernels across processes)."""
    dist = torch.distributed
    world = torchrun_world(torch, "tests/python/test_intranode.py")
    nvl_bytes = moe_ep.Buffer.intranode_size_hint(MAX_TOKENS, world, HIDDEN * 2)
    rdma_bytes = moe_ep.Buffer.get_internode_rdma_size_hint(MAX_TOKENS, HIDDEN, world, 1, NUM_TOPK)
    buffers = {1: moe_ep.Buffer(dist.group.WORLD, nvl_bytes),
               world: moe_ep.Buffer(dist.group.WORLD, nvl_bytes, rdma_bytes, emulated_ranks_per_node=1)}
    yield buffers
    torch.cuda.synchronize()
    dist.barrier()
    for buffer in buffers.values():
        buffer.destroy()


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("num_nodes", ["one-node", "node-per-rank"])
def test_one_rank_per_process(process_buffers, num_nodes, case):
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    internode = num_nodes == "node-per-rank"
    buffer = process_buffers[world if internode else 1]
    inputs, (layouts, received) = _scenario(case, world)
    out = run_rank(buffer, case, to_device(case, inputs[rank], torch.cuda.current_device()), rank, world)
    torch.cuda.synchronize()
    check_rank(case, rank, out, layouts, received, internode)
    if internode:
        check_internode(case, rank, out, layouts, received, 1)
