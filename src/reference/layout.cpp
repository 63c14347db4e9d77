// CPU reference of get_dispatch_layout: which ranks, nodes and experts each token of one
// rank goes to. A token counts once per rank and once per node however many of its
// experts live there, and once per (token, slot) for experts.
#include <cstddef>
#include <string>

#include "reference/reference.hpp"
#include "reference/validation.hpp"

namespace moe_ep::reference {

Layout get_dispatch_layout(const std::vector<std::int64_t>& topk_idx, int num_tokens, int num_topk,
                           int num_experts, int num_ranks, int num_ranks_per_node) {
  constexpr const char* kOp = "get_dispatch_layout";
  const int experts_per_rank = detail::num_local_experts(kOp, num_experts, num_ranks);
  detail::check_topk_idx(kOp, topk_idx, num_tokens, num_topk, num_experts);
  detail::require(num_ranks_per_node > 0, std::string(kOp) + ": num_ranks_per_node must be positive, got " +
                                              std::to_string(num_ranks_per_node));
  const bool multi_node = num_ranks > num_ranks_per_node;
  detail::require(!multi_node || num_ranks % num_ranks_per_node == 0,
                  std::string(kOp) + ": num_ranks " + std::to_string(num_ranks) +
                      " is not a multiple of num_ranks_per_node " + std::to_string(num_ranks_per_node));
  const int num_nodes = multi_node ? num_ranks / num_ranks_per_node : 0;

  Layout layout;
  layout.num_tokens_per_rank.assign(num_ranks, 0);
  layout.num_tokens_per_rdma_rank.assign(num_nodes, 0);
  layout.num_tokens_per_expert.assign(num_experts, 0);
  layout.is_token_in_rank.assign(static_cast<std::size_t>(num_tokens) * num_ranks, 0);
  for (int token = 0; token < num_tokens; ++token) {
    std::uint8_t* token_in_rank = &layout.is_token_in_rank[static_cast<std::size_t>(token) * num_ranks];
    for (int slot = 0; slot < num_topk; ++slot) {
      const std::int64_t expert = topk_idx[static_cast<std::size_t>(token) * num_topk + slot];
      if (expert < 0) continue;
      ++layout.num_tokens_per_expert[expert];
      token_in_rank[expert / experts_per_rank] = 1;
    }
    std::vector<std::uint8_t> token_in_node(num_nodes, 0);
    for (int rank = 0; rank < num_ranks; ++rank) {
      if (!token_in_rank[rank]) continue;
      ++layout.num_tokens_per_rank[rank];
      if (multi_node) token_in_node[rank / num_ranks_per_node] = 1;
    }
    for (int node = 0; node < num_nodes; ++node) layout.num_tokens_per_rdma_rank[node] += token_in_node[node];
  }
  return layout;
}

}  // namespace moe_ep::reference
