// Dispatch counting phase, one block: build this rank's send lists (which tokens go to
// each destination, in token order) from is_token_in_rank, check them against the
// caller's counts, validate expert ids, publish, meet every peer at the ready barrier,
// then compute the rank prefix matrix and the received counts for the host.
#include "device/expert_ids.cuh"
#include "kernels/intranode/collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ int* send_list(const CollectiveContext& ctx, int owner, int dst) {
  return reinterpret_cast<int*>(ctx.peer_bases[owner] + ctx.layout.send_lists_offset) + dst * ctx.layout.max_tokens;
}
__device__ __forceinline__ int* expert_counts(const CollectiveContext& ctx, int owner) {
  return reinterpret_cast<int*>(ctx.peer_bases[owner] + ctx.layout.expert_counts_offset);
}

// Send lists and send_pos by a block-wide scan over tokens, 1024 tokens per round.
// Returns (in every thread) whether the counts match num_tokens_per_rank.
__device__ bool build_send_lists(const NotifyParams& p) {
  const CollectiveContext& ctx = p.ctx;
  const int R = ctx.num_ranks;
  __shared__ int warp_counts[kWarps][kMaxNvlRanks];
  __shared__ int base[kMaxNvlRanks];
  __shared__ bool ok;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x < kMaxNvlRanks) base[threadIdx.x] = 0;
  if (threadIdx.x == 0) ok = true;
  __syncthreads();
  for (int chunk = 0; chunk < p.num_tokens; chunk += kThreads) {
    const int t = chunk + threadIdx.x;
    const bool valid = t < p.num_tokens;
    int lane_prefix[kMaxNvlRanks];
    bool in_rank[kMaxNvlRanks];
#pragma unroll
    for (int r = 0; r < kMaxNvlRanks; ++r) {
      in_rank[r] = valid && r < R && p.is_token_in_rank[static_cast<std::int64_t>(t) * R + r];
      const unsigned ballot = __ballot_sync(0xffffffffu, in_rank[r]);
      lane_prefix[r] = __popc(ballot & ((1u << lane) - 1u));
      if (lane == 0) warp_counts[warp][r] = __popc(ballot);
    }
    __syncthreads();
    // Exclusive scan of the warp counts, one thread per destination.
    if (threadIdx.x < R) {
      int running = base[threadIdx.x];
      for (int w = 0; w < kWarps; ++w) {
        const int c = warp_counts[w][threadIdx.x];
        warp_counts[w][threadIdx.x] = running;
        running += c;
      }
      base[threadIdx.x] = running;
    }
    __syncthreads();
    if (valid) {
#pragma unroll
      for (int r = 0; r < kMaxNvlRanks; ++r) {
        if (r >= R) break;
        const int pos = in_rank[r] ? warp_counts[warp][r] + lane_prefix[r] : -1;
        p.send_pos[static_cast<std::int64_t>(t) * R + r] = pos;
        if (pos >= 0) send_list(ctx, ctx.rank, r)[pos] = t;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x < R && base[threadIdx.x] != p.num_tokens_per_rank[threadIdx.x]) {
    device::record_error(ctx.error, protocol::ErrorCode::kCountMismatch, ctx.rank, protocol::Phase::kDispatchNotify,
                         threadIdx.x, base[threadIdx.x], p.num_tokens_per_rank[threadIdx.x]);
    ok = false;
  }
  if (threadIdx.x < R) peer_header(ctx, ctx.rank)->num_tokens_per_rank[threadIdx.x] = base[threadIdx.x];
  __syncthreads();
  return ok;
}

// After the ready barrier: the prefix matrix over sources and this rank's received
// counts (total and per local expert, aligned) into host-mapped memory.
__device__ void compute_received_counts(const NotifyParams& p) {
  const CollectiveContext& ctx = p.ctx;
  const int R = ctx.num_ranks;
  if (threadIdx.x < R) {
    const int j = threadIdx.x;
    int running = 0;
    for (int s = 0; s < R; ++s) {
      running += peer_header(ctx, s)->num_tokens_per_rank[j];
      p.rank_prefix_matrix[s * R + j] = running;
    }
    if (j == ctx.rank) {
      p.host_state->num_recv_tokens = running;
      if (p.num_worst_tokens > 0 && running > p.num_worst_tokens) {
        device::record_error(ctx.error, protocol::ErrorCode::kCapacity, ctx.rank, protocol::Phase::kDispatchNotify,
                             -1, running, p.num_worst_tokens);
      }
    }
  }
  const int num_local = p.num_experts / R;
  const int begin = ctx.rank * num_local;
  for (int e = threadIdx.x; e < num_local; e += blockDim.x) {
    int count = 0;
    for (int s = 0; s < R; ++s) count += expert_counts(ctx, s)[begin + e];
    const int a = p.expert_alignment;
    p.host_state->num_recv_tokens_per_expert[e] = (count + a - 1) / a * a;
  }
}

__global__ void __launch_bounds__(kThreads) notify_kernel(const __grid_constant__ NotifyParams p) {
  const CollectiveContext& ctx = p.ctx;
  const std::uint64_t epoch = current_op_epoch(ctx);
  bool ok = true;
  if (!p.cached) {
    for (int e = threadIdx.x; e < p.num_experts; e += blockDim.x) {
      expert_counts(ctx, ctx.rank)[e] = p.num_tokens_per_expert[e];
    }
    if (p.source.topk_idx != nullptr) {
      ok = device::validate_expert_ids(p.source.topk_idx, p.num_tokens, p.num_topk, p.num_experts, ctx.error, ctx.rank);
    }
    ok = build_send_lists(p) && ok;
  }
  if (threadIdx.x == 0) peer_header(ctx, ctx.rank)->source = p.source;
  if (!publish_and_wait_ready(ctx, epoch, !ok, protocol::Phase::kDispatchNotify)) return;
  if (!peers_agree_on_shapes(ctx, protocol::Phase::kDispatchNotify)) return;
  if (p.cached) return;
  compute_received_counts(p);
  if (p.host_waits) {
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence_system();  // the counts before the flag; the host polls the flag
      *const_cast<volatile std::int32_t*>(&p.host_state->counts_ready) = 1;
    }
  }
}

}  // namespace

void preload_notify_kernels() {
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, notify_kernel));
}

void launch_notify(const NotifyParams& params, cudaStream_t stream) {
  notify_kernel<<<1, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

}  // namespace moe_ep::kernels
