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
    case Phase::kLowLatencyDispatchSend: return "low_latency_dispatch.send";
    case Phase::kLowLatencyDispatchRecv: return "low_latency_dispatch.recv";
    case Phase::kLowLatencyCombineSend: return "low_latency_combine.send";
    case Phase::kLowLatencyCombineRecv: return "low_latency_combine.recv";
    case Phase::kTransportSignal: return "transport.signal";
    case Phase::kTransportBarrier: return "transport.barrier";
    case Phase::kInternodeDispatchForward: return "dispatch.forward (internode)";
    case Phase::kInternodeCombineForward: return "combine.forward (internode)";
    case Phase::kInternodeCombineReduce: return "combine.reduce (internode)";
  }
  return "unknown";
}

const char* op_name(std::uint32_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kDispatch: return "dispatch";
    case Op::kCachedDispatch: return "cached dispatch";
    case Op::kCombine: return "combine";
    case Op::kLowLatencyDispatch: return "low_latency_dispatch";
    case Op::kLowLatencyCombine: return "low_latency_combine";
    case Op::kTransport: return "transport signals";
  }
  return "unknown operation";
}

}  // namespace moe_ep::protocol
