// The timing floor of one kernel launch measured like the benchmarks measure (events
// around a launch on a stream): an empty kernel. Small kernels cannot time below it.
#include "launch_floor.hpp"

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {
__global__ void empty_kernel() {}
}  // namespace

Stats measure_launch_floor(int iterations) {
  StreamTimer timer;
  return timer.repeat(10, iterations, [](cudaStream_t stream, int) {
    empty_kernel<<<1, 32, 0, stream>>>();
    MOE_EP_CHECK_LAUNCH();
  });
}

}  // namespace moe_ep::bench
