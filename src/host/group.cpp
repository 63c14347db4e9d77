// Group's default barrier: an allgather of one byte.
#include "moe_ep/group.hpp"

#include <vector>

namespace moe_ep {

void Group::barrier() {
  const char token = 0;
  std::vector<char> all(static_cast<std::size_t>(size()));
  allgather(&token, 1, all.data());
}

}  // namespace moe_ep
