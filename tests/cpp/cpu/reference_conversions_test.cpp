// Tests of the reference's scalar conversions on hand-checked values (bf16 and e4m3
// rounding, saturation, subnormals, NaN), round trips over every code, and a
// nearest-value law for e4m3 on random inputs.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "reference/reference.hpp"
#include "reference_test_util.hpp"

namespace moe_ep::reference {
namespace {

float from_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

TEST(ReferenceBf16, RoundsToNearestEvenOnHandCheckedValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie, kept bit even: stays
  EXPECT_EQ(float_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie, kept bit odd: rounds up
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808001)), 0x3f81);  // just above the tie
  EXPECT_EQ(float_to_bf16(from_bits(0x3f807fff)), 0x3f80);  // just below the tie
  EXPECT_EQ(float_to_bf16(from_bits(0xbf818000)), 0xbf82);  // negative tie
  EXPECT_EQ(float_to_bf16(kInf), 0x7f80);
  EXPECT_EQ(float_to_bf16(-kInf), 0xff80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to inf
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
}

TEST(ReferenceBf16, NanStaysNan) {
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(kNan))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(-kNan))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(from_bits(0x7f800001)))));  // payload in dropped bits
}

TEST(ReferenceBf16, EveryNonNanCodeRoundTrips) {
  for (std::uint32_t code = 0; code <= 0xffff; ++code) {
    const auto bf16 = static_cast<std::uint16_t>(code);
    const float value = bf16_to_float(bf16);
    if (std::isnan(value)) continue;
    ASSERT_EQ(float_to_bf16(value), bf16) << "code " << code;
  }
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc040), -3.0f);
}

TEST(ReferenceE4m3, EncodesHandCheckedValues) {
  EXPECT_EQ(float_to_e4m3(0.0f), 0x00);
  EXPECT_EQ(float_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(float_to_e4m3(1.0f), 0x38);
  EXPECT_EQ(float_to_e4m3(-1.0f), 0xb8);
  EXPECT_EQ(float_to_e4m3(0.3f), 0x2a);    // 1.2 * 2^-2 -> 1.25 * 2^-2
  EXPECT_EQ(float_to_e4m3(240.0f), 0x77);  // 1.875 * 2^7
  EXPECT_EQ(float_to_e4m3(448.0f), 0x7e);
  EXPECT_EQ(float_to_e4m3(-448.0f), 0xfe);
  EXPECT_EQ(float_to_e4m3(0x1p-6f), 0x08);  // smallest normal
  EXPECT_EQ(float_to_e4m3(0x1p-9f), 0x01);  // smallest subnormal
  EXPECT_EQ(float_to_e4m3(-0x1p-9f), 0x81);
}

TEST(ReferenceE4m3, TiesRoundToEven) {
  EXPECT_EQ(float_to_e4m3(1.0625f), 0x38);  // between 1 (even) and 1.125
  EXPECT_EQ(float_to_e4m3(1.1875f), 0x3a);  // between 1.125 and 1.25 (even)
  EXPECT_EQ(float_to_e4m3(-1.1875f), 0xba);
  EXPECT_EQ(float_to_e4m3(0x1p-10f), 0x00);        // half the smallest subnormal: to zero
  EXPECT_EQ(float_to_e4m3(0x1.8p-9f), 0x02);       // 1.5 quanta: to 2
  EXPECT_EQ(float_to_e4m3(0x1.4p-9f), 0x01);       // 1.25 quanta: to 1
  EXPECT_EQ(float_to_e4m3(7.5f * 0x1p-9f), 0x08);  // subnormal tie carries into the normal range
  EXPECT_EQ(float_to_e4m3(1.9375f), 0x40);         // tie carries into the next binade (2.0)
  EXPECT_EQ(float_to_e4m3(std::nextafter(0x1p-10f, 1.0f)), 0x01);  // just above the tie
}

TEST(ReferenceE4m3, SaturatesFiniteAndInfinite) {
  EXPECT_EQ(float_to_e4m3(464.0f), 0x7e);  // the midpoint to the next (absent) value
  EXPECT_EQ(float_to_e4m3(500.0f), 0x7e);
  EXPECT_EQ(float_to_e4m3(-500.0f), 0xfe);
  EXPECT_EQ(float_to_e4m3(1e30f), 0x7e);
  EXPECT_EQ(float_to_e4m3(kInf), 0x7e);
  EXPECT_EQ(float_to_e4m3(-kInf), 0xfe);
}

TEST(ReferenceE4m3, NanBecomesCanonicalNan) {
  // CUDA's __nv_cvt_float_to_fp8 canonicalizes NaN to 0x7f whatever its sign.
  EXPECT_EQ(float_to_e4m3(kNan), 0x7f);
  EXPECT_EQ(float_to_e4m3(-kNan), 0x7f);
  EXPECT_TRUE(std::isnan(e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0xff)));
}

TEST(ReferenceE4m3, DecodesHandCheckedCodes) {
  EXPECT_EQ(e4m3_to_float(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(e4m3_to_float(0x80)));
  EXPECT_EQ(e4m3_to_float(0x01), 0x1p-9f);
  EXPECT_EQ(e4m3_to_float(0x07), 7 * 0x1p-9f);
  EXPECT_EQ(e4m3_to_float(0x08), 0x1p-6f);
  EXPECT_EQ(e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_float(0x3b), 1.375f);
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_float(0xfe), -448.0f);
  EXPECT_EQ(e4m3_to_float(0x78), 256.0f);
}

TEST(ReferenceE4m3, EveryNonNanCodeRoundTripsAndIsOrdered) {
  for (int code = 0; code < 256; ++code) {
    const auto e4m3 = static_cast<std::uint8_t>(code);
    const float value = e4m3_to_float(e4m3);
    if ((code & 0x7f) == 0x7f) continue;
    ASSERT_FALSE(std::isnan(value)) << "code " << code;
    ASSERT_EQ(float_to_e4m3(value), e4m3) << "code " << code;
    if ((code & 0x7f) > 0) {  // magnitudes strictly increase with the code
      ASSERT_GT(std::fabs(value), std::fabs(e4m3_to_float(static_cast<std::uint8_t>(code - 1))));
    }
  }
}

TEST(ReferenceE4m3, RandomValuesRoundToANearestCode) {
  test_util::Rng rng(17);
  for (int i = 0; i < 20000; ++i) {
    // Log-uniform magnitudes spanning subnormals to saturation.
    const float magnitude = std::exp2(test_util::uniform_float(rng, -12.0f, 9.5f));
    const float value = test_util::uniform_int(rng, 0, 1) ? magnitude : -magnitude;
    const float clamped = std::fmax(-448.0f, std::fmin(448.0f, value));
    double best_error = std::numeric_limits<double>::infinity();
    for (int code = 0; code < 256; ++code) {
      if ((code & 0x7f) == 0x7f) continue;
      best_error =
          std::fmin(best_error, std::fabs(e4m3_to_float(static_cast<std::uint8_t>(code)) - double{clamped}));
    }
    const float decoded = e4m3_to_float(float_to_e4m3(value));
    ASSERT_EQ(std::fabs(decoded - double{clamped}), best_error) << "value " << value;
    ASSERT_EQ(std::signbit(decoded), std::signbit(value)) << "value " << value;
  }
}

}  // namespace
}  // namespace moe_ep::reference
