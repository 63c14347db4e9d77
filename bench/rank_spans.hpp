// CUDA events around one op on every in-process rank, one start/stop pair per (iteration,
// rank). An iteration's time is the last stop minus the first start over ranks (the
// slowest rank decides, BENCHMARKS.md); statistics are taken over iterations after that.
// The intranode bench's ops are long enough for it; LL ops use GatedSpans.
#pragma once
#include <vector>

#include <cuda_runtime_api.h>

#include "bench_util.hpp"

namespace moe_ep::bench {

class RankSpans {
 public:
  RankSpans(int num_ranks, int num_iterations);  // creates every event up front
  ~RankSpans();
  RankSpans(const RankSpans&) = delete;
  RankSpans& operator=(const RankSpans&) = delete;

  // From the rank's thread, around the work it enqueues on `stream`.
  void start(int rank, int iteration, cudaStream_t stream);
  void stop(int rank, int iteration, cudaStream_t stream);
  // Microseconds of each iteration from `first_iteration` on (earlier ones: warm-up).
  // Every stop event must have completed.
  std::vector<double> span_us(int first_iteration) const;
  Stats stats(int first_iteration) const { return stats_of(span_us(first_iteration)); }

 private:
  cudaEvent_t event(int iteration, int rank, int which) const;
  int num_ranks_, num_iterations_;
  std::vector<cudaEvent_t> events_;  // [iteration][rank][start, stop]
};

}  // namespace moe_ep::bench
