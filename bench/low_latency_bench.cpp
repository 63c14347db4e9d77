// Low-latency dispatch / combine on N in-process ranks sharing one GPU (BENCHMARKS.md):
// per round the dispatch, the combine, the chained pair and a series of pairs are each
// started on every rank together (LaunchGate) with the L2 flushed (not before the combine),
// timed from the gate's release to the last rank's end on the GPU's global timer
// (GatedSpans: per-stream CUDA events would serialize the ranks' launches), input sets
// rotating; median and p99 over the rounds after warm-up. Then the same inside CUDA graphs
// (ll_rounds.hpp). After each timing loop the outputs of its last round are checked
// against the CPU reference.
// Then, where CUPTI is there, both passes again with it recording give BENCHMARKS.md's
// latency itself: from the first kernel start to the last kernel end of all ranks, from the
// profiler's kernel records (kernel_activity.hpp; the -k rows), as DeepEP's numbers were
// taken. The gated spans bound it from above by the hold's exit and the end stamp's launch
// (the gated-empty floor rows).
// Floors count the unavoidable HBM traffic (ll_traffic.hpp) over the copy bandwidth.
#include "low_latency_bench.hpp"

#include <algorithm>
#include <array>
#include <barrier>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernel_activity.hpp"
#include "ll_check.hpp"
#include "ll_goals.hpp"
#include "ll_rank_arrays.hpp"
#include "ll_rounds.hpp"
#include "ll_timeline.hpp"
#include "ll_traffic.hpp"
#include "ll_workload.hpp"
#include "moe_ep/buffer.hpp"
#include "protocol/ll_buffer_layout.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {

constexpr int kInputSets = 4, kWarmup = 10;

// What every library kernel's (mangled) name holds: namespace moe_ep::kernels. The bench's
// own kernels (gate, stamps) are not in it.
constexpr const char* kLibraryKernels = "6moe_ep7kernels";

// Per timed op, the spans of the rounds after warm-up, in us per op (or pair): Stats.
using LlOpTimes = std::function<Stats(LlTimedOp op, int per)>;

// Per timed op and round: the first kernel start to the last kernel end of all ranks, us
// (CUPTI), or -1 where none was recorded.
struct LlKernelSpans {
  explicit LlKernelSpans(int num_rounds) {
    for (std::vector<double>& op : us) op.assign(static_cast<std::size_t>(num_rounds), -1.0);
  }
  // Whether every op of every round after warm-up was recorded.
  bool complete() const {
    for (const std::vector<double>& op : us) {
      if (std::any_of(op.begin() + kWarmup, op.end(), [](double v) { return v < 0; })) return false;
    }
    return true;
  }
  // Of the rounds after warm-up (complete()), each divided by `per`.
  Stats after_warmup(LlTimedOp op, int per) const {
    const std::vector<double>& all = us[static_cast<int>(op)];
    std::vector<double> out;
    for (std::size_t i = kWarmup; i < all.size(); ++i) out.push_back(all[i] / per);
    return stats_of(out);
  }
  std::array<std::vector<double>, kLlTimedOps> us;
};

// "sent/token 22.1 KB (2.99 ranks) vs top-k*hidden 57.3 KB"
std::string sent_per_token(const LlTraffic& traffic) {
  char text[96];
  std::snprintf(text, sizeof(text), "sent/token %.1f KB (%.2f ranks) vs top-k*hidden %.1f KB",
                traffic.sent_bytes_per_token / 1e3, traffic.dest_ranks_per_token, traffic.topk_hidden_bytes / 1e3);
  return text;
}

