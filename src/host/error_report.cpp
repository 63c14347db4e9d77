// Messages for device-recorded errors: which rank, phase, peer and values.
#include "host/error_report.hpp"

#include <sstream>

#include "moe_ep/errors.hpp"

namespace moe_ep::host {

std::string describe_error(const protocol::ErrorRecord& r) {
  using protocol::ErrorCode;
  std::ostringstream out;
  const char* phase = protocol::phase_name(static_cast<protocol::Phase>(r.phase));
  out << "rank " << r.rank << ", phase " << phase << ": ";
  switch (static_cast<ErrorCode>(r.code)) {
    case ErrorCode::kTimeout:
      out << "timed out waiting for peer rank " << r.peer << " (block " << r.channel << ", expected epoch "
          << protocol::tag_epoch(static_cast<std::uint64_t>(r.a)) << ", saw epoch "
          << protocol::tag_epoch(static_cast<std::uint64_t>(r.b)) << " of its "
          << protocol::op_name(protocol::tag_op(static_cast<std::uint64_t>(r.b))) << "; wait began at device time "
          << r.c / 1000 << " us";
      if (r.d == protocol::kLlPeerNotEntered) {
        out << "; rank " << r.peer << " had not started its kernel for this op";
      } else if (r.d != protocol::kPeerEntryUnknown) {
        out << "; rank " << r.peer << " started its kernel for this op " << (r.d >= 0 ? r.d : -r.d) << " us "
            << (r.d >= 0 ? "after" : "before") << " the wait began";
      }
      out << ")";
      break;
    case ErrorCode::kOpMismatch:
      out << "operation mismatch: this rank called " << protocol::op_name(static_cast<std::uint32_t>(r.a))
          << " while rank " << r.peer << " called " << protocol::op_name(static_cast<std::uint32_t>(r.b));
      break;
    case ErrorCode::kBadExpertId:
      out << "topk_idx[" << r.a << "][" << r.b << "] = " << r.c << " is outside [-1, num_experts) with num_experts = "
          << r.d;
      break;
    case ErrorCode::kCapacity:
      if (r.d == protocol::kCapacityRdmaMirror) {
        out << "rank " << r.peer << " (reached by RDMA) sends " << r.a << " rows to one local expert, but its mirror "
            << "slot holds " << r.b << " (num_max_dispatch_tokens_per_rank): tokens name the expert in several top-k "
            << "slots";
      } else if (r.d == protocol::kCapacityForwardRows) {
        out << "relays " << r.a << " tokens to its node's ranks but handle.forward_rows holds " << r.b
            << " (num_worst_tokens x ranks per node)";
      } else if (static_cast<protocol::Phase>(r.phase) == protocol::Phase::kLowLatencyDispatchRecv) {
        out << "a local expert receives " << r.a << " rows but has only " << r.b
            << " slots (num_ranks x num_max_dispatch_tokens_per_rank): tokens name it in several top-k slots";
      } else {
        out << "receives " << r.a << " tokens but num_worst_tokens is " << r.b;
      }
      break;
    case ErrorCode::kCountMismatch:
      if (r.d == protocol::kCountMismatchPerNode) {
        out << "is_token_in_rank sends " << r.a << " tokens to node " << r.c << " but num_tokens_per_rdma_rank["
            << r.c << "] says " << r.b;
      } else {
        out << "is_token_in_rank sends " << r.a << " tokens to rank " << r.peer << " but num_tokens_per_rank says "
            << r.b;
      }
      break;
    case ErrorCode::kShapeMismatch: {
      static const char* const fields[] = {"?", "row bytes (hidden x element size)", "top-k", "num_experts",
                                           "scales per token", "hidden", "num_max_dispatch_tokens_per_rank",
                                           "row format (use_fp8 / round_scale / use_ue8m0 / use_logfmt)",
                                           "the dispatch path (1: direct, without return_recv_hook; 0: with it)"};
      const int f = r.d >= 1 && r.d <= 8 ? r.d : 0;
      out << "ranks disagree on " << fields[f] << ": this rank has " << r.a << ", rank " << r.peer << " has " << r.b;
      break;
    }
    case ErrorCode::kPeerFailed:
      out << "peer rank " << r.peer << " failed this operation (see that rank's error)";
      break;
    default:
      out << "unknown error code " << r.code;
  }
  return out.str();
}

void throw_error(const protocol::ErrorRecord& r, const std::string& message) {
  switch (static_cast<protocol::ErrorCode>(r.code)) {
    case protocol::ErrorCode::kTimeout:
    case protocol::ErrorCode::kPeerFailed:
      throw Timeout(message);
    case protocol::ErrorCode::kOpMismatch:
    case protocol::ErrorCode::kBadExpertId:
    case protocol::ErrorCode::kCapacity:
    case protocol::ErrorCode::kCountMismatch:
    case protocol::ErrorCode::kShapeMismatch:
      throw InvalidArgument(message);
    default:
      throw std::runtime_error(message);
  }
}

}  // namespace moe_ep::host
