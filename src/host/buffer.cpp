// Buffer construction, teardown, error reporting and reset. The calls themselves live in
// buffer_layout.cpp, buffer_dispatch.cpp and buffer_combine.cpp.
#include "moe_ep/buffer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <sstream>
#include <vector>

#include "host/buffer_impl.hpp"
#include "host/error_report.hpp"
#include "host/internode_calls.hpp"
#include "host/internode_transport.hpp"
#include "host/validation.hpp"
#include "kernels/layout/layout_params.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/hardware_queues.hpp"

namespace moe_ep {
namespace {

std::atomic<std::uint64_t> next_buffer_id{1};

// Runs when the library is loaded, normally before the CUDA context exists.
[[maybe_unused]] const bool hardware_queues_requested = (runtime::request_hardware_queues(), true);

struct ConstructionRecord {
  std::int64_t num_nvl_bytes;
  std::int64_t num_rdma_bytes;
  int device;
  int low_latency_mode;
  int ranks_per_node;
  int ll_all_rdma;
  int use_gin_transport;
  int enable_shrink;  // LL dispatch picks its path by it (direct only without shrink)
};

std::string describe(const ConstructionRecord& r) {
  return "num_nvl_bytes=" + std::to_string(r.num_nvl_bytes) + " num_rdma_bytes=" + std::to_string(r.num_rdma_bytes) +
         " low_latency_mode=" + std::to_string(r.low_latency_mode) +
         " ranks_per_node=" + std::to_string(r.ranks_per_node) +
         " allow_nvlink_for_low_latency=" + std::to_string(1 - r.ll_all_rdma) +
         " use_gin_transport=" + std::to_string(r.use_gin_transport) +
         " enable_shrink=" + std::to_string(r.enable_shrink);
}

}  // namespace

Buffer::Impl::Impl(std::shared_ptr<Group> g, std::int64_t num_nvl_bytes, std::int64_t num_rdma_bytes, BufferOptions opts)
    : group(std::move(g)), options(opts), rank(group->rank()), num_ranks(group->size()), device(group->device()),
      id(next_buffer_id.fetch_add(1)), guard_for_construction(device) {
  const std::string op = "Buffer";
  host::require(options.emulated_ranks_per_node >= 0 &&
                    (options.emulated_ranks_per_node == 0 || num_ranks % options.emulated_ranks_per_node == 0),
                op, "emulated_ranks_per_node=" + std::to_string(options.emulated_ranks_per_node) +
                        " must divide the group size " + std::to_string(num_ranks));
  ranks_per_node =
      options.emulated_ranks_per_node > 0 ? options.emulated_ranks_per_node : group->num_ranks_per_node();
  ll_all_rdma = !options.allow_nvlink_for_low_latency && num_ranks > 1;

  // Every rank must agree on the buffer's shape (TEST_CASES B7): compare collectively.
  // Before anything collective that depends on it (the GIN transport is built by all or none).
  ConstructionRecord mine{num_nvl_bytes,  num_rdma_bytes,      device, options.low_latency_mode ? 1 : 0,
                          ranks_per_node, ll_all_rdma ? 1 : 0, options.use_gin_transport ? 1 : 0,
                          options.enable_shrink ? 1 : 0};
  std::vector<ConstructionRecord> all(num_ranks);
  group->allgather(&mine, sizeof(mine), all.data());
  std::ostringstream disagreement;
  for (int r = 0; r < num_ranks; ++r) {
    if (all[r].num_nvl_bytes != all[0].num_nvl_bytes || all[r].num_rdma_bytes != all[0].num_rdma_bytes ||
        all[r].low_latency_mode != all[0].low_latency_mode || all[r].ranks_per_node != all[0].ranks_per_node ||
        all[r].ll_all_rdma != all[0].ll_all_rdma || all[r].use_gin_transport != all[0].use_gin_transport ||
        all[r].enable_shrink != all[0].enable_shrink) {
      disagreement << " rank " << r << ": " << describe(all[r]) << ";";
    }
  }
  if (!disagreement.str().empty()) {
    host::fail(op, "ranks disagree (rank 0: " + describe(all[0]) + ";" + disagreement.str() + ")");
  }
  ranks_on_device = 0;
  for (const auto& rec : all) ranks_on_device += rec.device == device ? 1 : 0;
  if (!group->shares_address_space()) ranks_on_device = 1;  // other processes: unknown, MPS splits
  // Each rank drives a comm and a compute stream; ranks sharing a device need a hardware
  // queue per stream or their kernels serialize and spin until the waits expire.
  const int queues_needed = 2 * ranks_on_device + 2;
  host::require(ranks_on_device == 1 || runtime::configured_hardware_queues() >= queues_needed, op,
                std::to_string(ranks_on_device) + " in-process ranks share device " + std::to_string(device) +
                    " but CUDA_DEVICE_MAX_CONNECTIONS=" + std::to_string(runtime::configured_hardware_queues()) +
                    "; set it to at least " + std::to_string(queues_needed) +
                    " (32 is CUDA's maximum) before the process first uses CUDA");

  const auto window = protocol::carve_internode_window(num_rdma_bytes, num_ranks, num_nodes());
  internode_window_bytes = window.total_bytes;
  if (group->num_ranks_per_node() < num_ranks || options.use_gin_transport) {
    // Ranks on several nodes: the RDMA engine before the rest (it says whether this machine
    // has one).
    gin = host::make_internode_transport(*group, window.total_bytes - transport::kSignalBytes, ranks_per_node);
    host::require(internode(), op,
                  "the GIN transport is up, but only the internode high-throughput kernels run over it in this "
                  "build: not low latency, and not ranks on one node (set emulated_ranks_per_node to split them)");
  }
  if (internode()) {
    host::require(group->num_ranks_per_node() % ranks_per_node == 0, op,
                  "emulated_ranks_per_node=" + std::to_string(ranks_per_node) + " must divide the real ranks per node " +
                      std::to_string(group->num_ranks_per_node()) + " (an emulated node cannot span real ones)");
    host::require(ranks_per_node <= kMaxNvlRanks && num_ranks <= kMaxInternodeRanks, op,
                  std::to_string(num_ranks) + " ranks in nodes of " + std::to_string(ranks_per_node) +
                      ": internode buffers take nodes of up to kMaxNvlRanks = " + std::to_string(kMaxNvlRanks) +
                      " and up to kMaxInternodeRanks = " + std::to_string(kMaxInternodeRanks) + " ranks");
  } else {
    host::require(num_ranks <= kMaxNvlRanks, op,
                  "group of " + std::to_string(num_ranks) + " ranks exceeds the NVLink-domain maximum kMaxNvlRanks = " +
                      std::to_string(kMaxNvlRanks) + (options.low_latency_mode
                                                           ? " (low latency across nodes: emulated_ranks_per_node <= 8 "
                                                             "ranks in all, or GIN, which is not wired yet)"
                                                           : " (split it into nodes: the internode kernels)"));
  }
  host::require(num_nvl_bytes >= 0, op, "num_nvl_bytes must be >= 0, got " + std::to_string(num_nvl_bytes));
  MOE_EP_CUDA_CHECK(cudaDeviceGetAttribute(&num_device_sms, cudaDevAttrMultiProcessorCount, device));

  layout = protocol::carve_nvl_buffer_for_bytes(num_nvl_bytes);
  nvl = std::make_unique<runtime::PeerMapping>(*group, static_cast<std::size_t>(num_nvl_bytes));
  state = runtime::DeviceAllocation(sizeof(protocol::DeviceState));
  host_state = runtime::HostMappedAllocation(sizeof(protocol::HostMappedState));
  layout_workspace = runtime::DeviceAllocation(kernels::layout_workspace_bytes_max());
  if (internode()) {
    // High throughput across (emulated) nodes: the transport window is num_rdma_bytes.
    const protocol::InternodeSlots slots{num_ranks, num_nodes()};
    host::require(slots.total() <= transport::kMaxSignals, op,
                  std::to_string(num_ranks) + " ranks need " + std::to_string(slots.total()) +
                      " transport signal slots; the window has " + std::to_string(transport::kMaxSignals));
    host::require(window.half_bytes > 0, op,
                  "num_rdma_bytes=" + std::to_string(num_rdma_bytes) + " is too small for internode dispatch across " +
                      std::to_string(num_nodes()) + " nodes; size it with Buffer::internode_size_hint");
    // Over GIN the window is NCCL's; otherwise peer memory used as emulated RDMA.
    if (!gin) rdma = std::make_unique<runtime::PeerMapping>(*group, static_cast<std::size_t>(window.total_bytes));
    kernels::preload_internode_notify_kernel();
    kernels::preload_internode_dispatch_kernels();
    kernels::preload_internode_combine_kernels();
  } else if (num_rdma_bytes > 0) {
    ll_half_bytes = num_rdma_bytes / 2 / 128 * 128;
    ll = std::make_unique<runtime::PeerMapping>(*group, static_cast<std::size_t>(2 * ll_half_bytes));
    kernels::preload_low_latency_kernels();
  }
  kernels::preload_layout_kernels();
  kernels::preload_notify_kernels();
  kernels::preload_send_kernels();
  kernels::preload_receive_kernels();
  kernels::preload_combine_kernels();
  // A stream's first work can wait for the device (observed as a rank stalling until its
  // spinning peers time out): give the comm stream its first work now, with no peer spinning.
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(state.get(), 0, sizeof(protocol::DeviceState), comm_stream.get()));
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(comm_stream.get()));
  group->barrier();  // every peer's buffer is zeroed before anyone signals into it
}

