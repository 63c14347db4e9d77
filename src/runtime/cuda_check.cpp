// Formats a failed CUDA call into a CudaError.
#include "runtime/cuda_check.hpp"

#include <string>

namespace moe_ep::runtime {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                  ") in " + call + " at " + file + ":" + std::to_string(line));
}

}  // namespace moe_ep::runtime
