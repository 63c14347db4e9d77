// Launching LL kernels: launch_ll_kernel (programmatic dependent launch where the kernel
// allows it), and the instantiation of an LL kernel family (Kernels::launch /
// Kernels::preload, templated on <send phase, receive phase, RDMA peers>, and
// Kernels::launch_alone / preload_alone for LlPhases::kAlone) that a call's phases and
// peers pick.
#pragma once
#include <cstdlib>
#include <stdexcept>
#include <utility>

#include <cuda_runtime_api.h>

#include "kernels/low_latency/ll_params.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/programmatic_launch.hpp"

namespace moe_ep::kernels {

// Whether `kernel` may launch as a programmatic dependent of the stream's previous kernel:
// only if it was compiled from sm_90+ PTX, so that it has device::wait_prior_grid() in it
// (code built for sm_80, or JIT-compiled from its PTX, does not wait), and
// MOE_EP_LL_NO_PDL is unset.
inline bool ll_launch_programmatic(const void* kernel) {
  if (std::getenv("MOE_EP_LL_NO_PDL") != nullptr) return false;
  cudaFuncAttributes attributes{};
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  return attributes.ptxVersion >= 90;
}

// Launches LL kernel kKernel with programmatic dependent launch where it can: set up while
// the stream's previous kernel finishes, its first act (device::wait_prior_grid) waits until
// that kernel has completed and its writes are visible; what it saves is the gap between
// the two. No LL kernel triggers its dependents early, so after an LL kernel the next one's
// blocks start only once all of its blocks have exited. A previous kernel that does
// trigger early (a user's GEMM) lets this kernel's blocks wait resident, within the rank's
// SM share; that kernel's blocks are all resident by then, so it completes, unless it in
// turn waits for another stream or rank (none does in a decode step).
template <auto kKernel, typename... Args>
void launch_ll_kernel(int num_blocks, int shared_bytes, cudaStream_t stream, Args&&... args) {
  static const bool programmatic = ll_launch_programmatic(reinterpret_cast<const void*>(kKernel));
  runtime::launch_programmatic(programmatic, kKernel, dim3(num_blocks), dim3(kLlThreads), shared_bytes, stream,
                               std::forward<Args>(args)...);
}

template <typename Kernels, bool kRdma, typename Send, typename Recv>
void launch_ll_phases(LlPhases phases, const Send& send, const Recv& recv, int num_blocks, cudaStream_t stream) {
  switch (phases) {
    case LlPhases::kSend: return Kernels::template launch<true, false, kRdma>(send, recv, num_blocks, stream);
    case LlPhases::kRecv: return Kernels::template launch<false, true, kRdma>(send, recv, num_blocks, stream);
    case LlPhases::kBoth: return Kernels::template launch<true, true, kRdma>(send, recv, num_blocks, stream);
    case LlPhases::kAlone: break;  // launch_ll_variant's
  }
}

template <typename Kernels, typename Send, typename Recv>
void launch_ll_variant(bool rdma, LlPhases phases, const Send& send, const Recv& recv, int num_blocks,
                       cudaStream_t stream) {
  if (phases == LlPhases::kAlone) {
    // Its kernel holds no peer's code: a call with peers would run it wrongly.
    if (rdma || send.ctx.num_ranks != 1) throw std::logic_error("moe_ep: LlPhases::kAlone for a rank with peers");
    return Kernels::launch_alone(send, recv, num_blocks, stream);
  }
  if (rdma) return launch_ll_phases<Kernels, true>(phases, send, recv, num_blocks, stream);
  launch_ll_phases<Kernels, false>(phases, send, recv, num_blocks, stream);
}

// Loads `kernel` (the constructor loads every kernel up front), letting it take
// `max_shared_bytes` of dynamic shared memory if not 0.
template <typename Kernel>
void preload_ll_kernel(Kernel kernel, int max_shared_bytes = 0) {
  if (max_shared_bytes > 0) {
    MOE_EP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_shared_bytes));
  }
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
}

template <typename Kernels>
void preload_ll_variants() {
  Kernels::template preload<true, false, false>();
  Kernels::template preload<false, true, false>();
  Kernels::template preload<true, true, false>();
  Kernels::template preload<true, false, true>();
  Kernels::template preload<false, true, true>();
  Kernels::template preload<true, true, true>();
  Kernels::preload_alone();
}

}  // namespace moe_ep::kernels