Buffer::Buffer(std::shared_ptr<Group> group, std::int64_t num_nvl_bytes, std::int64_t num_rdma_bytes,
               BufferOptions options) {
  if (!group) throw InvalidArgument("Buffer: group is null");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw CudaError("Buffer: no CUDA device is present; moe_ep needs an NVIDIA GPU (sm_90 or sm_80)");
  }
  const bool several_nodes = (options.emulated_ranks_per_node > 0 && options.emulated_ranks_per_node < group->size()) ||
                             group->num_ranks_per_node() < group->size();
  host::require(num_rdma_bytes == 0 || options.low_latency_mode || several_nodes, "Buffer",
                "num_rdma_bytes=" + std::to_string(num_rdma_bytes) +
                    " on one node without low_latency_mode: high-throughput calls within a node use only "
                    "num_nvl_bytes (pass num_rdma_bytes=0)");
  host::require(num_rdma_bytes >= 0, "Buffer", "num_rdma_bytes must be >= 0, got " + std::to_string(num_rdma_bytes));
  impl_ = std::make_unique<Impl>(std::move(group), num_nvl_bytes, num_rdma_bytes, options);
}

Buffer::~Buffer() {
  if (impl_) cudaStreamSynchronize(impl_->comm_stream.get());  // local work only, bounded by the waits
}

