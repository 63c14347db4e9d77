// Intranode dispatch/combine against the CPU reference on in-process ranks sharing one
// GPU: ranks 1/2/4/8, BF16 and FP8, with and without top-k, holes, alignment,
// num_worst_tokens, cached dispatch, 0-2 biases, async and previous_event, uneven routing,
// ranks with zero tokens, and the hidden sizes of the issue.
#include <gtest/gtest.h>

#include <map>

#include "moe_ep/buffer.hpp"
#include "support/intranode_scenario.hpp"

namespace moe_ep::test {
namespace {

constexpr std::int64_t kTestTokensPerRank = 4096;

// One cluster per rank count, reused across scenarios (buffers are collective to build).
Cluster& cluster_of(int num_ranks) {
  static std::map<int, std::unique_ptr<Cluster>> clusters;
  auto& c = clusters[num_ranks];
  if (!c) {
    BufferOptions options;
    options.timeout_ns = 2'000'000'000ull;
    c = std::make_unique<Cluster>(num_ranks, Buffer::intranode_size_hint(kTestTokensPerRank, num_ranks), options);
  }
  return *c;
}

void expect_exact(const IntranodeScenario& s) {
  SCOPED_TRACE(s.name());
  EXPECT_EQ(run_intranode_scenario(cluster_of(s.num_ranks), s), 0);
}

class IntranodeRanks : public ::testing::TestWithParam<int> {};

TEST_P(IntranodeRanks, Bf16WithTopk) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  s.seed = 11 + s.num_ranks;
  expect_exact(s);
}

TEST_P(IntranodeRanks, Fp8AlignedWithOneBias) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  s.fp8 = true;
  s.expert_alignment = 128;
  s.num_biases = 1;
  s.hidden = 7168;
  s.seed = 21 + s.num_ranks;
  expect_exact(s);
}

TEST_P(IntranodeRanks, Fp8ColumnMajorScalesWithoutTopkTwoBiases) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  s.fp8 = true;
  s.column_major_scales = true;
  s.pass_topk = false;
  s.num_biases = 2;
  s.seed = 31 + s.num_ranks;
  expect_exact(s);
}

TEST_P(IntranodeRanks, WorstTokensAsync) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  s.num_worst_tokens = s.default_tokens * s.num_ranks;
  s.async_finish = true;
  s.num_biases = 2;
  s.seed = 41 + s.num_ranks;
  expect_exact(s);
}

TEST_P(IntranodeRanks, UnevenTokensZeroRankPreviousEvent) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  for (int r = 0; r < s.num_ranks; ++r) s.num_tokens.push_back(r == s.num_ranks - 1 && r > 0 ? 0 : 37 * (r + 1));
  s.previous_event = true;
  s.async_finish = true;
  s.hole_fraction = 0.3;
  s.seed = 51 + s.num_ranks;
  expect_exact(s);
}

TEST_P(IntranodeRanks, SkewedRoutingTop16) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  s.routing = Routing::kSkewed;
  s.num_topk = 16;
  s.num_experts = 128;
  s.seed = 61 + s.num_ranks;
  expect_exact(s);
}

TEST_P(IntranodeRanks, AllTokensToOneRank) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  s.routing = Routing::kOneRank;
  s.num_topk = 4;
  s.seed = 71 + s.num_ranks;
  expect_exact(s);
}

TEST_P(IntranodeRanks, AllHolesEveryRankEmpty) {
  IntranodeScenario s;
  s.num_ranks = GetParam();
  s.hole_fraction = 1.0;
  s.num_biases = 1;
  s.seed = 81 + s.num_ranks;
  expect_exact(s);
}

INSTANTIATE_TEST_SUITE_P(Ranks, IntranodeRanks, ::testing::Values(1, 2, 4, 8));

class IntranodeHidden : public ::testing::TestWithParam<int> {};

TEST_P(IntranodeHidden, Bf16AndFp8) {
  for (bool fp8 : {false, true}) {
    IntranodeScenario s;
    s.num_ranks = 2;
    s.hidden = GetParam();
    s.fp8 = fp8;
    s.default_tokens = 64;
    s.num_biases = 1;
    s.seed = 100 + GetParam() + fp8;
    expect_exact(s);
  }
}

INSTANTIATE_TEST_SUITE_P(Hidden, IntranodeHidden, ::testing::Values(2048, 3072, 4096, 5120, 6144, 7168, 16384));

}  // namespace
}  // namespace moe_ep::test
