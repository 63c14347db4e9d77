// Block-wide check of top-k expert ids (shared by the intranode and internode counting
// kernels): every id must lie in [-1, num_experts).
#pragma once
#include <cstdint>

#include "device/sync.cuh"

namespace moe_ep::device {

// Whole block. Records kBadExpertId for each bad id; returns (every thread) whether all are valid.
__device__ inline bool validate_expert_ids(const std::int64_t* topk_idx, int num_tokens, int num_topk,
                                           int num_experts, protocol::ErrorRecord* error, int rank) {
  __shared__ bool ok;
  if (threadIdx.x == 0) ok = true;
  __syncthreads();
  const std::int64_t n = static_cast<std::int64_t>(num_tokens) * num_topk;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const std::int64_t e = topk_idx[i];
    if (e < -1 || e >= num_experts) {
      record_error(error, protocol::ErrorCode::kBadExpertId, rank, protocol::Phase::kDispatchNotify, -1, i / num_topk,
                   i % num_topk, e, num_experts);
      ok = false;
    }
  }
  __syncthreads();
  const bool result = ok;
  __syncthreads();  // a second call may reset `ok`
  return result;
}

}  // namespace moe_ep::device
