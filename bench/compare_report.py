"""The table of bench/nccl_compare.py (printed last) and its JSON file."""
import json
import os


def _gbps(row, side):
    stats = row.get(side)
    return row["logical_bytes_per_rank"] / (stats["median_us"] * 1e-6) / 1e9 if stats else None


def _fmt(value, spec):
    """format(value, spec), or '-' right-aligned to the spec's width when there is no value."""
    return format(value, spec) if value is not None else "-".rjust(int(spec.split(".")[0].rstrip("df") or 1))


def enrich(rows, peer):
    """Adds GB/s, the ours/NCCL ratio and the fraction of the measured peer copy to each row."""
    link = peer.get("one_way_GBps")
    for row in rows:
        row["ours_GBps"], row["nccl_GBps"] = _gbps(row, "ours"), _gbps(row, "nccl")
        row["ratio_ours_over_nccl"] = row["ours_GBps"] / row["nccl_GBps"] \
            if row["ours_GBps"] and row["nccl_GBps"] else None
        row["ours_fraction_of_peer_copy"] = row["ours_GBps"] / link if row["ours_GBps"] and link else None
        row["nccl_fraction_of_peer_copy"] = row["nccl_GBps"] / link if row["nccl_GBps"] and link else None
    return rows


def print_table(rows, peer, world, gpu):
    link = peer.get("one_way_GBps")
    print(f"\nnccl_compare: {world} ranks, one per GPU ({gpu}); GB/s = logical bytes per rank (DeepEP accounting, "
          f"BENCHMARKS.md) / median of the per-iteration max over ranks; ratio = ours GB/s / NCCL GB/s; "
          f"kernel_us = our kernels' time per call as DeepEP's tests measure (compare_kernel_time.py; low latency), "
          f"graph_us = the same calls replayed from a CUDA graph; "
          f"peer copy = one-way GPU i -> i+1 copy of {peer.get('bytes', 0) >> 20} MiB "
          + (f"(all GPUs at once: {peer['all_at_once_GBps']:.0f} GB/s each)" if "all_at_once_GBps" in peer
             else f"({peer.get('skipped', 'not measured')})"))
    header = (f"{'problem':<11} {'op':<9} {'ours_us':>9} {'ours_GB/s':>9} {'nccl_us':>9} {'nccl_GB/s':>9} "
              f"{'ratio':>6} {'SMs':>4} {'peer_GB/s':>9} {'of_peer':>7} {'kernel_us':>9} {'graph_us':>8}")
    print(header)
    for r in rows:
        ours_us = r["ours"]["median_us"] if r["ours"] else None
        nccl_us = r["nccl"]["median_us"] if r["nccl"] else None
        print(f"{r['problem']:<11} {r['op']:<9} {_fmt(ours_us, '9.1f')} {_fmt(r['ours_GBps'], '9.1f')} "
              f"{_fmt(nccl_us, '9.1f')} {_fmt(r['nccl_GBps'], '9.1f')} {_fmt(r['ratio_ours_over_nccl'], '6.2f')} "
              f"{_fmt(r['num_sms'], '4d')} {_fmt(link, '9.1f')} {_fmt(r['ours_fraction_of_peer_copy'], '7.2f')} "
              f"{_fmt(r.get('ours_kernel_us'), '9.1f')} {_fmt(r.get('ours_kernel_graph_us'), '8.1f')}")


def write_json(directory, rows, peer, meta):
    os.makedirs(directory, exist_ok=True)
    safe_gpu = "".join(c if c.isalnum() else "_" for c in meta["gpu"])
    path = os.path.join(directory, f"nccl_compare-{safe_gpu}-np{meta['num_ranks']}.json")
    with open(path, "w") as out:
        json.dump({**meta, "peer_copy": peer, "rows": rows}, out, indent=1)
    return path


def main(paths):
    """Prints the table of each JSON file written by bench/nccl_compare.py."""
    for path in paths:
        with open(path) as src:
            result = json.load(src)
        print_table(result["rows"], result["peer_copy"], result["num_ranks"], result["gpu"])
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
