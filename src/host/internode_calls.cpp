// Internode launch sequences (see internode_calls.hpp).
#include "host/internode_calls.hpp"

#include <climits>
#include <type_traits>
#include <utility>
#include <vector>

#include "host/kernel_args.hpp"
#include "host/staging.hpp"
#include "host/validation.hpp"
#include "runtime/cuda_check.hpp"
#if defined(MOE_EP_WITH_GIN)
#include "transport/gin/gin_transport_host.hpp"
#endif

namespace moe_ep::host {
namespace {

protocol::Op dispatch_op(bool cached) { return cached ? protocol::Op::kCachedDispatch : protocol::Op::kDispatch; }

// Calls body(context) with the internode context of the buffer's transport: GIN when it
// has one, else RDMA emulated over peer memory. The kernels are instantiated for both.
template <typename Body>
void over_transport(const Buffer::Impl& b, protocol::Op op, Body&& body) {
#if defined(MOE_EP_WITH_GIN)
  if (b.gin) {
    body(b.internode_context(op, static_cast<const transport::GinTransportHost*>(b.gin.get())->windows()));
    return;
  }
#endif
  body(b.internode_context(op, b.memory_windows()));
}

template <typename Context>
using WindowsOf = std::decay_t<decltype(std::declval<Context>().windows)>;

struct OutputCopy {
  void* output;
  const void* staged;
  std::int64_t bytes;
};

// Process groups: node peers cannot address this rank's outputs, so its sink points at
// staged copies in its NVL buffer (which they map); returns the copies to make after the
// forward phase, whose done barrier orders every peer's writes before them.
std::vector<OutputCopy> stage_sink(const Buffer::Impl& b, protocol::SinkDescriptor& sink, std::int64_t rows,
                                   const DispatchShape& s) {
  host::StagingArea staging = b.staging("dispatch");
  std::vector<OutputCopy> copies;
  auto redirect = [&](auto*& field, std::int64_t row_bytes) {
    if (field == nullptr) return;
    auto* staged = static_cast<std::remove_reference_t<decltype(field)>>(staging.reserve(rows * row_bytes));
    copies.push_back({field, staged, rows * row_bytes});
    field = staged;
  };
  redirect(sink.recv_x, s.row_bytes);
  redirect(sink.recv_x_scales, 4LL * s.num_scales);
  redirect(sink.recv_topk_idx, 8LL * s.num_topk);
  redirect(sink.recv_topk_weights, 4LL * s.num_topk);
  redirect(sink.recv_src_idx, 4);
  return copies;
}

}  // namespace

void reset_internode_transport(const Buffer::Impl& b, cudaStream_t comm) {
  over_transport(b, protocol::Op::kDispatch, [&](const auto& ctx) { kernels::launch_internode_reset(ctx, comm); });
  if (b.rdma) MOE_EP_CUDA_CHECK(cudaMemsetAsync(b.rdma->local(), 0, b.rdma->bytes(), comm));
#if defined(MOE_EP_WITH_GIN)
  if (b.gin) {
    const auto* gin = static_cast<const transport::GinTransportHost*>(b.gin.get());
    MOE_EP_CUDA_CHECK(cudaMemsetAsync(gin->local_window(), 0, b.internode_window_bytes, comm));
  }
#endif
}

void check_internode_combine_capacity(const std::string& op, const Buffer::Impl& b, std::int64_t num_tokens,
                                      std::int64_t hidden, int num_topk) {
  const auto window = protocol::carve_internode_window(b.internode_window_bytes, b.num_ranks, b.num_nodes());
  const auto carve = protocol::carve_internode_combine(window, hidden, num_topk);
  require(num_tokens <= carve.capacity, op,
          std::to_string(num_tokens) + " tokens exceed the " + std::to_string(carve.capacity) +
              " per rank that num_rdma_bytes=" + std::to_string(b.internode_window_bytes) +
              " holds for combine rows of hidden=" + std::to_string(hidden) + " (see Buffer::internode_size_hint)");
}

void check_internode_handle(const std::string& op, const Buffer::Impl& b, const DispatchHandle& handle) {
  const int N = b.num_nodes();
  check_tensor(op, handle.rdma_send_pos, {"handle.rdma_send_pos", {DType::kInt32}, {handle.num_tokens, N}});
  check_tensor(op, handle.forwarded_prefix, {"handle.forwarded_prefix", {DType::kInt32}, {N}});
  check_tensor(op, handle.forward_rows,
               {"handle.forward_rows", {DType::kInt32}, {handle.num_forward_rows, b.ranks_per_node}});
}

void launch_internode_notify(const Buffer::Impl& b, const DispatchArgs& a, const DispatchShape& s,
                             DispatchHandle& handle, bool cached, bool host_sync, cudaStream_t comm) {
  over_transport(b, dispatch_op(cached), [&](const auto& ctx) {
    kernels::InternodeNotifyParams<WindowsOf<decltype(ctx)>> p{};
    p.ctx = ctx;
    p.cached = cached;
    p.num_tokens = static_cast<int>(s.num_tokens);
    p.num_experts = s.num_experts;
    p.num_topk = s.num_topk;
    p.row_bytes = static_cast<int>(s.row_bytes);
    p.num_scales = s.num_scales;
    p.expert_alignment = a.expert_alignment;
    p.num_worst_tokens = a.num_worst_tokens;
    // Without a host sync the caller sizes forward_rows for the worst case: every token a
    // rank of this node receives, relayed by this rank.
    p.forward_capacity = a.num_worst_tokens > 0 ? a.num_worst_tokens * b.ranks_per_node : INT_MAX;
    if (!cached) {
      p.topk_idx = a.topk_idx.ptr<const std::int64_t>();
      p.is_token_in_rank = a.is_token_in_rank.ptr<const bool>();
      p.num_tokens_per_rank = a.num_tokens_per_rank.ptr<const int>();
      p.num_tokens_per_rdma_rank = a.num_tokens_per_rdma_rank.ptr<const int>();
      p.num_tokens_per_expert = a.num_tokens_per_expert.ptr<const int>();
      p.send_pos = handle.send_pos.ptr<int>();
      p.rdma_send_pos = handle.rdma_send_pos.ptr<int>();
      p.rank_prefix_matrix = handle.rank_prefix_matrix.ptr<int>();
      p.forwarded_prefix = handle.forwarded_prefix.ptr<int>();
    }
    p.host_state = b.host_on_device();
    p.host_waits = host_sync;
    kernels::launch_internode_notify(p, comm);
  });
}

void launch_internode_dispatch(const Buffer::Impl& b, const DispatchArgs& a, const DispatchShape& s,
                               const DispatchHandle& handle, const DispatchOutputs& out, bool cached, int num_sms,
                               cudaStream_t comm) {
  over_transport(b, dispatch_op(cached), [&](const auto& ctx) {
    using Windows = WindowsOf<decltype(ctx)>;
    const auto carve =
        protocol::carve_internode_dispatch(ctx.window, s.row_bytes, s.num_scales, s.num_topk, b.ranks_per_node);

    kernels::PublishParams sink = sink_publication(b, ctx.node, a, s, handle, out, cached);
    std::vector<OutputCopy> copies;
    if (!b.group->shares_address_space()) copies = stage_sink(b, sink.sink, handle.num_recv_rows, s);

    kernels::InternodeSendParams<Windows> send{};
    send.ctx = ctx;
    send.carve = carve;
    fill_send_payload(send, a, s, handle);
    send.rdma_send_pos = handle.rdma_send_pos.ptr<const int>();

    kernels::InternodeForwardParams<Windows> forward{};
    forward.ctx = ctx;
    forward.carve = carve;
    forward.row_bytes = static_cast<int>(s.row_bytes);
    forward.num_scales = s.num_scales;
    forward.num_topk = s.num_topk;
    forward.has_weights = a.topk_weights.defined();
    forward.num_local_experts = cached ? 0 : s.num_experts / b.num_ranks;
    forward.forwarded_prefix = handle.forwarded_prefix.ptr<const int>();
    forward.forward_rows = cached ? nullptr : handle.forward_rows.ptr<int>();  // a cached call reuses them
    forward.forward_capacity = static_cast<int>(handle.num_forward_rows);

    kernels::launch_publish(sink, comm);
    kernels::launch_internode_send(send, num_sms, comm);
    kernels::launch_internode_forward(forward, num_sms, comm);
    for (const OutputCopy& c : copies) {
      if (c.bytes > 0) MOE_EP_CUDA_CHECK(cudaMemcpyAsync(c.output, c.staged, c.bytes, cudaMemcpyDeviceToDevice, comm));
    }
  });
}

void launch_internode_combine(const Buffer::Impl& b, const CombineArgs& a, const DispatchHandle& handle, int hidden,
                              int num_topk, int num_sms, cudaStream_t comm) {
  over_transport(b, protocol::Op::kCombine, [&](const auto& ctx) {
    using Windows = WindowsOf<decltype(ctx)>;
    const auto carve = protocol::carve_internode_combine(ctx.window, hidden, num_topk);

    kernels::InternodeCombineForwardParams<Windows> forward{};
    forward.ctx = ctx;
    forward.carve = carve;
    forward.hidden = hidden;
    forward.num_topk = num_topk;
    forward.forwarded_prefix = handle.forwarded_prefix.ptr<const int>();
    forward.forward_rows = handle.forward_rows.ptr<const int>();

    kernels::InternodeCombineReduceParams<Windows> reduce{};
    reduce.ctx = ctx;
    reduce.carve = carve;
    reduce.num_tokens = static_cast<int>(handle.num_tokens);
    reduce.hidden = hidden;
    reduce.num_topk = num_topk;
    reduce.rdma_send_pos = handle.rdma_send_pos.ptr<const int>();
    fill_combine_outputs(reduce, a, num_topk);

    kernels::launch_internode_combine_forward(forward, num_sms, comm);
    kernels::launch_internode_combine_reduce(reduce, num_sms, comm);
  });
}

}  // namespace moe_ep::host
