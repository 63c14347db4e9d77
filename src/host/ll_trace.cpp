// Host side of the LL phase timestamps (kernels/low_latency/ll_trace.hpp).
#include "kernels/low_latency/ll_trace.hpp"

#ifdef MOE_EP_LL_TRACE
#include <cuda_runtime_api.h>

#include <array>
#include <mutex>

#include "moe_ep/config.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {
constexpr int kSlotWords = 2 * kLlTracePoints;
std::array<std::uint64_t*, kMaxNvlRanks> slots{};
std::mutex slots_mutex;
}  // namespace

std::uint64_t* ll_trace_slot(int rank) {
  const std::lock_guard<std::mutex> lock(slots_mutex);
  std::uint64_t*& slot = slots.at(rank);
  if (slot == nullptr) {
    MOE_EP_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&slot), kSlotWords * sizeof(std::uint64_t)));
    MOE_EP_CUDA_CHECK(cudaMemset(slot, 0, kSlotWords * sizeof(std::uint64_t)));
  }
  return slot;
}

std::vector<std::uint64_t> ll_trace_read(int rank) {
  std::vector<std::uint64_t> out(kSlotWords);
  MOE_EP_CUDA_CHECK(cudaMemcpy(out.data(), ll_trace_slot(rank), kSlotWords * sizeof(std::uint64_t),
                               cudaMemcpyDeviceToHost));
  return out;
}

}  // namespace moe_ep::kernels
#endif
