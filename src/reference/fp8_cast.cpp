// CPU reference of the per-128-channel FP8 cast of low-latency dispatch (DeepEP's
// calculate_fp8_scales): amax with a 1e-4 floor, scale 448/amax or its power-of-two
// rounding, e4m3 codes, scale_inv per group and its UE8M0 exponent bytes packed 4 per int32.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <string>

#include "reference/reference.hpp"
#include "reference/validation.hpp"

namespace moe_ep::reference {
namespace {

constexpr int kGroupSize = 128;
constexpr int kGroupsPerUe8m0Word = 4;
constexpr float kE4m3Max = 448.0f;
constexpr float kE4m3MaxInv = 1.0f / 448.0f;
constexpr float kAmaxFloor = 1e-4f;

int biased_exponent(float v) { return static_cast<int>((std::bit_cast<std::uint32_t>(v) >> 23) & 0xff); }

// ceil(log2(v)) for a positive normal float, exact: the exponent, plus one unless v is a
// power of two.
int log2_ceil(float v) {
  const bool has_mantissa = (std::bit_cast<std::uint32_t>(v) & 0x7fffffu) != 0;
  return biased_exponent(v) - 127 + (has_mantissa ? 1 : 0);
}

float pow2(int exponent) { return std::ldexp(1.0f, exponent); }

struct GroupScale {
  float scale;      // multiplies x before the cast
  float scale_inv;  // stored: dequantized value = e4m3 * scale_inv
};

GroupScale group_scale(float amax, bool round_scale) {
  if (!round_scale) return {kE4m3Max / amax, amax * kE4m3MaxInv};
  const int exponent = log2_ceil(amax * kE4m3MaxInv);  // amax >= 1e-4, so a normal float
  return {pow2(-exponent), pow2(exponent)};
}

}  // namespace

Fp8Row cast_fp8_per_128(const std::uint16_t* x_bf16, int hidden, bool round_scale) {
  detail::require(hidden >= 0 && hidden % kGroupSize == 0,
                  "cast_fp8_per_128: hidden " + std::to_string(hidden) + " is not a multiple of 128");
  detail::require(x_bf16 != nullptr || hidden == 0, "cast_fp8_per_128: x_bf16 is null");
  const int num_groups = hidden / kGroupSize;
  Fp8Row row;
  row.q.resize(hidden);
  row.scales.resize(num_groups);
  row.ue8m0.assign((num_groups + kGroupsPerUe8m0Word - 1) / kGroupsPerUe8m0Word, 0);
  for (int group = 0; group < num_groups; ++group) {
    const std::uint16_t* x = x_bf16 + static_cast<std::size_t>(group) * kGroupSize;
    float amax = kAmaxFloor;
    for (int c = 0; c < kGroupSize; ++c) amax = std::max(amax, std::fabs(bf16_to_float(x[c])));
    const GroupScale scale = group_scale(amax, round_scale);
    for (int c = 0; c < kGroupSize; ++c) {
      row.q[static_cast<std::size_t>(group) * kGroupSize + c] =
          float_to_e4m3(bf16_to_float(x[c]) * scale.scale);
    }
    row.scales[group] = scale.scale_inv;
    const auto exponent_byte = static_cast<std::uint32_t>(biased_exponent(scale.scale_inv));
    const int shift = 8 * (group % kGroupsPerUe8m0Word);
    row.ue8m0[group / kGroupsPerUe8m0Word] = static_cast<std::int32_t>(
        static_cast<std::uint32_t>(row.ue8m0[group / kGroupsPerUe8m0Word]) | (exponent_byte << shift));
  }
  return row;
}

}  // namespace moe_ep::reference
