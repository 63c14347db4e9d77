// Dispatch copy phase (push): each rank reads each of its tokens once, in chunks of a few
// 16-byte vectors per lane, and writes every chunk into the output tensor (sink) of each
// rank the token goes to, at row prefix[me-1][dst] + send_pos[t][dst]. Payload bytes are
// thus read once and written once per destination: the minimum. Rows come out grouped by
// source rank, then source token, as the receiver's counts promised.
#include "device/copy.cuh"
#include "kernels/intranode/collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kVectorsPerLane = 7;  // loads in flight per lane; 7 divides the 7168-wide rows (fp8: 14, bf16: 28 vectors per lane)

__global__ void __launch_bounds__(kThreads) send_kernel(const __grid_constant__ SendParams p) {
  const CollectiveContext& ctx = p.ctx;
  if (ctx.state->abort != 0) return;  // an earlier phase failed; the host raises
  const std::uint64_t epoch = current_op_epoch(ctx);
  const int R = ctx.num_ranks;

  __shared__ protocol::SinkDescriptor sinks[kMaxNvlRanks];
  __shared__ int first_row[kMaxNvlRanks];  // where this rank's tokens start in each sink
  if (threadIdx.x < R) {
    sinks[threadIdx.x] = peer_header(ctx, threadIdx.x)->sink;
    first_row[threadIdx.x] = ctx.rank == 0 ? 0 : p.rank_prefix_matrix[(ctx.rank - 1) * R + threadIdx.x];
  }
  __syncthreads();

  const int lane = threadIdx.x % 32;
  const int warps_per_block = blockDim.x / 32;
  const int num_vectors = static_cast<int>(p.row_bytes / 16);
  for (int t = blockIdx.x * warps_per_block + threadIdx.x / 32; t < p.num_tokens; t += gridDim.x * warps_per_block) {
    // Destination rows, unrolled over kMaxNvlRanks so they stay in registers.
    std::int64_t row[kMaxNvlRanks];
    unsigned mask = 0;
#pragma unroll
    for (int r = 0; r < kMaxNvlRanks; ++r) {
      row[r] = 0;
      if (r < R) {
        const int pos = p.send_pos[static_cast<std::int64_t>(t) * R + r];
        row[r] = first_row[r] + pos;
        // Rows past a sink's capacity were reported by the receiver's notify (num_worst_tokens).
        if (pos >= 0 && row[r] < sinks[r].num_rows) mask |= 1u << r;
      }
    }
    if (mask == 0) continue;

    const int4* src = reinterpret_cast<const int4*>(p.x + t * p.x_row_stride);
    for (int base = 0; base < num_vectors; base += 32 * kVectorsPerLane) {
      int4 v[kVectorsPerLane];
#pragma unroll
      for (int u = 0; u < kVectorsPerLane; ++u) {
        const int i = base + u * 32 + lane;
        if (i < num_vectors) v[u] = device::load_stream(src + i);
      }
#pragma unroll
      for (int r = 0; r < kMaxNvlRanks; ++r) {
        if (!(mask & (1u << r))) continue;
        int4* dst = reinterpret_cast<int4*>(sinks[r].recv_x + row[r] * p.row_bytes);
#pragma unroll
        for (int u = 0; u < kVectorsPerLane; ++u) {
          const int i = base + u * 32 + lane;
          if (i < num_vectors) dst[i] = v[u];
        }
      }
    }
    for (int c = lane; c < p.num_scales; c += 32) {
      const float scale = p.x_scales[t * p.scale_token_stride + c * p.scale_hidden_stride];
#pragma unroll
      for (int r = 0; r < kMaxNvlRanks; ++r) {
        if (mask & (1u << r)) sinks[r].recv_x_scales[row[r] * p.num_scales + c] = scale;
      }
    }
    if (p.topk_idx != nullptr && lane < p.num_topk) {
      const std::int64_t slot = static_cast<std::int64_t>(t) * p.num_topk + lane;
      const std::int64_t e = p.topk_idx[slot];
      const float w = p.topk_weights != nullptr ? p.topk_weights[slot] : 0.0f;
#pragma unroll
      for (int r = 0; r < kMaxNvlRanks; ++r) {
        if (!(mask & (1u << r)) || sinks[r].recv_topk_idx == nullptr) continue;
        const std::int64_t begin = static_cast<std::int64_t>(r) * p.num_local_experts;
        const bool local = e >= begin && e < begin + p.num_local_experts;
        const std::int64_t out = row[r] * p.num_topk + lane;
        sinks[r].recv_topk_idx[out] = local ? e - begin : -1;
        if (sinks[r].recv_topk_weights != nullptr) sinks[r].recv_topk_weights[out] = local ? w : 0.0f;
      }
    }
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < kMaxNvlRanks; ++r) {
        if ((mask & (1u << r)) && sinks[r].recv_src_idx != nullptr) sinks[r].recv_src_idx[row[r]] = t;
      }
    }
  }
  finish_with_done_barrier(ctx, epoch, protocol::Phase::kDispatchReceive);
}

}  // namespace

void preload_send_kernels() {
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, send_kernel));
}

void launch_send(const SendParams& params, int num_blocks, cudaStream_t stream) {
  send_kernel<<<num_blocks, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

}  // namespace moe_ep::kernels
