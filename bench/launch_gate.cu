// The gate kernels and their host side (see launch_gate.hpp).
#include "launch_gate.hpp"

#include <atomic>
#include <stdexcept>
#include <string>

#include "device/sync.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {

// One thread counts the holder's hold and polls for its epoch, which open_kernel writes
// (device memory: L2 hits). Only the holder's stream touches its count.
__global__ void hold_kernel(const volatile std::uint32_t* opened, std::uint32_t* holds, std::uint64_t timeout_ns,
                            std::uint32_t* expired_mapped) {
  const std::uint32_t epoch = *holds + 1;
  *holds = epoch;
  const std::uint64_t start = device::global_timer_ns();
  while (*opened < epoch) {
    if (device::global_timer_ns() - start > timeout_ns) {
      *expired_mapped = 1;
      return;
    }
  }
}

// Stamps the release (before it: no held kernel can start earlier) into both places.
__global__ void open_kernel(volatile std::uint32_t* opened, std::uint32_t epoch, std::uint64_t* opened_at,
                            std::uint64_t* also_at) {
  const std::uint64_t now = device::global_timer_ns();
  *opened_at = now;
  if (also_at != nullptr) *also_at = now;
  *opened = epoch;
  __threadfence();
}

}  // namespace

LaunchGate::LaunchGate(int num_holders, std::uint64_t timeout_ns)
    : opened_(sizeof(std::uint32_t)),
      opened_at_(sizeof(std::uint64_t)),
      holds_(sizeof(std::uint32_t) * static_cast<std::size_t>(num_holders)),
      num_holders_(num_holders),
      expired_(sizeof(std::uint32_t)),
      timeout_ns_(timeout_ns) {
  *static_cast<std::uint32_t*>(expired_.host()) = 0;
  // Load both kernels now: a lazy load at the first hold() could wait for running kernels.
  cudaFuncAttributes attributes{};
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, hold_kernel));
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, open_kernel));
  // The opener stream's first work, now: a stream's first use can wait for the device,
  // which the held ranks keep busy.
  open(0);
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(opener_.get()));
}

void LaunchGate::hold(cudaStream_t stream, int holder) const {
  if (holder < 0 || holder >= num_holders_) {
    throw std::out_of_range("launch gate: holder " + std::to_string(holder) + " of " + std::to_string(num_holders_));
  }
  hold_kernel<<<1, 1, 0, stream>>>(static_cast<const std::uint32_t*>(opened_.get()),
                                   static_cast<std::uint32_t*>(holds_.get()) + holder, timeout_ns_,
                                   static_cast<std::uint32_t*>(expired_.device()));
  MOE_EP_CHECK_LAUNCH();
}

void LaunchGate::open(std::uint32_t epoch, std::uint64_t* opened_at) const {
  open_kernel<<<1, 1, 0, opener_.get()>>>(static_cast<std::uint32_t*>(opened_.get()), epoch,
                                          static_cast<std::uint64_t*>(opened_at_.get()), opened_at);
  MOE_EP_CHECK_LAUNCH();
}

void LaunchGate::check() const {
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(opener_.get()));
  if (std::atomic_ref<std::uint32_t>(*static_cast<std::uint32_t*>(expired_.host())).load() != 0) {
    throw std::runtime_error("launch gate expired: a call blocked on the host while its stream was held "
                             "(does it synchronize?); the timings are not valid");
  }
}

std::uint64_t LaunchGate::last_opened_ns() const {
  std::uint64_t at = 0;
  MOE_EP_CUDA_CHECK(cudaMemcpyAsync(&at, opened_at_.get(), sizeof(at), cudaMemcpyDeviceToHost, opener_.get()));
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(opener_.get()));
  return at;
}

}  // namespace moe_ep::bench
