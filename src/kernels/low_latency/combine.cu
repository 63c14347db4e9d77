// Low-latency combine kernels: sending phase, receiving phase, or both in one launch
// (see dispatch.cu).
#include "kernels/low_latency/combine_recv.cuh"
#include "kernels/low_latency/combine_send.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

template <bool kSend, bool kRecv>
__global__ void __launch_bounds__(kLlThreads, kLlMinBlocksPerSm) ll_combine_kernel(const __grid_constant__ LlCombineSendParams send,
                                                                               const __grid_constant__ LlCombineRecvParams recv) {
  ll_mark_entered(kSend ? send.ctx : recv.ctx);
  if constexpr (kSend) ll_combine_send_phase(send);
  if constexpr (kRecv) ll_combine_recv_phase(recv);
}

template <bool kSend, bool kRecv>
void launch(const LlCombineSendParams& send, const LlCombineRecvParams& recv, int num_blocks, cudaStream_t stream) {
  ll_combine_kernel<kSend, kRecv><<<num_blocks, kLlThreads, 0, stream>>>(send, recv);
  MOE_EP_CHECK_LAUNCH();
}

template <bool kSend, bool kRecv>
void preload() {
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, ll_combine_kernel<kSend, kRecv>));
}

}  // namespace

void launch_ll_combine(const LlCombineSendParams& send, const LlCombineRecvParams& recv, LlPhases phases,
                       int num_blocks, cudaStream_t stream) {
  switch (phases) {
    case LlPhases::kSend: return launch<true, false>(send, recv, num_blocks, stream);
    case LlPhases::kRecv: return launch<false, true>(send, recv, num_blocks, stream);
    case LlPhases::kBoth: return launch<true, true>(send, recv, num_blocks, stream);
  }
}

void preload_ll_combine_kernels() {
  preload<true, false>();
  preload<false, true>();
  preload<true, true>();
}

}  // namespace moe_ep::kernels