// The rows of one timed pass, "ll-<op>[-g]<suffix>" (-g: in graphs), times from `time_of`.
// num_sms: the SM share each rank's calls may use (the library sizes LL launches to it).
void add_rows(Report& report, const LlProblem& problem, int num_ranks, int num_sms, const LlTraffic& traffic,
              double copy_bandwidth, bool graph, const char* suffix, const char* measure, const LlOpTimes& time_of) {
  struct Op {
    const char* name;
    LlTimedOp timed;
    int per;  // ops (pairs) in one span
    double floor_bytes, logical_bytes;
  };
  const double pair_floor_bytes = traffic.dispatch_floor_bytes + traffic.combine_floor_bytes;
  const Op ops[] = {
      {"ll-disp", LlTimedOp::kDispatch, 1, traffic.dispatch_floor_bytes, traffic.dispatch_logical_bytes},
      {"ll-comb", LlTimedOp::kCombine, 1, traffic.combine_floor_bytes, traffic.combine_logical_bytes},
      {"ll-pair", LlTimedOp::kPair, 1, pair_floor_bytes, 0},
      {"ll-period", LlTimedOp::kPeriod, kLlPeriodPairs, pair_floor_bytes, 0},
  };
  for (const Op& op : ops) {
    Row row;
    row.bench = std::string(op.name) + (graph ? "-g" : "") + suffix;
    row.problem = problem.name;
    row.num_ranks = num_ranks;
    row.num_sms = num_sms;
    row.time_us = time_of(op.timed, op.per);
    row.logical_gbps_per_rank = op.logical_bytes / (row.time_us.median * 1e-6) / 1e9;
    row.floor_us = op.floor_bytes / copy_bandwidth * 1e6;
    row.efficiency = row.floor_us / row.time_us.median;
    row.note = std::string(graph ? "in a graph" : "eager") + measure;
    row.metrics = {{"graph", graph ? 1 : 0},
                   {"num_tokens_per_rank", problem.num_tokens},
                   {"pairs_per_rank", traffic.pairs_per_rank},
                   {"floor_bytes", op.floor_bytes}};
    if (op.timed == LlTimedOp::kDispatch) {
      row.note += ", " + sent_per_token(traffic);
      row.metrics.push_back({"dest_ranks_per_token", traffic.dest_ranks_per_token});
      row.metrics.push_back({"bytes_sent_per_token", traffic.sent_bytes_per_token});
      row.metrics.push_back({"topk_x_hidden_bytes", traffic.topk_hidden_bytes});
    }
    if (op.timed == LlTimedOp::kPair) row.note += ", dispatch+combine chained (cold: L2 flushed)";
    if (op.timed == LlTimedOp::kPeriod) {
      row.note += ", per pair of " + std::to_string(kLlPeriodPairs) + " chained back to back";
      if (graph) row.note += " (a decode step)";
    }
    report.add(row);
  }
}

// Trace builds: a hook that accumulates where each op's time goes, from the gate's opening
// (the phase timeline), and prints it after the last round. Others: no hook.
LlAfterOp trace_ops(int num_ranks, int num_rounds, const LlProblem& problem, const char* mode) {
#ifdef MOE_EP_LL_TRACE
  auto timeline = std::make_shared<LlTimeline>(num_ranks);
  const std::string origin = std::string("the gate opened (") + mode + ")";
  return [timeline, num_rounds, problem, origin](LlTimedOp op, int round, std::uint64_t opened_ns) {
    const bool alone = op == LlTimedOp::kDispatch || op == LlTimedOp::kCombine;
    if (round >= kWarmup && alone) timeline->add(static_cast<int>(op), opened_ns);
    if (round == num_rounds - 1 && op == kLlLastTimedOp) timeline->print(problem, origin.c_str());
  };
#else
  (void)num_ranks, (void)num_rounds, (void)problem, (void)mode;
  return {};
#endif
}

// The hook after each timed op of a CUPTI pass: the op's kernel span.
LlAfterOp record_kernels(KernelActivity& activity, LlKernelSpans& kernels) {
  return [&activity, &kernels](LlTimedOp op, int round, std::uint64_t) {
    if (const std::optional<double> us = activity.take_span_us(kLibraryKernels)) {
      kernels.us[static_cast<int>(op)][static_cast<std::size_t>(round)] = *us;
    }
  };
}

