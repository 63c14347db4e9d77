// The intranode dispatch/combine benchmark (see intranode_bench.cpp).
#pragma once
#include <string>

#include "bench_util.hpp"

namespace moe_ep::bench {
// problem: "ht-v3" (fp8 dispatch) or "ht-v3-bf16", optionally suffixed "-NxP" (emulated
// nodes of P ranks: the internode kernels); ranks share device 0.
void run_intranode_bench(Report& report, double copy_bandwidth, const std::string& problem, int num_ranks,
                         int num_tokens, int iterations);
}
