// Tests of the reference per-128-channel FP8 cast: hand-checked groups (constant, zero,
// power-of-two scales), the UE8M0 packing, and on random rows the dequantization error
// bound and the power-of-two property of rounded scales.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <string>

#include "reference/reference.hpp"
#include "reference_test_util.hpp"

namespace moe_ep::reference {
namespace {

std::uint8_t ue8m0_byte(const Fp8Row& row, int group) {
  return static_cast<std::uint8_t>(static_cast<std::uint32_t>(row.ue8m0[group / 4]) >> (8 * (group % 4)));
}

bool is_power_of_two(float v) { return v > 0 && (std::bit_cast<std::uint32_t>(v) & 0x7fffffu) == 0; }

TEST(ReferenceFp8Cast, HandCheckedConstantGroup) {
  const std::vector<std::uint16_t> ones(128, float_to_bf16(1.0f));
  const Fp8Row plain = cast_fp8_per_128(ones.data(), 128, false);
  EXPECT_EQ(plain.q, std::vector<std::uint8_t>(128, 0x7e));  // 1 * 448/1 = 448
  EXPECT_EQ(plain.scales, (std::vector<float>{1.0f / 448.0f}));
  ASSERT_EQ(plain.ue8m0.size(), 1u);
  EXPECT_EQ(plain.ue8m0[0], 127 - 9);  // 1/448 = 1.14 * 2^-9

  // 1/448 rounds up to 2^-8: scale 256, q = e4m3(256) = 0x78.
  const Fp8Row rounded = cast_fp8_per_128(ones.data(), 128, true);
  EXPECT_EQ(rounded.q, std::vector<std::uint8_t>(128, 0x78));
  EXPECT_EQ(rounded.scales, (std::vector<float>{0x1p-8f}));
  EXPECT_EQ(rounded.ue8m0[0], 127 - 8);
}

TEST(ReferenceFp8Cast, ZeroGroupUsesTheAmaxFloor) {
  const std::vector<std::uint16_t> zeros(256, 0);
  const Fp8Row row = cast_fp8_per_128(zeros.data(), 256, false);
  EXPECT_EQ(row.q, std::vector<std::uint8_t>(256, 0));
  EXPECT_EQ(row.scales, (std::vector<float>{1e-4f / 448.0f, 1e-4f / 448.0f}));
}

TEST(ReferenceFp8Cast, ExactPowerOfTwoRatioIsNotRoundedUp) {
  // amax = 448 * 2^-3 = 56: amax / 448 is exactly 2^-3, so the scale is 2^3 and 56 -> 448.
  std::vector<std::uint16_t> x(128, float_to_bf16(1.0f));
  x[5] = float_to_bf16(-56.0f);
  const Fp8Row row = cast_fp8_per_128(x.data(), 128, true);
  EXPECT_EQ(row.scales[0], 0.125f);
  EXPECT_EQ(row.q[5], 0xfe);
  EXPECT_EQ(row.q[0], 0x50);  // 1 * 8 = 8 = 2^3
}

TEST(ReferenceFp8Cast, PacksFourExponentsPerWord) {
  // Group g has amax 300 * 2^(g-2): scale_inv = 0.67 * 2^(g-2), exponent byte 124 + g;
  // rounded up to 2^(g-2), exponent byte 125 + g.
  constexpr int kGroups = 5;
  std::vector<std::uint16_t> x(128 * kGroups, 0);
  for (int g = 0; g < kGroups; ++g) x[g * 128 + g] = float_to_bf16(std::ldexp(300.0f, g - 2));
  const Fp8Row plain = cast_fp8_per_128(x.data(), 128 * kGroups, false);
  ASSERT_EQ(plain.ue8m0.size(), 2u);  // ceil(640 / 512)
  EXPECT_EQ(static_cast<std::uint32_t>(plain.ue8m0[0]), 0x7f7e7d7cu);
  EXPECT_EQ(static_cast<std::uint32_t>(plain.ue8m0[1]), 0x80u);  // unused bytes stay zero
  const Fp8Row rounded = cast_fp8_per_128(x.data(), 128 * kGroups, true);
  EXPECT_EQ(static_cast<std::uint32_t>(rounded.ue8m0[0]), 0x807f7e7du);
  EXPECT_EQ(static_cast<std::uint32_t>(rounded.ue8m0[1]), 0x81u);
}

TEST(ReferenceFp8Cast, RejectsHiddenNotMultipleOf128) {
  const std::vector<std::uint16_t> x(200, 0);
  test_util::expect_invalid_argument([&] { cast_fp8_per_128(x.data(), 200, false); }, "hidden 200");
}

TEST(ReferenceFp8Cast, DequantizesWithinHalfAnE4m3Step) {
  test_util::Rng rng(5);
  for (int hidden : {128, 512, 896}) {
    for (bool round_scale : {false, true}) {
      SCOPED_TRACE("hidden " + std::to_string(hidden) + (round_scale ? " rounded" : " plain"));
      // Groups of very different magnitudes, including tiny ones below the amax floor.
      std::vector<std::uint16_t> x;
      for (int g = 0; g < hidden / 128; ++g) {
        const float magnitude = std::exp2(test_util::uniform_float(rng, -16.0f, 12.0f));
        const auto group = test_util::random_bf16(rng, 128, -magnitude, magnitude);
        x.insert(x.end(), group.begin(), group.end());
      }
      const Fp8Row row = cast_fp8_per_128(x.data(), hidden, round_scale);
      ASSERT_EQ(row.q.size(), static_cast<std::size_t>(hidden));
      ASSERT_EQ(row.scales.size(), static_cast<std::size_t>(hidden / 128));
      ASSERT_EQ(row.ue8m0.size(), static_cast<std::size_t>((hidden + 511) / 512));
      for (int g = 0; g < hidden / 128; ++g) {
        const float scale_inv = row.scales[g];
        if (round_scale) {
          ASSERT_TRUE(is_power_of_two(scale_inv)) << scale_inv;
        }
        int exponent;
        std::frexp(scale_inv, &exponent);  // scale_inv in [2^(exponent-1), 2^exponent)
        ASSERT_EQ(ue8m0_byte(row, g), exponent - 1 + 127);
        for (int c = 0; c < 128; ++c) {
          const std::size_t i = static_cast<std::size_t>(g) * 128 + c;
          const double value = bf16_to_float(x[i]);
          const double dequantized = static_cast<double>(e4m3_to_float(row.q[i])) * scale_inv;
          // Half a step of a 3-bit mantissa (2^-4 relative) for normals, half the smallest
          // subnormal (2^-10 * scale_inv) below; a little slack for the float multiply.
          const double bound = std::fmax(0x1p-4 * std::fabs(value), 0x1p-10 * scale_inv) * (1 + 1e-5);
          ASSERT_LE(std::fabs(dequantized - value), bound) << "group " << g << " channel " << c;
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe_ep::reference
