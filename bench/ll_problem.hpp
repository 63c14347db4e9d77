// The low-latency benchmark problems: BENCHMARKS.md's ll-v3 / ll-v3-bf16, DeepEP's
// measured point (1 rank, 288 experts) and the 1-token decode step of the goal.
#pragma once
#include <string>
#include <vector>

namespace moe_ep::bench {

struct LlProblem {
  std::string name;
  int num_tokens = 128;   // dispatched per rank
  int max_tokens = 128;   // num_max_dispatch_tokens_per_rank
  int hidden = 7168;
  int num_topk = 8;
  int num_experts = 256;
  bool use_fp8 = true;    // FP8 cast in the dispatch kernel; combine is always BF16
  std::vector<int> rank_counts;  // the rank counts it runs at (empty: every requested one)
  int ranks_per_node = 0;        // > 0: pretend nodes; other-node peers over emulated RDMA

  int payload_bytes() const { return use_fp8 ? hidden : 2 * hidden; }
  // One received slot: FP8 payload + fp32 scale per 128 channels (hidden/32 bytes), or BF16.
  int slot_bytes() const { return use_fp8 ? hidden + hidden / 32 : 2 * hidden; }
};

// ll-v3, ll-v3-bf16, ll-v3-t1 (1 token per rank), ll-v3-t1-m1 (the same into receive
// buffers of 1 token per source, 8 ranks), ll-v3-e288 (1 rank, 288 experts),
// ll-v3-2x4 (ll-v3 on 2 pretend nodes of 4 ranks: the RDMA path emulated on one GPU).
const std::vector<LlProblem>& ll_problems();
bool runs_at(const LlProblem& problem, int num_ranks);

}  // namespace moe_ep::bench
