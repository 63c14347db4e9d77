// Layout of each rank's RDMA window for the internode high-throughput kernels, and the
// signal slots they use. ONE carve per region computes sizes and offsets; CPU-tested.
//   [signal slots][count rows: (num_ranks + 1) x count row][combine shapes: (num_ranks + 1) x 16 B]
//   [dispatch half][combine half]
// Dispatch and combine have separate halves: a forwarder's combine puts may land while
// the home rank's dispatch puts from its staging are still in flight to other nodes.
#pragma once
#include <cstdint>

#include "moe_ep/config.hpp"
#include "protocol/nvl_buffer_layout.hpp"
#include "transport/transport_layout.hpp"

namespace moe_ep::protocol {

// Each signal slot receives exactly one add of 1 per call of its kind, so a receiver
// waits for "calls so far" (DeviceState::internode_calls).
struct InternodeSlots {
  int num_ranks = 1;
  int num_nodes = 1;
  MOE_EP_TRANSPORT_HD constexpr int counts_from(int rank) const { return rank; }
  MOE_EP_TRANSPORT_HD constexpr int dispatch_data_from(int node) const { return num_ranks + node; }
  MOE_EP_TRANSPORT_HD constexpr int combine_ready_from(int node) const { return num_ranks + num_nodes + node; }
  MOE_EP_TRANSPORT_HD constexpr int combine_data_from(int node) const { return num_ranks + 2 * num_nodes + node; }
  MOE_EP_TRANSPORT_HD constexpr int total() const { return num_ranks + 3 * num_nodes; }
};

// One rank's count row (int32): the call's shape, then what it sends to each rank, to
// each node, to each expert. Every rank puts its row to every rank (row index = sender).
enum CountRowField : int {
  kCountRowBytes = 0, kCountNumTopk = 1, kCountNumExperts = 2, kCountNumScales = 3,
  kCountFailed = 4,  // the sender failed its checks: every rank aborts the call
  kCountHeaderInts = 8,
};
struct CountRows {
  int num_ranks = 1;
  int num_nodes = 1;
  MOE_EP_TRANSPORT_HD constexpr int per_rank() const { return kCountHeaderInts; }
  MOE_EP_TRANSPORT_HD constexpr int per_node() const { return kCountHeaderInts + num_ranks; }
  MOE_EP_TRANSPORT_HD constexpr int per_expert() const { return kCountHeaderInts + num_ranks + num_nodes; }
  // Sized for kMaxExperts, rounded to 16 bytes (a put's granularity).
  MOE_EP_TRANSPORT_HD constexpr int row_ints() const { return (per_expert() + kMaxExperts + 3) / 4 * 4; }
};

// What a home rank tells each forwarder before a combine: the shape of the records it
// expects (a forwarder with another shape would put records of another size).
struct CombineShape {
  std::int32_t hidden;
  std::int32_t num_topk;
  std::int32_t reserved[2];
};
static_assert(sizeof(CombineShape) == 16);

struct InternodeWindow {
  CountRows counts;
  std::int64_t counts_offset = 0;  // int32 [num_ranks + 1][row_ints]; row num_ranks is the own staging
  std::int64_t shapes_offset = 0;  // CombineShape [num_ranks + 1], by home rank; the last is the own staging
  std::int64_t half_offset[2] = {0, 0};  // 0: dispatch, 1: combine
  std::int64_t half_bytes = 0;
  std::int64_t total_bytes = 0;
};

constexpr InternodeWindow carve_internode_window(std::int64_t window_bytes, int num_ranks, int num_nodes) {
  InternodeWindow w;
  w.counts = CountRows{num_ranks, num_nodes};
  w.counts_offset = transport::kSignalBytes;
  w.shapes_offset = w.counts_offset + 4LL * (num_ranks + 1) * w.counts.row_ints();
  const std::int64_t fixed = align_up(w.shapes_offset + 16LL * (num_ranks + 1), 128);
  w.half_bytes = window_bytes > fixed ? (window_bytes - fixed) / 2 / 128 * 128 : 0;
  w.half_offset[0] = fixed;
  w.half_offset[1] = fixed + w.half_bytes;
  w.total_bytes = fixed + 2 * w.half_bytes;
  return w;
}

// One dispatched token as it crosses to a node: payload, scales, global top-k ids (int32),
// weights, source index; then the rows it takes at each local rank of that node (-1: none).
struct DispatchRecord {
  std::int64_t scales_offset = 0;
  std::int64_t topk_offset = 0;
  std::int64_t weights_offset = 0;
  std::int64_t src_offset = 0;
  std::int64_t bytes = 0;            // the node-independent part, staged once per token
  std::int64_t positions_bytes = 0;  // int32 [ranks_per_node], 16-byte padded
};

constexpr DispatchRecord make_dispatch_record(std::int64_t row_bytes, int num_scales, int num_topk,
                                              int ranks_per_node) {
  DispatchRecord r;
  r.scales_offset = row_bytes;
  r.topk_offset = r.scales_offset + 4LL * num_scales;
  r.weights_offset = r.topk_offset + 4LL * num_topk;
  r.src_offset = r.weights_offset + 4LL * num_topk;
  r.bytes = align_up(r.src_offset + 4, 16);
  r.positions_bytes = align_up(4LL * ranks_per_node, 16);
  return r;
}

// Dispatch half: staging [capacity][record], position staging [capacity][num_nodes][positions],
// receive slots [num_nodes (source)][capacity][record + positions]. `capacity` = tokens one
// rank may send per call with this shape.
struct InternodeDispatchCarve {
  DispatchRecord record;
  std::int64_t capacity = 0;
  std::int64_t stage_offset = 0;
  std::int64_t positions_stage_offset = 0;
  std::int64_t recv_offset = 0;
  std::int64_t recv_stride = 0;  // bytes of one receive slot
  MOE_EP_TRANSPORT_HD constexpr std::int64_t stage(std::int64_t token) const { return stage_offset + token * record.bytes; }
  MOE_EP_TRANSPORT_HD constexpr std::int64_t positions_stage(std::int64_t token, int node, int num_nodes) const {
    return positions_stage_offset + (token * num_nodes + node) * record.positions_bytes;
  }
  MOE_EP_TRANSPORT_HD constexpr std::int64_t recv(int source_node, std::int64_t slot) const {
    return recv_offset + (source_node * capacity + slot) * recv_stride;
  }
};

constexpr InternodeDispatchCarve carve_internode_dispatch(const InternodeWindow& w, std::int64_t row_bytes,
                                                          int num_scales, int num_topk, int ranks_per_node) {
  InternodeDispatchCarve c;
  const int nodes = w.counts.num_nodes;
  c.record = make_dispatch_record(row_bytes, num_scales, num_topk, ranks_per_node);
  c.recv_stride = c.record.bytes + c.record.positions_bytes;
  const std::int64_t per_token = c.record.bytes + nodes * c.record.positions_bytes + nodes * c.recv_stride;
  c.capacity = w.half_bytes / per_token;
  if (c.capacity > kMaxTokensPerRank) c.capacity = kMaxTokensPerRank;
  c.stage_offset = w.half_offset[0];
  c.positions_stage_offset = c.stage_offset + c.capacity * c.record.bytes;
  c.recv_offset = c.positions_stage_offset + c.capacity * nodes * c.record.positions_bytes;
  return c;
}

// Combine half: a forwarder's partial sums (bf16 row + fp32 top-k weights) staged at
// [home node][slot] and put to the home rank's receive slots [forwarding node][slot],
// where slot is the token's position among what its home sent to that node.
struct InternodeCombineCarve {
  std::int64_t weights_offset = 0;  // within a record
  std::int64_t record_bytes = 0;
  std::int64_t capacity = 0;
  std::int64_t stage_offset = 0;
  std::int64_t recv_offset = 0;
  MOE_EP_TRANSPORT_HD constexpr std::int64_t stage(int home_node, std::int64_t slot) const {
    return stage_offset + (home_node * capacity + slot) * record_bytes;
  }
  MOE_EP_TRANSPORT_HD constexpr std::int64_t recv(int forwarding_node, std::int64_t slot) const {
    return recv_offset + (forwarding_node * capacity + slot) * record_bytes;
  }
};

constexpr InternodeCombineCarve carve_internode_combine(const InternodeWindow& w, std::int64_t hidden, int num_topk) {
  InternodeCombineCarve c;
  const int nodes = w.counts.num_nodes;
  c.weights_offset = 2 * hidden;
  c.record_bytes = align_up(c.weights_offset + 4LL * num_topk, 16);
  c.capacity = w.half_bytes / (2 * nodes * c.record_bytes);
  if (c.capacity > kMaxTokensPerRank) c.capacity = kMaxTokensPerRank;
  c.stage_offset = w.half_offset[1];
  c.recv_offset = c.stage_offset + nodes * c.capacity * c.record_bytes;
  return c;
}

// Window bytes for calls of up to max_tokens tokens per rank with rows of `hidden` bf16
// (FP8 rows are smaller) and up to num_topk experts per token.
constexpr std::int64_t internode_window_bytes(std::int64_t max_tokens, std::int64_t hidden, int num_ranks,
                                              int num_nodes, int num_topk) {
  const InternodeWindow empty = carve_internode_window(0, num_ranks, num_nodes);
  const int per_node = num_ranks / num_nodes;
  const DispatchRecord r = make_dispatch_record(2 * hidden, 0, num_topk, per_node);
  const std::int64_t dispatch = r.bytes + num_nodes * r.positions_bytes + num_nodes * (r.bytes + r.positions_bytes);
  const std::int64_t combine = 2 * num_nodes * align_up(2 * hidden + 4LL * num_topk, 16);
  const std::int64_t per_token = dispatch > combine ? dispatch : combine;
  return empty.half_offset[0] + 2 * align_up(max_tokens * per_token, 128);
}

}  // namespace moe_ep::protocol