// Per rank, the mean over calls of the longest wait for one peer's `ready` (the receive's
// wait for the slowest sender), for dispatch and combine.
void add_wait_rows(Report& report, const LlProblem& problem, int num_ranks, const std::vector<LlRankArrays>& io,
                   int calls) {
  const char* names[] = {"ll-wait-d", "ll-wait-c"};
  for (int op = 0; op < 2; ++op) {
    std::vector<double> per_rank;
    for (const LlRankArrays& rank : io) {
      const auto waits = (op == 0 ? rank.dispatch_waits : rank.combine_waits).download();
      per_rank.push_back(static_cast<double>(*std::max_element(waits.begin(), waits.end())) / calls / 1000.0);
    }
    Row row;
    row.bench = names[op];
    row.problem = problem.name;
    row.num_ranks = num_ranks;
    row.time_us = stats_of(per_rank);
    row.note = "receive's wait for the slowest peer's ready, per call (median over ranks)";
    report.add(row);
  }
}

}  // namespace

void run_low_latency_bench(Report& report, double copy_bandwidth, const LlProblem& problem, int num_ranks,
                           int iterations) {
  const int num_rounds = kWarmup + iterations;
  const int last_set = (num_rounds - 1) % kInputSets;
  const LlWorkload workload(problem, num_ranks, kInputSets, 4321 + num_ranks);
  const LlTraffic traffic = ll_traffic(workload);
  const LlRoundExpected expected = expected_ll_round(workload, last_set);
  BufferOptions options;
  options.low_latency_mode = true;
  options.emulated_ranks_per_node = problem.ranks_per_node;
  // In-process ranks on one node read each other's tensors in place: the region needs no
  // combine staging. Pretend nodes need the mirrored region of the size hint.
  const std::int64_t region =
      problem.ranks_per_node > 0
          ? Buffer::low_latency_size_hint(problem.max_tokens, problem.hidden, num_ranks, problem.num_experts,
                                          problem.ranks_per_node)
          : protocol::ll_region_bytes(problem.max_tokens, problem.hidden, problem.num_experts, false);
  test::Cluster cluster(num_ranks, 0, options, 0, region);
  const int num_sms = cluster.buffers[0]->max_num_sms();
  std::vector<LlRankArrays> io;
  io.reserve(num_ranks);
  for (int r = 0; r < num_ranks; ++r) io.emplace_back(workload, r);
  const LlOps ops{[&](int r, int set, cudaStream_t stream) {
                      cluster.buffers[r]->low_latency_dispatch(io[r].dispatch_args(set, stream),
                                                               io[r].dispatch_outputs(), io[r].handle);
                    },
                    [&](int r, int set, cudaStream_t stream) {
                      cluster.buffers[r]->low_latency_combine(io[r].combine_args(set, stream), io[r].handle);
                    }};

  // One timed pass (eager or in graphs): its rounds, then a check of its last round's outputs.
  auto pass = [&](LlLaunch launch, LlRoundSpans& spans, const LlAfterOp& after_op) {
    for (LlRankArrays& rank : io) rank.poison_outputs();  // the check sees only this pass's outputs
    time_ll_rounds(cluster, kInputSets, num_rounds, ops, launch, spans, after_op);
    check_ll_round(expected, io);
  };
  for (const LlLaunch launch : {LlLaunch::kEager, LlLaunch::kGraph}) {
    const bool graph = launch == LlLaunch::kGraph;
    LlRoundSpans spans(num_ranks, num_rounds);
    pass(launch, spans, trace_ops(num_ranks, num_rounds, problem, graph ? "in a graph" : "eager"));
    add_rows(report, problem, num_ranks, num_sms, traffic, copy_bandwidth, graph, "", "",
             [&](LlTimedOp op, int per) { return spans.of(op).stats(kWarmup, per); });
    // Each round calls each op 2 + kLlPeriodPairs times.
    if (!graph) add_wait_rows(report, problem, num_ranks, io, (2 + kLlPeriodPairs) * num_rounds);
  }
  // The same passes with CUPTI recording, for the kernels' own spans (-k rows). Separate: the
  // recording itself moves the gated spans (8 ranks, one token: +0.4 us an op). Once loaded,
  // libcupti stays, its recording off, through the gated passes of later problems (H100:
  // their rows matched those of a run without it within 0.1 us).
  KernelActivity activity;
  if (!activity.recording()) return;
  for (const LlLaunch launch : {LlLaunch::kEager, LlLaunch::kGraph}) {
    LlRoundSpans spans(num_ranks, num_rounds);
    LlKernelSpans kernels(num_rounds);
    pass(launch, spans, record_kernels(activity, kernels));
    if (!kernels.complete()) {  // the gated rows stand; the -k rows would miss kernels
      std::printf("kernel times of %s at %d ranks: CUPTI dropped or missed kernels; no -k rows\n",
                  problem.name.c_str(), num_ranks);
      continue;
    }
    add_rows(report, problem, num_ranks, num_sms, traffic, copy_bandwidth, launch == LlLaunch::kGraph, "-k",
             ", first kernel start to last kernel end (CUPTI)",
             [&](LlTimedOp op, int per) { return kernels.after_warmup(op, per); });
  }
}

