// Argument checks of low_latency_dispatch / low_latency_combine.
#include "host/ll_validation.hpp"

#include "host/validation.hpp"
#include "moe_ep/config.hpp"

namespace moe_ep::host {
namespace {

// Column-major in the last two dims, as deep_ep allocates scales: [E, N, S] with strides
// (N * S, 1, N).
void check_column_major_scales(const std::string& op, const TensorView& t, DType dtype, std::int64_t experts,
                               std::int64_t slots, std::int64_t columns, const char* what) {
  check_tensor(op, t, {"recv_x_scales", {dtype}, {experts, slots, columns}, /*contiguous=*/false});
  require(t.stride(0) == slots * columns && t.stride(1) == 1 && t.stride(2) == slots, op,
          std::string("recv_x_scales (") + what + ") must be column-major in its last two dims, strides [" +
              std::to_string(slots * columns) + ", 1, " + std::to_string(slots) + "], got " + t.describe());
}

void check_shape_limits(const std::string& op, int num_ranks, const LowLatencyShape& s) {
  require(s.hidden > 0 && s.hidden % 128 == 0, op,
          "hidden=" + std::to_string(s.hidden) + " must be a positive multiple of 128");
  require(s.num_topk >= 1 && s.num_topk <= kMaxTopk, op,
          "top-k of " + std::to_string(s.num_topk) + " outside [1, " + std::to_string(kMaxTopk) + "]");
  require(s.num_experts >= num_ranks && s.num_experts <= kMaxExperts && s.num_experts % num_ranks == 0, op,
          "num_experts=" + std::to_string(s.num_experts) + " must be a multiple of the " + std::to_string(num_ranks) +
              " ranks and at most " + std::to_string(kMaxExperts));
  require(s.max_tokens >= 1 && s.max_tokens <= kMaxLowLatencyTokens, op,
          "num_max_dispatch_tokens_per_rank=" + std::to_string(s.max_tokens) + " outside [1, " +
              std::to_string(kMaxLowLatencyTokens) + "]");
  require(s.num_tokens <= s.max_tokens, op,
          "x has " + std::to_string(s.num_tokens) + " tokens, more than num_max_dispatch_tokens_per_rank=" +
              std::to_string(s.max_tokens));
}

}  // namespace

LowLatencyShape check_low_latency_dispatch(const std::string& op, int num_ranks, const LowLatencyDispatchArgs& a,
                                           const LowLatencyDispatchOutputs& out, const LowLatencyHandle& handle) {
  check_tensor(op, a.x, {"x", {DType::kBFloat16}, {kAnySize, kAnySize}, true, kRowAlign});
  LowLatencyShape s;
  s.num_ranks = num_ranks;
  s.num_tokens = static_cast<int>(a.x.size(0));
  s.hidden = static_cast<int>(a.x.size(1));
  check_tensor(op, a.topk_idx, {"topk_idx", {DType::kInt64, DType::kInt32}, {s.num_tokens, kAnySize}});
  s.num_topk = static_cast<int>(a.topk_idx.size(1));
  s.num_experts = a.num_experts;
  s.max_tokens = a.num_max_dispatch_tokens_per_rank;
  check_shape_limits(op, num_ranks, s);
  require(!a.use_ue8m0 || (a.use_fp8 && a.round_scale), op, "use_ue8m0 needs use_fp8 and round_scale");

  const std::int64_t E = s.num_local_experts(), N = s.slots_per_expert(), H = s.hidden;
  check_tensor(op, out.recv_x, {"recv_x", {a.use_fp8 ? DType::kFloat8E4M3 : DType::kBFloat16}, {E, N, H}, true, kRowAlign});
  if (a.use_fp8) {
    if (a.use_ue8m0) {
      check_column_major_scales(op, out.recv_x_scales, DType::kInt32, E, N, (H / 128 + 3) / 4, "int32 UE8M0");
    } else {
      check_column_major_scales(op, out.recv_x_scales, DType::kFloat32, E, N, H / 128, "fp32");
    }
  } else {
    require(!out.recv_x_scales.defined(), op, "recv_x_scales given for a BF16 dispatch (use_fp8=false)");
  }
  check_tensor(op, out.recv_count, {"recv_count", {DType::kInt32}, {E}});
  check_tensor(op, handle.src_info, {"handle.src_info", {DType::kInt32}, {E, N}});
  check_tensor(op, handle.layout_range, {"handle.layout_range", {DType::kInt64}, {E, num_ranks}});
  check_tensor(op, handle.combine_slots, {"handle.combine_slots", {DType::kInt32}, {s.max_tokens, s.num_topk}});
  check_optional_tensor(op, a.cumulative_local_expert_recv_stats,
                        {"cumulative_local_expert_recv_stats", {DType::kInt32}, {E}});
  check_optional_tensor(op, a.dispatch_wait_recv_cost_stats,
                        {"dispatch_wait_recv_cost_stats", {DType::kInt64}, {num_ranks}});
  require(!(a.return_recv_hook && a.stream.async_finish), op, "return_recv_hook and async_finish exclude each other");
  return s;
}

LowLatencyShape check_low_latency_combine(const std::string& op, int num_ranks, const LowLatencyCombineArgs& a,
                                          const LowLatencyHandle& handle) {
  LowLatencyShape s;
  s.num_ranks = num_ranks;
  s.num_tokens = handle.num_tokens;
  s.hidden = handle.hidden;
  s.num_topk = handle.num_topk;
  s.num_experts = handle.num_experts;
  s.max_tokens = handle.num_max_dispatch_tokens_per_rank;
  check_shape_limits(op, num_ranks, s);
  const std::int64_t E = s.num_local_experts(), N = s.slots_per_expert(), H = s.hidden;
  check_tensor(op, a.x, {"x", {DType::kBFloat16}, {E, N, H}, true, kRowAlign});
  check_tensor(op, a.topk_idx, {"topk_idx", {DType::kInt64, DType::kInt32}, {s.num_tokens, s.num_topk}});
  check_tensor(op, a.topk_weights, {"topk_weights", {DType::kFloat32}, {s.num_tokens, s.num_topk}});
  check_tensor(op, a.out, {"out", {DType::kBFloat16}, {s.num_tokens, H}, true, kRowAlign});
  check_tensor(op, handle.layout_range, {"handle.layout_range", {DType::kInt64}, {E, num_ranks}});
  check_tensor(op, handle.combine_slots, {"handle.combine_slots", {DType::kInt32}, {s.max_tokens, s.num_topk}});
  check_optional_tensor(op, a.combine_wait_recv_cost_stats,
                        {"combine_wait_recv_cost_stats", {DType::kInt64}, {num_ranks}});
  require(!(a.use_logfmt && a.zero_copy), op, "use_logfmt and zero_copy exclude each other (LogFMT encodes into the buffer)");
  require(!(a.return_recv_hook && a.stream.async_finish), op, "return_recv_hook and async_finish exclude each other");
  return s;
}

}  // namespace moe_ep::host
