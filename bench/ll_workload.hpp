// Host side of the low-latency benchmark inputs: per input set and rank, the tokens
// (bf16), routing (top-k of abs(randn)+1 scores) and top-k weights; and the expert outputs
// that combine reads, a pure function of (set, expert, row) so the check regenerates them
// instead of storing ~E*N rows. Rows of an expert are in the reference dispatch's order
// (by source rank, then source token), which is the order the kernels promise in-process.
#pragma once
#include <cstdint>
#include <vector>

#include "ll_problem.hpp"
#include "reference/reference.hpp"

namespace moe_ep::bench {

class LlWorkload {
 public:
  LlWorkload(const LlProblem& problem, int num_ranks, int num_sets, std::uint64_t seed);

  const LlProblem& problem() const { return problem_; }
  int num_ranks() const { return num_ranks_; }
  int num_sets() const { return static_cast<int>(inputs_.size()); }
  int num_local_experts() const { return problem_.num_experts / num_ranks_; }
  // Slots per local expert: num_ranks * max_tokens.
  int num_slots() const { return num_ranks_ * problem_.max_tokens; }
  reference::LowLatencySpec spec() const;

  // [rank] inputs of one set (x, topk_idx, topk_weights).
  const std::vector<reference::RankLowLatencyInput>& inputs(int set) const { return inputs_[set]; }
  // [num_experts] valid (token, slot) entries naming each global expert, over all ranks.
  std::vector<int> expert_counts(int set) const;
  // Row `row` (< expert_counts[expert]) of the expert's output, [hidden] bf16.
  std::vector<std::uint16_t> expert_output_row(int set, int expert, int row) const;
  // Every valid row of every expert, as reference::low_latency_combine takes them; with
  // `absolute`, |x| (the reference then sums |w * x|, the scale of the rounding error).
  reference::ExpertOutputs expert_outputs(int set, bool absolute) const;

 private:
  LlProblem problem_;
  int num_ranks_;
  std::uint64_t seed_;
  std::vector<std::vector<reference::RankLowLatencyInput>> inputs_;  // [set][rank]
};

}  // namespace moe_ep::bench
