// Buffer::dispatch_notify / dispatch_receive: argument checks, the counting kernel (and
// its host sync unless num_worst_tokens), then the copy kernel.
#include <optional>
#include <string>

#include "host/buffer_impl.hpp"
#include "host/dispatch_checks.hpp"
#include "host/internode_calls.hpp"
#include "host/kernel_args.hpp"
#include "host/staging.hpp"
#include "host/validation.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep {
namespace {

using host::check_dispatch_args;
using host::check_tensor;
using host::DispatchShape;
using host::kRowAlign;
using host::require;

protocol::SourceDescriptor describe_source_in_place(const Buffer::Impl& b, const DispatchArgs& a);
void launch_intranode_notify(const Buffer::Impl& b, const DispatchArgs& args, const DispatchShape& s,
                             DispatchHandle& handle, bool cached, bool host_sync, const std::string& op,
                             cudaStream_t comm);

// What peers read of this rank's dispatch: the caller's tensors in place when peers share
// the address space, else copies staged in this rank's NVL buffer.
protocol::SourceDescriptor describe_payload(const Buffer::Impl& b, const DispatchArgs& a, const DispatchShape& s,
                                            const std::string& op, cudaStream_t comm) {
  if (!b.group->shares_address_space()) {
    host::StagingArea staging = b.staging(op);
    protocol::SourceDescriptor d{};
    d.owner_base = static_cast<const std::uint8_t*>(b.nvl->local());
    d.x = static_cast<const std::uint8_t*>(staging.stage_rows(a.x, s.row_bytes, comm));
    d.x_row_stride = s.row_bytes;
    if (a.x_scales.defined()) {
      d.x_scales = static_cast<const float*>(staging.stage_span(a.x_scales, comm));
      d.scale_token_stride = a.x_scales.stride(0);
      d.scale_hidden_stride = a.x_scales.ndim == 2 ? a.x_scales.stride(1) : 0;
    }
    d.topk_idx = static_cast<const std::int64_t*>(staging.stage_span(a.topk_idx, comm));
    d.topk_weights = static_cast<const float*>(staging.stage_span(a.topk_weights, comm));
    d.num_tokens = static_cast<int>(s.num_tokens);
    return d;
  }
  return describe_source_in_place(b, a);
}

// The payload plus the call's shape, which peers check against theirs.
protocol::SourceDescriptor describe_source(const Buffer::Impl& b, const DispatchArgs& a, const DispatchShape& s,
                                           const std::string& op, cudaStream_t comm) {
  protocol::SourceDescriptor d = describe_payload(b, a, s, op, comm);
  d.row_bytes = static_cast<std::int32_t>(s.row_bytes);
  d.num_topk = s.num_topk;
  d.num_experts = s.num_experts;
  d.num_scales = s.num_scales;
  return d;
}

protocol::SourceDescriptor describe_source_in_place(const Buffer::Impl& b, const DispatchArgs& a) {
  protocol::SourceDescriptor d{};
  d.owner_base = static_cast<const std::uint8_t*>(b.nvl->local());
  d.x = static_cast<const std::uint8_t*>(a.x.data);
  d.x_row_stride = a.x.stride(0) * static_cast<std::int64_t>(dtype_bytes(a.x.dtype));
  if (a.x_scales.defined()) {
    d.x_scales = a.x_scales.ptr<const float>();
    d.scale_token_stride = a.x_scales.stride(0);
    d.scale_hidden_stride = a.x_scales.ndim == 2 ? a.x_scales.stride(1) : 0;
  }
  d.topk_idx = a.topk_idx.ptr<const std::int64_t>();
  d.topk_weights = a.topk_weights.ptr<const float>();
  d.num_tokens = static_cast<int>(a.x.size(0));
  return d;
}

}  // namespace

