// The LL phase timeline (see ll_timeline.hpp).
#include "ll_timeline.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "kernels/low_latency/ll_trace.hpp"

namespace moe_ep::bench {
namespace {
constexpr int kPoints = kernels::kLlTracePoints;
constexpr const char* kPointNames[kPoints] = {"entered", "ready-sent", "ready-seen", "laid-out",
                                              "slots",   "items",      "last-blk",   "done-seen"};
}  // namespace

LlTimeline::LlTimeline(int num_ranks) : num_ranks_(num_ranks), sums_us_(2 * num_ranks * kPoints, 0.0) {}

void LlTimeline::add(int op, std::uint64_t origin_ns) {
#ifdef MOE_EP_LL_TRACE
  std::vector<std::vector<std::uint64_t>> stamps;
  for (int r = 0; r < num_ranks_; ++r) stamps.push_back(kernels::ll_trace_read(r));
  std::uint64_t origin = origin_ns;
  if (origin == 0) {
    origin = UINT64_MAX;
    for (int r = 0; r < num_ranks_; ++r) origin = std::min(origin, stamps[r][op * kPoints]);
  }
  for (int r = 0; r < num_ranks_; ++r) {
    for (int p = 0; p < kPoints; ++p) {
      const std::uint64_t t = stamps[r][op * kPoints + p];  // a point not stamped reads -1
      sums_us_[(op * num_ranks_ + r) * kPoints + p] += t >= origin ? static_cast<double>(t - origin) / 1000.0 : -1.0;
    }
  }
  ++rounds_[op];
#else
  (void)op;
  (void)origin_ns;
#endif
}

void LlTimeline::print(const LlProblem& problem, const char* origin) const {
  if (rounds_[0] + rounds_[1] == 0) {
    std::printf("no timeline: build with -DMOE_EP_LL_TRACE=ON to stamp the LL kernels' phases\n");
    return;
  }
  std::printf("LL phase timeline, %s, %d ranks: us after %s, mean of %d rounds\n", problem.name.c_str(), num_ranks_,
              origin, std::max(rounds_[0], rounds_[1]));
  for (int op = 0; op < 2; ++op) {
    if (rounds_[op] == 0) continue;
    std::printf("%-9s %4s", op == 0 ? "dispatch" : "combine", "rank");
    for (const char* name : kPointNames) std::printf(" %10s", name);
    std::printf("\n");
    for (int r = 0; r < num_ranks_; ++r) {
      std::printf("%-9s %4d", "", r);
      for (int p = 0; p < kPoints; ++p) {
        std::printf(" %10.2f", sums_us_[(op * num_ranks_ + r) * kPoints + p] / rounds_[op]);
      }
      std::printf("\n");
    }
  }
}

}  // namespace moe_ep::bench
