// Device side of the two memory-backed transports. Both move bytes with warp stores into
// the peer's mapped window and publish with a release store (or atomic add) into the peer's
// signal slot, which is what an RDMA put-with-signal gives:
//   - PeerMemoryTransport: the NVLink domain (and in-process ranks on one GPU).
//   - EmulatedRdmaTransport: the same memory, used strictly through the RDMA discipline
//     (sources must lie in the sender's own window; the interface has no loads from peers),
//     so kernels written against it keep working over GIN. Pretend nodes come from the
//     topology; one GPU can then run the multi-node algorithms.
// Interface every transport implements (a kernel is templated on it):
//   put_warp(peer, dst_offset, src_offset, bytes, lane)  whole warp; offsets 16-byte
//       aligned, bytes a multiple of 4
//   signal_set(peer, slot, value) / signal_add(peer, slot, value)  one thread; ordered
//       after every put this block issued before a __syncthreads()
//   read_signal(slot)  acquire load of the own slot
//   flush()  the calling thread's puts are complete at the destination
//   flush_block()  whole block: every put of the block's threads is complete (sources reusable)
//   reset_signal(slot)  zero the own slot; no peer may be signalling it
#pragma once
#include <cstdint>

#include "device/copy.cuh"
#include "device/sync.cuh"
#include "transport/transport_layout.hpp"

namespace moe_ep::transport {

// Bases: how the windows are reached, indexable by rank: a pointer into global or
// __grid_constant__ parameter memory, or a reference to an array in a kernel parameter
// (copying the array into the struct would cost local memory).
template <bool kRdmaDiscipline, typename Bases = std::uint8_t* const*>
struct MemoryTransport {
  Bases bases;  // every rank's window as mapped here (own included)
  TransportTopology topology;
  bool gpu_scope;  // every rank on this GPU: GPU-scope fences suffice

  __device__ __forceinline__ std::uint8_t* own(std::int64_t offset) const { return bases[topology.rank] + offset; }
  __device__ __forceinline__ std::uint64_t* signal_word(int rank, int slot) const {
    return reinterpret_cast<std::uint64_t*>(bases[rank]) + slot;
  }

  // Offsets 16-byte aligned, bytes a multiple of 4.
  __device__ __forceinline__ void put_warp(int peer, std::int64_t dst_offset, std::int64_t src_offset,
                                           std::int64_t bytes, int lane) const {
    std::uint8_t* dst = bases[peer] + dst_offset;
    const std::uint8_t* src = own(src_offset);
    const int vectors = static_cast<int>(bytes / 16);
    device::warp_copy_row(reinterpret_cast<int4*>(dst), reinterpret_cast<const int4*>(src), vectors, lane);
    for (std::int64_t i = 4 * vectors + lane; i < bytes / 4; i += 32) {
      reinterpret_cast<std::uint32_t*>(dst)[i] = reinterpret_cast<const std::uint32_t*>(src)[i];
    }
  }
  __device__ __forceinline__ void fence() const {
    if (gpu_scope) {
      __threadfence();
    } else {
      __threadfence_system();
    }
  }
  __device__ __forceinline__ void signal_set(int peer, int slot, std::uint64_t value) const {
    fence();
    device::store_release(signal_word(peer, slot), value, gpu_scope);
  }
  __device__ __forceinline__ void signal_add(int peer, int slot, std::uint64_t value) const {
    fence();
    atomicAdd(reinterpret_cast<unsigned long long*>(signal_word(peer, slot)), static_cast<unsigned long long>(value));
  }
  __device__ __forceinline__ std::uint64_t read_signal(int slot) const {
    return device::load_acquire(signal_word(topology.rank, slot), gpu_scope);
  }
  __device__ __forceinline__ void flush() const { fence(); }
  __device__ __forceinline__ void flush_block() const { fence(); }
  __device__ __forceinline__ void reset_signal(int slot) const { device::store_release(signal_word(topology.rank, slot), 0, gpu_scope); }

};

// From windows that live in kernel parameter memory (a __grid_constant__ parameter).
template <typename Transport>
__device__ __forceinline__ Transport memory_transport(const MemoryWindows& w) {
  return Transport{w.bases, w.topology, w.gpu_scope};
}

using PeerMemoryTransport = MemoryTransport<false>;
using EmulatedRdmaTransport = MemoryTransport<true>;
template <typename Bases>
using EmulatedRdmaTransportOver = MemoryTransport<true, Bases>;

}  // namespace moe_ep::transport
