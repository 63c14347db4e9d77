// Argument checks shared by the CPU reference operations (see validation.hpp).
#include "reference/validation.hpp"

#include <stdexcept>

namespace moe_ep::reference::detail {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void require_size(const std::string& op, const std::string& what, std::size_t actual, std::size_t expected) {
  require(actual == expected, op + ": " + what + " has " + std::to_string(actual) + " elements, expected " +
                                  std::to_string(expected));
}

int num_local_experts(const std::string& op, int num_experts, int num_ranks) {
  require(num_ranks > 0, op + ": num_ranks must be positive, got " + std::to_string(num_ranks));
  require(num_experts >= 0 && num_experts % num_ranks == 0,
          op + ": num_experts " + std::to_string(num_experts) +
              " is not a non-negative multiple of num_ranks " + std::to_string(num_ranks));
  return num_experts / num_ranks;
}

void check_topk_idx(const std::string& op, const std::vector<std::int64_t>& topk_idx, int num_tokens,
                    int num_topk, int num_experts) {
  require(num_tokens >= 0 && num_topk >= 0, op + ": negative num_tokens " + std::to_string(num_tokens) +
                                                " or num_topk " + std::to_string(num_topk));
  require_size(op, "topk_idx", topk_idx.size(),
               static_cast<std::size_t>(num_tokens) * static_cast<std::size_t>(num_topk));
  for (int token = 0; token < num_tokens; ++token) {
    for (int slot = 0; slot < num_topk; ++slot) {
      const std::int64_t expert = topk_idx[static_cast<std::size_t>(token) * num_topk + slot];
      require(expert >= -1 && expert < num_experts,
              op + ": topk_idx[" + std::to_string(token) + "][" + std::to_string(slot) +
                  "] = " + std::to_string(expert) + " is outside [-1, " + std::to_string(num_experts) + ")");
    }
  }
}

int round_up(int count, int alignment) { return (count + alignment - 1) / alignment * alignment; }

int check_low_latency_inputs(const std::string& op, const LowLatencySpec& spec,
                             const std::vector<RankLowLatencyInput>& inputs, bool with_weights) {
  const int experts_per_rank = num_local_experts(op, spec.num_experts, spec.num_ranks);
  require(spec.hidden >= 0 && spec.hidden % 128 == 0,
          op + ": hidden " + std::to_string(spec.hidden) + " is not a multiple of 128");
  require(spec.num_topk >= 0, op + ": negative num_topk " + std::to_string(spec.num_topk));
  require_size(op, "inputs (one per rank)", inputs.size(), spec.num_ranks);
  for (std::size_t rank = 0; rank < inputs.size(); ++rank) {
    const RankLowLatencyInput& input = inputs[rank];
    const std::string rank_op = op + " (rank " + std::to_string(rank) + ")";
    require(input.num_tokens >= 0 && input.num_tokens <= spec.num_max_dispatch_tokens_per_rank,
            rank_op + ": num_tokens " + std::to_string(input.num_tokens) +
                " is outside [0, num_max_dispatch_tokens_per_rank = " +
                std::to_string(spec.num_max_dispatch_tokens_per_rank) + "]");
    const std::size_t num_tokens = static_cast<std::size_t>(input.num_tokens);
    require_size(rank_op, "x", input.x.size(), num_tokens * spec.hidden);
    check_topk_idx(rank_op, input.topk_idx, input.num_tokens, spec.num_topk, spec.num_experts);
    if (with_weights)
      require_size(rank_op, "topk_weights", input.topk_weights.size(), num_tokens * spec.num_topk);
  }
  return experts_per_rank;
}

}  // namespace moe_ep::reference::detail