int Buffer::rank() const { return impl_->rank; }
int Buffer::num_ranks() const { return impl_->num_ranks; }
int Buffer::device() const { return impl_->device; }
int Buffer::num_device_sms() const { return impl_->num_device_sms; }
std::uint64_t Buffer::id() const { return impl_->id; }
std::uint64_t Buffer::generation() const { return impl_->generation; }
cudaStream_t Buffer::comm_stream() const { return impl_->comm_stream.get(); }
std::int64_t Buffer::num_nvl_bytes() const { return static_cast<std::int64_t>(impl_->nvl->bytes()); }
void* Buffer::local_nvl_buffer() const { return impl_->nvl->local(); }
std::int64_t Buffer::max_dispatch_tokens() const { return impl_->layout.max_tokens; }
int Buffer::num_ranks_per_node() const { return impl_->ranks_per_node; }
bool Buffer::is_internode() const { return impl_->internode(); }

std::int64_t Buffer::internode_size_hint(std::int64_t max_tokens_per_rank, std::int64_t hidden, int num_ranks,
                                         int ranks_per_node, int num_topk) {
  const std::string op = "internode_size_hint";
  host::require(ranks_per_node > 0 && num_ranks % ranks_per_node == 0, op,
                "ranks_per_node=" + std::to_string(ranks_per_node) + " must divide num_ranks=" + std::to_string(num_ranks));
  host::require(max_tokens_per_rank >= 0 && max_tokens_per_rank <= protocol::kMaxTokensPerRank && hidden > 0 &&
                    num_topk >= 0 && num_topk <= kMaxTopk,
                op, "max_tokens_per_rank=" + std::to_string(max_tokens_per_rank) + " hidden=" + std::to_string(hidden) +
                        " num_topk=" + std::to_string(num_topk) + " out of range");
  return protocol::internode_window_bytes(max_tokens_per_rank, hidden, num_ranks, num_ranks / ranks_per_node, num_topk);
}

int Buffer::max_num_sms() const { return impl_->num_device_sms / impl_->ranks_on_device; }

