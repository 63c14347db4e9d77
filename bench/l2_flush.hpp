// Evicts the L2 cache before a timed op by writing a scratch buffer several times its size
// (what DeepEP's and Triton's bench helpers do), so timed inputs are read from HBM.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "support/device_array.hpp"

namespace moe_ep::bench {

class L2Flush {
 public:
  L2Flush();  // sized from the current device's L2 (at least 256 MiB)
  void enqueue(cudaStream_t stream) const;

 private:
  test::DeviceArray<std::uint8_t> scratch_;
};

}  // namespace moe_ep::bench
