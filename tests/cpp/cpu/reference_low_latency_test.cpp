// Tests of the reference low-latency dispatch and combine: a hand-checked 2-rank case
// (holes, an expert named twice by one token, a token sent nowhere), the FP8 payload,
// argument errors, and on random inputs the count/order laws and weighted-sum laws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>

#include "reference/reference.hpp"
#include "reference_test_util.hpp"

namespace moe_ep::reference {
namespace {

constexpr int kHidden = 128;

// Row of (src_rank, token): channel c holds 10 * src_rank + token + 1 + c % 4 (exact in bf16).
std::vector<std::uint16_t> hand_rows(int src_rank, int num_tokens) {
  std::vector<std::uint16_t> x;
  for (int token = 0; token < num_tokens; ++token) {
    for (int c = 0; c < kHidden; ++c) {
      x.push_back(float_to_bf16(static_cast<float>(10 * src_rank + token + 1 + c % 4)));
    }
  }
  return x;
}

LowLatencySpec hand_spec(bool use_fp8) {
  return {.num_ranks = 2,
          .num_experts = 4,
          .num_topk = 2,
          .hidden = kHidden,
          .num_max_dispatch_tokens_per_rank = 4,
          .use_fp8 = use_fp8,
          .round_scale = false};
}

// 2 ranks x 2 experts. Rank 1's token 0 names expert 3 twice; its token 2 goes nowhere.
std::vector<RankLowLatencyInput> hand_inputs() {
  return {{.num_tokens = 2,
           .x = hand_rows(0, 2),
           .topk_idx = {1, 2, -1, 1},
           .topk_weights = {0.5f, 0.25f, 3, 0.75f}},
          {.num_tokens = 3,
           .x = hand_rows(1, 3),
           .topk_idx = {3, 3, 0, -1, -1, -1},
           .topk_weights = {0.5f, 0.25f, 2, 9, 1, 1}}};
}

using SourceKeys = std::vector<std::pair<int, int>>;
SourceKeys keys_of(const std::vector<LowLatencySlot>& entries) {
  SourceKeys keys;
  for (const LowLatencySlot& entry : entries) keys.emplace_back(entry.src_rank, entry.src_token);
  return keys;
}

std::vector<std::uint16_t> source_row(const std::vector<RankLowLatencyInput>& inputs,
                                      const LowLatencySlot& entry) {
  const auto begin =
      inputs[entry.src_rank].x.begin() + static_cast<std::ptrdiff_t>(entry.src_token) * kHidden;
  return {begin, begin + kHidden};
}

// Expert outputs where each expert returns its input row times (list position + 1).
ExpertOutputs position_scaled_outputs(const std::vector<RankLowLatencyInput>& inputs,
                                      const std::vector<RankLowLatencyOutput>& dispatched) {
  ExpertOutputs outputs;
  for (const RankLowLatencyOutput& owner : dispatched) {
    auto& owner_rows = outputs.rows.emplace_back();
    for (const std::vector<LowLatencySlot>& entries : owner.per_expert) {
      auto& expert_rows = owner_rows.emplace_back();
      for (std::size_t i = 0; i < entries.size(); ++i) {
        std::vector<std::uint16_t> row = source_row(inputs, entries[i]);
        for (std::uint16_t& v : row) v = float_to_bf16(bf16_to_float(v) * static_cast<float>(i + 1));
        expert_rows.push_back(std::move(row));
      }
    }
  }
  return outputs;
}

TEST(ReferenceLowLatency, HandCheckedDispatch) {
  const auto inputs = hand_inputs();
  const std::vector<RankLowLatencyOutput> out = low_latency_dispatch(hand_spec(false), inputs);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(keys_of(out[0].per_expert[0]), (SourceKeys{{1, 1}}));
  EXPECT_EQ(keys_of(out[0].per_expert[1]), (SourceKeys{{0, 0}, {0, 1}}));
  EXPECT_EQ(keys_of(out[1].per_expert[0]), (SourceKeys{{0, 0}}));
  EXPECT_EQ(keys_of(out[1].per_expert[1]), (SourceKeys{{1, 0}, {1, 0}}));  // one entry per slot
  EXPECT_EQ(out[0].recv_count, (std::vector<int>{1, 2}));
  EXPECT_EQ(out[1].recv_count, (std::vector<int>{1, 2}));
  for (const RankLowLatencyOutput& owner : out) {
    for (const auto& entries : owner.per_expert) {
      for (const LowLatencySlot& entry : entries) {
        EXPECT_EQ(entry.x_bf16, source_row(inputs, entry));
        EXPECT_TRUE(entry.fp8.q.empty());
      }
    }
  }
}

TEST(ReferenceLowLatency, Fp8PayloadIsThePer128Cast) {
  const auto inputs = hand_inputs();
  for (bool round_scale : {false, true}) {
    LowLatencySpec spec = hand_spec(true);
    spec.round_scale = round_scale;
    const std::vector<RankLowLatencyOutput> out = low_latency_dispatch(spec, inputs);
    for (const RankLowLatencyOutput& owner : out) {
      for (const auto& entries : owner.per_expert) {
        for (const LowLatencySlot& entry : entries) {
          const Fp8Row expected = cast_fp8_per_128(source_row(inputs, entry).data(), kHidden, round_scale);
          EXPECT_EQ(entry.fp8.q, expected.q);
          EXPECT_EQ(entry.fp8.scales, expected.scales);
          EXPECT_EQ(entry.fp8.ue8m0, expected.ue8m0);
          EXPECT_TRUE(entry.x_bf16.empty());
        }
      }
    }
  }
}

TEST(ReferenceLowLatency, HandCheckedCombineMatchesRepeatedSlotsInOrder) {
  const auto inputs = hand_inputs();
  const LowLatencySpec spec = hand_spec(false);
  const auto dispatched = low_latency_dispatch(spec, inputs);
  const auto combined =
      low_latency_combine(spec, inputs, dispatched, position_scaled_outputs(inputs, dispatched));
  // Multiples of each token's own row: rank 0 token 0: 0.5 * 1 + 0.25 * 1; token 1:
  // 0.75 * 2 (second entry of expert 1). Rank 1 token 0: slot 0 takes the first entry,
  // slot 1 the second: 0.5 * 1 + 0.25 * 2; token 1: 2 * 1; token 2: nothing.
  const std::vector<std::vector<double>> multiples = {{0.75, 1.5}, {1.0, 2.0, 0.0}};
  ASSERT_EQ(combined.size(), 2u);
  for (int home = 0; home < 2; ++home) {
    ASSERT_EQ(combined[home].size(), multiples[home].size() * kHidden);
    for (std::size_t i = 0; i < combined[home].size(); ++i) {
      EXPECT_EQ(combined[home][i], multiples[home][i / kHidden] * bf16_to_float(inputs[home].x[i]))
          << "rank " << home << " i " << i;
    }
  }
}

TEST(ReferenceLowLatency, InconsistentInputsThrow) {
  const LowLatencySpec spec = hand_spec(false);
  LowLatencySpec small = spec;
  small.num_max_dispatch_tokens_per_rank = 2;
  test_util::expect_invalid_argument([&] { low_latency_dispatch(small, hand_inputs()); },
                                     "(rank 1): num_tokens 3");
  LowLatencySpec odd_hidden = spec;
  odd_hidden.hidden = 100;
  test_util::expect_invalid_argument([&] { low_latency_dispatch(odd_hidden, hand_inputs()); }, "hidden 100");

  const auto inputs = hand_inputs();
  const auto dispatched = low_latency_dispatch(spec, inputs);
  const ExpertOutputs outputs = position_scaled_outputs(inputs, dispatched);

  ExpertOutputs short_rows = outputs;
  short_rows.rows[0][1].pop_back();
  test_util::expect_invalid_argument([&] { low_latency_combine(spec, inputs, dispatched, short_rows); },
                                     "rows of expert 1");

  auto missing = dispatched;
  ExpertOutputs missing_rows = outputs;
  missing[1].per_expert[1].pop_back();
  missing_rows.rows[1][1].pop_back();
  test_util::expect_invalid_argument([&] { low_latency_combine(spec, inputs, missing, missing_rows); },
                                     "no dispatched entry for rank 1 token 0 slot 1");

  auto extra = dispatched;
  ExpertOutputs extra_rows = outputs;
  extra[1].per_expert[0].push_back(dispatched[0].per_expert[0][0]);
  extra_rows.rows[1][0].push_back(outputs.rows[0][0][0]);
  test_util::expect_invalid_argument([&] { low_latency_combine(spec, inputs, extra, extra_rows); },
                                     "dispatched holds");

  auto no_weights = inputs;
  no_weights[0].topk_weights.clear();
  test_util::expect_invalid_argument([&] { low_latency_combine(spec, no_weights, dispatched, outputs); },
                                     "(rank 0): topk_weights");
}

std::vector<RankLowLatencyInput> random_inputs(test_util::Rng& rng, const test_util::RandomCase& c) {
  std::vector<RankLowLatencyInput> inputs(c.num_ranks);
  for (RankLowLatencyInput& input : inputs) {
    input.num_tokens = test_util::uniform_int(rng, 0, c.max_tokens);
    const std::size_t num_tokens = static_cast<std::size_t>(input.num_tokens);
    input.x = test_util::random_bf16(rng, num_tokens * kHidden, -8, 8);
    input.topk_idx =
        test_util::random_topk_idx(rng, input.num_tokens, c.num_topk, c.num_experts, c.allow_repeats);
    input.topk_weights = test_util::random_floats(rng, num_tokens * c.num_topk, 0, 1);
  }
  return inputs;
}

LowLatencySpec spec_of(const test_util::RandomCase& c) {
  return {.num_ranks = c.num_ranks,
          .num_experts = c.num_experts,
          .num_topk = c.num_topk,
          .hidden = kHidden,
          .num_max_dispatch_tokens_per_rank = c.max_tokens,
          .use_fp8 = false,
          .round_scale = false};
}

// Identity experts: every expert returns its input row.
ExpertOutputs identity_outputs(const std::vector<RankLowLatencyOutput>& dispatched) {
  ExpertOutputs outputs;
  for (const RankLowLatencyOutput& owner : dispatched) {
    auto& owner_rows = outputs.rows.emplace_back();
    for (const auto& entries : owner.per_expert) {
      auto& expert_rows = owner_rows.emplace_back();
      for (const LowLatencySlot& entry : entries) expert_rows.push_back(entry.x_bf16);
    }
  }
  return outputs;
}

TEST(ReferenceLowLatency, DispatchCountsAndOrderOnRandomInputs) {
  for (const test_util::RandomCase& c : test_util::random_cases()) {
    SCOPED_TRACE("seed " + std::to_string(c.seed));
    test_util::Rng rng(c.seed);
    const auto inputs = random_inputs(rng, c);
    const auto out = low_latency_dispatch(spec_of(c), inputs);
    const int experts_per_rank = c.num_experts / c.num_ranks;
    int num_valid_slots = 0, num_entries = 0;
    for (const RankLowLatencyInput& input : inputs) {
      for (std::int64_t expert : input.topk_idx) num_valid_slots += expert >= 0 ? 1 : 0;
    }
    for (int owner = 0; owner < c.num_ranks; ++owner) {
      for (int local = 0; local < experts_per_rank; ++local) {
        const auto& entries = out[owner].per_expert[local];
        ASSERT_EQ(out[owner].recv_count[local], static_cast<int>(entries.size()));
        num_entries += out[owner].recv_count[local];
        const std::int64_t expert = static_cast<std::int64_t>(owner) * experts_per_rank + local;
        const SourceKeys keys = keys_of(entries);
        ASSERT_TRUE(std::is_sorted(keys.begin(), keys.end()));
        for (const auto& [src_rank, src_token] : keys) {
          // Entries of one source = slots of that token naming this expert.
          const std::int64_t* token_experts =
              inputs[src_rank].topk_idx.data() + static_cast<std::size_t>(src_token) * c.num_topk;
          ASSERT_EQ(std::count(keys.begin(), keys.end(), std::pair{src_rank, src_token}),
                    std::count(token_experts, token_experts + c.num_topk, expert));
        }
      }
    }
    EXPECT_EQ(num_entries, num_valid_slots);
  }
}

TEST(ReferenceLowLatency, CombineOfIdentityExpertsIsTheWeightedSumOfSlots) {
  for (const test_util::RandomCase& c : test_util::random_cases()) {
    SCOPED_TRACE("seed " + std::to_string(c.seed));
    test_util::Rng rng(c.seed);
    const auto inputs = random_inputs(rng, c);
    auto unit_weight_inputs = inputs;
    for (RankLowLatencyInput& input : unit_weight_inputs)
      input.topk_weights.assign(input.topk_weights.size(), 1.0f);
    const LowLatencySpec spec = spec_of(c);
    const auto dispatched = low_latency_dispatch(spec, inputs);
    const ExpertOutputs identity = identity_outputs(dispatched);
    const auto weighted = low_latency_combine(spec, inputs, dispatched, identity);
    const auto unit = low_latency_combine(spec, unit_weight_inputs, dispatched, identity);
    for (int home = 0; home < c.num_ranks; ++home) {
      const RankLowLatencyInput& input = inputs[home];
      for (int token = 0; token < input.num_tokens; ++token) {
        double weight_sum = 0;
        int num_valid_slots = 0;
        for (int slot = 0; slot < c.num_topk; ++slot) {
          const std::size_t i = static_cast<std::size_t>(token) * c.num_topk + slot;
          if (input.topk_idx[i] < 0) continue;
          ++num_valid_slots;
          weight_sum += input.topk_weights[i];
        }
        for (int col = 0; col < kHidden; ++col) {
          const std::size_t i = static_cast<std::size_t>(token) * kHidden + col;
          const double value = bf16_to_float(input.x[i]);
          ASSERT_EQ(unit[home][i], num_valid_slots * value);
          ASSERT_NEAR(weighted[home][i], weight_sum * value, 1e-12 * (1 + std::fabs(weight_sum * value)));
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe_ep::reference
