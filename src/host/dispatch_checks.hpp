// Argument checks shared by the dispatch calls (intranode and internode): the payload,
// the layout tensors and the handle, before anything is launched.
#pragma once
#include <cstdint>
#include <string>

#include "host/buffer_impl.hpp"

namespace moe_ep::host {

struct DispatchShape {
  std::int64_t num_tokens = 0;
  std::int64_t hidden = 0;
  std::int64_t row_bytes = 0;
  int num_scales = 0;
  int num_topk = 0;
  int num_experts = 0;
  bool fp8 = false;
};

// Throws InvalidArgument naming the first bad argument; returns the call's shape.
DispatchShape check_dispatch_args(const std::string& op, const Buffer::Impl& b, const DispatchArgs& a,
                                  const DispatchHandle& handle, bool cached);

}  // namespace moe_ep::host
