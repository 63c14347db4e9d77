// Byte accounting of the low-latency benchmark (see ll_traffic.hpp).
#include "ll_traffic.hpp"

#include <vector>

namespace moe_ep::bench {

LlTraffic ll_traffic(const LlWorkload& w) {
  const LlProblem& p = w.problem();
  const int experts_per_rank = w.num_local_experts();
  double pairs = 0, tokens = 0, dest_ranks = 0;
  for (int set = 0; set < w.num_sets(); ++set) {
    for (const auto& in : w.inputs(set)) {
      for (int t = 0; t < in.num_tokens; ++t) {
        std::vector<bool> to_rank(w.num_ranks(), false);
        int valid = 0;
        for (int k = 0; k < p.num_topk; ++k) {
          const std::int64_t e = in.topk_idx[static_cast<std::size_t>(t) * p.num_topk + k];
          if (e < 0) continue;
          ++valid;
          to_rank[e / experts_per_rank] = true;
        }
        pairs += valid;
        tokens += valid > 0 ? 1 : 0;
        for (bool b : to_rank) dest_ranks += b ? 1 : 0;
      }
    }
  }
  const double samples = static_cast<double>(w.num_sets()) * w.num_ranks();  // (set, rank) routings
  LlTraffic out;
  out.pairs_per_rank = pairs / samples;
  out.tokens_per_rank = tokens / samples;
  out.dest_ranks_per_token = tokens > 0 ? dest_ranks / tokens : 0;
  const double row_bf16 = 2.0 * p.hidden;
  out.dispatch_floor_bytes = w.num_ranks() * (out.pairs_per_rank * p.slot_bytes() + out.tokens_per_rank * row_bf16);
  out.combine_floor_bytes = w.num_ranks() * (out.pairs_per_rank + out.tokens_per_rank) * row_bf16;
  out.dispatch_logical_bytes = out.pairs_per_rank * (p.use_fp8 ? p.hidden + p.hidden / 32 + 16 : row_bf16);
  out.combine_logical_bytes = out.pairs_per_rank * row_bf16;
  out.sent_bytes_per_token = out.dest_ranks_per_token * p.slot_bytes();
  out.topk_hidden_bytes = static_cast<double>(p.num_topk) * p.payload_bytes();
  return out;
}

}  // namespace moe_ep::bench
