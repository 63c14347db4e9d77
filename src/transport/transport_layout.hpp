// What every transport shares, host and device: a rank owns one symmetric window (the
// same byte size on every rank), addressed by (rank, byte offset), and a table of 64-bit
// signal slots that peers set or add to. Kernels never see raw remote pointers through
// this interface, so the same kernel runs over NVLink peer memory, over RDMA emulated on
// peer memory, and over NCCL's GPU-initiated networking (GIN).
#pragma once
#include <cstdint>

#include "moe_ep/config.hpp"

// Callable from host and device code (plain inline for the host compiler).
#if defined(__CUDACC__)
#define MOE_EP_TRANSPORT_HD __host__ __device__
#else
#define MOE_EP_TRANSPORT_HD
#endif

namespace moe_ep::transport {

enum class TransportKind : std::int32_t {
  kPeerMemory = 0,    // NVLink (or one GPU): remote stores into peer-mapped memory
  kEmulatedRdma = 1,  // peer memory used only through put/signal, ranks split in pretend nodes
  kGin = 2,           // NCCL device API, GPU-initiated networking (needs an RDMA NIC)
};

const char* transport_kind_name(TransportKind kind);

// Ranks of one transport, grouped into nodes of `ranks_per_node` consecutive ranks.
struct TransportTopology {
  int rank = 0;
  int num_ranks = 1;
  int ranks_per_node = 1;
  MOE_EP_TRANSPORT_HD int node() const { return rank / ranks_per_node; }
  MOE_EP_TRANSPORT_HD int num_nodes() const { return num_ranks / ranks_per_node; }
  MOE_EP_TRANSPORT_HD int local_rank() const { return rank % ranks_per_node; }
  MOE_EP_TRANSPORT_HD int node_of(int r) const { return r / ranks_per_node; }
  MOE_EP_TRANSPORT_HD bool same_node(int r) const { return node_of(r) == node(); }
};

// Memory-backed transports keep the signal slots at the start of the window; payload
// offsets start after them.
inline constexpr int kMaxSignals = 1024;
inline constexpr std::int64_t kSignalBytes = 8 * kMaxSignals;

// The windows of a memory-backed transport, as one rank's kernels get them.
struct MemoryWindows {
  std::uint8_t* bases[kMaxInternodeRanks];  // every rank's window as mapped here (own included)
  std::int64_t window_bytes;          // signal slots included
  TransportTopology topology;
  bool gpu_scope;  // every rank on this GPU: GPU-scope fences suffice
};

}  // namespace moe_ep::transport
