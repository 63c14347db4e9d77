// Low-latency dispatch kernels: the sending phase alone (a call with a receive hook),
// the receiving phase alone (the hook), or both in one launch (no hook: one kernel per
// call; every block of the grid is resident, as the grid is at most the rank's SM share).
// Each in two builds: with and without peers reached by RDMA. And the direct dispatch's,
// with peers and alone.
#include "kernels/low_latency/dispatch_direct.cuh"
#include "kernels/low_latency/dispatch_recv.cuh"
#include "kernels/low_latency/dispatch_send.cuh"
#include "kernels/low_latency/ll_launch.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

template <bool kSend, bool kRecv, bool kRdma>
__global__ void __launch_bounds__(kLlThreads, kLlMinBlocksPerSm)
    ll_dispatch_kernel(LlDispatchSendParams send, LlDispatchRecvParams recv) {
  device::wait_prior_grid();  // launched by launch_ll_kernel
  ll_mark_entered(kSend ? send.ctx : recv.ctx);
  if constexpr (kSend) ll_dispatch_send_phase<kRdma>(send);
  if constexpr (kRecv) ll_dispatch_recv_phase<kRdma>(recv);
}

// The direct dispatch (send.ctx.direct_dispatch: both phases in one launch, never with
// RDMA peers), with peers or, kAlone, a rank alone (LlPhases::kAlone: nothing to publish,
// nobody to wait for). Kernels of their own, so that none of the pulling phases' code,
// nor alone the peers', is in them.
template <bool kAlone>
__global__ void __launch_bounds__(kLlThreads, kLlMinBlocksPerSm)
    ll_dispatch_direct_kernel(LlDispatchSendParams send, LlDispatchRecvParams recv) {
  device::wait_prior_grid();  // launched by launch_ll_kernel
  ll_mark_entered(send.ctx, /*solo=*/kAlone);
  ll_direct_dispatch<kAlone>(send, recv);
}

struct DispatchKernels {
  template <bool kSend, bool kRecv, bool kRdma>
  static void launch(const LlDispatchSendParams& send, const LlDispatchRecvParams& recv, int num_blocks,
                     cudaStream_t stream) {
    const int shared_bytes = kSend ? ll_dispatch_send_shared_bytes(send, num_blocks) : 0;
    if constexpr (kSend && kRecv && !kRdma) {
      if (send.ctx.direct_dispatch) {
        return launch_ll_kernel<ll_dispatch_direct_kernel<false>>(num_blocks, shared_bytes, stream, send, recv);
      }
    }
    launch_ll_kernel<ll_dispatch_kernel<kSend, kRecv, kRdma>>(num_blocks, shared_bytes, stream, send, recv);
  }
  static void launch_alone(const LlDispatchSendParams& send, const LlDispatchRecvParams& recv, int num_blocks,
                           cudaStream_t stream) {
    launch_ll_kernel<ll_dispatch_direct_kernel<true>>(num_blocks, ll_dispatch_send_shared_bytes(send, num_blocks),
                                                      stream, send, recv);
  }
  template <bool kSend, bool kRecv, bool kRdma>
  static void preload() {
    preload_ll_kernel(ll_dispatch_kernel<kSend, kRecv, kRdma>, kLlDispatchSharedBytes);
    if constexpr (kSend && kRecv && !kRdma) preload_ll_kernel(ll_dispatch_direct_kernel<false>, kLlDispatchSharedBytes);
  }
  static void preload_alone() { preload_ll_kernel(ll_dispatch_direct_kernel<true>, kLlDispatchSharedBytes); }
};

}  // namespace

void launch_ll_dispatch(const LlDispatchSendParams& send, const LlDispatchRecvParams& recv, LlPhases phases,
                        int num_blocks, cudaStream_t stream) {
  launch_ll_variant<DispatchKernels>(send.ctx.mirrors.count > 0, phases, send, recv, num_blocks, stream);
}

void preload_ll_dispatch_kernels() { preload_ll_variants<DispatchKernels>(); }

}  // namespace moe_ep::kernels
