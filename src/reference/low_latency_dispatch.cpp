// CPU reference of low-latency dispatch. Rank r owns local experts [r*E/R, (r+1)*E/R);
// every valid (token, slot) becomes one entry in its expert's list on the owner rank, so
// a token naming the same expert in two slots appears there twice (as in DeepEP, which
// sends per slot). Lists are sorted by (src_rank, src_token); recv_count = list length.
#include <cstddef>

#include "reference/reference.hpp"
#include "reference/validation.hpp"

namespace moe_ep::reference {

std::vector<RankLowLatencyOutput> low_latency_dispatch(const LowLatencySpec& spec,
                                                       const std::vector<RankLowLatencyInput>& inputs) {
  const int experts_per_rank =
      detail::check_low_latency_inputs("low_latency_dispatch", spec, inputs, /*with_weights=*/false);
  std::vector<RankLowLatencyOutput> outputs(spec.num_ranks);
  for (RankLowLatencyOutput& out : outputs) out.per_expert.resize(experts_per_rank);

  // Visiting sources in (rank, token) order keeps every list sorted by that key.
  for (int src_rank = 0; src_rank < spec.num_ranks; ++src_rank) {
    const RankLowLatencyInput& input = inputs[src_rank];
    for (int token = 0; token < input.num_tokens; ++token) {
      const std::uint16_t* row = input.x.data() + static_cast<std::size_t>(token) * spec.hidden;
      for (int slot = 0; slot < spec.num_topk; ++slot) {
        const std::int64_t expert = input.topk_idx[static_cast<std::size_t>(token) * spec.num_topk + slot];
        if (expert < 0) continue;
        LowLatencySlot entry;
        entry.src_rank = src_rank;
        entry.src_token = token;
        if (spec.use_fp8) {
          entry.fp8 = cast_fp8_per_128(row, spec.hidden, spec.round_scale);
        } else {
          entry.x_bf16.assign(row, row + spec.hidden);
        }
        outputs[expert / experts_per_rank].per_expert[expert % experts_per_rank].push_back(std::move(entry));
      }
    }
  }
  for (RankLowLatencyOutput& out : outputs) {
    for (const std::vector<LowLatencySlot>& list : out.per_expert) {
      out.recv_count.push_back(static_cast<int>(list.size()));
    }
  }
  return outputs;
}

}  // namespace moe_ep::reference