bool run_low_latency_benches(Report& report, double copy_bandwidth, const std::vector<int>& ranks, int iterations,
                             const std::vector<std::string>& only) {
  bool ok = true;
  for (const LlProblem& problem : ll_problems()) {
    if (!only.empty() && std::find(only.begin(), only.end(), problem.name) == only.end()) continue;
    for (int r : ranks) {
      if (!runs_at(problem, r)) continue;
      try {
        run_low_latency_bench(report, copy_bandwidth, problem, r, iterations);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "low-latency bench %s at %d ranks FAILED: %s\n", problem.name.c_str(), r, e.what());
        Row row;
        row.bench = "ll";
        row.problem = problem.name;
        row.num_ranks = r;
        row.note = "FAILED (no numbers): see the error above the table";
        report.add(row);
        ok = false;
      }
    }
  }
  add_low_latency_goals(report);
  return ok;
}

void run_low_latency_probe(const std::string& name, int num_ranks, int iterations) {
  const auto& problems = ll_problems();
  const auto problem = std::find_if(problems.begin(), problems.end(), [&](const LlProblem& p) { return p.name == name; });
  if (problem == problems.end()) throw std::runtime_error("no low-latency problem " + name);
  const LlWorkload workload(*problem, num_ranks, kInputSets, 4321 + num_ranks);
  BufferOptions options;
  options.low_latency_mode = true;
  test::Cluster cluster(num_ranks, 0, options, 0,
                        protocol::ll_region_bytes(problem->max_tokens, problem->hidden, problem->num_experts, false));
  std::vector<LlRankArrays> io;
  io.reserve(num_ranks);
  for (int r = 0; r < num_ranks; ++r) io.emplace_back(workload, r);
  LlTimeline timeline(num_ranks);
  std::barrier sync(num_ranks);
  test::run_on_ranks(num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    cudaStream_t stream = cluster.streams[r];
    for (int i = 0; i < iterations; ++i) {
      const int set = i % kInputSets;
      cluster.buffers[r]->low_latency_dispatch(io[r].dispatch_args(set, stream), io[r].dispatch_outputs(), io[r].handle);
      cluster.buffers[r]->low_latency_combine(io[r].combine_args(set, stream), io[r].handle);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      sync.arrive_and_wait();
      if (r == 0 && i >= kWarmup) {  // the rounds after warm-up
        timeline.add(0);
        timeline.add(1);
      }
      sync.arrive_and_wait();
    }
    cluster.buffers[r]->check_error();
  });
  timeline.print(*problem, "the op's first kernel entry");
}

}  // namespace moe_ep::bench
