// The low-latency problem table (see ll_problem.hpp).
#include "ll_problem.hpp"

#include <algorithm>

namespace moe_ep::bench {

const std::vector<LlProblem>& ll_problems() {
  static const std::vector<LlProblem> problems = [] {
    LlProblem v3;
    v3.name = "ll-v3";
    LlProblem bf16 = v3;
    bf16.name = "ll-v3-bf16";
    bf16.use_fp8 = false;
    LlProblem one_token = v3;
    one_token.name = "ll-v3-t1";
    one_token.num_tokens = 1;
    // Diagnostic: one token into receive buffers of one token per source (its slots' pages
    // few), against ll-v3-t1's 128.
    LlProblem small_buffers = one_token;
    small_buffers.name = "ll-v3-t1-m1";
    small_buffers.max_tokens = 1;
    small_buffers.rank_counts = {8};
    LlProblem deep_ep = v3;  // DeepEP V1 measured 19.0 us dispatch / 25.2 us combine here
    deep_ep.name = "ll-v3-e288";
    deep_ep.num_experts = 288;
    deep_ep.rank_counts = {1};
    LlProblem two_nodes = v3;
    two_nodes.name = "ll-v3-2x4";
    two_nodes.rank_counts = {8};
    two_nodes.ranks_per_node = 4;
    return std::vector<LlProblem>{v3, bf16, one_token, small_buffers, deep_ep, two_nodes};
  }();
  return problems;
}

bool runs_at(const LlProblem& problem, int num_ranks) {
  return problem.num_experts % num_ranks == 0 &&
         (problem.rank_counts.empty() ||
          std::find(problem.rank_counts.begin(), problem.rank_counts.end(), num_ranks) != problem.rank_counts.end());
}

}  // namespace moe_ep::bench
