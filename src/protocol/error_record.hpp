// The record a kernel writes when a bounded wait expires or a device-side check fails.
// Lives in host-mapped memory; the first error wins (atomicCAS on `code`). Shared by
// host and device code, so it stays trivially copyable.
#pragma once
#include <climits>
#include <cstdint>
#include <type_traits>

namespace moe_ep::protocol {

enum class ErrorCode : std::int32_t {
  kNone = 0,
  kTimeout = 1,        // a = expected tag, b = observed tag, c = wait start (globaltimer ns),
                       // d = us from the wait's start to the peer's kernel start (or below)
  kOpMismatch = 2,     // a = my op, b = peer's op
  kBadExpertId = 3,    // a = token, b = slot, c = value, d = num_experts
  kCapacity = 4,       // a = needed rows, b = capacity
  kCountMismatch = 5,  // a = counted, b = given (num_tokens_per_rank[peer])
  kPeerFailed = 6,     // the peer signalled that it failed this op
  kShapeMismatch = 7,  // a = this rank's value, b = the peer's, d = ShapeField
};

// kTimeout's d when the peer's kernel start is not tracked (high throughput), or when the
// peer had not started its kernel for the op (low latency).
inline constexpr std::int32_t kPeerEntryUnknown = INT32_MIN + 1;
inline constexpr std::int32_t kLlPeerNotEntered = INT32_MIN;

// kCapacity's d when a low-latency source reached by RDMA sends one expert more rows than
// the mirror slot holds.
inline constexpr std::int32_t kCapacityRdmaMirror = 1;
// kCapacity's d when an internode forwarder relays more tokens than handle.forward_rows holds.
inline constexpr std::int32_t kCapacityForwardRows = 2;
// kCountMismatch's d when the count is per node (num_tokens_per_rdma_rank; c = the node).
inline constexpr std::int32_t kCountMismatchPerNode = 1;

// Which per-call shape two ranks disagree on (kShapeMismatch).
enum class ShapeField : std::int32_t {
  kRowBytes = 1, kNumTopk = 2, kNumExperts = 3, kNumScales = 4,
  kHidden = 5, kMaxTokens = 6, kFormat = 7,  // low latency
  kDispatchPath = 8,                          // low-latency dispatch: with or without a hook
};

enum class Phase : std::int32_t {
  kNone = 0,
  kLayout = 1,
  kDispatchNotify = 2,
  kDispatchReceive = 3,  // the push of rows into the receivers' outputs
  kCombinePublish = 4,
  kCombineReduce = 5,
  kDispatchPublishOutputs = 6,
  kLowLatencyDispatchSend = 7,
  kLowLatencyDispatchRecv = 8,
  kLowLatencyCombineSend = 9,
  kLowLatencyCombineRecv = 10,
  kTransportSignal = 11,
  kTransportBarrier = 12,
  kInternodeDispatchForward = 13,  // waiting for a node's RDMA rows, relaying them over NVLink
  kInternodeCombineForward = 14,   // waiting for a home rank's slots to be free
  kInternodeCombineReduce = 15,    // waiting for a node's partial sums
};

struct ErrorRecord {
  std::int32_t code;   // ErrorCode; 0 = no error
  std::int32_t rank;
  std::int32_t phase;  // Phase
  std::int32_t peer;   // -1 when not about a peer
  std::int32_t channel;
  std::int32_t d;
  std::int64_t a, b, c;
};
static_assert(std::is_trivially_copyable_v<ErrorRecord>);

// Operation codes carried in flags, so a peer calling another operation is detected.
enum class Op : std::uint32_t {
  kDispatch = 1, kCachedDispatch = 2, kCombine = 3, kLowLatencyDispatch = 4, kLowLatencyCombine = 5,
  kTransport = 6,  // a transport signal count (its "epoch" is the count)
};

// A flag value: [63:8] epoch, [7:1] op, [0] failed.
constexpr std::uint64_t make_tag(std::uint64_t epoch, Op op, bool failed = false) {
  return (epoch << 8) | (static_cast<std::uint64_t>(op) << 1) | (failed ? 1u : 0u);
}
constexpr std::uint64_t tag_epoch(std::uint64_t tag) { return tag >> 8; }
constexpr std::uint32_t tag_op(std::uint64_t tag) { return static_cast<std::uint32_t>((tag >> 1) & 0x7f); }
constexpr bool tag_failed(std::uint64_t tag) { return (tag & 1u) != 0; }

const char* phase_name(Phase phase);
const char* op_name(std::uint32_t op);

}  // namespace moe_ep::protocol
