// CPU reference of high-throughput (intranode) dispatch. Each destination rank receives,
// grouped by source rank (rank 0 first) and in source token order, every token routed to
// it, once however many of its experts live there. Per-expert counts are per (token, slot):
// a token naming the same local expert in two slots counts twice (as get_dispatch_layout's
// num_tokens_per_expert does); each count is then rounded up to expert_alignment.
#include <cstddef>
#include <string>

#include "reference/reference.hpp"
#include "reference/validation.hpp"

namespace moe_ep::reference {
namespace {

constexpr const char* kOp = "dispatch";

std::string rank_op(int rank) { return std::string(kOp) + " (rank " + std::to_string(rank) + ")"; }

// Routing of one source rank: [num_tokens, num_ranks] 0/1, and per global expert the
// number of (token, slot) pairs naming it (all zero without top-k).
struct SourceRouting {
  std::vector<std::uint8_t> is_token_in_rank;
  std::vector<int> num_slots_per_expert;
};

SourceRouting route_source_rank(const DispatchSpec& spec, const RankDispatchInput& input, int rank) {
  const std::size_t num_tokens = static_cast<std::size_t>(input.num_tokens);
  if (spec.num_topk > 0) {
    detail::check_topk_idx(rank_op(rank), input.topk_idx, input.num_tokens, spec.num_topk, spec.num_experts);
    Layout layout = get_dispatch_layout(input.topk_idx, input.num_tokens, spec.num_topk, spec.num_experts,
                                        spec.num_ranks, spec.num_ranks);
    return {std::move(layout.is_token_in_rank), std::move(layout.num_tokens_per_expert)};
  }
  detail::require_size(rank_op(rank), "is_token_in_rank", input.is_token_in_rank.size(),
                       num_tokens * spec.num_ranks);
  for (std::size_t i = 0; i < input.is_token_in_rank.size(); ++i) {
    detail::require(input.is_token_in_rank[i] <= 1,
                    rank_op(rank) + ": is_token_in_rank[" + std::to_string(i / spec.num_ranks) + "][" +
                        std::to_string(i % spec.num_ranks) +
                        "] = " + std::to_string(input.is_token_in_rank[i]) + " is not 0 or 1");
  }
  return {input.is_token_in_rank, std::vector<int>(spec.num_experts, 0)};
}

void check_spec(const DispatchSpec& spec, std::size_t num_inputs) {
  detail::num_local_experts(kOp, spec.num_experts, spec.num_ranks);
  detail::require_size(kOp, "inputs (one per rank)", num_inputs, spec.num_ranks);
  detail::require(spec.num_topk >= 0 && spec.row_bytes >= 0 && spec.num_scales >= 0,
                  std::string(kOp) + ": negative num_topk " + std::to_string(spec.num_topk) + ", row_bytes " +
                      std::to_string(spec.row_bytes) + " or num_scales " + std::to_string(spec.num_scales));
  detail::require(spec.expert_alignment >= 1, std::string(kOp) + ": expert_alignment must be >= 1, got " +
                                                  std::to_string(spec.expert_alignment));
}

// Weights are optional, but all ranks must agree: true when any rank passes them.
bool inputs_have_weights(const DispatchSpec& spec, const std::vector<RankDispatchInput>& inputs) {
  if (spec.num_topk == 0) return false;
  for (const RankDispatchInput& input : inputs) {
    if (!input.topk_weights.empty()) return true;
  }
  return false;
}

void check_payload(const DispatchSpec& spec, const RankDispatchInput& input, int rank, bool has_weights) {
  detail::require(input.num_tokens >= 0,
                  rank_op(rank) + ": negative num_tokens " + std::to_string(input.num_tokens));
  const std::size_t num_tokens = static_cast<std::size_t>(input.num_tokens);
  detail::require_size(rank_op(rank), "x", input.x.size(), num_tokens * spec.row_bytes);
  detail::require_size(rank_op(rank), "x_scales", input.x_scales.size(), num_tokens * spec.num_scales);
  if (has_weights) {
    detail::require_size(rank_op(rank), "topk_weights", input.topk_weights.size(),
                         num_tokens * spec.num_topk);
  }
}

template <typename T>
void append_row(std::vector<T>& dst, const std::vector<T>& src, std::size_t row, std::size_t row_len) {
  dst.insert(dst.end(), src.begin() + row * row_len, src.begin() + (row + 1) * row_len);
}

// Appends the top-k slots of one token as seen by destination rank `dst_rank`.
void append_topk(RankDispatchOutput& out, const DispatchSpec& spec, const RankDispatchInput& input,
                 std::size_t token, int dst_rank, bool has_weights) {
  const int experts_per_rank = spec.num_experts / spec.num_ranks;
  const std::int64_t first_local_expert = static_cast<std::int64_t>(dst_rank) * experts_per_rank;
  for (int slot = 0; slot < spec.num_topk; ++slot) {
    const std::size_t i = token * spec.num_topk + slot;
    const std::int64_t expert = input.topk_idx[i];
    const bool is_local = expert >= first_local_expert && expert < first_local_expert + experts_per_rank;
    out.recv_topk_idx.push_back(is_local ? expert - first_local_expert : -1);
    if (has_weights) out.recv_topk_weights.push_back(is_local ? input.topk_weights[i] : 0.0f);
  }
}

}  // namespace

std::vector<RankDispatchOutput> dispatch(const DispatchSpec& spec,
                                         const std::vector<RankDispatchInput>& inputs) {
  check_spec(spec, inputs.size());
  const int num_ranks = spec.num_ranks;
  const int experts_per_rank = spec.num_experts / num_ranks;
  const bool has_weights = inputs_have_weights(spec, inputs);

  std::vector<SourceRouting> routing;
  for (int src = 0; src < num_ranks; ++src) {
    check_payload(spec, inputs[src], src, has_weights);
    routing.push_back(route_source_rank(spec, inputs[src], src));
  }

  // rank_prefix_matrix[i][j] = tokens that ranks 0..i send to j.
  std::vector<int> rank_prefix_matrix(static_cast<std::size_t>(num_ranks) * num_ranks, 0);
  for (int src = 0; src < num_ranks; ++src) {
    for (int dst = 0; dst < num_ranks; ++dst) {
      int sent = src > 0 ? rank_prefix_matrix[(src - 1) * num_ranks + dst] : 0;
      for (int token = 0; token < inputs[src].num_tokens; ++token) {
        sent += routing[src].is_token_in_rank[static_cast<std::size_t>(token) * num_ranks + dst];
      }
      rank_prefix_matrix[src * num_ranks + dst] = sent;
    }
  }

  std::vector<RankDispatchOutput> outputs(num_ranks);
  for (int dst = 0; dst < num_ranks; ++dst) {
    RankDispatchOutput& out = outputs[dst];
    out.num_recv_tokens = rank_prefix_matrix[(num_ranks - 1) * num_ranks + dst];
    out.rank_prefix_matrix = rank_prefix_matrix;
    out.num_recv_tokens_per_expert.assign(experts_per_rank, 0);
    for (int src = 0; src < num_ranks; ++src) {
      const RankDispatchInput& input = inputs[src];
      for (int local = 0; local < experts_per_rank; ++local) {
        out.num_recv_tokens_per_expert[local] +=
            routing[src].num_slots_per_expert[dst * experts_per_rank + local];
      }
      for (int token = 0; token < input.num_tokens; ++token) {
        const std::size_t row = static_cast<std::size_t>(token);
        if (!routing[src].is_token_in_rank[row * num_ranks + dst]) continue;
        append_row(out.recv_x, input.x, row, spec.row_bytes);
        append_row(out.recv_x_scales, input.x_scales, row, spec.num_scales);
        out.recv_src_idx.push_back(token);
        out.recv_src_rank.push_back(src);
        append_topk(out, spec, input, row, dst, has_weights);
      }
    }
    for (int& count : out.num_recv_tokens_per_expert) count = detail::round_up(count, spec.expert_alignment);
  }
  return outputs;
}

}  // namespace moe_ep::reference
