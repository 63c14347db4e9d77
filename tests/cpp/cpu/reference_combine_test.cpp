// Tests of the reference high-throughput combine: a hand-checked 2-rank case (biases, a
// token sent nowhere, weights), argument errors, and inverse-routing laws on random inputs
// (all-ones rows count destinations, identity experts scale rows, weights come back).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "reference/reference.hpp"
#include "reference_test_util.hpp"

namespace moe_ep::reference {
namespace {

std::vector<std::uint16_t> bf16_row(std::initializer_list<float> values) {
  std::vector<std::uint16_t> row;
  for (float v : values) row.push_back(float_to_bf16(v));
  return row;
}

// Reinterprets received payload bytes as bf16 values (and back).
std::vector<std::uint16_t> as_bf16(const std::vector<std::uint8_t>& bytes) {
  std::vector<std::uint16_t> values(bytes.size() / 2);
  std::memcpy(values.data(), bytes.data(), values.size() * 2);
  return values;
}
std::vector<std::uint8_t> as_bytes(const std::vector<std::uint16_t>& values) {
  std::vector<std::uint8_t> bytes(values.size() * 2);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// 2 ranks x 2 experts, hidden 2. Home 0: token 0 -> ranks 0, 1; token 1 -> rank 1; token 2
// nowhere. Home 1: token 0 names expert 1 twice -> rank 0 once.
struct HandCase {
  std::vector<RankDispatchOutput> dispatched;
  std::vector<RankCombineInput> inputs;
};
HandCase hand_case() {
  const DispatchSpec spec = {.num_ranks = 2, .num_experts = 4, .num_topk = 2, .row_bytes = 4};
  std::vector<RankDispatchInput> sources(2);
  sources[0].num_tokens = 3;
  sources[0].x.assign(12, 0);
  sources[0].topk_idx = {0, 2, 3, -1, -1, -1};
  sources[1].num_tokens = 1;
  sources[1].x.assign(4, 0);
  sources[1].topk_idx = {1, 1};
  HandCase c{dispatch(spec, sources), std::vector<RankCombineInput>(2)};
  // Rank 0 received (home 0, token 0), (home 1, token 0); rank 1 (0, 0), (0, 1).
  c.inputs[0].x = bf16_row({1, 2, 3, 4});
  c.inputs[0].topk_weights = {0.5f, 0.25f, 1, 2};
  c.inputs[0].bias0 = bf16_row({100, 200, 300, 400, 500, 600});
  c.inputs[1].x = bf16_row({10, 20, 30, 40});
  c.inputs[1].topk_weights = {0.125f, 4, 8, 16};
  c.inputs[1].bias1 = bf16_row({-1, -2});
  return c;
}

TEST(ReferenceCombine, HandCheckedTwoRanks) {
  const HandCase c = hand_case();
  ASSERT_EQ(c.dispatched[0].recv_src_rank, (std::vector<int>{0, 1}));
  ASSERT_EQ(c.dispatched[1].recv_src_idx, (std::vector<int>{0, 1}));
  const std::vector<RankCombineOutput> out = combine(2, 2, c.dispatched, {3, 1}, c.inputs);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].combined_x, (std::vector<double>{111, 222, 330, 440, 500, 600}));
  EXPECT_EQ(out[1].combined_x, (std::vector<double>{2, 2}));
  EXPECT_EQ(out[0].combined_topk_weights, (std::vector<double>{0.625, 4.25, 8, 16, 0, 0}));
  EXPECT_EQ(out[1].combined_topk_weights, (std::vector<double>{1, 2}));
}

TEST(ReferenceCombine, WithoutWeightsReturnsNoWeights) {
  HandCase c = hand_case();
  for (RankCombineInput& input : c.inputs) input.topk_weights.clear();
  const std::vector<RankCombineOutput> out = combine(2, 2, c.dispatched, {3, 1}, c.inputs);
  EXPECT_TRUE(out[0].combined_topk_weights.empty());
  EXPECT_EQ(out[0].combined_x[0], 111);
}

TEST(ReferenceCombine, InconsistentInputsThrow) {
  HandCase c = hand_case();
  test_util::expect_invalid_argument([&] { combine(2, 2, c.dispatched, {3}, c.inputs); },
                                     "num_tokens_per_home_rank");
  c.inputs[1].x.pop_back();
  test_util::expect_invalid_argument(
      [&] {
        combine(2, 2, c.dispatched, {3, 1}, c.inputs);
      },
      "(rank 1): x has 3");

  c = hand_case();
  c.inputs[0].bias0.pop_back();
  test_util::expect_invalid_argument([&] { combine(2, 2, c.dispatched, {3, 1}, c.inputs); }, "bias0");

  c = hand_case();
  c.inputs[0].topk_weights.pop_back();
  test_util::expect_invalid_argument([&] { combine(2, 2, c.dispatched, {3, 1}, c.inputs); }, "topk_weights");

  c = hand_case();
  c.dispatched[1].recv_src_idx[1] = 7;
  test_util::expect_invalid_argument(
      [&] {
        combine(2, 2, c.dispatched, {3, 1}, c.inputs);
      },
      "source rank 0 token 7");
}

// A random case dispatched with bf16 rows of `hidden` values as payload.
struct RandomRouting {
  int hidden = 0;
  std::vector<RankDispatchInput> sources;
  std::vector<RankDispatchOutput> dispatched;
  std::vector<int> num_tokens_per_home_rank;
};
RandomRouting random_routing(const test_util::RandomCase& c, int hidden) {
  test_util::Rng rng(c.seed);
  RandomRouting r;
  r.hidden = hidden;
  const DispatchSpec spec = test_util::spec_of(c, hidden * 2, 0, 1);
  r.sources = test_util::random_dispatch_inputs(rng, spec, c.max_tokens, c.allow_repeats);
  for (RankDispatchInput& source : r.sources) {
    source.x =
        as_bytes(test_util::random_bf16(rng, static_cast<std::size_t>(source.num_tokens) * hidden, -4, 4));
    r.num_tokens_per_home_rank.push_back(source.num_tokens);
  }
  r.dispatched = dispatch(spec, r.sources);
  return r;
}

int num_destinations(const test_util::RandomCase& c, const RankDispatchInput& source, int token) {
  return static_cast<int>(
      test_util::destination_ranks(source.topk_idx, token, c.num_topk, c.num_experts, c.num_ranks).size());
}

TEST(ReferenceCombine, AllOnesRowsCountDestinations) {
  constexpr int kHidden = 3;
  for (const test_util::RandomCase& c : test_util::random_cases()) {
    SCOPED_TRACE("seed " + std::to_string(c.seed));
    const RandomRouting r = random_routing(c, kHidden);
    std::vector<RankCombineInput> inputs(c.num_ranks);
    for (int rank = 0; rank < c.num_ranks; ++rank) {
      inputs[rank].x.assign(static_cast<std::size_t>(r.dispatched[rank].num_recv_tokens) * kHidden,
                            float_to_bf16(1.0f));
    }
    const std::vector<RankCombineOutput> out =
        combine(kHidden, c.num_topk, r.dispatched, r.num_tokens_per_home_rank, inputs);
    for (int home = 0; home < c.num_ranks; ++home) {
      for (int token = 0; token < r.sources[home].num_tokens; ++token) {
        for (int col = 0; col < kHidden; ++col) {
          ASSERT_EQ(out[home].combined_x[static_cast<std::size_t>(token) * kHidden + col],
                    num_destinations(c, r.sources[home], token));
        }
      }
    }
  }
}

TEST(ReferenceCombine, IdentityExpertsScaleRowsAndWeightsComeBack) {
  constexpr int kHidden = 16;
  for (const test_util::RandomCase& c : test_util::random_cases()) {
    SCOPED_TRACE("seed " + std::to_string(c.seed));
    const RandomRouting r = random_routing(c, kHidden);
    std::vector<RankCombineInput> inputs(c.num_ranks);
    for (int rank = 0; rank < c.num_ranks; ++rank) {
      inputs[rank].x = as_bf16(r.dispatched[rank].recv_x);  // each expert returns its input
      inputs[rank].topk_weights = r.dispatched[rank].recv_topk_weights;
    }
    const std::vector<RankCombineOutput> out =
        combine(kHidden, c.num_topk, r.dispatched, r.num_tokens_per_home_rank, inputs);
    for (int home = 0; home < c.num_ranks; ++home) {
      const RankDispatchInput& source = r.sources[home];
      const std::vector<std::uint16_t> x = as_bf16(source.x);
      for (int token = 0; token < source.num_tokens; ++token) {
        const int copies = num_destinations(c, source, token);
        for (int col = 0; col < kHidden; ++col) {
          const std::size_t i = static_cast<std::size_t>(token) * kHidden + col;
          ASSERT_EQ(out[home].combined_x[i], copies * static_cast<double>(bf16_to_float(x[i])));
        }
        // Each valid slot's weight lives on exactly one destination: the sum restores it.
        for (int slot = 0; slot < c.num_topk; ++slot) {
          const std::size_t i = static_cast<std::size_t>(token) * c.num_topk + slot;
          ASSERT_EQ(out[home].combined_topk_weights[i],
                    source.topk_idx[i] >= 0 ? source.topk_weights[i] : 0.0f);
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe_ep::reference
