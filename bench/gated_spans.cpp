// Gate-stream timing of ops on in-process ranks (see gated_spans.hpp).
#include "gated_spans.hpp"

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {

GatedSpans::GatedSpans(int num_ranks, int num_iterations)
    : rank_ends_(num_ranks, nullptr), timing_(static_cast<std::size_t>(num_iterations) * 2, nullptr) {
  for (auto& e : rank_ends_) MOE_EP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  for (auto& e : timing_) MOE_EP_CUDA_CHECK(cudaEventCreate(&e));
}

GatedSpans::~GatedSpans() {
  for (const auto* events : {&rank_ends_, &timing_}) {
    for (cudaEvent_t e : *events) {
      if (e != nullptr) cudaEventDestroy(e);
    }
  }
}

void GatedSpans::rank_end(int rank, cudaStream_t stream) {
  MOE_EP_CUDA_CHECK(cudaEventRecord(rank_ends_.at(rank), stream));
}

void GatedSpans::open(const LaunchGate& gate, std::uint32_t epoch, int iteration) {
  cudaStream_t stream = gate.stream();
  gate.open(epoch);
  MOE_EP_CUDA_CHECK(cudaEventRecord(timing_.at(2 * iteration), stream));
  // Each wait takes the rank's end as recorded now: a rank records its next one only after
  // this iteration (the caller's barrier).
  for (cudaEvent_t end : rank_ends_) MOE_EP_CUDA_CHECK(cudaStreamWaitEvent(stream, end, 0));
  MOE_EP_CUDA_CHECK(cudaEventRecord(timing_.at(2 * iteration + 1), stream));
}

std::vector<double> GatedSpans::span_us(int first_iteration) const {
  std::vector<double> out;
  for (std::size_t it = first_iteration; 2 * it < timing_.size(); ++it) {
    float ms = 0;
    MOE_EP_CUDA_CHECK(cudaEventElapsedTime(&ms, timing_[2 * it], timing_[2 * it + 1]));
    out.push_back(1e3 * ms);
  }
  return out;
}

Stats GatedSpans::stats(int first_iteration, int per) const {
  std::vector<double> spans = span_us(first_iteration);
  for (double& us : spans) us /= per;
  return stats_of(spans);
}

}  // namespace moe_ep::bench
