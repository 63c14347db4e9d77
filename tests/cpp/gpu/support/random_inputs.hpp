// Random test inputs (never zeros): routing from abs(randn)+1 scores with -1 holes or
// skew, bf16 rows from randn, fp8 rows from random finite e4m3 codes with random scales.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace moe_ep::test {

enum class Routing {
  kUniform,    // top-k of abs(randn)+1 scores: near-uniform experts
  kOneRank,    // every token's experts live on one rank (rank 0)
  kSkewed,     // 70% of slots on the first 1/8 of the experts
};

// [num_tokens, num_topk] distinct experts per token, `hole_fraction` of slots set to -1.
std::vector<std::int64_t> random_topk_idx(std::mt19937_64& rng, int num_tokens, int num_topk, int num_experts,
                                          double hole_fraction, Routing routing, int num_ranks);
std::vector<float> random_weights(std::mt19937_64& rng, std::size_t count);
std::vector<std::uint16_t> random_bf16(std::mt19937_64& rng, std::size_t count, float scale = 1.0f);
std::vector<std::uint8_t> random_e4m3(std::mt19937_64& rng, std::size_t count);
std::vector<float> random_scales(std::mt19937_64& rng, std::size_t count);

}  // namespace moe_ep::test
