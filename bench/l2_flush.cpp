// L2 eviction by a large memset (see l2_flush.hpp).
#include "l2_flush.hpp"

#include <algorithm>

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {

std::size_t flush_bytes() {
  int device = 0, l2_bytes = 0;
  MOE_EP_CUDA_CHECK(cudaGetDevice(&device));
  MOE_EP_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  return std::max<std::size_t>(std::size_t{256} << 20, 4 * static_cast<std::size_t>(l2_bytes));
}

}  // namespace

L2Flush::L2Flush() : scratch_(flush_bytes()) {}

void L2Flush::enqueue(cudaStream_t stream) const {
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(scratch_.get(), 0, scratch_.size(), stream));
}

}  // namespace moe_ep::bench