DispatchCounts Buffer::dispatch_notify(const DispatchArgs& args, DispatchHandle& handle, bool cached) {
  const std::string op = cached ? "dispatch (cached)" : "dispatch";
  runtime::DeviceGuard guard(impl_->device);
  impl_->ensure_usable(op);
  const DispatchShape s = check_dispatch_args(op, *impl_, args, handle, cached);
  impl_->checked_num_sms(op, args.config);  // rejected here, before any launch, not only at the copy step
  const bool host_sync = !cached && args.num_worst_tokens == 0;
  if (host_sync) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    MOE_EP_CUDA_CHECK(cudaStreamIsCapturing(args.stream.compute_stream, &capture));
    require(capture == cudaStreamCaptureStatusNone, op,
            "called during CUDA graph capture without num_worst_tokens: it must wait on the host for the received "
            "counts; pass num_worst_tokens > 0 (or a cached handle) to capture it");
  }
  DispatchCounts counts;
  if (impl_->consume_skip()) {
    impl_->skipping_dispatch = true;
    if (!host_sync) impl_->pass_launch_gate();  // as the notify launch below would
    return counts;
  }
  // Without a host wait the caller's next launches (this dispatch's own send among them)
  // queue behind the spinning notify kernel: peers launch theirs first.
  std::optional<Impl::LaunchGatePass> gate;
  if (!host_sync) gate.emplace(*impl_);
  if (!cached) {
    handle.is_token_in_rank = args.is_token_in_rank;
    handle.num_tokens = s.num_tokens;
    handle.buffer_id = impl_->id;
    handle.buffer_generation = impl_->generation;
  }

  cudaStream_t comm = impl_->begin(args.stream);
  impl_->host()->counts_ready = 0;  // the previous waiting notify has finished: the host saw its flag
  if (impl_->internode()) {
    host::launch_internode_notify(*impl_, args, s, handle, cached, host_sync, comm);
  } else {
    launch_intranode_notify(*impl_, args, s, handle, cached, host_sync, op, comm);
  }

  if (cached) {
    counts.num_recv_rows = handle.num_recv_rows;
    counts.num_forward_rows = handle.num_forward_rows;
    return counts;
  }
  if (!host_sync) {
    counts.num_recv_rows = args.num_worst_tokens;
    handle.num_recv_rows = args.num_worst_tokens;
    if (impl_->internode()) counts.num_forward_rows = static_cast<std::int64_t>(args.num_worst_tokens) * impl_->ranks_per_node;
    handle.num_forward_rows = counts.num_forward_rows;
    return counts;
  }
  impl_->wait_for_counts();
  const auto* host = impl_->host();
  counts.num_recv_tokens = host->num_recv_tokens;
  counts.num_recv_rows = host->num_recv_tokens;
  const int num_local_experts = s.num_experts / impl_->num_ranks;
  counts.num_recv_tokens_per_expert.assign(host->num_recv_tokens_per_expert,
                                           host->num_recv_tokens_per_expert + num_local_experts);
  handle.num_recv_rows = counts.num_recv_rows;
  if (impl_->internode()) counts.num_forward_rows = host->num_forward_rows;
  handle.num_forward_rows = counts.num_forward_rows;
  return counts;
}

namespace {

void launch_intranode_notify(const Buffer::Impl& b, const DispatchArgs& args, const DispatchShape& s,
                             DispatchHandle& handle, bool cached, bool host_sync, const std::string& op,
                             cudaStream_t comm) {
  kernels::NotifyParams p{};
  p.ctx = b.context(cached ? protocol::Op::kCachedDispatch : protocol::Op::kDispatch);
  p.source = describe_source(b, args, s, op, comm);
  p.cached = cached;
  p.num_tokens = static_cast<int>(s.num_tokens);
  p.num_experts = s.num_experts;
  p.num_topk = s.num_topk;
  p.expert_alignment = args.expert_alignment;
  p.num_worst_tokens = args.num_worst_tokens;
  if (!cached) {
    p.is_token_in_rank = args.is_token_in_rank.ptr<const bool>();
    p.num_tokens_per_rank = args.num_tokens_per_rank.ptr<const int>();
    p.num_tokens_per_expert = args.num_tokens_per_expert.ptr<const int>();
    p.send_pos = handle.send_pos.ptr<int>();
    p.rank_prefix_matrix = handle.rank_prefix_matrix.ptr<int>();
  }
  p.host_state = b.host_on_device();
  p.host_waits = host_sync;
  kernels::launch_notify(p, comm);
}

// The copy step's arguments: the call's, then the outputs sized by the counting step.
DispatchShape check_receive_args(const std::string& op, const Buffer::Impl& b, const DispatchArgs& args,
                                 const DispatchHandle& handle, const DispatchOutputs& out, bool cached) {
  const DispatchShape s = check_dispatch_args(op, b, args, handle, cached);
  b.check_handle(op, handle);
  const std::int64_t rows = handle.num_recv_rows;
  check_tensor(op, out.recv_x, {"recv_x", {args.x.dtype}, {rows, s.hidden}, true, kRowAlign});
  check_tensor(op, handle.recv_src_idx, {"handle.recv_src_idx", {DType::kInt32}, {rows}});
  if (s.fp8) check_tensor(op, out.recv_x_scales, {"recv_x_scales", {DType::kFloat32}, {rows, s.num_scales}});
  if (s.num_topk > 0) {
    check_tensor(op, out.recv_topk_idx, {"recv_topk_idx", {DType::kInt64}, {rows, s.num_topk}});
    if (args.topk_weights.defined()) {
      check_tensor(op, out.recv_topk_weights, {"recv_topk_weights", {DType::kFloat32}, {rows, s.num_topk}});
    }
  }
  if (b.internode() && !cached) host::check_internode_handle(op, b, handle);
  return s;
}

}  // namespace

