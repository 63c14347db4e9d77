// Scalar conversions of the CPU reference, bit-exact with CUDA's: bf16 <-> float
// (__float2bfloat16_rn) and e4m3 <-> float (__nv_cvt_float_to_fp8(v, __NV_SATFINITE,
// __NV_E4M3)). Written from the formats' definitions rather than CUDA's bit tricks, so the
// GPU tests compare two independent implementations.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "reference/reference.hpp"

namespace moe_ep::reference {
namespace {
constexpr std::uint16_t kBf16CanonicalNan = 0x7fff;  // what CUDA returns for any NaN input
constexpr std::uint8_t kE4m3Nan = 0x7f;              // CUDA drops a NaN's sign: always 0x7f
constexpr std::uint8_t kE4m3MaxFinite = 0x7e;        // 448 = 1.75 * 2^8
constexpr std::uint8_t kE4m3SignBit = 0x80;
constexpr double kE4m3Max = 448.0;
constexpr double kE4m3MinNormal = 0x1p-6;
constexpr double kE4m3MinSubnormal = 0x1p-9;
constexpr int kE4m3ExponentBias = 7;
constexpr int kE4m3MantissaBits = 3;
}  // namespace

float bf16_to_float(std::uint16_t v) { return std::bit_cast<float>(std::uint32_t{v} << 16); }

std::uint16_t float_to_bf16(float v) {
  if (std::isnan(v)) return kBf16CanonicalNan;
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(v);
  // Round to nearest even on the 16 dropped bits; a carry into the exponent is correct
  // (including overflow to infinity).
  const std::uint32_t lowest_kept_bit = (bits >> 16) & 1u;
  return static_cast<std::uint16_t>((bits + 0x7fffu + lowest_kept_bit) >> 16);
}

float e4m3_to_float(std::uint8_t v) {
  const bool negative = (v & kE4m3SignBit) != 0;
  const int exponent_field = (v >> kE4m3MantissaBits) & 0xf;
  const int mantissa_field = v & 0x7;
  float magnitude;
  if (exponent_field == 0xf && mantissa_field == 0x7) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent_field == 0) {  // subnormal: mantissa * 2^-9
    magnitude = static_cast<float>(mantissa_field * kE4m3MinSubnormal);
  } else {  // normal: 1.mantissa * 2^(exponent - bias)
    magnitude = static_cast<float>(
        std::ldexp(8 + mantissa_field, exponent_field - kE4m3ExponentBias - kE4m3MantissaBits));
  }
  return negative ? -magnitude : magnitude;
}

std::uint8_t float_to_e4m3(float v) {
  if (std::isnan(v)) return kE4m3Nan;
  const std::uint8_t sign = std::signbit(v) ? kE4m3SignBit : 0;
  const double magnitude = std::fabs(static_cast<double>(v));
  // satfinite: everything beyond the largest finite value, infinity included, clamps to it.
  if (magnitude > kE4m3Max) return sign | kE4m3MaxFinite;
  // std::nearbyint rounds to nearest even in the default rounding mode; every scaling
  // below is by a power of two, hence exact in double.
  if (magnitude < kE4m3MinNormal) {
    // Subnormal binade: count quanta of 2^-9. 8 quanta is the smallest normal, whose
    // code (exponent field 1, mantissa 0) is also 8.
    return sign | static_cast<std::uint8_t>(std::nearbyint(magnitude / kE4m3MinSubnormal));
  }
  int exponent;  // magnitude = fraction * 2^exponent, fraction in [0.5, 1)
  const double fraction = std::frexp(magnitude, &exponent);
  int biased_exponent = exponent - 1 + kE4m3ExponentBias;
  int mantissa = static_cast<int>(std::nearbyint((2.0 * fraction - 1.0) * (1 << kE4m3MantissaBits)));
  if (mantissa == (1 << kE4m3MantissaBits)) {  // rounded up into the next binade
    mantissa = 0;
    ++biased_exponent;
  }
  return sign | static_cast<std::uint8_t>((biased_exponent << kE4m3MantissaBits) | mantissa);
}

}  // namespace moe_ep::reference
