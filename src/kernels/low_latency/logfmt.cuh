// LogFMT: the combine's optional log encoding of expert outputs (use_logfmt). Per 128
// channels, a header {lmin, step} (two floats) and one byte per value: bit 7 the sign,
// bits 0-6 a code m, where m = 0 is zero and m >= 1 decodes to 2^(lmin + (m - 1) * step).
//   lmax = log2(max |x|), lmin = max(log2(min nonzero |x|), lmax - 20), step = (lmax - lmin) / 126
// Error bound per value: |decoded - x| <= (2^(step / 2) - 1) |x| + max|x| * 2^-20
//   <= 0.057 |x| + max|x| * 2^-20 (step <= 20/126), plus a few ulps of log2f/exp2f.
#pragma once
#include <cstdint>

#include "kernels/low_latency/fp8_cast.cuh"

namespace moe_ep::kernels {

inline constexpr float kLogFmtRangeOctaves = 20.0f;
inline constexpr int kLogFmtMaxCode = 127;

// Four bf16 values (uint2) -> four codes (uint32, little-endian).
__device__ __forceinline__ std::uint32_t logfmt_encode4(uint2 v, float lmin, float step) {
  const std::uint32_t halves[4] = {v.x & 0xffffu, v.x >> 16, v.y & 0xffffu, v.y >> 16};
  std::uint32_t codes = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float x = bf16_bits_to_float(halves[i]);
    const float a = fabsf(x);
    int m = 0;
    if (a > 0.0f) {
      m = step > 0.0f ? __float2int_rn((log2f(a) - lmin) / step) + 1 : 1;
      m = m < 1 ? 0 : (m > kLogFmtMaxCode ? kLogFmtMaxCode : m);
    }
    const std::uint32_t code = static_cast<std::uint32_t>(m) | (x < 0.0f && m != 0 ? 0x80u : 0u);
    codes |= code << (8 * i);
  }
  return codes;
}

__device__ __forceinline__ float logfmt_decode(std::uint32_t code, float lmin, float step) {
  const int m = static_cast<int>(code & 0x7fu);
  if (m == 0) return 0.0f;
  const float a = exp2f(lmin + static_cast<float>(m - 1) * step);
  return (code & 0x80u) ? -a : a;
}

// The whole warp encodes one bf16 row of `hidden` channels into `row`
// ([hidden/128] x {lmin, step}, then hidden codes). Lanes hold 4 channels of a group.
__device__ __forceinline__ void warp_encode_row_logfmt(const std::uint16_t* __restrict__ x,
                                                       std::uint8_t* __restrict__ row, int hidden, int lane) {
  const int num_groups = hidden / 128;
  float2* headers = reinterpret_cast<float2*>(row);
  std::uint32_t* codes = reinterpret_cast<std::uint32_t*>(row + 8 * num_groups);
  // Groups in batches whose loads are all issued first: one memory round trip per batch,
  // not per group.
  constexpr int kBatch = 4;
  for (int g0 = 0; g0 < num_groups; g0 += kBatch) {
    uint2 loaded[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      if (g0 + b < num_groups) loaded[b] = *reinterpret_cast<const uint2*>(x + (g0 + b) * 128 + lane * 4);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      if (g0 + b >= num_groups) break;
      const int g = g0 + b, c = g * 128 + lane * 4;
      const uint2 v = loaded[b];
      const std::uint32_t halves[4] = {v.x & 0xffffu, v.x >> 16, v.y & 0xffffu, v.y >> 16};
      float amax = 0.0f, amin = __int_as_float(0x7f800000);  // +inf: no nonzero value yet
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float a = fabsf(bf16_bits_to_float(halves[i]));
        amax = fmaxf(amax, a);
        if (a > 0.0f) amin = fminf(amin, a);
      }
#pragma unroll
      for (int offset = 16; offset >= 1; offset >>= 1) {
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
        amin = fminf(amin, __shfl_xor_sync(0xffffffffu, amin, offset));
      }
      float lmin = 0.0f, step = 0.0f;
      if (amax > 0.0f) {
        const float lmax = log2f(amax);
        lmin = fmaxf(log2f(amin), lmax - kLogFmtRangeOctaves);
        step = (lmax - lmin) / static_cast<float>(kLogFmtMaxCode - 1);
      }
      if (lane == 0) headers[g] = make_float2(lmin, step);
      codes[c / 4] = amax > 0.0f ? logfmt_encode4(v, lmin, step) : 0u;
    }
  }
}

}  // namespace moe_ep::kernels
