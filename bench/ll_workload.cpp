// Low-latency benchmark inputs (see ll_workload.hpp).
#include "ll_workload.hpp"

#include <random>

#include "fast_random.hpp"
#include "support/random_inputs.hpp"

namespace moe_ep::bench {

LlWorkload::LlWorkload(const LlProblem& problem, int num_ranks, int num_sets, std::uint64_t seed)
    : problem_(problem), num_ranks_(num_ranks), seed_(seed), inputs_(num_sets) {
  std::mt19937_64 rng(seed);
  const int t = problem.num_tokens, k = problem.num_topk;
  for (auto& set : inputs_) {
    for (int r = 0; r < num_ranks; ++r) {
      reference::RankLowLatencyInput in;
      in.num_tokens = t;
      in.x = fast_bf16(rng(), static_cast<std::size_t>(t) * problem.hidden);
      in.topk_idx = test::random_topk_idx(rng, t, k, problem.num_experts, 0.0, test::Routing::kUniform, num_ranks);
      in.topk_weights = test::random_weights(rng, static_cast<std::size_t>(t) * k);
      set.push_back(std::move(in));
    }
  }
}

reference::LowLatencySpec LlWorkload::spec() const {
  reference::LowLatencySpec s;
  s.num_ranks = num_ranks_;
  s.num_experts = problem_.num_experts;
  s.num_topk = problem_.num_topk;
  s.hidden = problem_.hidden;
  s.num_max_dispatch_tokens_per_rank = problem_.max_tokens;
  s.use_fp8 = problem_.use_fp8;
  s.round_scale = false;
  return s;
}

std::vector<int> LlWorkload::expert_counts(int set) const {
  std::vector<int> counts(problem_.num_experts, 0);
  for (const auto& in : inputs_[set]) {
    for (std::int64_t e : in.topk_idx) {
      if (e >= 0) ++counts[e];
    }
  }
  return counts;
}

std::vector<std::uint16_t> LlWorkload::expert_output_row(int set, int expert, int row) const {
  const std::uint64_t index = (static_cast<std::uint64_t>(set) * problem_.num_experts + expert) * num_slots() + row;
  return fast_bf16(mix_seed(seed_, index), problem_.hidden);
}

reference::ExpertOutputs LlWorkload::expert_outputs(int set, bool absolute) const {
  const int local = num_local_experts();
  const std::vector<int> counts = expert_counts(set);
  reference::ExpertOutputs out;
  out.rows.resize(num_ranks_);
  for (int owner = 0; owner < num_ranks_; ++owner) {
    out.rows[owner].resize(local);
    for (int e = 0; e < local; ++e) {
      const int expert = owner * local + e;
      for (int row = 0; row < counts[expert]; ++row) {
        std::vector<std::uint16_t> values = expert_output_row(set, expert, row);
        if (absolute) {
          for (auto& v : values) v &= 0x7fffu;
        }
        out.rows[owner][e].push_back(std::move(values));
      }
    }
  }
  return out;
}

}  // namespace moe_ep::bench
