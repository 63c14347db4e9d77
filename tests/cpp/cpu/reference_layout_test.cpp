// Tests of the reference get_dispatch_layout: hand-checked single- and multi-node cases
// (holes, two experts on one rank, a rank receiving nothing), precondition errors, and
// counting laws on random routing.
#include <gtest/gtest.h>

#include <cstddef>
#include <set>
#include <stdexcept>
#include <string>

#include "reference/reference.hpp"
#include "reference_test_util.hpp"

namespace moe_ep::reference {
namespace {

TEST(ReferenceLayout, HandCheckedSingleNode) {
  // 3 ranks x 2 experts. Rank 1 receives nothing; token 2 goes nowhere; token 3 names
  // expert 0 twice.
  const std::vector<std::int64_t> topk_idx = {
      0,  1,  -1,  // token 0: experts 0, 1 both on rank 0
      5,  4,  -1,  // token 1: rank 2 twice
      -1, -1, -1,  // token 2: nowhere
      0,  5,  0,   // token 3: ranks 0 and 2, expert 0 in two slots
  };
  const Layout layout = get_dispatch_layout(topk_idx, 4, 3, 6, 3, 8);
  EXPECT_EQ(layout.num_tokens_per_rank, (std::vector<int>{2, 0, 2}));
  EXPECT_TRUE(layout.num_tokens_per_rdma_rank.empty());
  EXPECT_EQ(layout.num_tokens_per_expert, (std::vector<int>{3, 1, 0, 0, 1, 2}));
  EXPECT_EQ(layout.is_token_in_rank, (std::vector<std::uint8_t>{1, 0, 0,  //
                                                                0, 0, 1,  //
                                                                0, 0, 0,  //
                                                                1, 0, 1}));
}

TEST(ReferenceLayout, HandCheckedTwoNodesCountTokensOncePerNode) {
  // 4 ranks x 2 experts, 2 ranks per node.
  const std::vector<std::int64_t> topk_idx = {
      0, 2,   // ranks 0, 1: node 0 once
      1, 7,   // ranks 0, 3: nodes 0 and 1
      6, -1,  // rank 3: node 1
  };
  const Layout layout = get_dispatch_layout(topk_idx, 3, 2, 8, 4, 2);
  EXPECT_EQ(layout.num_tokens_per_rank, (std::vector<int>{2, 1, 0, 2}));
  EXPECT_EQ(layout.num_tokens_per_rdma_rank, (std::vector<int>{2, 2}));
  EXPECT_EQ(layout.num_tokens_per_expert, (std::vector<int>{1, 1, 1, 0, 0, 0, 1, 1}));
}

TEST(ReferenceLayout, NoTokens) {
  const Layout layout = get_dispatch_layout({}, 0, 4, 8, 4, 2);
  EXPECT_EQ(layout.num_tokens_per_rank, (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(layout.num_tokens_per_rdma_rank, (std::vector<int>{0, 0}));
  EXPECT_TRUE(layout.is_token_in_rank.empty());
}

TEST(ReferenceLayout, OutOfRangeIdNamesTokenSlotAndValue) {
  const std::vector<std::int64_t> too_large = {0, 1, -1, 2, 3, 6};
  test_util::expect_invalid_argument([&] { get_dispatch_layout(too_large, 2, 3, 6, 3, 3); },
                                     "topk_idx[1][2] = 6");
  const std::vector<std::int64_t> too_small = {0, -2};
  EXPECT_THROW(get_dispatch_layout(too_small, 1, 2, 6, 3, 3), std::invalid_argument);
}

TEST(ReferenceLayout, InconsistentArgumentsThrow) {
  const std::vector<std::int64_t> topk_idx = {0, 1, 2, 3};
  EXPECT_THROW(get_dispatch_layout(topk_idx, 3, 2, 4, 2, 2), std::invalid_argument);  // size
  EXPECT_THROW(get_dispatch_layout(topk_idx, 2, 2, 5, 2, 2), std::invalid_argument);  // 5 % 2
  EXPECT_THROW(get_dispatch_layout(topk_idx, 2, 2, 4, 0, 2), std::invalid_argument);  // no ranks
  EXPECT_THROW(get_dispatch_layout(topk_idx, 2, 2, 6, 6, 4), std::invalid_argument);  // 6 % 4 nodes
}

TEST(ReferenceLayout, CountsAddUpOnRandomRouting) {
  for (const test_util::RandomCase& c : test_util::random_cases()) {
    SCOPED_TRACE("seed " + std::to_string(c.seed));
    test_util::Rng rng(c.seed);
    const int num_tokens = c.max_tokens;
    const int num_ranks_per_node = c.num_ranks % 2 == 0 ? c.num_ranks / 2 : c.num_ranks;
    const auto topk_idx =
        test_util::random_topk_idx(rng, num_tokens, c.num_topk, c.num_experts, c.allow_repeats);
    const Layout layout =
        get_dispatch_layout(topk_idx, num_tokens, c.num_topk, c.num_experts, c.num_ranks, num_ranks_per_node);

    int num_token_rank_pairs = 0, num_token_node_pairs = 0, num_valid_slots = 0;
    for (int token = 0; token < num_tokens; ++token) {
      const std::set<int> ranks =
          test_util::destination_ranks(topk_idx, token, c.num_topk, c.num_experts, c.num_ranks);
      std::set<int> nodes;
      for (int rank : ranks) nodes.insert(rank / num_ranks_per_node);
      for (int slot = 0; slot < c.num_topk; ++slot) {
        num_valid_slots += topk_idx[static_cast<std::size_t>(token) * c.num_topk + slot] >= 0 ? 1 : 0;
      }
      num_token_rank_pairs += static_cast<int>(ranks.size());
      num_token_node_pairs += static_cast<int>(nodes.size());
      for (int rank = 0; rank < c.num_ranks; ++rank) {
        ASSERT_EQ(layout.is_token_in_rank[static_cast<std::size_t>(token) * c.num_ranks + rank],
                  ranks.count(rank));
      }
    }
    EXPECT_EQ(std::accumulate(layout.num_tokens_per_rank.begin(), layout.num_tokens_per_rank.end(), 0),
              num_token_rank_pairs);
    EXPECT_EQ(std::accumulate(layout.num_tokens_per_expert.begin(), layout.num_tokens_per_expert.end(), 0),
              num_valid_slots);
    if (num_ranks_per_node < c.num_ranks) {
      EXPECT_EQ(
          std::accumulate(layout.num_tokens_per_rdma_rank.begin(), layout.num_tokens_per_rdma_rank.end(), 0),
          num_token_node_pairs);
    } else {
      EXPECT_TRUE(layout.num_tokens_per_rdma_rank.empty());
    }
  }
}

}  // namespace
}  // namespace moe_ep::reference
