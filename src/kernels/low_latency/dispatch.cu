// Low-latency dispatch kernels: the sending phase alone (a call with a receive hook),
// the receiving phase alone (the hook), or both in one launch (no hook: one kernel per
// call; every block of the grid is resident, as the grid is at most the rank's SM share).
#include "kernels/low_latency/dispatch_recv.cuh"
#include "kernels/low_latency/dispatch_send.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

template <bool kSend, bool kRecv>
__global__ void __launch_bounds__(kLlThreads, kLlMinBlocksPerSm) ll_dispatch_kernel(const __grid_constant__ LlDispatchSendParams send,
                                                                                const __grid_constant__ LlDispatchRecvParams recv) {
  ll_mark_entered(kSend ? send.ctx : recv.ctx);
  if constexpr (kSend) ll_dispatch_send_phase(send);
  if constexpr (kRecv) ll_dispatch_recv_phase(recv);
}

template <bool kSend, bool kRecv>
void launch(const LlDispatchSendParams& send, const LlDispatchRecvParams& recv, int num_blocks, cudaStream_t stream) {
  const int shared_bytes = kSend ? ll_dispatch_send_shared_bytes(send) : 0;
  ll_dispatch_kernel<kSend, kRecv><<<num_blocks, kLlThreads, shared_bytes, stream>>>(send, recv);
  MOE_EP_CHECK_LAUNCH();
}

template <bool kSend, bool kRecv>
void preload() {
  MOE_EP_CUDA_CHECK(cudaFuncSetAttribute(ll_dispatch_kernel<kSend, kRecv>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         kLlDispatchSharedBytes));
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, ll_dispatch_kernel<kSend, kRecv>));
}

}  // namespace

void launch_ll_dispatch(const LlDispatchSendParams& send, const LlDispatchRecvParams& recv, LlPhases phases,
                        int num_blocks, cudaStream_t stream) {
  switch (phases) {
    case LlPhases::kSend: return launch<true, false>(send, recv, num_blocks, stream);
    case LlPhases::kRecv: return launch<false, true>(send, recv, num_blocks, stream);
    case LlPhases::kBoth: return launch<true, true>(send, recv, num_blocks, stream);
  }
}

void preload_ll_dispatch_kernels() {
  preload<true, false>();
  preload<false, true>();
  preload<true, true>();
}

}  // namespace moe_ep::kernels
