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

namespace moe_ep {

struct BufferOptions {
  bool low_latency_mode = false;
  std::uint64_t timeout_ns = kDefaultTimeoutNs;  // bound of every device wait
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

  struct Impl;  // opaque; defined in src/host

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace moe_ep
