// The timing floor of one kernel launch measured like the benchmarks measure (events
// around a launch on a stream): an empty kernel. Small kernels cannot time below it.
#include "launch_floor.hpp"

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {
__global__ void empty_kernel() {}
}  // namespace

Stats measure_launch_floor(int iterations) {
  cudaStream_t stream;
  MOE_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t start, stop;
  MOE_EP_CUDA_CHECK(cudaEventCreate(&start));
  MOE_EP_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> us;
  for (int i = 0; i < iterations + 10; ++i) {
    MOE_EP_CUDA_CHECK(cudaEventRecord(start, stream));
    empty_kernel<<<1, 32, 0, stream>>>();
    MOE_EP_CHECK_LAUNCH();
    MOE_EP_CUDA_CHECK(cudaEventRecord(stop, stream));
    MOE_EP_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MOE_EP_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (i >= 10) us.push_back(ms * 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  return stats_of(us);
}

}  // namespace moe_ep::bench
