// Device arrays and call arguments of one low-latency benchmark rank (see ll_rank_arrays.hpp).
#include "ll_rank_arrays.hpp"

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {

// Expert outputs of one set on `rank`: each local expert's valid rows, contiguous from row
// 0 of its [N, hidden] block; the rest stays poisoned (combine must not read it).
test::DeviceArray<std::uint16_t> upload_expert_outputs(const LlWorkload& w, int set, int rank) {
  const std::int64_t hidden = w.problem().hidden, n = w.num_slots();
  test::DeviceArray<std::uint16_t> x(static_cast<std::size_t>(w.num_local_experts()) * n * hidden);
  const std::vector<int> counts = w.expert_counts(set);
  std::vector<std::uint16_t> block;
  for (int e = 0; e < w.num_local_experts(); ++e) {
    const int expert = rank * w.num_local_experts() + e;
    block.clear();
    for (int row = 0; row < counts[expert]; ++row) {
      const std::vector<std::uint16_t> values = w.expert_output_row(set, expert, row);
      block.insert(block.end(), values.begin(), values.end());
    }
    if (block.empty()) continue;
    MOE_EP_CUDA_CHECK(cudaMemcpyAsync(x.get() + e * n * hidden, block.data(), block.size() * sizeof(std::uint16_t),
                                      cudaMemcpyHostToDevice, cudaStreamPerThread));
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  }
  return x;
}

}  // namespace

LlRankArrays::LlRankArrays(const LlWorkload& w, int rank)
    : problem(w.problem()), num_ranks(w.num_ranks()), num_local_experts(w.num_local_experts()),
      num_slots(w.num_slots()), num_scales(w.problem().hidden / 128) {
  const std::size_t rows = static_cast<std::size_t>(num_local_experts) * num_slots;
  for (int set = 0; set < w.num_sets(); ++set) {
    const reference::RankLowLatencyInput& in = w.inputs(set)[rank];
    x.emplace_back(in.x);
    topk_idx.emplace_back(in.topk_idx);
    topk_weights.emplace_back(in.topk_weights);
    expert_x.push_back(upload_expert_outputs(w, set, rank));
  }
  recv_x = test::DeviceArray<std::uint8_t>(rows * problem.payload_bytes());
  if (problem.use_fp8) recv_scales = test::DeviceArray<float>(rows * num_scales);
  recv_count = test::DeviceArray<int>(num_local_experts);
  src_info = test::DeviceArray<int>(rows);
  layout_range = test::DeviceArray<std::int64_t>(static_cast<std::size_t>(num_local_experts) * num_ranks);
  combine_slots = test::DeviceArray<int>(static_cast<std::size_t>(problem.max_tokens) * problem.num_topk);
  out = test::DeviceArray<std::uint16_t>(static_cast<std::size_t>(problem.num_tokens) * problem.hidden);
  dispatch_waits = test::DeviceArray<std::int64_t>(std::vector<std::int64_t>(num_ranks, 0));
  combine_waits = test::DeviceArray<std::int64_t>(std::vector<std::int64_t>(num_ranks, 0));
  handle.src_info = src_info.view(DType::kInt32, {num_local_experts, num_slots});
  handle.layout_range = layout_range.view(DType::kInt64, {num_local_experts, num_ranks});
  handle.combine_slots = combine_slots.view(DType::kInt32, {problem.max_tokens, problem.num_topk});
}

LowLatencyDispatchArgs LlRankArrays::dispatch_args(int set, cudaStream_t stream) const {
  LowLatencyDispatchArgs a;
  a.x = x[set].view(DType::kBFloat16, {problem.num_tokens, problem.hidden});
  a.topk_idx = topk_idx[set].view(DType::kInt64, {problem.num_tokens, problem.num_topk});
  a.num_max_dispatch_tokens_per_rank = problem.max_tokens;
  a.num_experts = problem.num_experts;
  a.use_fp8 = problem.use_fp8;
  a.dispatch_wait_recv_cost_stats = dispatch_waits.view(DType::kInt64, {num_ranks});
  a.stream.compute_stream = stream;
  return a;
}

LowLatencyDispatchOutputs LlRankArrays::dispatch_outputs() const {
  LowLatencyDispatchOutputs o;
  o.recv_x = recv_x.view(problem.use_fp8 ? DType::kFloat8E4M3 : DType::kBFloat16,
                         {num_local_experts, num_slots, problem.hidden});
  if (problem.use_fp8) {
    TensorView& s = o.recv_x_scales;  // column-major in the last two dims
    s.data = recv_scales.get();
    s.dtype = DType::kFloat32;
    s.ndim = 3;
    s.shape = {num_local_experts, num_slots, num_scales, 0};
    s.strides = {static_cast<std::int64_t>(num_slots) * num_scales, 1, num_slots, 0};
  }
  o.recv_count = recv_count.view(DType::kInt32, {num_local_experts});
  return o;
}

LowLatencyCombineArgs LlRankArrays::combine_args(int set, cudaStream_t stream) const {
  LowLatencyCombineArgs a;
  a.x = expert_x[set].view(DType::kBFloat16, {num_local_experts, num_slots, problem.hidden});
  a.topk_idx = topk_idx[set].view(DType::kInt64, {problem.num_tokens, problem.num_topk});
  a.topk_weights = topk_weights[set].view(DType::kFloat32, {problem.num_tokens, problem.num_topk});
  a.out = out.view(DType::kBFloat16, {problem.num_tokens, problem.hidden});
  a.combine_wait_recv_cost_stats = combine_waits.view(DType::kInt64, {num_ranks});
  a.stream.compute_stream = stream;
  return a;
}

void LlRankArrays::poison_outputs() {
  recv_x.poison();
  recv_scales.poison();
  recv_count.poison();
  src_info.poison();
  layout_range.poison();
  combine_slots.poison();
  out.poison();
}

}  // namespace moe_ep::bench
