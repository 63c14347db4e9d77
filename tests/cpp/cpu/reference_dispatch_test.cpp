// Tests of the reference high-throughput dispatch: a hand-checked 3-rank case (holes, two
// experts on one rank, a rank with no tokens), repeated experts, dispatch without top-k,
// argument errors, and routing/counting laws on random inputs.
#include <gtest/gtest.h>

#include <cstddef>
#include <set>
#include <string>

#include "reference/reference.hpp"
#include "reference_test_util.hpp"

namespace moe_ep::reference {
namespace {

// A rank's input whose row bytes and scale identify (src_rank, token): row {10s+t, 200+10s+t},
// scale 10s+t+0.5.
RankDispatchInput hand_input(int src_rank, int num_tokens, std::vector<std::int64_t> topk_idx,
                             std::vector<float> topk_weights) {
  RankDispatchInput input;
  input.num_tokens = num_tokens;
  for (int token = 0; token < num_tokens; ++token) {
    const int id = 10 * src_rank + token;
    input.x.push_back(static_cast<std::uint8_t>(id));
    input.x.push_back(static_cast<std::uint8_t>(200 + id));
    input.x_scales.push_back(static_cast<float>(id) + 0.5f);
  }
  input.topk_idx = std::move(topk_idx);
  input.topk_weights = std::move(topk_weights);
  return input;
}

DispatchSpec hand_spec(int expert_alignment) {
  return {.num_ranks = 3,
          .num_experts = 6,
          .num_topk = 2,
          .row_bytes = 2,
          .num_scales = 1,
          .expert_alignment = expert_alignment};
}

// 3 ranks x 2 experts. Rank 0: token 1 has both experts on rank 1, token 2 a hole.
// Rank 1: no tokens. Rank 2: token 0 a hole with a nonzero weight.
std::vector<RankDispatchInput> hand_inputs() {
  return {hand_input(0, 3, {0, 3, 2, 3, -1, 1}, {0.5f, 0.25f, 0.125f, 0.75f, 0.3f, 0.6f}),
          hand_input(1, 0, {}, {}), hand_input(2, 2, {5, -1, 1, 4}, {0.9f, 0.1f, 0.2f, 0.8f})};
}

TEST(ReferenceDispatch, HandCheckedThreeRanks) {
  const std::vector<RankDispatchOutput> out = dispatch(hand_spec(1), hand_inputs());
  ASSERT_EQ(out.size(), 3u);
  const std::vector<int> prefix = {2, 2, 0, 2, 2, 0, 3, 2, 2};
  for (const RankDispatchOutput& rank : out) EXPECT_EQ(rank.rank_prefix_matrix, prefix);

  EXPECT_EQ(out[0].num_recv_tokens, 3);
  EXPECT_EQ(out[0].recv_src_rank, (std::vector<int>{0, 0, 2}));
  EXPECT_EQ(out[0].recv_src_idx, (std::vector<int>{0, 2, 1}));
  EXPECT_EQ(out[0].recv_x, (std::vector<std::uint8_t>{0, 200, 2, 202, 21, 221}));
  EXPECT_EQ(out[0].recv_x_scales, (std::vector<float>{0.5f, 2.5f, 21.5f}));
  EXPECT_EQ(out[0].recv_topk_idx, (std::vector<std::int64_t>{0, -1, -1, 1, 1, -1}));
  EXPECT_EQ(out[0].recv_topk_weights, (std::vector<float>{0.5f, 0, 0, 0.6f, 0.2f, 0}));
  EXPECT_EQ(out[0].num_recv_tokens_per_expert, (std::vector<int>{1, 2}));

  EXPECT_EQ(out[1].num_recv_tokens, 2);
  EXPECT_EQ(out[1].recv_src_rank, (std::vector<int>{0, 0}));
  EXPECT_EQ(out[1].recv_src_idx, (std::vector<int>{0, 1}));
  EXPECT_EQ(out[1].recv_x, (std::vector<std::uint8_t>{0, 200, 1, 201}));
  EXPECT_EQ(out[1].recv_topk_idx, (std::vector<std::int64_t>{-1, 1, 0, 1}));
  EXPECT_EQ(out[1].recv_topk_weights, (std::vector<float>{0, 0.25f, 0.125f, 0.75f}));
  EXPECT_EQ(out[1].num_recv_tokens_per_expert, (std::vector<int>{1, 2}));

  EXPECT_EQ(out[2].num_recv_tokens, 2);
  EXPECT_EQ(out[2].recv_src_rank, (std::vector<int>{2, 2}));
  EXPECT_EQ(out[2].recv_src_idx, (std::vector<int>{0, 1}));
  EXPECT_EQ(out[2].recv_topk_idx, (std::vector<std::int64_t>{1, -1, -1, 0}));
  EXPECT_EQ(out[2].recv_topk_weights, (std::vector<float>{0.9f, 0, 0, 0.8f}));
  EXPECT_EQ(out[2].num_recv_tokens_per_expert, (std::vector<int>{1, 1}));
}

TEST(ReferenceDispatch, CountsRoundUpToAlignment) {
  const std::vector<RankDispatchOutput> out = dispatch(hand_spec(4), hand_inputs());
  for (const RankDispatchOutput& rank : out)
    EXPECT_EQ(rank.num_recv_tokens_per_expert, (std::vector<int>{4, 4}));
  EXPECT_EQ(out[0].num_recv_tokens, 3);  // rows themselves are not padded
}

TEST(ReferenceDispatch, RepeatedExpertSendsOnceButCountsPerSlot) {
  const DispatchSpec spec = {
      .num_ranks = 1, .num_experts = 2, .num_topk = 3, .row_bytes = 2, .num_scales = 1};
  const std::vector<RankDispatchOutput> out = dispatch(spec, {hand_input(0, 1, {1, -1, 1}, {})});
  EXPECT_EQ(out[0].num_recv_tokens, 1);
  EXPECT_EQ(out[0].recv_topk_idx, (std::vector<std::int64_t>{1, -1, 1}));
  EXPECT_TRUE(out[0].recv_topk_weights.empty());  // no rank passed weights
  EXPECT_EQ(out[0].num_recv_tokens_per_expert, (std::vector<int>{0, 2}));
}

TEST(ReferenceDispatch, WithoutTopkRoutesByIsTokenInRank) {
  const DispatchSpec spec = {
      .num_ranks = 2, .num_experts = 4, .num_topk = 0, .row_bytes = 2, .num_scales = 1};
  std::vector<RankDispatchInput> inputs = {hand_input(0, 2, {}, {}), hand_input(1, 1, {}, {})};
  inputs[0].is_token_in_rank = {1, 1, 0, 1};
  inputs[1].is_token_in_rank = {1, 0};
  const std::vector<RankDispatchOutput> out = dispatch(spec, inputs);
  EXPECT_EQ(out[0].recv_src_rank, (std::vector<int>{0, 1}));
  EXPECT_EQ(out[0].recv_src_idx, (std::vector<int>{0, 0}));
  EXPECT_EQ(out[1].recv_src_rank, (std::vector<int>{0, 0}));
  EXPECT_EQ(out[1].recv_src_idx, (std::vector<int>{0, 1}));
  EXPECT_EQ(out[1].recv_x, (std::vector<std::uint8_t>{0, 200, 1, 201}));
  EXPECT_EQ(out[0].rank_prefix_matrix, (std::vector<int>{1, 2, 2, 2}));
  for (const RankDispatchOutput& rank : out) {
    EXPECT_TRUE(rank.recv_topk_idx.empty());
    EXPECT_TRUE(rank.recv_topk_weights.empty());
    EXPECT_EQ(rank.num_recv_tokens_per_expert, (std::vector<int>{0, 0}));
  }
}

TEST(ReferenceDispatch, InconsistentInputsThrow) {
  const DispatchSpec spec = hand_spec(1);
  test_util::expect_invalid_argument([&] { dispatch(spec, {hand_input(0, 0, {}, {})}); }, "inputs");

  auto inputs = hand_inputs();
  inputs[2].x.pop_back();
  test_util::expect_invalid_argument([&] { dispatch(spec, inputs); }, "(rank 2): x has 3");

  inputs = hand_inputs();
  inputs[0].topk_idx[3] = 6;
  test_util::expect_invalid_argument([&] { dispatch(spec, inputs); }, "(rank 0): topk_idx[1][1] = 6");

  inputs = hand_inputs();
  inputs[2].topk_weights.clear();  // rank 0 passes weights, rank 2 does not
  test_util::expect_invalid_argument([&] { dispatch(spec, inputs); }, "topk_weights");

  DispatchSpec no_topk = spec;
  no_topk.num_topk = 0;
  inputs = hand_inputs();
  inputs[1].is_token_in_rank = {};
  inputs[0].is_token_in_rank = {1, 0, 0, 2, 0, 0, 0, 0, 1};
  inputs[2].is_token_in_rank = {0, 0, 1, 0, 1, 0};
  test_util::expect_invalid_argument([&] { dispatch(no_topk, inputs); }, "is_token_in_rank[1][0] = 2");

  DispatchSpec bad_alignment = spec;
  bad_alignment.expert_alignment = 0;
  test_util::expect_invalid_argument([&] { dispatch(bad_alignment, hand_inputs()); }, "expert_alignment");
}

// Checks every law of dispatch on one random case with the given alignment.
void check_dispatch_laws(const test_util::RandomCase& c, int expert_alignment) {
  test_util::Rng rng(c.seed);
  const DispatchSpec spec = test_util::spec_of(c, /*row_bytes=*/6, /*num_scales=*/2, expert_alignment);
  const std::vector<RankDispatchInput> inputs =
      test_util::random_dispatch_inputs(rng, spec, c.max_tokens, c.allow_repeats);
  const std::vector<RankDispatchOutput> out = dispatch(spec, inputs);
  const int experts_per_rank = c.num_experts / c.num_ranks;

  int num_token_rank_pairs = 0, num_received = 0;
  for (int src = 0; src < c.num_ranks; ++src) {
    for (int token = 0; token < inputs[src].num_tokens; ++token) {
      num_token_rank_pairs += static_cast<int>(
          test_util::destination_ranks(inputs[src].topk_idx, token, c.num_topk, c.num_experts, c.num_ranks)
              .size());
    }
  }
  for (int dst = 0; dst < c.num_ranks; ++dst) {
    SCOPED_TRACE("destination rank " + std::to_string(dst));
    const RankDispatchOutput& rank = out[dst];
    num_received += rank.num_recv_tokens;
    std::vector<int> num_slots_per_local_expert(experts_per_rank, 0);
    std::size_t row = 0;
    int num_sent_so_far = 0;
    for (int src = 0; src < c.num_ranks; ++src) {
      const RankDispatchInput& input = inputs[src];
      for (int token = 0; token < input.num_tokens; ++token) {
        if (!test_util::destination_ranks(input.topk_idx, token, c.num_topk, c.num_experts, c.num_ranks)
                 .count(dst)) {
          continue;
        }
        // Rows come by source rank, then source token, each exactly once.
        ASSERT_LT(row, static_cast<std::size_t>(rank.num_recv_tokens));
        ASSERT_EQ(rank.recv_src_rank[row], src);
        ASSERT_EQ(rank.recv_src_idx[row], token);
        for (int b = 0; b < spec.row_bytes; ++b) {
          ASSERT_EQ(rank.recv_x[row * spec.row_bytes + b],
                    input.x[static_cast<std::size_t>(token) * spec.row_bytes + b]);
        }
        for (int s = 0; s < spec.num_scales; ++s) {
          ASSERT_EQ(rank.recv_x_scales[row * spec.num_scales + s],
                    input.x_scales[static_cast<std::size_t>(token) * spec.num_scales + s]);
        }
        for (int slot = 0; slot < c.num_topk; ++slot) {
          const std::size_t i = static_cast<std::size_t>(token) * c.num_topk + slot;
          const std::int64_t expert = input.topk_idx[i];
          const bool is_local =
              expert >= 0 && test_util::expert_rank(expert, c.num_experts, c.num_ranks) == dst;
          const std::size_t j = row * c.num_topk + slot;
          ASSERT_EQ(rank.recv_topk_idx[j], is_local ? expert - dst * experts_per_rank : -1);
          ASSERT_EQ(rank.recv_topk_weights[j], is_local ? input.topk_weights[i] : 0.0f);
        }
        ++row;
      }
      // Counts per local expert, one per (token, slot).
      for (std::int64_t expert : input.topk_idx) {
        if (expert >= 0 && test_util::expert_rank(expert, c.num_experts, c.num_ranks) == dst) {
          ++num_slots_per_local_expert[expert - dst * experts_per_rank];
        }
      }
      num_sent_so_far = static_cast<int>(row);
      ASSERT_EQ(rank.rank_prefix_matrix[src * c.num_ranks + dst], num_sent_so_far);
    }
    EXPECT_EQ(row, static_cast<std::size_t>(rank.num_recv_tokens));
    EXPECT_EQ(rank.recv_x.size(), row * spec.row_bytes);
    for (int local = 0; local < experts_per_rank; ++local) {
      const int count = rank.num_recv_tokens_per_expert[local];
      EXPECT_EQ(count % expert_alignment, 0);
      EXPECT_GE(count, num_slots_per_local_expert[local]);
      EXPECT_LT(count, num_slots_per_local_expert[local] + expert_alignment);
    }
  }
  EXPECT_EQ(num_received, num_token_rank_pairs);
}

TEST(ReferenceDispatch, RoutingLawsOnRandomInputs) {
  for (const test_util::RandomCase& c : test_util::random_cases()) {
    for (int expert_alignment : {1, 128}) {
      SCOPED_TRACE("seed " + std::to_string(c.seed) + " alignment " + std::to_string(expert_alignment));
      check_dispatch_laws(c, expert_alignment);
    }
  }
}

}  // namespace
}  // namespace moe_ep::reference
