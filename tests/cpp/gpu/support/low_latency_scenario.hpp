// One end-to-end low-latency run on in-process ranks, checked element by element against
// the CPU reference: random bf16 inputs (never zeros), random routing with -1 holes,
// duplicate experts and uneven token counts (ranks with 0 tokens), outputs poisoned
// before every repetition; dispatch (FP8 in three scale modes, or BF16) compared exactly
// (recv_count, src_info, layout_range, rows, scales, untouched rows past recv_count),
// the fake expert (row * (global expert + 1)), then combine compared within the
// contract's bound (or the LogFMT bound).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support/low_latency_io.hpp"

namespace moe_ep::test {

struct LowLatencyScenario {
  LlShape shape;
  std::vector<int> num_tokens;  // per rank; empty: default_tokens everywhere
  int default_tokens = 64;
  LlRouting routing;
  // Edits the random inputs before they are uploaded (e.g. every token to one expert).
  std::function<void(std::vector<reference::RankLowLatencyInput>&)> edit_inputs;
  LlCallOptions call;
  bool stats = false;     // pass the optional stats tensors and check them
  int repetitions = 1;    // rounds on the same inputs, outputs poisoned before each
  std::uint64_t seed = 1;
  std::string label;      // the test's own words, first in name()

  std::string name() const;
  int tokens_of(int rank) const { return num_tokens.empty() ? default_tokens : num_tokens.at(rank); }
  // zero_copy and LogFMT stage the combine in the low-latency region.
  bool needs_staging() const { return call.use_logfmt || call.zero_copy; }
  // num_rdma_bytes the scenario needs (ll_buffer_bytes of its shape).
  std::int64_t buffer_bytes() const { return ll_buffer_bytes(shape, needs_staging()); }
};

// Runs the scenario on `cluster` (scenario.shape.num_ranks low-latency ranks whose
// buffers hold at least buffer_bytes()) and records gtest failures for every mismatch.
// Returns the number of mismatching elements.
std::int64_t run_low_latency_scenario(Cluster& cluster, const LowLatencyScenario& scenario);

// Tokens per rank that differ: rank r sends max_tokens - 7 r (at least 1); with several
// ranks the last sends none.
std::vector<int> uneven_tokens(int num_ranks, int max_tokens);

}  // namespace moe_ep::test