Event Buffer::dispatch_receive(const DispatchArgs& args, const DispatchHandle& handle, const DispatchOutputs& out,
                               bool cached) {
  const std::string op = cached ? "dispatch (cached)" : "dispatch";
  runtime::DeviceGuard guard(impl_->device);
  if (impl_->skipping_dispatch) {
    impl_->skipping_dispatch = false;
    return Event();
  }
  if (!impl_->failure.empty()) impl_->ensure_usable(op);
  // Across nodes the counting step has advanced the transport's signal counts, and only
  // this step brings them back in step: refused now, the buffer refuses calls until
  // reset() (instead of the next call timing out on every rank).
  auto refused_after_count = [&](const std::exception& e) {
    if (impl_->internode()) impl_->failure = op + " refused after its counting step (" + e.what() + ")";
  };
  DispatchShape s;
  int num_sms = 0;
  try {
    s = check_receive_args(op, *impl_, args, handle, out, cached);
    num_sms = impl_->checked_num_sms(op, args.config);
  } catch (const std::exception& e) {
    refused_after_count(e);
    throw;
  }
  const std::int64_t rows = handle.num_recv_rows;

  const Impl::LaunchGatePass gate{*impl_};
  cudaStream_t comm = impl_->comm_stream.get();
  if (impl_->internode()) {
    try {
      host::launch_internode_dispatch(*impl_, args, s, handle, out, cached, num_sms, comm);
    } catch (const std::exception& e) {
      refused_after_count(e);
      throw;
    }
    return impl_->end(args.stream);
  }
  const kernels::CollectiveContext ctx =
      impl_->context(cached ? protocol::Op::kCachedDispatch : protocol::Op::kDispatch);
  if (!impl_->group->shares_address_space()) {
    // Process group: pull every received row from its source's staging.
    kernels::ReceiveParams p{};
    p.ctx = ctx;
    p.cached = cached;
    p.rank_prefix_matrix = handle.rank_prefix_matrix.ptr<const int>();
    p.recv_src_idx = handle.recv_src_idx.ptr<int>();
    p.num_rows = static_cast<int>(rows);
    p.recv_x = out.recv_x.ptr<std::uint8_t>();
    p.row_bytes = s.row_bytes;
    p.recv_x_scales = s.fp8 ? out.recv_x_scales.ptr<float>() : nullptr;
    p.num_scales = s.fp8 ? s.num_scales : 0;
    p.recv_topk_idx = s.num_topk > 0 ? out.recv_topk_idx.ptr<std::int64_t>() : nullptr;
    p.recv_topk_weights =
        s.num_topk > 0 && args.topk_weights.defined() ? out.recv_topk_weights.ptr<float>() : nullptr;
    p.num_topk = s.num_topk;
    p.num_local_experts = s.num_experts / impl_->num_ranks;
    p.expert_begin = impl_->rank * p.num_local_experts;
    kernels::launch_receive(p, num_sms, comm);
    return impl_->end(args.stream);
  }
  // Publish this rank's outputs; peers push their tokens into them.
  const kernels::PublishParams sink = host::sink_publication(*impl_, ctx, args, s, handle, out, cached);
  kernels::SendParams p{};
  p.ctx = ctx;
  host::fill_send_payload(p, args, s, handle);
  p.num_local_experts = s.num_experts / impl_->num_ranks;
  kernels::launch_publish(sink, comm);
  kernels::launch_send(p, num_sms, comm);
  return impl_->end(args.stream);
}

}  // namespace moe_ep
