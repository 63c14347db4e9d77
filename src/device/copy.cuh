// Row copies: 16-byte vector accesses by the lanes of one warp, several loads in
// flight before the first store. Rows are multiples of 16 bytes (checked on the host).
#pragma once
#include <cstdint>

namespace moe_ep::device {

// Streaming load that does not pollute L1 (each source row is read once).
__device__ __forceinline__ int4 load_stream(const int4* p) {
  int4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Copies `num_vectors` int4 from src to dst with the 32 lanes of a warp, kUnroll loads in
// flight per lane (more for sources across NVLink, where latency dominates).
template <int kUnroll = 4>
__device__ __forceinline__ void warp_copy_row(int4* __restrict__ dst, const int4* __restrict__ src,
                                              int num_vectors, int lane) {
  int i = lane;
  for (; i + (kUnroll - 1) * 32 < num_vectors; i += kUnroll * 32) {
    int4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = load_stream(src + i + u * 32);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) dst[i + u * 32] = v[u];
  }
  for (; i < num_vectors; i += 32) dst[i] = load_stream(src + i);
}

}  // namespace moe_ep::device
