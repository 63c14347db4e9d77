// One rank's device arrays for the low-latency benchmark: every input set uploaded (tokens,
// routing, weights, and the expert outputs combine reads, placed in the rows the dispatch
// fills), one set of dispatch outputs, handle tensors and combine output shared by all
// sets. Allocated and uploaded from the main thread before any collective.
#pragma once
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "ll_workload.hpp"
#include "moe_ep/low_latency.hpp"
#include "support/device_array.hpp"

namespace moe_ep::bench {

struct LlRankArrays {
  LlRankArrays(const LlWorkload& workload, int rank);

  LowLatencyDispatchArgs dispatch_args(int set, cudaStream_t stream) const;
  LowLatencyDispatchOutputs dispatch_outputs() const;
  LowLatencyCombineArgs combine_args(int set, cudaStream_t stream) const;
  // Every output and handle tensor back to the poison byte (between timed phases, so a
  // phase's check cannot pass on what an earlier phase wrote).
  void poison_outputs();

  LlProblem problem;
  int num_ranks, num_local_experts, num_slots;  // num_slots = N = num_ranks * max_tokens
  int num_scales;                               // hidden / 128 (FP8)
  // Inputs, [set]
  std::vector<test::DeviceArray<std::uint16_t>> x;           // [num_tokens, hidden] bf16
  std::vector<test::DeviceArray<std::int64_t>> topk_idx;     // [num_tokens, num_topk]
  std::vector<test::DeviceArray<float>> topk_weights;        // [num_tokens, num_topk]
  std::vector<test::DeviceArray<std::uint16_t>> expert_x;    // [E, N, hidden] bf16, valid rows set
  // Outputs
  test::DeviceArray<std::uint8_t> recv_x;       // [E, N, hidden] fp8 or bf16
  test::DeviceArray<float> recv_scales;         // [E, S, N] (column-major [E, N, S]), FP8 only
  test::DeviceArray<int> recv_count;            // [E]
  test::DeviceArray<int> src_info;              // [E, N]
  test::DeviceArray<std::int64_t> layout_range; // [E, num_ranks]
  test::DeviceArray<int> combine_slots;         // [max_tokens, num_topk]
  test::DeviceArray<std::uint16_t> out;         // [num_tokens, hidden] bf16
  // ns each call's receive waited for every peer's `ready`, accumulated (deep_ep's
  // *_wait_recv_cost_stats): where a slow op spends its time.
  test::DeviceArray<std::int64_t> dispatch_waits, combine_waits;  // [num_ranks]
  LowLatencyHandle handle;                      // views of the three handle tensors
};

}  // namespace moe_ep::bench
