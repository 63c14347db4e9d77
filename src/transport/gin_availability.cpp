#include "transport/gin_availability.hpp"

namespace moe_ep::transport {

bool gin_built() {
#if defined(MOE_EP_WITH_GIN)
  return true;
#else
  return false;
#endif
}

}  // namespace moe_ep::transport