std::int64_t Buffer::intranode_size_hint(std::int64_t max_tokens_per_rank, int num_ranks, std::int64_t hidden_bytes) {
  // Staging holds, per received row (up to num_ranks * max_tokens): the combine input
  // with its top-k weights, or (internode dispatch) the row with its scales (smaller than
  // a bf16 row), top-k ids (int64), weights and source index; each staged tensor may be
  // padded to 128 bytes.
  host::require(max_tokens_per_rank >= 0 && max_tokens_per_rank <= protocol::kMaxTokensPerRank, "intranode_size_hint",
                "max_tokens_per_rank=" + std::to_string(max_tokens_per_rank) + " outside [0, " +
                    std::to_string(protocol::kMaxTokensPerRank) + "]");
  if (hidden_bytes == 0) return protocol::carve_nvl_buffer(protocol::align_up(max_tokens_per_rank, 32)).total_bytes;
  // A buffer with staging keeps full-size send lists (carve_nvl_buffer_for_bytes gives the
  // lists their maximum first), then the staging.
  const std::int64_t max_recv_rows = max_tokens_per_rank * num_ranks;
  const std::int64_t staging = max_recv_rows * (hidden_bytes + 12 * kMaxTopk + 4) + 5 * 128;
  return protocol::carve_nvl_buffer(protocol::kMaxTokensPerRank, staging + 127).total_bytes;
}

void Buffer::set_fault_injection(const FaultInjection& fault) { impl_->fault = fault; }

void Buffer::check_error() { impl_->ensure_usable("check_error"); }

void Buffer::reset() {
  runtime::DeviceGuard guard(impl_->device);
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(impl_->comm_stream.get()));
  impl_->group->barrier();  // no peer is still signalling into this buffer
  // Ordered on the comm stream and waited for: a legacy-stream memset could land after the
  // barrier, under a peer's next kernel.
  cudaStream_t comm = impl_->comm_stream.get();
  if (impl_->nvl->bytes() >= sizeof(protocol::NvlHeader)) {
    MOE_EP_CUDA_CHECK(cudaMemsetAsync(impl_->nvl->local(), 0, sizeof(protocol::NvlHeader), comm));
  }
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(impl_->state.get(), 0, sizeof(protocol::DeviceState), comm));
  if (impl_->internode()) host::reset_internode_transport(*impl_, comm);  // the call counts restart at zero
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(comm));
  std::memset(impl_->host(), 0, sizeof(protocol::HostMappedState));
  impl_->group->reset_peer_launches();  // skipped or stalled calls no longer count
  impl_->clear_low_latency_state();
  impl_->failure.clear();
  impl_->skipping_dispatch = false;
  ++impl_->generation;
  impl_->group->barrier();  // nobody signals before every rank has cleared
}

void Buffer::Impl::raise_recorded_error() {
  // The device wrote it through the mapping; the caller synchronized first.
  std::atomic_thread_fence(std::memory_order_acquire);
  const protocol::ErrorRecord record = host()->error;
  if (record.code == 0) return;
  failure = host::describe_error(record);
  host::throw_error(record, failure);
}

void Buffer::Impl::wait_for_counts() {
  const volatile std::int32_t* ready = &host()->counts_ready;
  const volatile std::int32_t* error_code = &host()->error.code;
  const auto deadline = std::chrono::steady_clock::now() + 2 * std::chrono::nanoseconds(options.timeout_ns);
  for (std::uint32_t spin = 1; *ready == 0; ++spin) {
    bool ended = false;
    if (spin % 1024 == 0) {
      const cudaError_t status = cudaStreamQuery(comm_stream.get());
      if (status != cudaErrorNotReady) MOE_EP_CUDA_CHECK(status);
      ended = status == cudaSuccess;
    }
    if (*error_code != 0 || ended) {
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(comm_stream.get()));  // the kernel has ended: settle
      raise_recorded_error();
      if (*ready != 0) break;
      throw std::runtime_error("dispatch: the counting kernel ended without counts (rank " + std::to_string(rank) + ")");
    }
    if (spin % 1024 == 0 && std::chrono::steady_clock::now() > deadline) {
      throw Timeout("dispatch: rank " + std::to_string(rank) + " waited on the host for the received counts longer "
                    "than twice the device timeout");
    }
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // counts written before the flag
}

