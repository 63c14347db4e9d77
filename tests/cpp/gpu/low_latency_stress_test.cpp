// TEST_CASES.md stress cases for the low-latency calls on in-process ranks of one GPU,
// every output poisoned before each round and compared with the CPU reference:
// S2 every rank at exactly T tokens, 1000 dispatch+combine rounds; S4 token counts (and T)
// alternating 1 -> max -> 1 on one buffer with no manual clean; S7 the same round twice
// gives bitwise-equal outputs (plain and LogFMT combine). (S1 is in low_latency_test.cpp,
// S5 in low_latency_graph_test.cpp, S6 in low_latency_hook_test.cpp.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "support/low_latency_io.hpp"

namespace moe_ep::test {
namespace {

constexpr std::uint64_t kTimeoutMs = 2000;

LlShape shape_of(int num_ranks, int hidden, int num_experts, int num_topk, int max_tokens, ScaleMode mode) {
  LlShape s;
  s.num_ranks = num_ranks;
  s.hidden = hidden;
  s.num_experts = num_experts;
  s.num_topk = num_topk;
  s.max_tokens = max_tokens;
  s.mode = mode;
  return s;
}

// S2: both ranks send exactly T tokens, 1000 rounds alternating an FP8 (UE8M0) and a BF16
// payload on one buffer; inputs stay the same, so one reference checks them all.
TEST(LowLatencyStress, S2TokensExactlyAtTRepeatedThousandTimes) {
  constexpr int kRanks = 2, kT = 128, kRounds = 1000;
  const LlShape fp8 = shape_of(kRanks, 256, 16, 8, kT, ScaleMode::kFp8Ue8m0);
  const LlShape bf16 = shape_of(kRanks, 256, 16, 8, kT, ScaleMode::kBf16);
  auto cluster = make_ll_cluster(kRanks, ll_buffer_bytes(fp8, false), ll_options(kTimeoutMs));
  LlSet sets[2] = {LlSet(fp8), LlSet(bf16)};
  sets[0].set_random_inputs(ll_tokens_everywhere(fp8, kT), 21, {.hole_fraction = 0.0});
  sets[1].set_random_inputs(ll_tokens_everywhere(bf16, kT), 22, {.hole_fraction = 0.05});
  std::int64_t bad = 0;
  int round = 0;
  for (; round < kRounds && bad == 0; ++round) {
    LlSet& set = sets[round % 2];
    set.poison_outputs();
    run_ll_round_on_all_ranks(*cluster, set);
    bad = set.count_mismatches("round " + std::to_string(round));
  }
  EXPECT_EQ(bad, 0) << "first bad round " << round - 1;
}

// S4: 1 -> max -> 1 tokens (and uneven mixes) with T = 1024, alternating with calls of
// T = 1, on the same buffers with nothing cleaned between calls.
TEST(LowLatencyStress, S4TokensAndTAlternateOneMaxOne) {
  constexpr int kRanks = 2, kMax = kMaxLowLatencyTokens;
  const LlShape big = shape_of(kRanks, 512, 16, 8, kMax, ScaleMode::kFp8);
  const LlShape small = shape_of(kRanks, 2048, 16, 4, 1, ScaleMode::kFp8RoundScale);
  auto cluster = make_ll_cluster(kRanks, std::max(ll_buffer_bytes(big, false), ll_buffer_bytes(small, false)),
                                 ll_options(kTimeoutMs));
  LlSet big_set(big), small_set(small);
  const std::vector<std::vector<int>> steps = {{1, 1}, {kMax, kMax}, {1, 1},       {kMax, 1}, {1, kMax},
                                               {1, 1}, {kMax, kMax}, {0, 1},       {kMax, kMax}, {1, 1}};
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const std::string context = "step " + std::to_string(i) + " tokens " + std::to_string(steps[i][0]) + "," +
                                std::to_string(steps[i][1]);
    big_set.set_random_inputs(steps[i], 40 + i);
    run_ll_round_on_all_ranks(*cluster, big_set);
    EXPECT_EQ(big_set.count_mismatches(context + " T=1024"), 0) << context;
    small_set.set_random_inputs({static_cast<int>(i % 2), 1}, 80 + i);
    run_ll_round_on_all_ranks(*cluster, small_set);
    EXPECT_EQ(small_set.count_mismatches(context + " then T=1"), 0) << context;
  }
}

// S7: the same round twice on the same inputs (outputs poisoned between) gives
// bitwise-equal outputs, the combined sums included; with the plain and the LogFMT combine.
TEST(LowLatencyStress, S7SameCallTwiceBitwiseEqual) {
  constexpr int kRanks = 4, kT = 96;
  const LlShape shape = shape_of(kRanks, 1024, 32, 8, kT, ScaleMode::kFp8);
  auto cluster = make_ll_cluster(kRanks, ll_buffer_bytes(shape, /*staging=*/true), ll_options(kTimeoutMs));
  LlSet set(shape);
  set.set_random_inputs({kT, 60, kT, 1}, 77, {.hole_fraction = 0.1, .duplicate_fraction = 0.1, .routing = Routing::kSkewed});
  for (bool logfmt : {false, true}) {
    SCOPED_TRACE(logfmt ? "logfmt" : "plain combine");
    LlCallOptions options;
    options.use_logfmt = logfmt;
    LlCheck check;
    check.logfmt = logfmt;
    set.poison_outputs();
    run_ll_round_on_all_ranks(*cluster, set, options);
    ASSERT_EQ(set.count_mismatches("first call", check), 0);
    std::vector<LlRankOutputs> first;
    for (int r = 0; r < kRanks; ++r) first.push_back(set.rank(r).download());
    set.poison_outputs();
    run_ll_round_on_all_ranks(*cluster, set, options);
    for (int r = 0; r < kRanks; ++r) {
      std::string difference;
      EXPECT_TRUE(bitwise_equal(first[r], set.rank(r).download(), &difference)) << "rank " << r << ": " << difference;
    }
  }
}

}  // namespace
}  // namespace moe_ep::test
