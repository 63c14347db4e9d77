// Random routing and payloads for the GPU tests.
#include "support/random_inputs.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "reference/reference.hpp"

namespace moe_ep::test {

std::vector<std::int64_t> random_topk_idx(std::mt19937_64& rng, int num_tokens, int num_topk, int num_experts,
                                          double hole_fraction, Routing routing, int num_ranks) {
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<double> uniform;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(num_tokens) * num_topk, -1);
  std::vector<float> scores(num_experts);
  std::vector<int> order(num_experts);
  const int experts_per_rank = num_experts / std::max(1, num_ranks);
  const int hot_experts = std::max(num_topk, num_experts / 8);
  for (int t = 0; t < num_tokens; ++t) {
    for (int e = 0; e < num_experts; ++e) {
      scores[e] = std::fabs(normal(rng)) + 1.0f;
      if (routing == Routing::kOneRank && e >= experts_per_rank) scores[e] = 0.0f;
      if (routing == Routing::kSkewed && e < hot_experts && uniform(rng) < 0.7) scores[e] += 10.0f;
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + num_topk, order.end(),
                      [&](int a, int b) { return scores[a] > scores[b]; });
    for (int k = 0; k < num_topk; ++k) {
      const bool usable = scores[order[k]] > 0.0f && uniform(rng) >= hole_fraction;
      idx[static_cast<std::size_t>(t) * num_topk + k] = usable ? order[k] : -1;
    }
  }
  return idx;
}

std::vector<float> random_weights(std::mt19937_64& rng, std::size_t count) {
  std::uniform_real_distribution<float> dist(0.05f, 1.0f);
  std::vector<float> w(count);
  for (auto& v : w) v = dist(rng);
  return w;
}

std::vector<std::uint16_t> random_bf16(std::mt19937_64& rng, std::size_t count, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<std::uint16_t> x(count);
  for (auto& v : x) {
    float f = normal(rng);
    if (f == 0.0f) f = 0.5f;  // never zeros
    v = reference::float_to_bf16(f);
  }
  return x;
}

std::vector<std::uint8_t> random_e4m3(std::mt19937_64& rng, std::size_t count) {
  std::uniform_int_distribution<int> dist(1, 253);
  std::vector<std::uint8_t> x(count);
  for (auto& v : x) {
    int code = dist(rng);
    if ((code & 0x7f) == 0x7f) code = 0x3c;  // 0x7f/0xff are NaN in e4m3
    v = static_cast<std::uint8_t>(code);
  }
  return x;
}

std::vector<float> random_scales(std::mt19937_64& rng, std::size_t count) {
  std::uniform_real_distribution<float> dist(0.001f, 2.0f);
  std::vector<float> s(count);
  for (auto& v : s) v = dist(rng);
  return s;
}

}  // namespace moe_ep::test
