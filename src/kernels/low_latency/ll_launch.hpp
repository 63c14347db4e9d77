// Picks the instantiation of an LL kernel family (Kernels::launch / Kernels::preload,
// templated on <send phase, receive phase, RDMA peers>) for a call's phases and peers.
#pragma once
#include <cstdlib>
#include <utility>

#include <cuda_runtime_api.h>

#include "kernels/low_latency/ll_params.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {

// Launches an LL kernel that may be set up while the stream's previous kernel finishes
// (programmatic dependent launch, sm_90+): its blocks still start only once every block of
// that kernel has exited (no LL kernel triggers its dependents early, so a next kernel's
// blocks never hold SMs beside this one's), and its first act, ll_wait_prior_grid(), waits
// until that kernel's writes are visible. What it saves is the gap between the two.
template <typename... Params, typename... Args>
void launch_ll_kernel(void (*kernel)(Params...), int num_blocks, int shared_bytes, cudaStream_t stream,
                      Args&&... args) {
  int device = 0, major = 0;
  MOE_EP_CUDA_CHECK(cudaGetDevice(&device));
  MOE_EP_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  static const bool disabled = std::getenv("MOE_EP_LL_NO_PDL") != nullptr;  // experiment
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(num_blocks);
  config.blockDim = dim3(kLlThreads);
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = major >= 9 && !disabled ? 1 : 0;
  MOE_EP_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
  MOE_EP_CHECK_LAUNCH();
}

template <typename Kernels, bool kRdma, typename Send, typename Recv>
void launch_ll_phases(LlPhases phases, const Send& send, const Recv& recv, int num_blocks, cudaStream_t stream) {
  switch (phases) {
    case LlPhases::kSend: return Kernels::template launch<true, false, kRdma>(send, recv, num_blocks, stream);
    case LlPhases::kRecv: return Kernels::template launch<false, true, kRdma>(send, recv, num_blocks, stream);
    case LlPhases::kBoth: return Kernels::template launch<true, true, kRdma>(send, recv, num_blocks, stream);
  }
}

template <typename Kernels, typename Send, typename Recv>
void launch_ll_variant(bool rdma, LlPhases phases, const Send& send, const Recv& recv, int num_blocks,
                       cudaStream_t stream) {
  if (rdma) return launch_ll_phases<Kernels, true>(phases, send, recv, num_blocks, stream);
  launch_ll_phases<Kernels, false>(phases, send, recv, num_blocks, stream);
}

template <typename Kernels>
void preload_ll_variants() {
  Kernels::template preload<true, false, false>();
  Kernels::template preload<false, true, false>();
  Kernels::template preload<true, true, false>();
  Kernels::template preload<true, false, true>();
  Kernels::template preload<false, true, true>();
  Kernels::template preload<true, true, true>();
}

}  // namespace moe_ep::kernels
