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

__device__ __forceinline__ int4 pack_bf16x8(const float (&acc)[8]) {
  int4 out;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
  return out;
}

}  // namespace moe_ep::device
