// Whether this build has the GIN transport (MOE_EP_WITH_GIN). Compiled in every build, so
// callers can ask without including NCCL.
#pragma once

namespace moe_ep::transport {

bool gin_built();

}  // namespace moe_ep::transport
