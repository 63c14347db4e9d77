// Correctness of a timed low-latency round, so a fast wrong kernel cannot report a number:
// every rank's recv_count, every received row (payload, FP8 scales, source token, the
// per-source ranges of layout_range) against reference::low_latency_dispatch, and every
// combined value against reference::low_latency_combine within the contract's bound
// (ulp_bf16(|ref|) + 1e-5 * sum_k |w_k x_k|). Throws std::runtime_error at the first
// mismatch, naming rank, expert, row and channel.
#pragma once
#include <vector>

#include "ll_rank_arrays.hpp"
#include "ll_workload.hpp"
#include "reference/reference.hpp"

namespace moe_ep::bench {

// What the reference says every rank holds after a round of one input set (computed once,
// checked after the eager and the graph loops).
struct LlRoundExpected {
  std::vector<reference::RankLowLatencyOutput> dispatched;  // [rank]
  std::vector<std::vector<double>> combined;                // [rank][num_tokens * hidden]
  std::vector<std::vector<double>> abs_sum;                 // [rank][...] sum_k |w_k x_k|
};
LlRoundExpected expected_ll_round(const LlWorkload& workload, int set);

// Main thread, no collective in flight.
void check_ll_round(const LlRoundExpected& expected, const std::vector<LlRankArrays>& ranks);

}  // namespace moe_ep::bench
