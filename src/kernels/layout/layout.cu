// get_dispatch_layout: per-expert, per-rank and per-node token counts and the
// token-in-rank mask, in ONE launch. Each block counts a slice of tokens in shared
// memory and writes its partial counts to a workspace; the last block to finish (ticket)
// sums the partials into the outputs, so no memset launch is needed. Expert ids outside
// [-1, num_experts) are reported through the error record (no host sync here).
#include <algorithm>

#include "moe_ep/config.hpp"

#include "device/sync.cuh"
#include "kernels/layout/layout_params.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

// One token per thread in the common case: 4096 tokens -> 8 blocks, so the last block
// sums only 8 partials per counter (its loads are the latency-critical tail).
constexpr int kThreads = 512;
constexpr int kMaxBlocks = 128;
constexpr int kTokensPerBlockMin = kThreads;

__global__ void __launch_bounds__(kThreads) layout_kernel(const __grid_constant__ LayoutParams p) {
  extern __shared__ int smem_counts[];  // [experts | ranks | nodes]
  const int num_counters = p.counters_per_block();
  int* expert_counts = smem_counts;
  int* rank_counts = smem_counts + p.num_experts;
  int* node_counts = rank_counts + p.num_ranks;
  for (int i = threadIdx.x; i < num_counters; i += blockDim.x) smem_counts[i] = 0;

  const int tokens_per_block = (p.num_tokens + gridDim.x - 1) / gridDim.x;
  const int token_begin = min(p.num_tokens, static_cast<int>(blockIdx.x) * tokens_per_block);
  const int token_end = min(p.num_tokens, token_begin + tokens_per_block);

  // Zero this block's rows of the mask cooperatively (contiguous bytes), then set ones.
  {
    std::uint8_t* rows = reinterpret_cast<std::uint8_t*>(p.is_token_in_rank);
    const std::int64_t begin = static_cast<std::int64_t>(token_begin) * p.num_ranks;
    const std::int64_t end = static_cast<std::int64_t>(token_end) * p.num_ranks;
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) rows[i] = 0;
  }
  __syncthreads();

  const int experts_per_rank = p.num_experts / p.num_ranks;
  for (int t = token_begin + threadIdx.x; t < token_end; t += blockDim.x) {
    const std::int64_t* ids = p.topk_idx + static_cast<std::int64_t>(t) * p.num_topk;
    // All of the token's ids are loaded before any is used (one memory latency, not
    // num_topk); arrays are indexed by unrolled constants so they stay in registers.
    std::int64_t loaded[kMaxTopk];
#pragma unroll
    for (int k = 0; k < kMaxTopk; ++k) loaded[k] = k < p.num_topk ? ids[k] : -1;
    int e[kMaxTopk];        // valid expert id or -1
    int rank_of[kMaxTopk];  // its rank or -1
#pragma unroll
    for (int k = 0; k < kMaxTopk; ++k) {
      const bool valid = loaded[k] >= 0 && loaded[k] < p.num_experts;
      if (loaded[k] < -1 || loaded[k] >= p.num_experts) {
        device::record_error(p.error, protocol::ErrorCode::kBadExpertId, p.rank, protocol::Phase::kLayout, -1, t, k,
                             loaded[k], p.num_experts);
      }
      e[k] = valid ? static_cast<int>(loaded[k]) : -1;
      rank_of[k] = valid ? e[k] / experts_per_rank : -1;
    }
#pragma unroll
    for (int k = 0; k < kMaxTopk; ++k) {
      if (rank_of[k] < 0) continue;
      atomicAdd(&expert_counts[e[k]], 1);
      // Count the token once per rank and once per node.
      const int r = rank_of[k];
      const int node = r / p.num_ranks_per_node;
      bool rank_seen = false, node_seen = false;
#pragma unroll
      for (int j = 0; j < k; ++j) {
        rank_seen |= rank_of[j] == r;
        node_seen |= rank_of[j] >= 0 && rank_of[j] / p.num_ranks_per_node == node;
      }
      if (!rank_seen) {
        atomicAdd(&rank_counts[r], 1);
        p.is_token_in_rank[static_cast<std::int64_t>(t) * p.num_ranks + r] = true;
      }
      if (p.num_nodes > 1 && !node_seen) atomicAdd(&node_counts[node], 1);
    }
  }
  __syncthreads();

  int* partial = p.workspace + static_cast<std::int64_t>(blockIdx.x) * num_counters;
  for (int i = threadIdx.x; i < num_counters; i += blockDim.x) partial[i] = smem_counts[i];

  // Last-block reduction (the threadFenceReduction pattern): partials are published by
  // the fence before the ticket; the last block's fence orders its reads after it.
  __shared__ bool is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(&p.state->layout_ticket, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  for (int i = threadIdx.x; i < num_counters; i += blockDim.x) {
    int sum = 0;
#pragma unroll 8
    for (int b = 0; b < static_cast<int>(gridDim.x); ++b) {
      sum += __ldcg(p.workspace + static_cast<std::int64_t>(b) * num_counters + i);
    }
    if (i < p.num_experts) {
      p.num_tokens_per_expert[i] = sum;
    } else if (i < p.num_experts + p.num_ranks) {
      p.num_tokens_per_rank[i - p.num_experts] = sum;
    } else {
      p.num_tokens_per_rdma_rank[i - p.num_experts - p.num_ranks] = sum;
    }
  }
  if (threadIdx.x == 0) p.state->layout_ticket = 0;
}

}  // namespace

int layout_num_blocks(int num_tokens) {
  const int by_tokens = (num_tokens + kTokensPerBlockMin - 1) / kTokensPerBlockMin;
  return std::clamp(by_tokens, 1, kMaxBlocks);
}

std::size_t layout_workspace_bytes(int num_blocks, int num_experts, int num_ranks, int num_nodes) {
  return sizeof(int) * static_cast<std::size_t>(num_blocks) * (num_experts + num_ranks + num_nodes);
}

std::size_t layout_workspace_bytes_max() {
  return layout_workspace_bytes(kMaxBlocks, kMaxExperts, kMaxRanks, kMaxRanks);
}

void preload_layout_kernels() {
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, layout_kernel));
}

void launch_layout(const LayoutParams& params, cudaStream_t stream) {
  const int num_blocks = layout_num_blocks(params.num_tokens);
  const std::size_t smem = sizeof(int) * params.counters_per_block();
  if (smem > 48 * 1024) {
    MOE_EP_CUDA_CHECK(cudaFuncSetAttribute(layout_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
  }
  layout_kernel<<<num_blocks, kThreads, smem, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

}  // namespace moe_ep::kernels
