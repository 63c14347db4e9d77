// The phase timeline of the low-latency kernels (kernels/low_latency/ll_trace.hpp) over
// probe rounds: per op, rank and point, the mean time (us) after the round's first entry.
// Only builds with MOE_EP_LL_TRACE record anything; others print a note.
#pragma once
#include <vector>

#include "ll_problem.hpp"

namespace moe_ep::bench {

class LlTimeline {
 public:
  explicit LlTimeline(int num_ranks);
  void add_round();  // reads every rank's stamps of the latest dispatch and combine
  void print(const LlProblem& problem) const;

 private:
  int num_ranks_;
  int rounds_ = 0;
  std::vector<double> sums_us_;  // [op][rank][point]
};

}  // namespace moe_ep::bench
