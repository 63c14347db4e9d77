#include "host/internode_transport.hpp"

#include <string>

#include "moe_ep/errors.hpp"
#include "transport/gin_availability.hpp"
#include "transport/transport_layout.hpp"
#if defined(MOE_EP_WITH_GIN)
#include "transport/gin/gin_transport_host.hpp"
#endif

namespace moe_ep::host {

std::shared_ptr<void> make_internode_transport(Group& group, std::int64_t window_bytes, int ranks_per_node) {
#if defined(MOE_EP_WITH_GIN)
  return std::make_shared<transport::GinTransportHost>(group, window_bytes, ranks_per_node, transport::kMaxSignals);
#else
  (void)group, (void)window_bytes, (void)ranks_per_node;
  throw InvalidArgument(
      "internode transport: this moe_ep was built without GIN (NCCL >= 2.28 with nccl_device/gin.h was not found "
      "at build time); ranks on several nodes need it. Rebuild with NCCL 2.28+ (MOE_EP_WITH_GIN=ON).");
#endif
}

}  // namespace moe_ep::host
