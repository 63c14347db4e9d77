// Picks the instantiation of an LL kernel family (Kernels::launch / Kernels::preload,
// templated on <send phase, receive phase, RDMA peers>) for a call's phases and peers.
#pragma once
#include <cuda_runtime_api.h>

#include "kernels/low_latency/ll_params.hpp"

namespace moe_ep::kernels {

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
