"""moe_ep dispatch/combine against torch.distributed.all_to_all_single (NCCL) doing the same
token exchange, in one job, on the same tensors, one rank per GPU: ht-v3, ht-v3-bf16 (moe_ep
Buffer.get_dispatch_layout + dispatch + combine), ll-v3 and ll-v3-e288 (288 experts: DeepEP's
published anchors) (Buffer.low_latency_dispatch / low_latency_combine; skipped with the reason
where moe_ep lacks them; their kernel time is also measured as DeepEP's tests measure it,
compare_kernel_time.py). Each problem runs
checked once (both paths against a torch reference rebuilt from every rank's inputs), then
timed (CUDA events, warm-up, median over iterations of the max over ranks), then its timed
outputs are checked again; the NVLink peer-copy bandwidth is measured in the same run.
Prints the table last; writes JSON to --json-dir ($OUT/bench, else ./bench-results).
Run under the launcher:  scripts/launch -- python3 bench/nccl_compare.py
CPU dry run (gloo, small shapes, NCCL path and checks only):
  scripts/launch --nproc 2 -- python3 bench/nccl_compare.py --cpu --iterations 3"""
import argparse
import os
import sys

for _var, _value in (("NCCL_NVLS_ENABLE", "0"), ("NVSHMEM_DISABLE_NVLS", "1"),
                     ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")):
    os.environ.setdefault(_var, _value)

import compare_ht  # noqa: E402
import compare_ll  # noqa: E402
from compare_common import PROBLEMS, Context  # noqa: E402
from compare_peer import peer_copy  # noqa: E402
from compare_report import enrich, print_table, write_json  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default="ht-v3,ht-v3-bf16,ll-v3,ll-v3-e288", help=f"of {','.join(PROBLEMS)}")
    parser.add_argument("--iterations", type=int, default=50, help="timed iterations (>= 50 for reported numbers)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--drop", type=float, default=0.0, help="fraction of top-k slots set to -1")
    parser.add_argument("--num-sms", type=int, default=0, help="Buffer.set_num_sms for our path (0: tuned)")
    parser.add_argument("--nccl-max-ctas", type=int, default=0, help="NCCL_MAX_CTAS for the NCCL path (0: NCCL's)")
    parser.add_argument("--peer-bytes", type=int, default=1 << 30, help="size of the peer copy")
    parser.add_argument("--json-dir", default=os.path.join(os.environ["OUT"], "bench") if os.environ.get("OUT")
                        else "bench-results")
    parser.add_argument("--cpu", action="store_true", help="CPU dry run: gloo, small shapes, no moe_ep path")
    args = parser.parse_args()
    unknown = [p for p in args.problems.split(",") if p not in PROBLEMS]
    if unknown:
        parser.error(f"unknown problem(s) {unknown}; known: {list(PROBLEMS)}")
    return args


def init(args):
    """moe_ep (before torch starts CUDA), torch, the process group; returns the Context."""
    moe_ep = None
    if not args.cpu:
        try:
            import moe_ep
        except ImportError as error:
            sys.exit(f"nccl_compare: cannot import moe_ep ({error}); build it with scripts/build-python and "
                     f"set PYTHONPATH=build-py/site")
    import torch
    import torch.distributed as dist
    for var, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        os.environ.setdefault(var, value)  # a plain `python3 bench/nccl_compare.py` is one rank
    if args.nccl_max_ctas:
        os.environ["NCCL_MAX_CTAS"] = str(args.nccl_max_ctas)
    if args.cpu:
        dist.init_process_group("gloo")
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            sys.exit("nccl_compare: no CUDA device; use --cpu for the dry run")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        try:
            dist.init_process_group("nccl", device_id=device)
        except TypeError:  # torch < 2.3 has no device_id
            dist.init_process_group("nccl")
        if args.num_sms:
            moe_ep.Buffer.set_num_sms(args.num_sms)
    return Context(torch=torch, dist=dist, rank=dist.get_rank(), world=dist.get_world_size(), device=device,
                   on_gpu=not args.cpu, moe_ep=moe_ep, iterations=args.iterations, warmup=args.warmup,
                   drop=args.drop)


def main():
    args = parse_args()
    ctx = init(args)
    torch = ctx.torch
    gpu = torch.cuda.get_device_name(ctx.device) if ctx.on_gpu else "cpu-dry-run"
    nccl_version = ".".join(map(str, torch.cuda.nccl.version())) if ctx.on_gpu else None
    if ctx.rank == 0:
        print(f"nccl_compare: {ctx.world} ranks on {gpu}, torch {torch.__version__}, NCCL {nccl_version}"
              + (" (CPU dry run: gloo, small shapes, our path not run)" if args.cpu else ""), flush=True)
    peer = peer_copy(ctx, args.peer_bytes)
    if ctx.rank == 0:
        print(f"peer copy: {peer}", flush=True)
    rows, problems = [], {}
    for name in args.problems.split(","):
        problem = PROBLEMS[name].shrunk() if args.cpu else PROBLEMS[name]
        problems[name] = vars(problem)
        runner = compare_ll if problem.low_latency else compare_ht
        rows += runner.run(ctx, problem)
        if ctx.rank == 0:
            paths = "both paths" if rows[-1]["ours"] else "the NCCL path (ours not run)"
            print(f"{name}: {paths} checked against the torch reference before and after timing; timed", flush=True)
    enrich(rows, peer)
    if ctx.rank == 0:
        meta = {"gpu": gpu, "num_ranks": ctx.world, "torch": torch.__version__, "nccl": nccl_version,
                "iterations": args.iterations, "warmup": args.warmup, "drop": args.drop,
                "num_sms_override": args.num_sms or None, "nccl_max_ctas": os.environ.get("NCCL_MAX_CTAS"),
                "cpu_dry_run": args.cpu, "problems": problems}
        print(f"JSON: {write_json(args.json_dir, rows, peer, meta)}")
        print_table(rows, peer, ctx.world, gpu)
    ctx.dist.barrier()
    ctx.dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
