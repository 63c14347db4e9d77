// CUDA error checks that throw moe_ep::CudaError naming the call, file and line.
#pragma once
#include <cuda_runtime_api.h>

#include "moe_ep/errors.hpp"

namespace moe_ep::runtime {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) throw_cuda_error(status, call, file, line);
}

}  // namespace moe_ep::runtime

#define MOE_EP_CUDA_CHECK(call) ::moe_ep::runtime::check_cuda((call), #call, __FILE__, __LINE__)
// After every kernel launch: catches bad launch configurations at once.
#define MOE_EP_CHECK_LAUNCH() MOE_EP_CUDA_CHECK(cudaGetLastError())
