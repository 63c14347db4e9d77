// Dispatch argument checks (see dispatch_checks.hpp).
#include "host/dispatch_checks.hpp"

#include <algorithm>

#include "host/validation.hpp"

namespace moe_ep::host {

namespace {

// Internode: the tokens of one call must fit the dispatch half of the RDMA window.
void check_internode_capacity(const std::string& op, const Buffer::Impl& b, const DispatchShape& s) {
  if (!b.internode()) return;
  const auto window = protocol::carve_internode_window(b.internode_window_bytes, b.num_ranks, b.num_nodes());
  // Combine comes back through the same window with bf16 rows: a dispatch it could not
  // return is refused now.
  const std::int64_t capacity =
      std::min(protocol::carve_internode_dispatch(window, s.row_bytes, s.num_scales, s.num_topk, b.ranks_per_node)
                   .capacity,
               protocol::carve_internode_combine(window, s.hidden, s.num_topk).capacity);
  require(s.num_tokens <= capacity, op,
          "x has " + std::to_string(s.num_tokens) + " tokens but num_rdma_bytes=" + std::to_string(b.internode_window_bytes) +
              " holds " + std::to_string(capacity) + " per rank for rows of " + std::to_string(s.row_bytes) +
              " bytes across " + std::to_string(b.num_nodes()) + " nodes (see Buffer::internode_size_hint)");
}

// The handle's routing tensors (written by this call, or read by a cached one).
void check_handle_routing(const std::string& op, const Buffer::Impl& b, const DispatchHandle& handle,
                          std::int64_t num_tokens) {
  const int R = b.num_ranks;
  check_tensor(op, handle.rank_prefix_matrix, {"handle.rank_prefix_matrix", {DType::kInt32}, {R, R}});
  check_tensor(op, handle.send_pos, {"handle.send_pos", {DType::kInt32}, {num_tokens, R}});
  if (!b.internode()) return;
  const int N = b.num_nodes();
  check_tensor(op, handle.rdma_send_pos, {"handle.rdma_send_pos", {DType::kInt32}, {num_tokens, N}});
  check_tensor(op, handle.forwarded_prefix, {"handle.forwarded_prefix", {DType::kInt32}, {N}});
}

}  // namespace

DispatchShape check_dispatch_args(const std::string& op, const Buffer::Impl& b, const DispatchArgs& a,
                                  const DispatchHandle& handle, bool cached) {
  DispatchShape s;
  check_tensor(op, a.x, {"x", {DType::kBFloat16, DType::kFloat8E4M3}, {kAnySize, kAnySize}, true, kRowAlign});
  s.num_tokens = a.x.size(0);
  s.hidden = a.x.size(1);
  s.fp8 = a.x.dtype == DType::kFloat8E4M3;
  s.row_bytes = s.hidden * static_cast<std::int64_t>(dtype_bytes(a.x.dtype));
  require(s.row_bytes > 0 && s.row_bytes % 16 == 0, op,
          "x row of " + std::to_string(s.hidden) + " elements is " + std::to_string(s.row_bytes) +
              " bytes; rows must be a non-zero multiple of 16 bytes");
  require(b.internode() || s.num_tokens <= b.layout.max_tokens, op,
          "x has " + std::to_string(s.num_tokens) + " tokens but the buffer was sized for " +
              std::to_string(b.layout.max_tokens) + " (num_nvl_bytes=" + std::to_string(b.nvl->bytes()) +
              "; see Buffer::intranode_size_hint)");
  if (s.fp8) {
    require(s.hidden % 128 == 0, op, "fp8 x needs hidden % 128 == 0, got hidden=" + std::to_string(s.hidden));
    require(a.x_scales.defined(), op, "fp8 x needs x_scales [num_tokens, hidden/128] float32");
    const bool per_token = a.x_scales.ndim == 1;
    s.num_scales = per_token ? 1 : static_cast<int>(s.hidden / 128);
    if (per_token) {
      check_tensor(op, a.x_scales, {"x_scales", {DType::kFloat32}, {s.num_tokens}, false});
    } else {
      check_tensor(op, a.x_scales, {"x_scales", {DType::kFloat32}, {s.num_tokens, s.num_scales}, false});
    }
  } else {
    require(!a.x_scales.defined(), op, "x_scales given but x is bfloat16 (scales go with float8_e4m3fn x)");
  }
  require(a.num_worst_tokens >= 0, op, "num_worst_tokens must be >= 0, got " + std::to_string(a.num_worst_tokens));
  require(a.expert_alignment >= 1, op, "expert_alignment must be >= 1, got " + std::to_string(a.expert_alignment));
  if (cached) {
    b.check_handle(op, handle);
    require(handle.num_tokens == s.num_tokens, op,
            "x has " + std::to_string(s.num_tokens) + " tokens but the handle was made for " +
                std::to_string(handle.num_tokens));
    require(!a.topk_idx.defined() && !a.topk_weights.defined(), op, "a cached dispatch takes no topk_idx/topk_weights");
    check_handle_routing(op, b, handle, s.num_tokens);
    check_internode_capacity(op, b, s);
    return s;
  }
  const int R = b.num_ranks;
  check_tensor(op, a.is_token_in_rank, {"is_token_in_rank", {DType::kBool}, {s.num_tokens, R}});
  check_tensor(op, a.num_tokens_per_rank, {"num_tokens_per_rank", {DType::kInt32}, {R}});
  check_tensor(op, a.num_tokens_per_expert, {"num_tokens_per_expert", {DType::kInt32}, {kAnySize}});
  s.num_experts = static_cast<int>(a.num_tokens_per_expert.size(0));
  require(s.num_experts > 0 && s.num_experts <= kMaxExperts && s.num_experts % R == 0, op,
          "num_tokens_per_expert has " + std::to_string(s.num_experts) + " experts; need a multiple of num_ranks=" +
              std::to_string(R) + " in [1, " + std::to_string(kMaxExperts) + "]");
  check_optional_tensor(op, a.topk_idx, {"topk_idx", {DType::kInt64}, {s.num_tokens, kAnySize}});
  if (a.topk_idx.defined()) {
    s.num_topk = static_cast<int>(a.topk_idx.size(1));
    require(s.num_topk >= 1 && s.num_topk <= kMaxTopk, op,
            "top-k of " + std::to_string(s.num_topk) + " outside [1, " + std::to_string(kMaxTopk) + "]");
  }
  require(!a.topk_weights.defined() || a.topk_idx.defined(), op, "topk_weights given without topk_idx");
  check_optional_tensor(op, a.topk_weights, {"topk_weights", {DType::kFloat32}, {s.num_tokens, s.num_topk}});
  check_handle_routing(op, b, handle, s.num_tokens);
  if (b.internode()) {
    check_optional_tensor(op, a.num_tokens_per_rdma_rank, {"num_tokens_per_rdma_rank", {DType::kInt32}, {b.num_nodes()}});
  } else {
    require(!a.num_tokens_per_rdma_rank.defined(), op,
            "num_tokens_per_rdma_rank given but every rank is on one node (pass None)");
  }
  check_internode_capacity(op, b, s);
  return s;
}


}  // namespace moe_ep::host
