// Exchanges buffer addresses between ranks: pointers in one process, IPC handles across.
#include "runtime/peer_mapping.hpp"

#include <string>

#include <cuda_runtime_api.h>

#include "runtime/cuda_check.hpp"

namespace moe_ep::runtime {
namespace {

struct PointerRecord {
  std::uint64_t address;
  int device;
  int reserved;
};

void enable_peer_access(int device, int peer_device) {
  if (device == peer_device) return;
  int can = 0;
  MOE_EP_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, device, peer_device));
  if (!can) {
    throw CudaError("device " + std::to_string(device) + " cannot access device " + std::to_string(peer_device) +
                    " as a peer (no NVLink/P2P path)");
  }
  cudaError_t status = cudaDeviceEnablePeerAccess(peer_device, 0);
  if (status == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return;
  }
  MOE_EP_CUDA_CHECK(status);
}

}  // namespace

PeerMapping::PeerMapping(Group& group, std::size_t bytes) {
  DeviceGuard guard(group.device());
  local_ = DeviceAllocation(bytes);
  const int n = group.size();
  bases_.assign(n, nullptr);
  if (bytes == 0) return;  // nothing to share (every rank agreed on the size beforehand)
  if (group.shares_address_space()) {
    PointerRecord mine{reinterpret_cast<std::uint64_t>(local_.get()), group.device(), 0};
    std::vector<PointerRecord> all(n);
    group.allgather(&mine, sizeof(mine), all.data());
    for (int r = 0; r < n; ++r) {
      enable_peer_access(group.device(), all[r].device);
      bases_[r] = reinterpret_cast<std::uint8_t*>(all[r].address);
    }
    return;
  }
  cudaIpcMemHandle_t handle;
  MOE_EP_CUDA_CHECK(cudaIpcGetMemHandle(&handle, local_.get()));
  std::vector<cudaIpcMemHandle_t> all(n);
  group.allgather(&handle, sizeof(handle), all.data());
  const int per_node = group.num_ranks_per_node();
  for (int r = 0; r < n; ++r) {
    if (r == group.rank()) {
      bases_[r] = static_cast<std::uint8_t*>(local_.get());
      continue;
    }
    if (r / per_node != group.rank() / per_node) continue;  // another node: reached by RDMA only
    void* opened = nullptr;
    MOE_EP_CUDA_CHECK(cudaIpcOpenMemHandle(&opened, all[r], cudaIpcMemLazyEnablePeerAccess));
    opened_ipc_.push_back(opened);
    bases_[r] = static_cast<std::uint8_t*>(opened);
  }
}

PeerMapping::~PeerMapping() {
  for (void* p : opened_ipc_) cudaIpcCloseMemHandle(p);
}

}  // namespace moe_ep::runtime
