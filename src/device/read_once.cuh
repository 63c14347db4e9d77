// Loads of data a kernel reads once (a combine's rows): their L2 lines are the first to be
// replaced. Reading them otherwise evicts lines of normal priority, which in a busy L2 are
// mostly dirty (earlier kernels' outputs) and must be written back first: every row line
// read would cost a line written. Marked evict-first, a set gives up the rows read before
// instead, so only a set's first fill evicts a dirty line.
#pragma once
#include <cstdint>

namespace moe_ep::device {

// An L2 policy: every line the access fills is evict-first.
__device__ __forceinline__ std::uint64_t l2_evict_first_policy() {
  std::uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

// A coherent 16-byte load (not .nc: peers may have written the row during this kernel)
// under `policy`. No "memory" clobber: it is ordered after an acquire only through its
// address (a row pointer read after the acquire and a barrier), as in sum_bf16.
__device__ __forceinline__ int4 load_read_once(const void* p, std::uint64_t policy) {
  int4 v;
  asm volatile("ld.global.L2::cache_hint.v4.s32 {%0, %1, %2, %3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p), "l"(policy));
  return v;
}

// Starts bringing `bytes` (a multiple of 16, from a 16-byte aligned address) into L2, with
// no register written and nothing to wait for. sm_90 and later; a no-op before.
__device__ __forceinline__ void prefetch_l2(const void* p, std::uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  (void)p, (void)bytes;
#endif
}

}  // namespace moe_ep::device
