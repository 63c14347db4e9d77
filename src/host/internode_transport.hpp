// The RDMA transport a Buffer spanning nodes needs: NCCL GIN (the only engine for real
// nodes). Kept apart so Buffer code never includes NCCL.
#pragma once
#include <cstdint>
#include <memory>

#include "moe_ep/group.hpp"

namespace moe_ep::host {

// Collective. The live transport (opaque), or an exception that says why there is none:
// a build without GIN, or GIN unavailable on this machine (no RDMA NIC).
std::shared_ptr<void> make_internode_transport(Group& group, std::int64_t window_bytes, int ranks_per_node);

}  // namespace moe_ep::host
