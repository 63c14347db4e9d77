// moe_ep_bench: prints a table and writes JSON under $OUT/bench (or ./bench_results).
//   moe_ep_bench [--quick] [--ranks 1,2,4,8] [--low-latency | --no-low-latency]
//     --low-latency: only the low-latency (decode) benchmark (plus copy bandwidth and
//     launch floor); --no-low-latency: skip it; --ll-problems a,b: only those LL problems
//   moe_ep_bench --ll-probe PROBLEM [--ranks N]   (50 plain LL rounds, for ncu)
//   moe_ep_bench --cpu-reference      (no GPU needed)
// The low-latency -k rows (kernel start to end) need libcupti, loaded at run time
// (MOE_EP_CUPTI_LIB=<path> where the loader does not find it; MOE_EP_BENCH_CUPTI=0 skips them).
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "bench_util.hpp"
#include "cpu_reference_demo.hpp"
#include "handoff_floor.hpp"
#include "intranode_bench.hpp"
#include "launch_floor.hpp"
#include "layout_bench.hpp"
#include "low_latency_bench.hpp"

int main(int argc, char** argv) {
  // In-process ranks: a lazily loaded kernel (ours or the harness's) makes its first
  // launch wait for the device while peers' kernels spin on this rank. Load every module
  // with the context instead (this overrides a LAZY setting in the environment).
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/1);
  using namespace moe_ep::bench;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--cpu-reference") return run_cpu_reference_demo();
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device; benchmarks need a GPU\n");
    return 0;
  }
  bool quick = false, intranode = true, low_latency = true;
  std::vector<int> ranks = {1, 2, 4, 8};
  std::vector<std::string> ll_only;
  std::string ll_probe;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") quick = true;
    if (arg == "--low-latency") intranode = false;
    if (arg == "--no-low-latency") low_latency = false;
    if (arg == "--ranks" && i + 1 < argc) {
      ranks.clear();
      std::stringstream list(argv[++i]);
      for (std::string item; std::getline(list, item, ',');) ranks.push_back(std::stoi(item));
    }
    if (arg == "--ll-problems" && i + 1 < argc) {
      std::stringstream list(argv[++i]);
      for (std::string item; std::getline(list, item, ',');) ll_only.push_back(item);
    }
    if (arg == "--ll-probe" && i + 1 < argc) ll_probe = argv[++i];
  }
  if (!ll_probe.empty()) {
    try {
      run_low_latency_probe(ll_probe, ranks.front(), 50);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "probe failed: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  try {
    const double copy_bw = measure_copy_bandwidth(std::size_t{1} << 30, 20);
    const std::string gpu = gpu_name();
    std::printf("GPU: %s, device-to-device copy %.0f GB/s (read+write)\n", gpu.c_str(), copy_bw / 1e9);
    Report report;
    Row copy;
    copy.bench = "copy";
    copy.problem = "1GiB";
    copy.note = std::to_string(static_cast<int>(copy_bw / 1e9)) + " GB/s read+write";
    report.add(copy);
    Row floor;
    floor.bench = "launch";
    floor.problem = "empty";
    floor.time_us = measure_launch_floor(200);
    floor.note = "empty kernel between events: the floor of small-kernel timings";
    report.add(floor);
    for (const bool fenced : {false, true}) {  // one hand-off between two SMs: what each LL barrier step costs at least
      Row handoff;
      handoff.bench = "sync";
      handoff.problem = fenced ? "handoff-fenced" : "handoff";
      handoff.time_us = measure_flag_handoff(fenced, 20, 1000);
      handoff.note = std::to_string(static_cast<int>(handoff.time_us.median * 1000.0 + 0.5)) + " ns: " +
                     (fenced ? "the same with a fence before each store (a signal that publishes data)"
                             : "one-way flag hand-off between two SMs (a store, acquire polls see it)");
      report.add(handoff);
    }
    for (int r : ranks) {  // what in-process ranks pay before their kernels can meet
      Row spread;
      spread.bench = "gate";
      spread.problem = "start-spread";
      spread.num_ranks = r;
      spread.time_us = measure_gated_start_spread(r, 50);
      spread.note = "last - first start of 16-block kernels on N streams released by one gate";
      report.add(spread);
      spread.problem = "spread-events";
      spread.time_us = measure_gated_start_spread(r, 50, /*timing_events=*/true);
      spread.note = "the same with a timing event before each kernel (why LL ops are not timed by events)";
      report.add(spread);
      Row gated = floor;
      gated.problem = "gated-empty";
      gated.num_ranks = r;
      gated.time_us = measure_gated_launch_floor(r, 50);
      gated.note = "empty kernels on N gated streams, timed as the LL rows are: their floor";
      report.add(gated);
      gated.problem = "gated-empty-g";
      gated.time_us = measure_gated_launch_floor(r, 50, /*in_graph=*/true);
      gated.note = "the same in a graph per stream, as the LL -g rows: their floor";
      report.add(gated);
      if (r > 1) {
        gated.problem = "gated-sync-pair";
        gated.time_us = measure_gated_sync_floor(r, 50, /*kernels=*/2, /*barriers=*/2);
        gated.note = "2 kernels per stream, each 2 all-to-all flag hand-offs (an LL pair's ready and done, no data)";
        report.add(gated);
      }
    }
    if (intranode) {
      run_layout_bench(report, copy_bw);
      for (int r : ranks) {
        for (const char* problem : {"ht-v3", "ht-v3-bf16"}) {
          run_intranode_bench(report, copy_bw, problem, r, 4096, quick ? 10 : 50);
        }
        // 8 ranks as 2 emulated nodes of 4: the internode kernels on one GPU.
        if (r == 8) run_intranode_bench(report, copy_bw, "ht-v3-2x4", r, 4096, quick ? 10 : 50);
      }
    }
    // A failing low-latency case is reported in its row; the table still prints.
    const bool low_latency_ok = !low_latency || run_low_latency_benches(report, copy_bw, ranks, quick ? 50 : 200, ll_only);
    const char* out = std::getenv("OUT");
    report.write_json(out != nullptr ? std::string(out) + "/bench" : "bench_results", gpu, copy_bw);
    report.print_table();
    if (!low_latency_ok) return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "benchmark failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
