// A kernel launch that may be a programmatic dependent of the stream's previous kernel
// (sm_90+): it is set up while that kernel runs, so the gap between the two shrinks; the
// kernel must wait (device::wait_prior_grid) before it reads anything that kernel wrote.
// Include from CUDA sources (the kernel's address).
#pragma once
#include <utility>

#include <cuda_runtime.h>

#include "runtime/cuda_check.hpp"

namespace moe_ep::runtime {

// programmatic = false: a plain launch. Checks the launch.
template <typename... Params, typename... Args>
void launch_programmatic(bool programmatic, void (*kernel)(Params...), dim3 grid, dim3 block, int shared_bytes,
                         cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = programmatic ? 1 : 0;
  MOE_EP_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
  MOE_EP_CHECK_LAUNCH();
}

}  // namespace moe_ep::runtime
