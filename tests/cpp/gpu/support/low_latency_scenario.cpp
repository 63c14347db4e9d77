// The low-latency end-to-end check (see low_latency_scenario.hpp). Inputs and the oracle
// are made on the main thread; each rank's device work runs on its own thread; the
// comparison runs on the main thread after every rank has synchronized.
#include "support/low_latency_scenario.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace moe_ep::test {

std::string LowLatencyScenario::name() const {
  std::ostringstream out;
  if (!label.empty()) out << label << ": ";
  out << shape.describe() << " tokens=";
  for (int r = 0; r < shape.num_ranks; ++r) out << (r ? "," : "") << tokens_of(r);
  out << " holes=" << routing.hole_fraction << " dups=" << routing.duplicate_fraction
      << (routing.routing == Routing::kSkewed ? " skewed" : routing.routing == Routing::kOneRank ? " one-rank" : "")
      << (call.dispatch_hook ? " dispatch-hook" : "") << (call.combine_hook ? " combine-hook" : "")
      << (call.async_finish ? " async" : "") << (call.use_logfmt ? " logfmt" : "") << (call.zero_copy ? " zero-copy" : "")
      << (stats ? " stats" : "") << " reps=" << repetitions << " seed=" << seed;
  return out.str();
}

std::vector<int> uneven_tokens(int num_ranks, int max_tokens) {
  std::vector<int> tokens(num_ranks);
  for (int r = 0; r < num_ranks; ++r) tokens[r] = std::max(1, max_tokens - 7 * r);
  if (num_ranks > 1) tokens.back() = 0;
  return tokens;
}

std::int64_t run_low_latency_scenario(Cluster& cluster, const LowLatencyScenario& s) {
  if (cluster.num_ranks != s.shape.num_ranks) {
    throw std::invalid_argument("test: a cluster of " + std::to_string(cluster.num_ranks) + " ranks for " + s.name());
  }
  for (int r = 0; r < cluster.num_ranks; ++r) {
    if (cluster.buffers[r]->num_rdma_bytes() < s.buffer_bytes()) {
      throw std::invalid_argument("test: the cluster's buffers hold " + std::to_string(cluster.buffers[r]->num_rdma_bytes()) +
                                  " bytes, the scenario needs " + std::to_string(s.buffer_bytes()));
    }
  }
  std::vector<int> tokens(s.shape.num_ranks);
  for (int r = 0; r < s.shape.num_ranks; ++r) tokens[r] = s.tokens_of(r);
  auto inputs = random_ll_inputs(s.shape, tokens, s.seed, s.routing);
  if (s.edit_inputs) s.edit_inputs(inputs);

  LlSet set(s.shape, s.stats);  // every device array exists before the first collective
  set.set_inputs(std::move(inputs));
  LlCheck check;
  check.logfmt = s.call.use_logfmt;
  std::int64_t mismatches = 0;
  for (int rep = 0; rep < s.repetitions && mismatches == 0; ++rep) {
    if (rep > 0) set.poison_outputs();
    run_ll_round_on_all_ranks(cluster, set, s.call);
    check.stats_rounds = s.stats ? rep + 1 : 0;
    mismatches += set.count_mismatches(s.name() + " repetition " + std::to_string(rep), check);
  }
  return mismatches;
}

}  // namespace moe_ep::test
