// Low-latency combine kernels: sending phase, receiving phase, or both in one launch, with
// and without peers reached by RDMA (see dispatch.cu); and, in one launch, those of rows
// read in place and of a rank alone.
#include "kernels/low_latency/combine_recv.cuh"
#include "kernels/low_latency/combine_send.cuh"
#include "kernels/low_latency/ll_launch.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

template <bool kSend, bool kRecv, bool kRdma>
__global__ void __launch_bounds__(kLlThreads, kLlMinBlocksPerSm)
    ll_combine_kernel(LlCombineSendParams send, LlCombineRecvParams recv) {
  device::wait_prior_grid();  // launched by launch_ll_kernel
  ll_mark_entered(kSend ? send.ctx : recv.ctx);
  if constexpr (kSend) ll_combine_send_phase<kRdma>(send);
  if constexpr (kRecv) ll_combine_recv_phase<kRdma>(recv);
}

// This rank's rows read in place by its peers (x, or the half with zero_copy: not staged,
// not LogFMT; no RDMA peer), both phases in one launch: a kernel of its own, so that none of
// the staging code is in it.
__global__ void __launch_bounds__(kLlThreads, kLlMinBlocksPerSm)
    ll_combine_in_place_kernel(LlCombineSendParams send, LlCombineRecvParams recv) {
  device::wait_prior_grid();  // launched by launch_ll_kernel
  ll_mark_entered(send.ctx);
  ll_combine_send_phase</*kRdma=*/false, /*kInPlace=*/true>(send);
  ll_combine_recv_phase</*kRdma=*/false, /*kAlone=*/false, /*kInPlace=*/true>(recv);
}

// Alone, with its rows in place, in one launch (LlPhases::kAlone): nothing to publish,
// nobody to wait for. A kernel of its own, so that none of the peers' code is in it.
__global__ void __launch_bounds__(kLlThreads, kLlMinBlocksPerSm) ll_combine_alone_kernel(LlCombineRecvParams recv) {
  device::wait_prior_grid();  // launched by launch_ll_kernel
  ll_mark_entered(recv.ctx, /*solo=*/true);
  ll_combine_recv_phase</*kRdma=*/false, /*kAlone=*/true, /*kInPlace=*/true>(recv);
}

struct CombineKernels {
  template <bool kSend, bool kRecv, bool kRdma>
  static void launch(const LlCombineSendParams& send, const LlCombineRecvParams& recv, int num_blocks,
                     cudaStream_t stream) {
    if constexpr (kSend && kRecv && !kRdma) {
      if (!send.stage_rows && !send.logfmt) {
        return launch_ll_kernel<ll_combine_in_place_kernel>(num_blocks, 0, stream, send, recv);
      }
    }
    launch_ll_kernel<ll_combine_kernel<kSend, kRecv, kRdma>>(num_blocks, 0, stream, send, recv);
  }
  static void launch_alone(const LlCombineSendParams&, const LlCombineRecvParams& recv, int num_blocks,
                           cudaStream_t stream) {
    launch_ll_kernel<ll_combine_alone_kernel>(num_blocks, 0, stream, recv);
  }
  template <bool kSend, bool kRecv, bool kRdma>
  static void preload() {
    preload_ll_kernel(ll_combine_kernel<kSend, kRecv, kRdma>);
    if constexpr (kSend && kRecv && !kRdma) preload_ll_kernel(ll_combine_in_place_kernel);
  }
  static void preload_alone() { preload_ll_kernel(ll_combine_alone_kernel); }
};

}  // namespace

void launch_ll_combine(const LlCombineSendParams& send, const LlCombineRecvParams& recv, LlPhases phases,
                       int num_blocks, cudaStream_t stream) {
  launch_ll_variant<CombineKernels>(send.ctx.mirrors.count > 0, phases, send, recv, num_blocks, stream);
}

void preload_ll_combine_kernels() { preload_ll_variants<CombineKernels>(); }

}  // namespace moe_ep::kernels
