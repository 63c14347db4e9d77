// Warp-wide per-128-channel FP8 (e4m3) cast of one bf16 row, bit-exact with
// reference::cast_fp8_per_128: amax floored at 1e-4, scale 448/amax (or its power of two),
// round-to-nearest-even with saturation. Each lane holds 8 channels; 16 lanes form a group.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "device/copy.cuh"

namespace moe_ep::kernels {

struct Fp8GroupScale {
  float scale;      // multiplies x before the cast
  float scale_inv;  // stored
};

__device__ __forceinline__ Fp8GroupScale fp8_group_scale(float amax, bool round_scale) {
  constexpr float kE4m3Max = 448.0f;
  constexpr float kE4m3MaxInv = 1.0f / 448.0f;
  amax = fmaxf(amax, 1e-4f);
  if (!round_scale) return {__fdiv_rn(kE4m3Max, amax), __fmul_rn(amax, kE4m3MaxInv)};
  // ceil(log2(amax / 448)) from the float's bits: exact, as the reference.
  const unsigned bits = __float_as_uint(__fmul_rn(amax, kE4m3MaxInv));
  const int exponent = static_cast<int>((bits >> 23) & 0xffu) - 127 + ((bits & 0x7fffffu) != 0 ? 1 : 0);
  return {ldexpf(1.0f, -exponent), ldexpf(1.0f, exponent)};
}

__device__ __forceinline__ float bf16_bits_to_float(std::uint32_t bits16) { return __uint_as_float(bits16 << 16); }

// Eight bf16 values (one int4) -> amax of their absolute values.
__device__ __forceinline__ float abs_max8(const int4& v) {
  const std::uint32_t w[4] = {static_cast<std::uint32_t>(v.x), static_cast<std::uint32_t>(v.y),
                              static_cast<std::uint32_t>(v.z), static_cast<std::uint32_t>(v.w)};
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m = fmaxf(m, fabsf(bf16_bits_to_float(w[i] & 0xffffu)));
    m = fmaxf(m, fabsf(bf16_bits_to_float(w[i] >> 16)));
  }
  return m;
}

// Eight bf16 values times `scale` -> eight e4m3 codes (little-endian in a uint2).
__device__ __forceinline__ uint2 cast8_e4m3(const int4& v, float scale) {
  const std::uint32_t w[4] = {static_cast<std::uint32_t>(v.x), static_cast<std::uint32_t>(v.y),
                              static_cast<std::uint32_t>(v.z), static_cast<std::uint32_t>(v.w)};
  std::uint32_t pairs[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = make_float2(__fmul_rn(bf16_bits_to_float(w[i] & 0xffffu), scale),
                                 __fmul_rn(bf16_bits_to_float(w[i] >> 16), scale));
    pairs[i] = static_cast<std::uint32_t>(__nv_cvt_float2_to_fp8x2(f, __NV_SATFINITE, __NV_E4M3));
  }
  return make_uint2(pairs[0] | (pairs[1] << 16), pairs[2] | (pairs[3] << 16));
}

// The whole warp casts channels [begin, end) (multiples of 128) of `x` into `q` (e4m3)
// and `scales` (one scale_inv per 128 channels).
__device__ __forceinline__ void warp_cast_row_fp8(const std::uint16_t* __restrict__ x, std::uint8_t* __restrict__ q,
                                                  float* __restrict__ scales, int begin, int end, bool round_scale,
                                                  int lane) {
  constexpr int kChannelsPerLane = 8;
  constexpr int kChannelsPerStep = 32 * kChannelsPerLane;  // two groups of 128
  constexpr int kUnroll = 4;
  const int4* src = reinterpret_cast<const int4*>(x);
  for (int base = begin; base < end; base += kUnroll * kChannelsPerStep) {
    int4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = base + u * kChannelsPerStep + lane * kChannelsPerLane;
      v[u] = c < end ? device::load_stream(src + c / kChannelsPerLane) : make_int4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = base + u * kChannelsPerStep + lane * kChannelsPerLane;
      float amax = abs_max8(v[u]);
#pragma unroll
      for (int offset = 8; offset >= 1; offset >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
      if (c < end) {
        const Fp8GroupScale s = fp8_group_scale(amax, round_scale);
        *reinterpret_cast<uint2*>(q + c) = cast8_e4m3(v[u], s.scale);
        if ((lane & 15) == 0) scales[c / 128] = s.scale_inv;
      }
    }
  }
}

}  // namespace moe_ep::kernels
