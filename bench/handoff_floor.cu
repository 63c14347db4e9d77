// Ping-pong between two blocks on two SMs (see handoff_floor.hpp).
#include "handoff_floor.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "device/sync.cuh"
#include "runtime/cuda_check.hpp"
#include "support/device_array.hpp"

namespace moe_ep::bench {
namespace {

constexpr int kFlagStride = 16;  // words: each block's flag on a 128-byte line of its own

// Block b's thread 0 answers round i once it sees the other's flag reach i (block 0 starts).
// Every wait is bounded (1 s): an expiry is recorded in *expired and the block stops.
__global__ void ping_pong_kernel(std::uint64_t* flags, int round_trips, bool fenced, std::uint64_t* ns,
                                 unsigned* expired) {
  if (threadIdx.x != 0) return;
  const int me = static_cast<int>(blockIdx.x);
  std::uint64_t* mine = flags + me * kFlagStride;
  std::uint64_t* theirs = flags + (1 - me) * kFlagStride;
  const std::uint64_t start = device::global_timer_ns();
  // Polls this block's flag until it reaches i; false (recorded) once the run passes 1 s.
  const auto await = [&](std::uint64_t i) {
    while (device::load_acquire_gpu(mine) < i) {
      if (device::global_timer_ns() - start > 1'000'000'000ull) {
        atomicExch(expired, 1u);
        return false;
      }
    }
    return true;
  };
  for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(round_trips); ++i) {
    if (me == 1 && !await(i)) return;
    if (fenced) __threadfence();
    device::store_relaxed(theirs, i, /*gpu_scope=*/true);
    if (me == 0 && !await(i)) return;
  }
  if (me == 0) *ns = device::global_timer_ns() - start;
}

}  // namespace

Stats measure_flag_handoff(bool fenced, int repetitions, int round_trips) {
  test::DeviceArray<std::uint64_t> flags(2 * kFlagStride);
  test::DeviceArray<std::uint64_t> ns(1);
  test::DeviceArray<unsigned> expired(1);
  // More dynamic shared memory than half an SM's, so that the two blocks cannot share an SM
  // (where a block may not take that much, as much as it may).
  int device = 0, per_sm = 0, per_block = 0;
  MOE_EP_CUDA_CHECK(cudaGetDevice(&device));
  MOE_EP_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  MOE_EP_CUDA_CHECK(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const int shared_bytes = std::min(per_block, per_sm / 2 + 1024);
  MOE_EP_CUDA_CHECK(
      cudaFuncSetAttribute(ping_pong_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes));
  MOE_EP_CUDA_CHECK(cudaMemset(expired.get(), 0, sizeof(unsigned)));
  std::vector<double> us;
  for (int rep = 0; rep <= repetitions; ++rep) {  // the first warms up
    MOE_EP_CUDA_CHECK(cudaMemset(flags.get(), 0, flags.size() * sizeof(std::uint64_t)));
    ping_pong_kernel<<<2, 32, shared_bytes>>>(flags.get(), round_trips, fenced, ns.get(), expired.get());
    MOE_EP_CHECK_LAUNCH();
    MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
    if (expired.download()[0] != 0) throw std::runtime_error("flag hand-off: a wait expired after 1 s");
    if (rep > 0) us.push_back(static_cast<double>(ns.download()[0]) / 1000.0 / (2.0 * round_trips));
  }
  return stats_of(us);
}

}  // namespace moe_ep::bench
