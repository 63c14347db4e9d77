// CPU reference of high-throughput (intranode) combine: the inverse routing of dispatch.
// Each home rank gets, per token, the unweighted sum (in double) of the bf16 rows every
// destination rank returns for it, plus up to two bf16 biases; top-k weights are summed
// the same way. A token sent nowhere gets just its biases (zero without them).
#include <cstddef>
#include <string>

#include "reference/reference.hpp"
#include "reference/validation.hpp"

namespace moe_ep::reference {
namespace {

constexpr const char* kOp = "combine";

std::string rank_op(int rank) { return std::string(kOp) + " (rank " + std::to_string(rank) + ")"; }

// Weights are optional, but all ranks must agree: true when any rank passes them.
bool inputs_have_weights(int num_topk, const std::vector<RankCombineInput>& inputs) {
  if (num_topk == 0) return false;
  for (const RankCombineInput& input : inputs) {
    if (!input.topk_weights.empty()) return true;
  }
  return false;
}

// Adds a bf16 bias [num_tokens, hidden] (empty: nothing) to the combined rows.
void add_bias(std::vector<double>& combined_x, const std::vector<std::uint16_t>& bias, int home_rank,
              const char* name) {
  if (bias.empty()) return;
  detail::require_size(rank_op(home_rank), name, bias.size(), combined_x.size());
  for (std::size_t i = 0; i < bias.size(); ++i) combined_x[i] += bf16_to_float(bias[i]);
}

}  // namespace

std::vector<RankCombineOutput> combine(int hidden, int num_topk,
                                       const std::vector<RankDispatchOutput>& dispatched,
                                       const std::vector<int>& num_tokens_per_home_rank,
                                       const std::vector<RankCombineInput>& inputs) {
  const std::size_t num_ranks = dispatched.size();
  detail::require(hidden >= 0 && num_topk >= 0, std::string(kOp) + ": negative hidden " +
                                                    std::to_string(hidden) + " or num_topk " +
                                                    std::to_string(num_topk));
  detail::require_size(kOp, "num_tokens_per_home_rank", num_tokens_per_home_rank.size(), num_ranks);
  detail::require_size(kOp, "inputs (one per rank)", inputs.size(), num_ranks);
  const bool has_weights = inputs_have_weights(num_topk, inputs);

  std::vector<RankCombineOutput> outputs(num_ranks);
  for (std::size_t home = 0; home < num_ranks; ++home) {
    const int num_tokens = num_tokens_per_home_rank[home];
    detail::require(num_tokens >= 0,
                    rank_op(static_cast<int>(home)) + ": negative num_tokens " + std::to_string(num_tokens));
    outputs[home].combined_x.assign(static_cast<std::size_t>(num_tokens) * hidden, 0.0);
    if (has_weights)
      outputs[home].combined_topk_weights.assign(static_cast<std::size_t>(num_tokens) * num_topk, 0.0);
  }

  for (std::size_t dst = 0; dst < num_ranks; ++dst) {
    const std::string op = rank_op(static_cast<int>(dst));
    const RankDispatchOutput& routed = dispatched[dst];
    const RankCombineInput& input = inputs[dst];
    const std::size_t num_recv = static_cast<std::size_t>(routed.num_recv_tokens);
    detail::require_size(op, "recv_src_rank", routed.recv_src_rank.size(), num_recv);
    detail::require_size(op, "recv_src_idx", routed.recv_src_idx.size(), num_recv);
    detail::require_size(op, "x", input.x.size(), num_recv * hidden);
    if (has_weights) detail::require_size(op, "topk_weights", input.topk_weights.size(), num_recv * num_topk);
    for (std::size_t row = 0; row < num_recv; ++row) {
      const int home = routed.recv_src_rank[row];
      const int token = routed.recv_src_idx[row];
      detail::require(home >= 0 && static_cast<std::size_t>(home) < num_ranks && token >= 0 &&
                          token < num_tokens_per_home_rank[home],
                      op + ": received row " + std::to_string(row) + " names source rank " +
                          std::to_string(home) + " token " + std::to_string(token) +
                          ", which does not exist");
      RankCombineOutput& out = outputs[home];
      for (int c = 0; c < hidden; ++c) {
        out.combined_x[static_cast<std::size_t>(token) * hidden + c] +=
            bf16_to_float(input.x[row * hidden + c]);
      }
      for (int slot = 0; has_weights && slot < num_topk; ++slot) {
        out.combined_topk_weights[static_cast<std::size_t>(token) * num_topk + slot] +=
            input.topk_weights[row * num_topk + slot];
      }
    }
  }

  for (std::size_t home = 0; home < num_ranks; ++home) {
    add_bias(outputs[home].combined_x, inputs[home].bias0, static_cast<int>(home), "bias0");
    add_bias(outputs[home].combined_x, inputs[home].bias1, static_cast<int>(home), "bias1");
  }
  return outputs;
}

}  // namespace moe_ep::reference
