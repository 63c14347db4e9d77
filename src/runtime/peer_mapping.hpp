// One rank's peer-visible device buffer and the mapped bases of every rank's buffer.
// In-process groups exchange raw pointers (enabling peer access between devices);
// process groups exchange CUDA IPC handles and open them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe_ep/group.hpp"
#include "runtime/device_memory.hpp"

namespace moe_ep::runtime {

class PeerMapping {
 public:
  // Collective over `group`. Allocates `bytes` zeroed bytes on the group's device.
  PeerMapping(Group& group, std::size_t bytes);
  ~PeerMapping();
  PeerMapping(const PeerMapping&) = delete;
  PeerMapping& operator=(const PeerMapping&) = delete;

  void* local() const { return local_.get(); }
  std::size_t bytes() const { return local_.bytes(); }
  // Base of rank r's buffer as seen from this rank (own included); null for ranks on
  // other nodes of a process group (CUDA IPC stops at the node).
  const std::vector<std::uint8_t*>& bases() const { return bases_; }

 private:
  DeviceAllocation local_;
  std::vector<std::uint8_t*> bases_;
  std::vector<void*> opened_ipc_;  // to close
};

}  // namespace moe_ep::runtime
