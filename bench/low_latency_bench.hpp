// The low-latency (decode) benchmark (see low_latency_bench.cpp).
#pragma once
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "ll_problem.hpp"

namespace moe_ep::bench {

// One problem at one rank count (in-process ranks sharing device 0): eager and CUDA-graph
// rows for dispatch, combine and the chained pair, each checked after its timing loop.
void run_low_latency_bench(Report& report, double copy_bandwidth, const LlProblem& problem, int num_ranks,
                           int iterations);

// Every problem of ll_problems() at each requested rank count it runs at, then the issue's
// goals. A (problem, ranks) that fails prints its error and adds a FAILED row (no numbers);
// the rest still run. Returns false if any failed.
// only: problem names to run (empty: all).
bool run_low_latency_benches(Report& report, double copy_bandwidth, const std::vector<int>& ranks, int iterations,
                             const std::vector<std::string>& only);
// Plain dispatch + combine rounds of one problem, no gate, events or checks: a target for
// a kernel profiler (ncu), which cannot profile kernels held behind a gate.
void run_low_latency_probe(const std::string& problem, int num_ranks, int iterations);

}  // namespace moe_ep::bench
