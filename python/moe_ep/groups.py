"""Turns what deep_ep's Buffer accepts into a moe_ep._C.Group: a torch.distributed
ProcessGroup or an mpi4py communicator (one process per GPU; the C++ side bootstraps
through their allgather), or a Group from moe_ep._C.make_in_process_group (moe_ep.testing)."""
import os

from . import _C
from ._torch import require_torch


def resolve(group, comm):
    if isinstance(group, _C.Group):
        return group
    if comm is not None:
        return _from_mpi(comm)
    if group is None:
        raise ValueError("moe_ep.Buffer: group is None and no comm given; pass a torch.distributed ProcessGroup, "
                         "an mpi4py communicator (comm=...), or use moe_ep.testing.in_process_buffers")
    if hasattr(group, "Get_rank") and hasattr(group, "allgather"):
        return _from_mpi(group)
    return _from_torch(group)


def _ranks_per_node(size):
    local = os.environ.get("LOCAL_WORLD_SIZE")
    return min(int(local), size) if local else size


def _from_torch(group):
    torch = require_torch("moe_ep.Buffer with a torch.distributed group")
    dist = torch.distributed
    rank, size = dist.get_rank(group), dist.get_world_size(group)

    def allgather(data):
        gathered = [None] * size
        dist.all_gather_object(gathered, data, group=group)
        return b"".join(gathered)

    return _C.make_process_group(rank, size, torch.cuda.current_device(), allgather, _ranks_per_node(size))


def _from_mpi(comm):
    torch = require_torch("moe_ep.Buffer with an MPI communicator")
    rank, size = comm.Get_rank(), comm.Get_size()

    def allgather(data):
        return b"".join(comm.allgather(data))

    return _C.make_process_group(rank, size, torch.cuda.current_device(), allgather, _ranks_per_node(size))
