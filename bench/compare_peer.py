"""NVLink peer-copy bandwidth measured in the same run: each rank copies a large buffer (1 GiB
by default) from its GPU to the next rank's GPU ((local rank + 1) % local ranks), a torch
device-to-device copy (cudaMemcpyPeerAsync on the source GPU's stream), timed with CUDA
events. One direction at a time (one source rank copies while the others wait) and all at
once (every GPU sends to its neighbour and receives from the other one; for 2 GPUs: both
directions of the link). Bytes/s counts the bytes copied, one way."""
import os
import statistics

from compare_common import max_over_ranks

REPEATS, WARMUP = 10, 2


def _copy_times_us(torch, dst, src):
    times = []
    for _ in range(WARMUP + REPEATS):
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        dst.copy_(src)
        end.record()
        times.append((start, end))
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e3 for s, e in times[WARMUP:]]


def peer_copy(ctx, nbytes):
    torch, dist = ctx.torch, ctx.dist
    if not ctx.on_gpu:
        return {"bytes": nbytes, "skipped": "CPU dry run"}
    if ctx.world < 2:
        return {"bytes": nbytes, "skipped": "one rank: no peer"}
    local = int(os.environ.get("LOCAL_RANK", ctx.rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))
    if torch.cuda.device_count() < local_world:
        return {"bytes": nbytes,
                "skipped": f"each process sees {torch.cuda.device_count()} GPU(s), fewer than the {local_world} "
                           f"local ranks (CUDA_VISIBLE_DEVICES pinned?): no peer GPU to copy to"}
    peer = (local + 1) % local_world
    src = torch.full((nbytes,), 7, dtype=torch.uint8, device=ctx.device)
    dst = torch.empty(nbytes, dtype=torch.uint8, device=torch.device("cuda", peer))
    can_access = torch.cuda.can_device_access_peer(local, peer)

    per_source = torch.zeros(ctx.world, dtype=torch.float64, device=ctx.device)
    for source in range(ctx.world):
        dist.barrier()
        if ctx.rank == source:
            per_source[source] = statistics.median(_copy_times_us(torch, dst, src))
        dist.barrier()
    dist.all_reduce(per_source)
    one_way = [nbytes / (t * 1e-6) / 1e9 for t in per_source.tolist()]

    times = []
    for _ in range(WARMUP + REPEATS):
        ctx.align()
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        dst.copy_(src)
        end.record()
        times.append((start, end))
    torch.cuda.synchronize()
    both_us = statistics.median(max_over_ranks(torch, dist, [s.elapsed_time(e) * 1e3 for s, e in times[WARMUP:]],
                                               ctx.device))
    del src, dst
    torch.cuda.empty_cache()
    return {"bytes": nbytes, "peer_access": bool(can_access), "one_way_GBps_per_source": one_way,
            "one_way_GBps": statistics.median(one_way), "all_at_once_GBps": nbytes / (both_us * 1e-6) / 1e9}
