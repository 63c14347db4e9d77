// The low-latency targets, checked against the report's rows (eager and graph):
// at 8 ranks, efficiency >= 0.5 for ll-v3 / ll-v3-bf16 dispatch and combine and a whole
// dispatch + combine of 1 token per rank (ll-v3-t1) under 20 us; at DeepEP's point
// (ll-v3-e288, 1 rank; DeepEP V1 19.0 / 25.2 us) dispatch < 10 us, combine < 12 us.
// Each is checked on the gated span (gate to last end: a bound from above) and, where CUPTI
// recorded them, on the kernels' own span (first kernel start to last end, BENCHMARKS.md's
// latency and how DeepEP's numbers were taken). Targets whose row did not run are left out.
#pragma once
#include "bench_util.hpp"

namespace moe_ep::bench {

void add_low_latency_goals(Report& report);

}  // namespace moe_ep::bench
