// Publication kernel (one block; also dispatch's sink publication) and combine: publish
// this rank's expert outputs (ready barrier), then every home
// token pulls its rows from each rank it was sent to and sums them in fp32 with the
// biases (one warp per token, fixed rank order so results are bitwise repeatable).
#include "device/bf16_vector.cuh"
#include "kernels/intranode/collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kPublishThreads = 32;
constexpr int kReduceThreads = 512;

__global__ void __launch_bounds__(kPublishThreads) publish_kernel(const __grid_constant__ PublishParams p) {
  if (p.ctx.state->abort != 0) return;
  const std::uint64_t epoch = current_op_epoch(p.ctx);
  if (threadIdx.x == 0) {
    protocol::NvlHeader* mine = peer_header(p.ctx, p.ctx.rank);
    if (p.flags == protocol::FlagSet::kSinkReady) {
      mine->sink = p.sink;
    } else {
      mine->source = p.source;
    }
  }
  if (!publish_and_wait_ready(p.ctx, epoch, false, p.phase, p.flags)) return;
  if (p.flags == protocol::FlagSet::kReady) peers_agree_on_shapes(p.ctx, p.phase);
}

__global__ void __launch_bounds__(kReduceThreads) reduce_kernel(const __grid_constant__ ReduceParams p) {
  const CollectiveContext& ctx = p.ctx;
  if (ctx.state->abort != 0) return;
  const std::uint64_t epoch = current_op_epoch(ctx);
  const int R = ctx.num_ranks;

  __shared__ protocol::SourceDescriptor sources[kMaxNvlRanks];
  __shared__ int my_offset[kMaxNvlRanks];  // where this rank's tokens start in each rank's receive
  if (threadIdx.x < R) {
    sources[threadIdx.x] = rebase(peer_header(ctx, threadIdx.x)->source, ctx.peer_bases[threadIdx.x]);
    my_offset[threadIdx.x] = ctx.rank == 0 ? 0 : p.rank_prefix_matrix[(ctx.rank - 1) * R + threadIdx.x];
  }
  __syncthreads();

  const int lane = threadIdx.x % 32;
  const int warps_per_block = blockDim.x / 32;
  const int num_vectors = p.hidden / 8;
  for (int t = blockIdx.x * warps_per_block + threadIdx.x / 32; t < p.num_tokens; t += gridDim.x * warps_per_block) {
    // Rows of this token on each rank it went to; indices stay compile-time constants
    // (unrolled over kMaxNvlRanks) so nothing spills to local memory.
    const int4* rows[kMaxNvlRanks];
    std::int64_t source_row[kMaxNvlRanks];
    unsigned mask = 0;
#pragma unroll
    for (int r = 0; r < kMaxNvlRanks; ++r) {
      rows[r] = nullptr;
      source_row[r] = 0;
      if (r < R && p.is_token_in_rank[static_cast<std::int64_t>(t) * R + r]) {
        source_row[r] = my_offset[r] + p.send_pos[static_cast<std::int64_t>(t) * R + r];
        rows[r] = reinterpret_cast<const int4*>(sources[r].x + source_row[r] * sources[r].x_row_stride);
        mask |= 1u << r;
      }
    }
    int4* out = reinterpret_cast<int4*>(p.combined_x + static_cast<std::int64_t>(t) * p.hidden);
    const int4* bias0 = p.bias0 == nullptr ? nullptr : reinterpret_cast<const int4*>(p.bias0 + t * p.bias0_row_stride);
    const int4* bias1 = p.bias1 == nullptr ? nullptr : reinterpret_cast<const int4*>(p.bias1 + t * p.bias1_row_stride);
    for (int v = lane; v < num_vectors; v += 32) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      device::accumulate_rows_bf16x8(acc, rows, mask, v);
      device::accumulate_biases_bf16x8(acc, bias0, bias1, v);
      out[v] = device::pack_bf16x8(acc);
    }
    if (p.combined_topk_weights != nullptr && lane < p.num_topk) {
      float sum = 0.0f;
#pragma unroll
      for (int r = 0; r < kMaxNvlRanks; ++r) {
        if (mask & (1u << r)) sum += sources[r].topk_weights[source_row[r] * p.num_topk + lane];
      }
      p.combined_topk_weights[static_cast<std::int64_t>(t) * p.num_topk + lane] = sum;
    }
  }
  finish_with_done_barrier(ctx, epoch, protocol::Phase::kCombineReduce);
}

}  // namespace

void preload_combine_kernels() {
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, publish_kernel));
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, reduce_kernel));
}

void launch_publish(const PublishParams& params, cudaStream_t stream) {
  publish_kernel<<<1, kPublishThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

void launch_reduce(const ReduceParams& params, int num_blocks, cudaStream_t stream) {
  reduce_kernel<<<num_blocks, kReduceThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

}  // namespace moe_ep::kernels
