// The phase timeline of the low-latency kernels (kernels/low_latency/ll_trace.hpp): per op,
// rank and point, the mean time (us) after an origin: the gate's opening for gated rounds,
// else the op's first kernel entry. Only builds with MOE_EP_LL_TRACE record anything;
// others print a note.
#pragma once
#include <cstdint>
#include <vector>

#include "ll_problem.hpp"

namespace moe_ep::bench {

class LlTimeline {
 public:
  explicit LlTimeline(int num_ranks);
  // Reads every rank's stamps of its latest call of `op` (0 dispatch, 1 combine), relative
  // to origin_ns (0: the first rank's entry).
  void add(int op, std::uint64_t origin_ns = 0);
  void print(const LlProblem& problem, const char* origin) const;

 private:
  int num_ranks_;
  int rounds_[2] = {0, 0};
  std::vector<double> sums_us_;  // [op][rank][point]
};

}  // namespace moe_ep::bench
