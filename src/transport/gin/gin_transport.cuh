// Device side of the GIN transport: the interface of memory_transport.cuh over NCCL's
// GPU-initiated networking. Peers are world ranks; offsets address the symmetric window
// (its first kSignalBytes unused, so payload offsets match the memory transports); signal
// slots are the device communicator's GIN signals 0..num_signals-1. Everything goes through
// GIN context 0: GIN makes a signal visible only after the earlier puts of its context to
// the same peer, which is the put-then-signal order kernels rely on.
#pragma once
#include <cstddef>
#include <cstdint>

#include <nccl.h>
#include <nccl_device.h>

#include "transport/gin/gin_transport_host.hpp"
#include "transport/transport_layout.hpp"

namespace moe_ep::transport {

struct GinTransport {
  const ncclDevComm* dev_comm;  // in kernel parameter memory (GinWindows): copying costs local memory
  ncclWindow_t window;
  std::uint8_t* local_base;  // the own window: what peers put is read here, sources are staged here
  std::uint64_t* set_values;
  TransportTopology topology;
  int num_signals;

  __device__ __forceinline__ ncclGin gin() const { return ncclGin(*dev_comm, 0); }
  __device__ __forceinline__ std::uint8_t* own(std::int64_t offset) const { return local_base + offset; }

  // One lane posts the put (GIN reads the source from the own window); the syncs order
  // the warp's earlier writes of the source before it and keep the warp together.
  __device__ __forceinline__ void put_warp(int peer, std::int64_t dst_offset, std::int64_t src_offset,
                                           std::int64_t bytes, int lane) const {
    __syncwarp();
    if (lane == 0 && bytes > 0) {
      gin().put(ncclTeamWorld(*dev_comm), peer, window, static_cast<std::size_t>(dst_offset), window,
                static_cast<std::size_t>(src_offset), static_cast<std::size_t>(bytes));
    }
    __syncwarp();
  }
  // Kernels rely on NCCL 2.28's ordering: a signal lands after every earlier put of the
  // context to that peer, whichever thread posted it. Later NCCL versions make standalone
  // legacy signals weak unless asked (strong signal actions): revisit this when moving on.
  __device__ __forceinline__ void signal_add(int peer, int slot, std::uint64_t value) const {
    gin().signal(ncclTeamWorld(*dev_comm), peer, ncclGin_SignalAdd{static_cast<ncclGinSignal_t>(slot), value});
  }
  // NCCL 2.28 has no set action (ncclGin_SignalSet is "support deferred" in gin.h), so a
  // set adds the difference to the value this rank set last. Valid while (peer, slot) is
  // set by this rank only, one thread at a time, never mixed with adds.
  __device__ __forceinline__ void signal_set(int peer, int slot, std::uint64_t value) const {
    std::uint64_t* last = set_values + static_cast<std::int64_t>(peer) * num_signals + slot;
    const std::uint64_t delta = value - *last;  // modulo 2^64, as the signal itself
    *last = value;
    signal_add(peer, slot, delta);
  }
  // Acquire: pairs with the release NCCL performs before a signal lands.
  __device__ __forceinline__ std::uint64_t read_signal(int slot) const {
    return gin().readSignal(static_cast<ncclGinSignal_t>(slot));
  }
  // Waits on every peer queue of the context, so it covers puts any thread posted before.
  // GIN promises the sources are reusable, not that data has landed: only a signal says so.
  __device__ __forceinline__ void flush() const { gin().flush(ncclCoopThread()); }
  // Whole block: NCCL splits the peer queues over the block's threads.
  __device__ __forceinline__ void flush_block() const { gin().flush(ncclCoopCta()); }
  // Signal and shadow to zero; no peer may be signalling it.
  __device__ __forceinline__ void reset_signal(int slot) const { gin().resetSignal(static_cast<ncclGinSignal_t>(slot)); }
};

// From windows in kernel parameter memory (a __grid_constant__ parameter).
__device__ __forceinline__ GinTransport gin_transport(const GinWindows& w) {
  return GinTransport{&w.dev_comm, w.window, w.local_base, w.set_values, w.topology, w.num_signals};
}

}  // namespace moe_ep::transport
