// Eight bf16 values in one 16-byte vector: fp32 accumulation and packing, shared by the
// combine kernels (sums in fp32, one rounding to bf16 at the end).
#pragma once
#include <cuda_bf16.h>

namespace moe_ep::device {

__device__ __forceinline__ void accumulate_bf16x8(float (&acc)[8], const int4& v) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    acc[2 * i] += f.x;
    acc[2 * i + 1] += f.y;
  }
}

// acc += weight * v, one fused multiply-add per channel (the low-latency combine's sum).
__device__ __forceinline__ void accumulate_bf16x8(float (&acc)[8], const int4& v, float weight) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    acc[2 * i] = fmaf(weight, f.x, acc[2 * i]);
    acc[2 * i + 1] = fmaf(weight, f.y, acc[2 * i + 1]);
  }
}

// acc += rows[j][k] for every row j whose bit is set in `mask`, every load issued before
// the first add. kReadOnly: loads through the read-only cache (rows nobody writes while
// the kernel runs).
template <int kRows, bool kReadOnly = true>
__device__ __forceinline__ void accumulate_rows_bf16x8(float (&acc)[8], const int4* const (&rows)[kRows], unsigned mask,
                                                       int k) {
  int4 loaded[kRows];
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    if (mask & (1u << j)) loaded[j] = kReadOnly ? __ldg(rows[j] + k) : rows[j][k];
  }
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    if (mask & (1u << j)) accumulate_bf16x8(acc, loaded[j]);
  }
}

// acc += bias0[k] + bias1[k] (either may be null).
__device__ __forceinline__ void accumulate_biases_bf16x8(float (&acc)[8], const int4* bias0, const int4* bias1, int k) {
  if (bias0 != nullptr) accumulate_bf16x8(acc, __ldg(bias0 + k));
  if (bias1 != nullptr) accumulate_bf16x8(acc, __ldg(bias1 + k));
}

__device__ __forceinline__ int4 pack_bf16x8(const float (&acc)[8]) {
  int4 out;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
  return out;
}

}  // namespace moe_ep::device
