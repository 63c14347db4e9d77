#include "transport/memory_transport_host.hpp"

#include <string>
#include <vector>

#include "moe_ep/errors.hpp"

namespace moe_ep::transport {
namespace {

int checked_ranks_per_node(const Group& group, TransportKind kind, int ranks_per_node) {
  const int n = group.size();
  if (n > kMaxNvlRanks) {
    throw InvalidArgument(std::string(transport_kind_name(kind)) + " transport: " + std::to_string(n) +
                          " ranks, but peer memory maps at most " + std::to_string(kMaxNvlRanks));
  }
  if (kind == TransportKind::kPeerMemory) return n;
  if (kind != TransportKind::kEmulatedRdma) {
    throw InvalidArgument(std::string("memory transport: kind ") + transport_kind_name(kind) + " is not memory-backed");
  }
  if (ranks_per_node <= 0 || n % ranks_per_node != 0) {
    throw InvalidArgument("emulated RDMA transport: ranks_per_node=" + std::to_string(ranks_per_node) +
                          " must divide the group size " + std::to_string(n));
  }
  return ranks_per_node;
}

// Bytes to map: the signal slots and the payload. Checks every argument first, so a bad
// one throws on every rank before the collective mapping.
std::size_t mapped_bytes(const Group& group, TransportKind kind, std::int64_t window_bytes, int ranks_per_node) {
  checked_ranks_per_node(group, kind, ranks_per_node);
  if (window_bytes < 0 || window_bytes % 16 != 0) {
    throw InvalidArgument("memory transport: window_bytes=" + std::to_string(window_bytes) +
                          " must be a non-negative multiple of 16");
  }
  return static_cast<std::size_t>(kSignalBytes + window_bytes);
}

// GPU-scope fences suffice when every rank runs on this process's device.
bool all_on_one_device(Group& group) {
  const int mine = group.device();
  std::vector<int> devices(group.size());
  group.allgather(&mine, sizeof mine, devices.data());
  for (int d : devices) {
    if (d != mine) return false;
  }
  return group.shares_address_space();
}

}  // namespace

MemoryTransportHost::MemoryTransportHost(Group& group, TransportKind kind, std::int64_t window_bytes, int ranks_per_node)
    : kind_(kind), mapping_(group, mapped_bytes(group, kind, window_bytes, ranks_per_node)) {
  for (int r = 0; r < group.size(); ++r) windows_.bases[r] = mapping_.bases()[r];
  windows_.window_bytes = kSignalBytes + window_bytes;
  windows_.topology.rank = group.rank();
  windows_.topology.num_ranks = group.size();
  windows_.topology.ranks_per_node = checked_ranks_per_node(group, kind, ranks_per_node);
  windows_.gpu_scope = all_on_one_device(group);
}

const char* transport_kind_name(TransportKind kind) {
  switch (kind) {
    case TransportKind::kPeerMemory: return "peer-memory";
    case TransportKind::kEmulatedRdma: return "emulated-RDMA";
    case TransportKind::kGin: return "GIN";
  }
  return "unknown";
}

}  // namespace moe_ep::transport
