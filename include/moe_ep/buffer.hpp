// The communication buffer of one rank: peer-mapped device memory shared with the other
// ranks of its Group, a communication stream, and the error record that bounded device
// waits report through. All dispatch/combine calls are collective: every rank of the
// group makes the same calls in the same order.
#pragma once
#include <cstdint>
#include <memory>

#include <cuda_runtime_api.h>

#include "moe_ep/config.hpp"
#include "moe_ep/event.hpp"
#include "moe_ep/group.hpp"
#include "moe_ep/intranode.hpp"
#include "moe_ep/low_latency.hpp"

namespace moe_ep {

struct BufferOptions {
  bool low_latency_mode = false;  // num_rdma_bytes then holds the low-latency region
  std::uint64_t timeout_ns = kDefaultTimeoutNs;  // bound of every device wait
  // Low latency: a peer whose wait expires is masked (skipped from then on) instead of
  // failing the call (deep_ep's enable_shrink).
  bool enable_shrink = false;
  // Across nodes, peers outside this rank's node are reached through the RDMA transport.
  // Low latency: they push into mirror slots of the region (nothing of theirs is read in
  // place). High throughput (not low_latency_mode): the internode kernels over a window of
  // num_rdma_bytes (Buffer::internode_size_hint). emulated_ranks_per_node > 0 splits the
  // group into pretend nodes of that many ranks over peer memory: the multi-node paths on
  // one GPU, for tests and CI.
  int emulated_ranks_per_node = 0;
  // false: every peer through the transport (deep_ep's allow_nvlink_for_low_latency_mode).
  bool allow_nvlink_for_low_latency = true;
  // A group spanning nodes (num_ranks_per_node < size) needs the GIN RDMA transport;
  // use_gin_transport asks for it on one node too (what a machine without a NIC answers).
  bool use_gin_transport = false;
};

// Test-only fault injection (TEST_CASES.md F1/F3): a rank that skips its next collective
// calls, or delays inside them.
struct FaultInjection {
  int skip_calls = 0;             // the next N collective calls return without launching
  std::uint64_t delay_ns = 0;     // each call sleeps this long on the device before signalling
};

class Buffer {
 public:
  Buffer(std::shared_ptr<Group> group, std::int64_t num_nvl_bytes, std::int64_t num_rdma_bytes = 0,
         BufferOptions options = {});
  ~Buffer();  // never waits on peers
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  int rank() const;
  int num_ranks() const;
  int device() const;
  int num_device_sms() const;
  std::uint64_t id() const;
  std::uint64_t generation() const;  // increments with reset()
  cudaStream_t comm_stream() const;
  std::int64_t num_nvl_bytes() const;
  void* local_nvl_buffer() const;
  // Tokens one rank may send in a dispatch with this buffer.
  std::int64_t max_dispatch_tokens() const;
  // Largest num_sms a call may use: ranks sharing one device split its SMs.
  int max_num_sms() const;

  // ---- layout (local, no peers) --------------------------------------------------
  Event get_dispatch_layout(const LayoutArgs& args);

  // ---- high-throughput dispatch, two steps ---------------------------------------
  // 1) Exchange counts and routing with the peers. Fills handle.rank_prefix_matrix and
  //    handle.send_pos (caller-allocated) and, unless num_worst_tokens > 0, waits on the
  //    host for the received counts. With `cached` (a handle from an earlier dispatch) no
  //    counting happens: the handle's routing is reused.
  DispatchCounts dispatch_notify(const DispatchArgs& args, DispatchHandle& handle, bool cached = false);
  // 2) Pull every received row into `out` (allocated with counts.num_recv_rows rows);
  //    handle.recv_src_idx (caller-allocated, num_recv_rows) is written, or read if cached.
  Event dispatch_receive(const DispatchArgs& args, const DispatchHandle& handle,
                         const DispatchOutputs& out, bool cached = false);

  // ---- high-throughput combine ---------------------------------------------------
  Event combine(const CombineArgs& args, const DispatchHandle& handle);

  // ---- low-latency dispatch / combine (needs low_latency_mode) ----------------------
  // Launches on the caller's stream (the comm stream with async_finish). No host sync.
  // Tensors of the handle are caller-allocated (shapes in LowLatencyHandle). Device-side
  // errors (bad expert ids, timeouts, peers that disagree on shapes) surface at the next
  // call or check_error().
  LowLatencyCall low_latency_dispatch(const LowLatencyDispatchArgs& args, const LowLatencyDispatchOutputs& out,
                                      LowLatencyHandle& handle);
  LowLatencyCall low_latency_combine(const LowLatencyCombineArgs& args, const LowLatencyHandle& handle);
  // The [num_local_experts, num_ranks * max_tokens, hidden] bf16 region that the next
  // low-latency call reads with zero_copy: write the expert outputs there.
  TensorView next_low_latency_combine_buffer(const LowLatencyHandle& handle) const;
  // Collective. Zeroes the low-latency flags of every rank (deep_ep's clean_low_latency_buffer);
  // needed only after an error, as reset() does.
  void clean_low_latency_buffer();
  // Rank masking (enable_shrink). Local to this rank, ordered on `stream`.
  void low_latency_update_mask(int rank_to_mask, bool mask, cudaStream_t stream = nullptr);
  void low_latency_query_mask(const TensorView& mask_status, cudaStream_t stream = nullptr);  // [num_ranks] int32
  void low_latency_clean_mask(cudaStream_t stream = nullptr);
  // Bytes of num_rdma_bytes for low-latency calls up to these sizes (deep_ep's
  // get_low_latency_rdma_size_hint); sized for a process group (staged combine) and for
  // zero_copy / use_logfmt. In-process groups without them need only the dispatch part.
  // Peers on other nodes (ranks_per_node < num_ranks; 0 assumes deep_ep's 8 per node) or
  // allow_nvlink = false add a mirror slot per peer.
  static std::int64_t low_latency_size_hint(int max_tokens_per_rank, int hidden, int num_ranks, int num_experts,
                                            int ranks_per_node = 0, bool allow_nvlink = true);
  std::int64_t num_rdma_bytes() const;

  // Raises the error a device wait or device-side check recorded (Timeout,
  // InvalidArgument); the buffer then refuses calls until reset().
  void check_error();
  // Collective: clears flags, error and epochs on every rank; old handles become invalid.
  void reset();
  void set_fault_injection(const FaultInjection& fault);

  // Bytes of num_nvl_bytes for dispatches of up to max_tokens_per_rank tokens. With
  // hidden_bytes (one payload row), also the staging that a process group (one process
  // per GPU) needs to combine rows of that size; in-process groups need none.
  static std::int64_t intranode_size_hint(std::int64_t max_tokens_per_rank, int num_ranks,
                                          std::int64_t hidden_bytes = 0);

  // Internode (ranks on several nodes, or emulated_ranks_per_node): bytes of num_rdma_bytes
  // for dispatches of up to max_tokens_per_rank tokens of `hidden` bf16 (FP8 rows are
  // smaller) with up to num_topk experts, and combines of the same size.
  static std::int64_t internode_size_hint(std::int64_t max_tokens_per_rank, std::int64_t hidden, int num_ranks,
                                          int ranks_per_node, int num_topk = kMaxTopk);
  // Ranks per node (emulated or real); fewer than num_ranks() means internode calls.
  int num_ranks_per_node() const;
  bool is_internode() const;

  struct Impl;  // opaque; defined in src/host

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace moe_ep
