// One end-to-end high-throughput run on in-process ranks (one node, or emulated nodes), checked element by element against
// the CPU reference: layout -> dispatch -> expert-specific transform -> combine, then a
// cached dispatch of fresh inputs with the same handle. Outputs are poisoned first.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "support/random_inputs.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::test {

struct IntranodeScenario {
  int num_ranks = 2;
  int ranks_per_node = 0;       // < num_ranks: emulated nodes (the internode kernels); 0: one node
  std::vector<int> num_tokens;  // per rank; empty: default_tokens everywhere
  int default_tokens = 256;
  int hidden = 2048;
  int num_experts = 64;
  int num_topk = 8;
  bool pass_topk = true;        // dispatch with topk_idx + topk_weights
  bool fp8 = false;
  bool column_major_scales = false;
  double hole_fraction = 0.1;
  Routing routing = Routing::kUniform;
  int expert_alignment = 1;
  int num_worst_tokens = 0;
  int num_biases = 0;
  bool async_finish = false;
  bool previous_event = false;
  bool cached_round = true;
  int num_sms = 4;
  std::uint64_t seed = 1;

  std::string name() const;
  int tokens_of(int rank) const { return num_tokens.empty() ? default_tokens : num_tokens[rank]; }
  int per_node() const { return ranks_per_node > 0 ? ranks_per_node : num_ranks; }
  int num_nodes() const { return num_ranks / per_node(); }
  bool internode() const { return per_node() < num_ranks; }
};

// Runs the scenario on `cluster` (which must have scenario.num_ranks ranks) and records
// gtest failures for every mismatch. Returns the number of mismatching elements.
std::int64_t run_intranode_scenario(Cluster& cluster, const IntranodeScenario& scenario);

}  // namespace moe_ep::test
