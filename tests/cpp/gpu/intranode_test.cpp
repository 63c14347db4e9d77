// High-throughput dispatch/combine against the CPU reference on in-process ranks sharing
// one GPU: ranks 1/2/4/8 on one node, and emulated nodes 2x4, 4x2, 2x2, 2x1 (the internode
// kernels: RDMA between nodes over the emulated transport, NVLink within), BF16 and FP8, with and without top-k, holes, alignment,
// num_worst_tokens, cached dispatch, 0-2 biases, async and previous_event, uneven routing,
// ranks with zero tokens, and the hidden sizes of the issue.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>

#include "moe_ep/buffer.hpp"
#include "support/intranode_scenario.hpp"

namespace moe_ep::test {
namespace {

constexpr std::int64_t kTestTokensPerRank = 4096;
constexpr std::int64_t kInternodeTestTokensPerRank = 512;  // every internode scenario stays below

// A rank layout: ranks_per_node == num_ranks is one node.
struct RankLayout {
  int num_ranks;
  int ranks_per_node;
};

std::string layout_name(const ::testing::TestParamInfo<RankLayout>& info) {
  const RankLayout& l = info.param;
  if (l.ranks_per_node == l.num_ranks) return std::to_string(l.num_ranks);
  return std::to_string(l.num_ranks / l.ranks_per_node) + "x" + std::to_string(l.ranks_per_node);
}

// One cluster per layout, reused across scenarios (buffers are collective to build).
Cluster& cluster_of(const IntranodeScenario& s) {
  static std::map<std::pair<int, int>, std::unique_ptr<Cluster>> clusters;
  auto& c = clusters[{s.num_ranks, s.per_node()}];
  if (!c) {
    BufferOptions options;
    options.timeout_ns = 2'000'000'000ull;
    std::int64_t num_rdma_bytes = 0;
    if (s.internode()) {
      options.emulated_ranks_per_node = s.per_node();
      num_rdma_bytes = Buffer::internode_size_hint(kInternodeTestTokensPerRank, 16384, s.num_ranks, s.per_node());
    }
    c = std::make_unique<Cluster>(s.num_ranks, Buffer::intranode_size_hint(kTestTokensPerRank, s.num_ranks), options,
                                  0, num_rdma_bytes);
  }
  return *c;
}

void expect_exact(const IntranodeScenario& s) {
  SCOPED_TRACE(s.name());
  EXPECT_EQ(run_intranode_scenario(cluster_of(s), s), 0);
}

class HighThroughputRanks : public ::testing::TestWithParam<RankLayout> {
 protected:
  IntranodeScenario scenario() const {
    IntranodeScenario s;
    s.num_ranks = GetParam().num_ranks;
    s.ranks_per_node = GetParam().ranks_per_node;
    return s;
  }
};

TEST_P(HighThroughputRanks, Bf16WithTopk) {
  IntranodeScenario s = scenario();
  s.seed = 11 + s.num_ranks;
  expect_exact(s);
}

TEST_P(HighThroughputRanks, Fp8AlignedWithOneBias) {
  IntranodeScenario s = scenario();
  s.fp8 = true;
  s.expert_alignment = 128;
  s.num_biases = 1;
  s.hidden = 7168;
  s.seed = 21 + s.num_ranks;
  expect_exact(s);
}

TEST_P(HighThroughputRanks, Fp8ColumnMajorScalesWithoutTopkTwoBiases) {
  IntranodeScenario s = scenario();
  s.fp8 = true;
  s.column_major_scales = true;
  s.pass_topk = false;
  s.num_biases = 2;
  s.seed = 31 + s.num_ranks;
  expect_exact(s);
}

TEST_P(HighThroughputRanks, WorstTokensAsync) {
  IntranodeScenario s = scenario();
  s.num_worst_tokens = s.default_tokens * s.num_ranks;
  s.async_finish = true;
  s.num_biases = 2;
  s.seed = 41 + s.num_ranks;
  expect_exact(s);
}

TEST_P(HighThroughputRanks, UnevenTokensZeroRankPreviousEvent) {
  IntranodeScenario s = scenario();
  for (int r = 0; r < s.num_ranks; ++r) s.num_tokens.push_back(r == s.num_ranks - 1 && r > 0 ? 0 : 37 * (r + 1));
  s.previous_event = true;
  s.async_finish = true;
  s.hole_fraction = 0.3;
  s.seed = 51 + s.num_ranks;
  expect_exact(s);
}

TEST_P(HighThroughputRanks, SkewedRoutingTop16) {
  IntranodeScenario s = scenario();
  s.routing = Routing::kSkewed;
  s.num_topk = 16;
  s.num_experts = 128;
  s.seed = 61 + s.num_ranks;
  expect_exact(s);
}

TEST_P(HighThroughputRanks, AllTokensToOneRank) {
  IntranodeScenario s = scenario();
  s.routing = Routing::kOneRank;
  s.num_topk = 4;
  s.seed = 71 + s.num_ranks;
  expect_exact(s);
}

TEST_P(HighThroughputRanks, AllHolesEveryRankEmpty) {
  IntranodeScenario s = scenario();
  s.hole_fraction = 1.0;
  s.num_biases = 1;
  s.seed = 81 + s.num_ranks;
  expect_exact(s);
}

INSTANTIATE_TEST_SUITE_P(Ranks, HighThroughputRanks,
                         ::testing::Values(RankLayout{1, 1}, RankLayout{2, 2}, RankLayout{4, 4}, RankLayout{8, 8}),
                         layout_name);
INSTANTIATE_TEST_SUITE_P(EmulatedNodes, HighThroughputRanks,
                         ::testing::Values(RankLayout{8, 4}, RankLayout{8, 2}, RankLayout{4, 2}, RankLayout{2, 1}),
                         layout_name);

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
    s.ranks_per_node = 1;  // the same across two emulated nodes
    expect_exact(s);
  }
}

INSTANTIATE_TEST_SUITE_P(Hidden, IntranodeHidden, ::testing::Values(2048, 3072, 4096, 5120, 6144, 7168, 16384));

}  // namespace
}  // namespace moe_ep::test
