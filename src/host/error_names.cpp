// Human-readable names of phases and operations, for error messages.
#include "protocol/error_record.hpp"

namespace moe_ep::protocol {

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::kNone: return "none";
    case Phase::kLayout: return "get_dispatch_layout";
    case Phase::kDispatchNotify: return "dispatch.notify";
    case Phase::kDispatchReceive: return "dispatch.send";
    case Phase::kCombinePublish: return "combine.publish";
    case Phase::kCombineReduce: return "combine.reduce";
    case Phase::kDispatchPublishOutputs: return "dispatch.publish_outputs";
  }
  return "unknown";
}

const char* op_name(std::uint32_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kDispatch: return "dispatch";
    case Op::kCachedDispatch: return "cached dispatch";
    case Op::kCombine: return "combine";
  }
  return "unknown operation";
}

}  // namespace moe_ep::protocol
