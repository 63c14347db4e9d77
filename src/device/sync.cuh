// Device synchronization blocks: scoped acquire/release accesses, the global timer, and
// the bounded wait every kernel uses instead of an unbounded spin. A wait that expires
// writes the error record and returns false; nothing traps.
#pragma once
#include <cstdint>

#include "protocol/error_record.hpp"

namespace moe_ep::device {

__device__ __forceinline__ std::uint64_t global_timer_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Pairs with store_release_sys by the peer that signals.
__device__ __forceinline__ std::uint64_t load_acquire_sys(const std::uint64_t* p) {
  std::uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Publishes every earlier write of this thread (and, after a barrier, of its block).
__device__ __forceinline__ void store_release_sys(std::uint64_t* p, std::uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// GPU-scope variants: enough when every peer runs on this GPU (in-process ranks, or
// processes under MPS), and much cheaper than a system-scope fence.
__device__ __forceinline__ std::uint64_t load_acquire_gpu(const std::uint64_t* p) {
  std::uint64_t v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_release_gpu(std::uint64_t* p, std::uint64_t v) {
  asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
// A strong store without its own fence: after one fence, a signal to every peer (fence +
// relaxed store is a release) without paying the fence per peer.
__device__ __forceinline__ void store_relaxed(std::uint64_t* p, std::uint64_t v, bool gpu_scope) {
  if (gpu_scope) {
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
  } else {
    asm volatile("st.relaxed.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
  }
}
// A strong load that orders nothing (the benchmark's synchronization floor polls with it).
__device__ __forceinline__ std::uint64_t load_relaxed(const std::uint64_t* p, bool gpu_scope) {
  std::uint64_t v;
  if (gpu_scope) {
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  } else {
    asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  }
  return v;
}
__device__ __forceinline__ std::uint64_t load_acquire(const std::uint64_t* p, bool gpu_scope) {
  return gpu_scope ? load_acquire_gpu(p) : load_acquire_sys(p);
}
__device__ __forceinline__ void store_release(std::uint64_t* p, std::uint64_t v, bool gpu_scope) {
  if (gpu_scope) {
    store_release_gpu(p, v);
  } else {
    store_release_sys(p, v);
  }
}

// First in a kernel launched as a programmatic dependent (runtime/programmatic_launch.hpp):
// returns once the stream's previous kernel has completed and its writes are visible (at
// once when launched without programmatic dependence). Compiled for sm_90+ only.
__device__ __forceinline__ void wait_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The first `warps` warps of the block meet (named barrier 1; __syncthreads is barrier 0).
__device__ __forceinline__ void sync_first_warps(int warps) {
  asm volatile("bar.sync 1, %0;" ::"r"(warps * 32) : "memory");
}

__device__ __forceinline__ void sleep_until(std::uint64_t deadline_ns) {
  while (global_timer_ns() < deadline_ns) __nanosleep(1000);
}

// First error wins; later ones are dropped so the host sees the root cause.
__device__ __forceinline__ void record_error(protocol::ErrorRecord* rec, protocol::ErrorCode code,
                                             int rank, protocol::Phase phase, int peer,
                                             std::int64_t a = 0, std::int64_t b = 0, std::int64_t c = 0,
                                             std::int32_t d = 0) {
  if (atomicCAS(&rec->code, 0, static_cast<int>(code)) != 0) return;
  rec->rank = rank;
  rec->phase = static_cast<int>(phase);
  rec->peer = peer;
  rec->channel = static_cast<int>(blockIdx.x);
  rec->a = a;
  rec->b = b;
  rec->c = c;
  rec->d = d;
  __threadfence_system();
}

enum class WaitResult { kOk, kTimeout, kMismatch, kPeerFailed };

// Waits until the flag at `flag` (written by `peer`) carries epoch >= tag's epoch.
// Returns kMismatch when the peer is at this epoch with another op, kPeerFailed when
// it signalled failure; records the error in every non-ok case.
// With record_timeout false an expiry is only returned (low latency masks the peer).
// Every poll is an acquire load: the one that sees the flag needs nothing after it (a
// relaxed poll then fence.acq_rel cost H100 about 0.5 us a hand-off; one token per rank,
// 8 in-process ranks, 8 LL pairs back to back 24.6 -> 22.9 us per pair).
__device__ __forceinline__ WaitResult wait_tag(const std::uint64_t* flag, std::uint64_t tag,
                                               std::uint64_t timeout_ns, protocol::ErrorRecord* rec,
                                               int rank, protocol::Phase phase, int peer,
                                               bool record_timeout = true, bool gpu_scope = false) {
  const std::uint64_t start = global_timer_ns();
  std::uint64_t seen = load_acquire(flag, gpu_scope);
  while (protocol::tag_epoch(seen) < protocol::tag_epoch(tag)) {
    if (global_timer_ns() - start > timeout_ns) {
      if (!record_timeout) return WaitResult::kTimeout;
      record_error(rec, protocol::ErrorCode::kTimeout, rank, phase, peer, static_cast<std::int64_t>(tag),
                   static_cast<std::int64_t>(seen), static_cast<std::int64_t>(start), protocol::kPeerEntryUnknown);
      return WaitResult::kTimeout;
    }
    seen = load_acquire(flag, gpu_scope);
  }
  if (protocol::tag_epoch(seen) == protocol::tag_epoch(tag)) {
    if (protocol::tag_op(seen) != protocol::tag_op(tag)) {
      record_error(rec, protocol::ErrorCode::kOpMismatch, rank, phase, peer, protocol::tag_op(tag),
                   protocol::tag_op(seen));
      return WaitResult::kMismatch;
    }
    if (protocol::tag_failed(seen)) {
      record_error(rec, protocol::ErrorCode::kPeerFailed, rank, phase, peer);
      return WaitResult::kPeerFailed;
    }
  }
  return WaitResult::kOk;
}

}  // namespace moe_ep::device
