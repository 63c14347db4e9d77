// Dispatch copy phase for process groups (pull): peers cannot address the caller's
// tensors in another process, so each source staged its tokens in its NVL buffer and each
// receiver pulls its rows from there (CUDA IPC mapping) into their final place, one warp
// per row. Rows are grouped by source rank, then source token.
#include "device/copy.cuh"
#include "kernels/intranode/collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kMaxScalesPerLane = 2;  // hidden up to 8192 with per-128 scales; more loop below
constexpr int kRemoteUnroll = 8;      // 4 KiB of a peer's row in flight per warp

__device__ __forceinline__ const int* send_list(const CollectiveContext& ctx, int owner, int dst) {
  return reinterpret_cast<const int*>(ctx.peer_bases[owner] + ctx.layout.send_lists_offset) +
         dst * ctx.layout.max_tokens;
}

__global__ void __launch_bounds__(kThreads) receive_kernel(const __grid_constant__ ReceiveParams p) {
  const CollectiveContext& ctx = p.ctx;
  if (ctx.state->abort != 0) return;  // the counting phase failed; the host raises
  const std::uint64_t epoch = current_op_epoch(ctx);
  const int R = ctx.num_ranks;

  __shared__ protocol::SourceDescriptor sources[kMaxNvlRanks];
  __shared__ int source_offset[kMaxNvlRanks + 1];  // first received row of each source
  if (threadIdx.x < R) {
    sources[threadIdx.x] = rebase(peer_header(ctx, threadIdx.x)->source, ctx.peer_bases[threadIdx.x]);
    source_offset[threadIdx.x + 1] = p.rank_prefix_matrix[threadIdx.x * R + ctx.rank];
  }
  if (threadIdx.x == 0) source_offset[0] = 0;
  __syncthreads();

  const int num_rows = min(source_offset[R], p.num_rows);  // overflow was recorded by notify
  const int lane = threadIdx.x % 32;
  const int warps_per_block = blockDim.x / 32;
  const int num_vectors = static_cast<int>(p.row_bytes / 16);
  for (int row = blockIdx.x * warps_per_block + threadIdx.x / 32; row < num_rows;
       row += gridDim.x * warps_per_block) {
    int s = 0;
    while (source_offset[s + 1] <= row) ++s;
    const protocol::SourceDescriptor& src = sources[s];
    int src_token;
    if (p.cached) {
      src_token = p.recv_src_idx[row];
    } else {
      src_token = send_list(ctx, s, ctx.rank)[row - source_offset[s]];
      if (lane == 0) p.recv_src_idx[row] = src_token;
    }
    // The row's scales and top-k are loaded before the row is copied, so their round trips
    // to the peer overlap the copy's instead of following it.
    float scales[kMaxScalesPerLane];
#pragma unroll
    for (int i = 0; i < kMaxScalesPerLane; ++i) {
      const int c = lane + 32 * i;
      scales[i] = c < p.num_scales ? src.x_scales[src_token * src.scale_token_stride + c * src.scale_hidden_stride] : 0.0f;
    }
    const bool has_topk = p.recv_topk_idx != nullptr && lane < p.num_topk;
    const std::int64_t slot = static_cast<std::int64_t>(src_token) * p.num_topk + lane;
    const std::int64_t e = has_topk ? src.topk_idx[slot] : -1;
    const float w = has_topk && p.recv_topk_weights != nullptr ? src.topk_weights[slot] : 0.0f;
    device::warp_copy_row<kRemoteUnroll>(reinterpret_cast<int4*>(p.recv_x + row * p.row_bytes),
                                         reinterpret_cast<const int4*>(src.x + src_token * src.x_row_stride),
                                         num_vectors, lane);
#pragma unroll
    for (int i = 0; i < kMaxScalesPerLane; ++i) {
      const int c = lane + 32 * i;
      if (c < p.num_scales) p.recv_x_scales[static_cast<std::int64_t>(row) * p.num_scales + c] = scales[i];
    }
    for (int c = lane + 32 * kMaxScalesPerLane; c < p.num_scales; c += 32) {
      p.recv_x_scales[static_cast<std::int64_t>(row) * p.num_scales + c] =
          src.x_scales[src_token * src.scale_token_stride + c * src.scale_hidden_stride];
    }
    if (has_topk) {
      const bool local = e >= p.expert_begin && e < p.expert_begin + p.num_local_experts;
      const std::int64_t out = static_cast<std::int64_t>(row) * p.num_topk + lane;
      p.recv_topk_idx[out] = local ? e - p.expert_begin : -1;
      if (p.recv_topk_weights != nullptr) p.recv_topk_weights[out] = local ? w : 0.0f;
    }
  }
  finish_with_done_barrier(ctx, epoch, protocol::Phase::kDispatchReceive);
}

}  // namespace

void preload_receive_kernels() {
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, receive_kernel));
}

void launch_receive(const ReceiveParams& params, int num_blocks, cudaStream_t stream) {
  receive_kernel<<<num_blocks, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

}  // namespace moe_ep::kernels
