"""The torch.distributed group of the one-rank-per-process tests: started under torchrun
(N>1 processes, one GPU each), else the test skips with the reason."""
import os

import pytest

WORLD_SIZE = int(os.environ.get("WORLD_SIZE", "1"))
UNDER_TORCHRUN = WORLD_SIZE > 1 and "RANK" in os.environ


def torchrun_world(torch, test_file):
    """Initializes the NCCL group once (skips when not under torchrun, with one rank, or
    with fewer GPUs than processes); returns the world size."""
    dist = torch.distributed
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    if not dist.is_initialized():
        if not UNDER_TORCHRUN:
            pytest.skip("one rank per process runs under torchrun with N>1 processes, e.g. "
                        f"torchrun --nproc-per-node=2 -m pytest {test_file}")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    if dist.get_world_size() < 2:
        pytest.skip("torch.distributed has one rank: nothing to exchange")
    if torch.cuda.device_count() < dist.get_world_size():
        pytest.skip(f"{dist.get_world_size()} processes but {torch.cuda.device_count()} GPUs: one GPU per process")
    return dist.get_world_size()
