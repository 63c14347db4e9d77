// Shared helpers of the CPU reference tests: seeded random inputs (routing with -1 holes
// and optional repeated experts, bf16 rows, per-rank dispatch inputs) and the random
// configurations the algebraic-law tests sweep.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/reference.hpp"

namespace moe_ep::reference::test_util {

using Rng = std::mt19937;

inline int uniform_int(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

inline float uniform_float(Rng& rng, float lo, float hi) {
  return std::uniform_real_distribution<float>(lo, hi)(rng);
}

inline std::vector<float> random_floats(Rng& rng, std::size_t n, float lo, float hi) {
  std::vector<float> values(n);
  for (float& v : values) v = uniform_float(rng, lo, hi);
  return values;
}

// bf16 codes of uniform values in [lo, hi).
inline std::vector<std::uint16_t> random_bf16(Rng& rng, std::size_t n, float lo, float hi) {
  std::vector<std::uint16_t> values(n);
  for (std::uint16_t& v : values) v = float_to_bf16(uniform_float(rng, lo, hi));
  return values;
}

inline std::vector<std::uint8_t> random_bytes(Rng& rng, std::size_t n) {
  std::vector<std::uint8_t> bytes(n);
  for (std::uint8_t& b : bytes) b = static_cast<std::uint8_t>(uniform_int(rng, 0, 255));
  return bytes;
}

// [num_tokens, num_topk]: each slot is -1 with probability 1/4, else an expert. Without
// repeats a token's experts are distinct (needs num_topk <= num_experts).
inline std::vector<std::int64_t> random_topk_idx(Rng& rng, int num_tokens, int num_topk, int num_experts,
                                                 bool allow_repeats) {
  std::vector<std::int64_t> topk_idx;
  std::vector<std::int64_t> experts(num_experts);
  std::iota(experts.begin(), experts.end(), 0);
  for (int token = 0; token < num_tokens; ++token) {
    std::shuffle(experts.begin(), experts.end(), rng);
    for (int slot = 0; slot < num_topk; ++slot) {
      const std::int64_t expert = allow_repeats ? uniform_int(rng, 0, num_experts - 1) : experts[slot];
      topk_idx.push_back(uniform_int(rng, 0, 3) == 0 ? -1 : expert);
    }
  }
  return topk_idx;
}

inline int expert_rank(std::int64_t expert, int num_experts, int num_ranks) {
  return static_cast<int>(expert / (num_experts / num_ranks));
}

// Ranks holding any of token's experts (the reference's routing, restated for the tests).
inline std::set<int> destination_ranks(const std::vector<std::int64_t>& topk_idx, int token, int num_topk,
                                       int num_experts, int num_ranks) {
  std::set<int> ranks;
  for (int slot = 0; slot < num_topk; ++slot) {
    const std::int64_t expert = topk_idx[static_cast<std::size_t>(token) * num_topk + slot];
    if (expert >= 0) ranks.insert(expert_rank(expert, num_experts, num_ranks));
  }
  return ranks;
}

// One configuration of a randomized law test.
struct RandomCase {
  unsigned seed;
  int num_ranks;
  int num_experts;
  int num_topk;
  int max_tokens;  // per rank; each rank draws its count in [0, max_tokens]
  bool allow_repeats;
};

inline std::vector<RandomCase> random_cases() {
  return {{1, 2, 4, 2, 6, false},  {2, 3, 6, 3, 9, true},    {3, 4, 16, 4, 20, false},
          {4, 8, 32, 8, 33, true}, {5, 8, 64, 6, 64, false}, {6, 1, 8, 3, 7, true},
          {7, 4, 8, 8, 40, true},  {8, 5, 10, 1, 15, false}};
}

// Dispatch inputs for every rank of `spec`, with random payloads, scales, routing and weights.
inline std::vector<RankDispatchInput> random_dispatch_inputs(Rng& rng, const DispatchSpec& spec,
                                                             int max_tokens, bool allow_repeats) {
  std::vector<RankDispatchInput> inputs(spec.num_ranks);
  for (RankDispatchInput& input : inputs) {
    input.num_tokens = uniform_int(rng, 0, max_tokens);
    const std::size_t num_tokens = static_cast<std::size_t>(input.num_tokens);
    input.x = random_bytes(rng, num_tokens * spec.row_bytes);
    input.x_scales = random_floats(rng, num_tokens * spec.num_scales, 0.5f, 2.0f);
    input.topk_idx = random_topk_idx(rng, input.num_tokens, spec.num_topk, spec.num_experts, allow_repeats);
    input.topk_weights = random_floats(rng, num_tokens * spec.num_topk, 0.0f, 1.0f);
  }
  return inputs;
}

// Expects fn() to throw std::invalid_argument whose message contains `needle`.
template <typename Fn>
void expect_invalid_argument(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected std::invalid_argument mentioning \"" << needle << "\"";
  } catch (const std::invalid_argument& error) {
    EXPECT_PRED_FORMAT2(::testing::IsSubstring, needle.c_str(), error.what());
  }
}

inline DispatchSpec spec_of(const RandomCase& c, int row_bytes, int num_scales, int expert_alignment) {
  DispatchSpec spec;
  spec.num_ranks = c.num_ranks;
  spec.num_experts = c.num_experts;
  spec.num_topk = c.num_topk;
  spec.row_bytes = row_bytes;
  spec.num_scales = num_scales;
  spec.expert_alignment = expert_alignment;
  return spec;
}

}  // namespace moe_ep::reference::test_util
