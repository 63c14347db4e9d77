"""GPU tests of moe_ep's deep_ep-compatible intranode API against the torch reference in
intranode_scenario.py. In-process: 1/2/4/8 ranks on one GPU, one thread and one stream per
rank. Under torchrun (torch.distributed, N>1 processes, one GPU each): the same scenario,
one rank per process. Each path skips with its reason elsewhere."""
import os

os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")  # before CUDA starts (see conftest.py)

import pytest  # noqa: E402

import moe_ep  # noqa: E402  (before torch touches CUDA)

torch = pytest.importorskip("torch", reason="the GPU tests need PyTorch")

from intranode_scenario import (CASES, HIDDEN, MAX_TOKENS, check_rank, make_inputs,  # noqa: E402
                                reference, run_rank, to_device)
from moe_ep import testing  # noqa: E402
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


def _cluster(clusters, num_ranks):
    if num_ranks not in clusters:
        nvl_bytes = moe_ep.Buffer.intranode_size_hint(MAX_TOKENS, num_ranks)
        clusters[num_ranks] = testing.InProcessRanks(num_ranks, nvl_bytes, device=0, warm_bytes=64 << 20)
    return clusters[num_ranks]


@pytest.mark.skipif(UNDER_TORCHRUN, reason="under torchrun the one-rank-per-process test runs instead")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("num_ranks", [1, 2, 4, 8])
def test_in_process(clusters, num_ranks, case):
    cluster = _cluster(clusters, num_ranks)
    inputs, (layouts, received) = _scenario(case, num_ranks)
    device_inputs = [to_device(case, inp, cluster.device) for inp in inputs]
    torch.cuda.synchronize()  # inputs ready before any rank starts (no collective in flight yet)
    outputs = cluster.run(lambda rank, buffer: run_rank(buffer, case, device_inputs[rank], rank, num_ranks))
    for rank in range(num_ranks):
        check_rank(case, rank, outputs[rank], layouts, received)


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
    test_in_process(clusters, 2, case)


# ---- one rank per process (torchrun) -------------------------------------------------


@pytest.fixture(scope="module")
def process_buffer():
    dist = torch.distributed
    world = torchrun_world(torch, "tests/python/test_intranode.py")
    buffer = moe_ep.Buffer(dist.group.WORLD, moe_ep.Buffer.intranode_size_hint(MAX_TOKENS, world, HIDDEN * 2))
    yield buffer
    torch.cuda.synchronize()
    dist.barrier()
    buffer.destroy()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_one_rank_per_process(process_buffer, case):
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    inputs, (layouts, received) = _scenario(case, world)
    out = run_rank(process_buffer, case, to_device(case, inputs[rank], torch.cuda.current_device()), rank, world)
    torch.cuda.synchronize()
    check_rank(case, rank, out, layouts, received)
