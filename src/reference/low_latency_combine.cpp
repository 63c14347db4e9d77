// CPU reference of low-latency combine: each home rank gets, per token, the sum over valid
// slots k of topk_weights[t][k] * (expert's bf16 output row), in double. A token naming the
// same expert in slots k1 < k2 has two entries (same source key) on the owner: the first in
// list order answers k1, the second k2. Every dispatched entry must be claimed by one slot.
#include <cstddef>
#include <map>
#include <string>
#include <utility>

#include "reference/reference.hpp"
#include "reference/validation.hpp"

namespace moe_ep::reference {
namespace {

constexpr const char* kOp = "low_latency_combine";

using SourceKey = std::pair<int, int>;  // (src_rank, src_token)
// [owner rank][local expert] -> source key -> entry indices in list order
using EntryIndex = std::vector<std::vector<std::map<SourceKey, std::vector<int>>>>;

// Checks dispatched and expert_outputs agree in shape, and indexes the entries by source.
EntryIndex index_entries(const LowLatencySpec& spec, int experts_per_rank,
                         const std::vector<RankLowLatencyOutput>& dispatched,
                         const ExpertOutputs& expert_outputs) {
  detail::require_size(kOp, "dispatched (one per rank)", dispatched.size(), spec.num_ranks);
  detail::require_size(kOp, "expert_outputs.rows (one per rank)", expert_outputs.rows.size(), spec.num_ranks);
  EntryIndex index(spec.num_ranks, std::vector<std::map<SourceKey, std::vector<int>>>(experts_per_rank));
  for (int owner = 0; owner < spec.num_ranks; ++owner) {
    const std::string where = std::string(kOp) + " (owner rank " + std::to_string(owner) + ")";
    detail::require_size(where, "per_expert", dispatched[owner].per_expert.size(), experts_per_rank);
    detail::require_size(where, "expert_outputs.rows", expert_outputs.rows[owner].size(), experts_per_rank);
    for (int local = 0; local < experts_per_rank; ++local) {
      const std::vector<LowLatencySlot>& entries = dispatched[owner].per_expert[local];
      const auto& rows = expert_outputs.rows[owner][local];
      const std::string expert = "expert " + std::to_string(local);
      detail::require_size(where, "rows of " + expert, rows.size(), entries.size());
      for (std::size_t i = 0; i < entries.size(); ++i) {
        detail::require_size(where, "row " + std::to_string(i) + " of " + expert, rows[i].size(),
                             spec.hidden);
        index[owner][local][{entries[i].src_rank, entries[i].src_token}].push_back(static_cast<int>(i));
      }
    }
  }
  return index;
}

// Index of the entry answering (token, slot) of home rank `home`; throws if missing.
int find_entry(const EntryIndex& index, const RankLowLatencyInput& input, int num_topk, int experts_per_rank,
               int home, int token, int slot) {
  const std::int64_t* token_experts = input.topk_idx.data() + static_cast<std::size_t>(token) * num_topk;
  const std::int64_t expert = token_experts[slot];
  int occurrence = 0;  // earlier slots of this token naming the same expert
  for (int earlier = 0; earlier < slot; ++earlier) occurrence += token_experts[earlier] == expert ? 1 : 0;
  const auto& by_source = index[expert / experts_per_rank][expert % experts_per_rank];
  const auto found = by_source.find({home, token});
  detail::require(found != by_source.end() && occurrence < static_cast<int>(found->second.size()),
                  std::string(kOp) + ": no dispatched entry for rank " + std::to_string(home) + " token " +
                      std::to_string(token) + " slot " + std::to_string(slot) + " (expert " +
                      std::to_string(expert) + ")");
  return found->second[occurrence];
}

}  // namespace

std::vector<std::vector<double>> low_latency_combine(const LowLatencySpec& spec,
                                                     const std::vector<RankLowLatencyInput>& inputs,
                                                     const std::vector<RankLowLatencyOutput>& dispatched,
                                                     const ExpertOutputs& expert_outputs) {
  const int experts_per_rank = detail::check_low_latency_inputs(kOp, spec, inputs, /*with_weights=*/true);
  const EntryIndex index = index_entries(spec, experts_per_rank, dispatched, expert_outputs);

  std::size_t num_claimed_entries = 0;
  std::vector<std::vector<double>> combined(spec.num_ranks);
  for (int home = 0; home < spec.num_ranks; ++home) {
    const RankLowLatencyInput& input = inputs[home];
    combined[home].assign(static_cast<std::size_t>(input.num_tokens) * spec.hidden, 0.0);
    for (int token = 0; token < input.num_tokens; ++token) {
      double* out = combined[home].data() + static_cast<std::size_t>(token) * spec.hidden;
      for (int slot = 0; slot < spec.num_topk; ++slot) {
        const std::size_t i = static_cast<std::size_t>(token) * spec.num_topk + slot;
        const std::int64_t expert = input.topk_idx[i];
        if (expert < 0) continue;
        const int entry = find_entry(index, input, spec.num_topk, experts_per_rank, home, token, slot);
        const std::vector<std::uint16_t>& row =
            expert_outputs.rows[expert / experts_per_rank][expert % experts_per_rank][entry];
        const double weight = input.topk_weights[i];
        for (int c = 0; c < spec.hidden; ++c) out[c] += weight * bf16_to_float(row[c]);
        ++num_claimed_entries;
      }
    }
  }
  std::size_t num_entries = 0;
  for (const RankLowLatencyOutput& out : dispatched) {
    for (const auto& entries : out.per_expert) num_entries += entries.size();
  }
  detail::require(num_claimed_entries == num_entries,
                  std::string(kOp) + ": dispatched holds " + std::to_string(num_entries) +
                      " entries but the inputs' valid (token, slot) pairs claim " +
                      std::to_string(num_claimed_entries));
  return combined;
}

}  // namespace moe_ep::reference
