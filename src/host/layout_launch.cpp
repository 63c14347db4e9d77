// Checks get_dispatch_layout's arguments and launches its kernel.
#include "host/layout_launch.hpp"

#include <string>

#include "host/validation.hpp"
#include "kernels/layout/layout_params.hpp"

namespace moe_ep::host {

namespace {
int num_nodes_of(int num_ranks, int num_ranks_per_node) {
  return num_ranks > num_ranks_per_node ? num_ranks / num_ranks_per_node : 0;
}
}  // namespace

void validate_layout_args(const LayoutArgs& a, int num_ranks, int num_ranks_per_node) {
  const std::string op = "get_dispatch_layout";
  check_tensor(op, a.topk_idx, {"topk_idx", {DType::kInt64}, {kAnySize, kAnySize}});
  const std::int64_t num_tokens = a.topk_idx.size(0), num_topk = a.topk_idx.size(1);
  require(num_topk >= 1 && num_topk <= kMaxTopk, op,
          "topk_idx has " + std::to_string(num_topk) + " columns; top-k must be in [1, " + std::to_string(kMaxTopk) + "]");
  require(num_tokens < (1ll << 31) / kMaxRanks, op, "num_tokens=" + std::to_string(num_tokens) + " too large");
  require(a.num_experts > 0 && a.num_experts <= kMaxExperts, op,
          "num_experts=" + std::to_string(a.num_experts) + " outside [1, " + std::to_string(kMaxExperts) + "]");
  require(num_ranks >= 1 && num_ranks <= kMaxRanks, op, "num_ranks=" + std::to_string(num_ranks) + " unsupported");
  require(a.num_experts % num_ranks == 0, op,
          "num_experts=" + std::to_string(a.num_experts) + " is not divisible by num_ranks=" + std::to_string(num_ranks));
  require(num_ranks_per_node >= 1 && num_ranks % num_ranks_per_node == 0, op,
          "num_ranks=" + std::to_string(num_ranks) + " is not a multiple of num_ranks_per_node=" +
              std::to_string(num_ranks_per_node));
  check_tensor(op, a.num_tokens_per_rank, {"num_tokens_per_rank", {DType::kInt32}, {num_ranks}});
  check_tensor(op, a.num_tokens_per_expert, {"num_tokens_per_expert", {DType::kInt32}, {a.num_experts}});
  check_tensor(op, a.is_token_in_rank, {"is_token_in_rank", {DType::kBool}, {num_tokens, num_ranks}});
  const int num_nodes = num_nodes_of(num_ranks, num_ranks_per_node);
  if (num_nodes > 0) {
    check_tensor(op, a.num_tokens_per_rdma_rank, {"num_tokens_per_rdma_rank", {DType::kInt32}, {num_nodes}});
  }
}

void launch_dispatch_layout(const LayoutArgs& a, int num_ranks, int num_ranks_per_node, int rank,
                            runtime::DeviceAllocation& workspace, protocol::DeviceState* state,
                            protocol::ErrorRecord* error, cudaStream_t stream) {
  validate_layout_args(a, num_ranks, num_ranks_per_node);
  kernels::LayoutParams p{};
  p.topk_idx = a.topk_idx.ptr<const std::int64_t>();
  p.num_tokens = static_cast<int>(a.topk_idx.size(0));
  p.num_topk = static_cast<int>(a.topk_idx.size(1));
  p.num_experts = a.num_experts;
  p.num_ranks = num_ranks;
  p.num_ranks_per_node = num_ranks_per_node;
  p.num_nodes = num_nodes_of(num_ranks, num_ranks_per_node);
  p.rank = rank;
  p.num_tokens_per_rank = a.num_tokens_per_rank.ptr<int>();
  p.num_tokens_per_rdma_rank = p.num_nodes > 0 ? a.num_tokens_per_rdma_rank.ptr<int>() : nullptr;
  p.num_tokens_per_expert = a.num_tokens_per_expert.ptr<int>();
  p.is_token_in_rank = a.is_token_in_rank.ptr<bool>();
  const std::size_t needed =
      kernels::layout_workspace_bytes(kernels::layout_num_blocks(p.num_tokens), p.num_experts, num_ranks, p.num_nodes);
  if (workspace.bytes() < needed) workspace = runtime::DeviceAllocation(needed);
  p.workspace = static_cast<int*>(workspace.get());
  p.state = state;
  p.error = error;
  kernels::launch_layout(p, stream);
}

}  // namespace moe_ep::host
