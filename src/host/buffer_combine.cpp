// Buffer::combine: argument checks against the dispatch handle, then the publish and
// reduce kernels on the comm stream. No host sync, so it is graph-capturable.
#include <string>

#include "host/buffer_impl.hpp"
#include "host/internode_calls.hpp"
#include "host/kernel_args.hpp"
#include "host/validation.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep {

Event Buffer::combine(const CombineArgs& a, const DispatchHandle& handle) {
  using host::check_optional_tensor;
  using host::check_tensor;
  using host::kAnySize;
  using host::kRowAlign;
  using host::require;
  const std::string op = "combine";
  runtime::DeviceGuard guard(impl_->device);
  impl_->ensure_usable(op);
  impl_->check_handle(op, handle);
  const int R = impl_->num_ranks;
  const std::int64_t rows = handle.num_recv_rows, num_tokens = handle.num_tokens;
  check_tensor(op, a.x, {"x", {DType::kBFloat16}, {kAnySize, kAnySize}, true, kRowAlign});
  require(a.x.size(0) == rows, op,
          "x has " + std::to_string(a.x.size(0)) + " rows but the dispatch received " + std::to_string(rows));
  const std::int64_t hidden = a.x.size(1);
  require(hidden > 0 && hidden % 8 == 0, op, "hidden=" + std::to_string(hidden) + " must be a multiple of 8");
  check_optional_tensor(op, a.topk_weights, {"topk_weights", {DType::kFloat32}, {rows, kAnySize}});
  const int num_topk = a.topk_weights.defined() ? static_cast<int>(a.topk_weights.size(1)) : 0;
  require(num_topk <= kMaxTopk, op, "top-k of " + std::to_string(num_topk) + " above " + std::to_string(kMaxTopk));
  require(!a.bias1.defined() || a.bias0.defined(), op, "bias1 given without bias0");
  check_optional_tensor(op, a.bias0, {"bias0", {DType::kBFloat16}, {num_tokens, hidden}, true, kRowAlign});
  check_optional_tensor(op, a.bias1, {"bias1", {DType::kBFloat16}, {num_tokens, hidden}, true, kRowAlign});
  check_tensor(op, a.combined_x, {"combined_x", {DType::kBFloat16}, {num_tokens, hidden}, true, kRowAlign});
  if (num_topk > 0) {
    check_tensor(op, a.combined_topk_weights, {"combined_topk_weights", {DType::kFloat32}, {num_tokens, num_topk}});
  }
  check_tensor(op, handle.is_token_in_rank, {"handle.is_token_in_rank", {DType::kBool}, {num_tokens, R}});
  check_tensor(op, handle.send_pos, {"handle.send_pos", {DType::kInt32}, {num_tokens, R}});
  check_tensor(op, handle.rank_prefix_matrix, {"handle.rank_prefix_matrix", {DType::kInt32}, {R, R}});
  if (impl_->internode()) {
    host::check_internode_handle(op, *impl_, handle);
    host::check_internode_combine_capacity(op, *impl_, num_tokens, hidden, num_topk);
  }
  const int num_sms = impl_->checked_num_sms(op, a.config);
  if (impl_->consume_skip()) return Event();
  const Impl::LaunchGatePass gate{*impl_};

  cudaStream_t comm = impl_->begin(a.stream);
  // Across nodes, the expert outputs are read only within the node (by the forwarders).
  const kernels::CollectiveContext ctx =
      impl_->internode() ? impl_->node_context(protocol::Op::kCombine) : impl_->context(protocol::Op::kCombine);
  kernels::PublishParams publish{};
  publish.ctx = ctx;
  publish.flags = protocol::FlagSet::kReady;
  publish.phase = protocol::Phase::kCombinePublish;
  publish.source.owner_base = static_cast<const std::uint8_t*>(impl_->nvl->local());
  publish.source.num_tokens = static_cast<int>(rows);
  publish.source.row_bytes = static_cast<std::int32_t>(hidden * 2);  // shape peers check against theirs
  publish.source.num_topk = num_topk;
  if (impl_->group->shares_address_space()) {
    publish.source.x = static_cast<const std::uint8_t*>(a.x.data);
    publish.source.x_row_stride = a.x.stride(0) * 2;
    publish.source.topk_weights = a.topk_weights.ptr<const float>();
  } else {  // peers in other processes read staged copies
    host::StagingArea staging = impl_->staging(op);
    publish.source.x = static_cast<const std::uint8_t*>(staging.stage_rows(a.x, hidden * 2, comm));
    publish.source.x_row_stride = hidden * 2;
    publish.source.topk_weights = static_cast<const float*>(staging.stage_span(a.topk_weights, comm));
  }

  if (impl_->internode()) {
    kernels::launch_publish(publish, comm);
    host::launch_internode_combine(*impl_, a, handle, static_cast<int>(hidden), num_topk, num_sms, comm);
    return impl_->end(a.stream);
  }
  kernels::ReduceParams reduce{};
  reduce.ctx = ctx;
  reduce.num_tokens = static_cast<int>(num_tokens);
  reduce.hidden = static_cast<int>(hidden);
  reduce.num_topk = num_topk;
  reduce.is_token_in_rank = handle.is_token_in_rank.ptr<const bool>();
  reduce.send_pos = handle.send_pos.ptr<const int>();
  reduce.rank_prefix_matrix = handle.rank_prefix_matrix.ptr<const int>();
  host::fill_combine_outputs(reduce, a, num_topk);

  kernels::launch_publish(publish, comm);
  kernels::launch_reduce(reduce, num_sms, comm);
  return impl_->end(a.stream);
}

}  // namespace moe_ep
