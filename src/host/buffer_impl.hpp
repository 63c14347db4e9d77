// Buffer's private state and the helpers its calls share (stream flow, error checks,
// the collective context every kernel gets). Host-only.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "host/staging.hpp"
#include "kernels/internode/internode_params.hpp"
#include "kernels/intranode/intranode_params.hpp"
#include "kernels/low_latency/ll_params.hpp"
#include "moe_ep/buffer.hpp"
#include "protocol/device_state.hpp"
#include "runtime/device_memory.hpp"
#include "runtime/peer_mapping.hpp"

namespace moe_ep {

struct Buffer::Impl {
  Impl(std::shared_ptr<Group> group, std::int64_t num_nvl_bytes, std::int64_t num_rdma_bytes, BufferOptions options);

  std::shared_ptr<Group> group;
  BufferOptions options;
  int rank = 0;
  int num_ranks = 1;
  int device = 0;
  int num_device_sms = 0;
  int ranks_on_device = 1;  // ranks of this group sharing this rank's device
  std::uint64_t id = 0;
  std::uint64_t generation = 0;

  runtime::DeviceGuard guard_for_construction;
  runtime::Stream comm_stream;
  std::unique_ptr<runtime::PeerMapping> nvl;
  protocol::NvlBufferLayout layout;
  runtime::DeviceAllocation state;           // protocol::DeviceState
  runtime::HostMappedAllocation host_state;  // protocol::HostMappedState
  runtime::DeviceAllocation layout_workspace;
  // Low latency (low_latency_mode): the peer-mapped region of num_rdma_bytes, split in two
  // halves that alternate between calls; a half is taken again only after the receive of
  // its previous op was launched.
  std::unique_ptr<runtime::PeerMapping> ll;
  std::int64_t ll_half_bytes = 0;
  int ll_next_parity = 0;
  bool ll_awaiting_hook[2] = {false, false};
  // Peers reached by RDMA (other nodes, real or emulated, or all with all_rdma) push into
  // mirror slots of each half.
  int ranks_per_node = 1;  // nodes, real or emulated, of consecutive ranks
  bool ll_all_rdma = false;
  bool ll_mirrored() const { return ll_all_rdma || ranks_per_node < num_ranks; }
  // High throughput across nodes: the transport window of num_rdma_bytes, and the
  // node-local NVLink context (this node's ranks of the NVL buffers).
  // Over GIN (ranks on several nodes, or use_gin_transport): the transport host (opaque,
  // transport::GinTransportHost) owns the window instead.
  std::unique_ptr<runtime::PeerMapping> rdma;
  std::shared_ptr<void> gin;
  std::int64_t internode_window_bytes = 0;  // signal region included
  bool internode() const { return !options.low_latency_mode && ranks_per_node < num_ranks; }
  int num_nodes() const { return num_ranks / ranks_per_node; }
  kernels::CollectiveContext node_context(protocol::Op op) const;
  transport::MemoryWindows memory_windows() const;  // the emulated transport's (rdma)
  template <typename Windows>
  kernels::InternodeContext<Windows> internode_context(protocol::Op op, const Windows& windows) const {
    kernels::InternodeContext<Windows> ctx{};
    ctx.windows = windows;
    ctx.window = protocol::carve_internode_window(internode_window_bytes, num_ranks, num_nodes());
    ctx.slots = protocol::InternodeSlots{num_ranks, num_nodes()};
    ctx.node = node_context(op);
    ctx.timeout_ns = options.timeout_ns;
    ctx.state = device_state();
    ctx.error = &host_on_device()->error;
    return ctx;
  }

  std::string failure;  // non-empty: refuse calls until reset
  FaultInjection fault;
  bool skipping_dispatch = false;

  protocol::DeviceState* device_state() const { return static_cast<protocol::DeviceState*>(state.get()); }
  protocol::HostMappedState* host() const { return static_cast<protocol::HostMappedState*>(host_state.host()); }
  protocol::HostMappedState* host_on_device() const {
    return static_cast<protocol::HostMappedState*>(host_state.device());
  }

  // Refuses calls after a failure and raises errors recorded by earlier async calls.
  void ensure_usable(const std::string& op);
  void raise_recorded_error();
  // Spins on the host-mapped flag the notify kernel sets after the received counts (no
  // stream synchronization on the path); returns once they are readable, raises the
  // recorded error if the kernel failed instead. Bounded by twice the device timeout.
  void wait_for_counts();
  // Consumes one skipped call of fault injection; true when this call must not launch (it
  // still passes the launch gate, as a launch would).
  bool consume_skip();
  // After enqueueing a kernel that waits for peers, before the caller can queue work behind
  // it: in-process peers enqueue theirs first (runtime/peer_launch_gate.hpp).
  void pass_launch_gate() noexcept;
  // Passes the gate when it goes out of scope: created once a call is committed, so a call
  // that throws later still passes (every rank's count stays equal).
  struct LaunchGatePass {
    Impl& impl;
    ~LaunchGatePass() { impl.pass_launch_gate(); }
  };

  // Makes the comm stream wait for the caller's work; returns the comm stream.
  cudaStream_t begin(const StreamOptions& s);
  // Ends a call: event on the comm stream; the compute stream waits unless async.
  Event end(const StreamOptions& s);

  kernels::CollectiveContext context(protocol::Op op) const;
  // The staging region of this rank's NVL buffer, for a call named `op`.
  host::StagingArea staging(const std::string& op) const;
  int checked_num_sms(const std::string& op, const Config& config) const;
  // A handle (intranode or low latency) must come from this buffer, since its last reset.
  void check_handle(const std::string& op, std::uint64_t handle_buffer_id, std::uint64_t handle_generation) const;
  void check_handle(const std::string& op, const DispatchHandle& handle) const {
    check_handle(op, handle.buffer_id, handle.buffer_generation);
  }

  // Low latency: refuses non-LL buffers, then as ensure_usable.
  void ensure_low_latency(const std::string& op);
  // The half the next LL op uses; refuses a half whose previous op still awaits its hook.
  // The call moves ll_next_parity on only once its send kernel is launched, so a call that
  // throws leaves every rank on the same half.
  int next_ll_parity(const std::string& op) const;
  // Base of this rank's half `parity` (its own mapping).
  std::uint8_t* ll_local_half(int parity) const;
  // Refuses a call whose layout does not fit one half.
  // The mirror slots of a call of this shape (none without RDMA peers).
  protocol::LlMirrorLayout ll_mirrors(const protocol::LlHalfLayout& layout, std::int64_t max_tokens, std::int64_t hidden,
                                      std::int64_t num_experts) const;
  void check_ll_fits(const std::string& op, const protocol::LlMirrorLayout& mirrors, bool staged) const;
  kernels::LlContext ll_context(protocol::Op op, int parity, const protocol::LlHalfLayout& layout,
                                const protocol::LlMirrorLayout& mirrors) const;
  // Zeroes this rank's LL flags and epochs (after a barrier: no peer is signalling).
  void clear_low_latency_state();
  // Blocks for a LL kernel with `items` warp-sized work items (at most this rank's SM share).
  int ll_blocks(std::int64_t items) const;  // one block per kLlWarps items, at most ll_block_share()
  int ll_sm_share() const;  // SMs one rank's LL kernel may use (ranks sharing the device split them)
  // Blocks one rank's LL kernel may launch, all resident together (see its definition).
  int ll_block_share() const;
  // Each LL block signals its own `done` (kernels::LlContext::block_done): every rank on
  // this device, no shrink, and the blocks of all ranks fit protocol::kLlDoneSlots.
  bool ll_block_done() const;
};

}  // namespace moe_ep