void Buffer::Impl::ensure_usable(const std::string& op) {
  if (!failure.empty()) {
    throw std::runtime_error(op + ": buffer unusable after an earlier error (" + failure + "); call reset()");
  }
  raise_recorded_error();
}

bool Buffer::Impl::consume_skip() {
  if (fault.skip_calls <= 0) return false;
  --fault.skip_calls;
  pass_launch_gate();
  return true;
}

void Buffer::Impl::pass_launch_gate() noexcept {
  // Peers' host threads arrive within microseconds; the bound only limits the cost of a
  // rank that stopped calling (it is then not waited for until it calls again).
  constexpr std::chrono::milliseconds kLaunchGateBound{20};
  try {
    group->await_peer_launches(kLaunchGateBound);
  } catch (...) {
    // A gate that cannot be passed only loses its scheduling guarantee; the call stands.
  }
}

cudaStream_t Buffer::Impl::begin(const StreamOptions& s) {
  cudaStream_t comm = comm_stream.get();
  if (s.previous_event != nullptr) {
    MOE_EP_CUDA_CHECK(cudaStreamWaitEvent(comm, s.previous_event, 0));
  } else {
    Event::record(s.compute_stream).stream_wait(comm);
  }
  return comm;
}

Event Buffer::Impl::end(const StreamOptions& s) {
  Event done = Event::record(comm_stream.get());
  if (!s.async_finish) done.stream_wait(s.compute_stream);
  return done;
}

host::StagingArea Buffer::Impl::staging(const std::string& op) const {
  return host::StagingArea(static_cast<std::uint8_t*>(nvl->local()) + layout.staging_offset, layout.staging_bytes, op);
}

kernels::CollectiveContext Buffer::Impl::node_context(protocol::Op op) const {
  kernels::CollectiveContext ctx = context(op);
  const int first = rank / ranks_per_node * ranks_per_node;
  for (int j = 0; j < kMaxNvlRanks; ++j) ctx.peer_bases[j] = j < ranks_per_node ? nvl->bases()[first + j] : nullptr;
  ctx.rank = rank - first;
  ctx.num_ranks = ranks_per_node;
  ctx.first_rank = first;
  return ctx;
}

transport::MemoryWindows Buffer::Impl::memory_windows() const {
  transport::MemoryWindows w{};
  for (int r = 0; r < num_ranks; ++r) w.bases[r] = rdma->bases()[r];
  w.window_bytes = static_cast<std::int64_t>(rdma->bytes());
  w.topology = transport::TransportTopology{rank, num_ranks, ranks_per_node};
  w.gpu_scope = ranks_on_device == num_ranks;
  return w;
}

kernels::CollectiveContext Buffer::Impl::context(protocol::Op op) const {
  kernels::CollectiveContext ctx{};
  // Every rank within the NVLink domain (intranode calls); internode calls use the node's.
  for (int r = 0; r < num_ranks && r < kMaxNvlRanks; ++r) ctx.peer_bases[r] = nvl->bases()[r];
  ctx.layout = layout;
  ctx.rank = rank;
  ctx.num_ranks = num_ranks;
  ctx.op = op;
  ctx.timeout_ns = options.timeout_ns;
  ctx.delay_ns = fault.delay_ns;
  ctx.state = device_state();
  ctx.error = &host_on_device()->error;
  return ctx;
}

int Buffer::Impl::checked_num_sms(const std::string& op, const Config& config) const {
  const int max_sms = num_device_sms / ranks_on_device;
  host::require(config.num_sms >= 1 && config.num_sms <= max_sms, op,
                "config.num_sms=" + std::to_string(config.num_sms) + " outside [1, " + std::to_string(max_sms) +
                    "]: the device has " + std::to_string(num_device_sms) + " SMs shared by " +
                    std::to_string(ranks_on_device) + " rank(s)");
  return config.num_sms;
}

void Buffer::Impl::check_handle(const std::string& op, std::uint64_t handle_buffer_id,
                                std::uint64_t handle_generation) const {
  host::require(handle_buffer_id == id, op,
                "handle comes from buffer " + std::to_string(handle_buffer_id) + ", not this buffer " +
                    std::to_string(id));
  host::require(handle_generation == generation, op,
                "handle is from before a reset (generation " + std::to_string(handle_generation) +
                    ", buffer is at " + std::to_string(generation) + ")");
}

}  // namespace moe_ep
