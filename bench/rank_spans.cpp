// Per-iteration spans over ranks from CUDA events (see rank_spans.hpp).
#include "rank_spans.hpp"

#include <algorithm>
#include <limits>

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {

RankSpans::RankSpans(int num_ranks, int num_iterations)
    : num_ranks_(num_ranks), num_iterations_(num_iterations),
      events_(static_cast<std::size_t>(num_iterations) * num_ranks * 2, nullptr) {
  for (auto& e : events_) MOE_EP_CUDA_CHECK(cudaEventCreate(&e));
}

RankSpans::~RankSpans() {
  for (cudaEvent_t e : events_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
}

cudaEvent_t RankSpans::event(int iteration, int rank, int which) const {
  return events_[(static_cast<std::size_t>(iteration) * num_ranks_ + rank) * 2 + which];
}

void RankSpans::start(int rank, int iteration, cudaStream_t stream) {
  MOE_EP_CUDA_CHECK(cudaEventRecord(event(iteration, rank, 0), stream));
}

void RankSpans::stop(int rank, int iteration, cudaStream_t stream) {
  MOE_EP_CUDA_CHECK(cudaEventRecord(event(iteration, rank, 1), stream));
}

std::vector<double> RankSpans::span_us(int first_iteration) const {
  std::vector<double> out;
  for (int it = first_iteration; it < num_iterations_; ++it) {
    // Times relative to rank 0's start; the first start may be another rank's.
    const cudaEvent_t origin = event(it, 0, 0);
    double first = std::numeric_limits<double>::max(), last = std::numeric_limits<double>::lowest();
    for (int r = 0; r < num_ranks_; ++r) {
      float start_ms = 0, stop_ms = 0;
      MOE_EP_CUDA_CHECK(cudaEventElapsedTime(&start_ms, origin, event(it, r, 0)));
      MOE_EP_CUDA_CHECK(cudaEventElapsedTime(&stop_ms, origin, event(it, r, 1)));
      first = std::min(first, 1e3 * start_ms);
      last = std::max(last, 1e3 * stop_ms);
    }
    out.push_back(last - first);
  }
  return out;
}

}  // namespace moe_ep::bench
