// One rank of the process-group test (see process_group_child.hpp).
#include "support/process_group_child.hpp"

#include <cmath>
#include <cstdio>
#include <random>
#include <cstring>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/peer_mapping.hpp"
#include "reference/reference.hpp"
#include "support/device_array.hpp"
#include "support/file_allgather.hpp"
#include "support/random_inputs.hpp"

namespace moe_ep::test {
namespace {

// Dispatch (FP8 with scales and top-k) then combine of the received rows dequantized to
// BF16, over the process group, checked against the CPU reference. Every process draws
// every rank's inputs from the same seed, so each can compute its own expected results.
// ranks_per_node > 0: emulated nodes of that many ranks (the internode kernels, with the
// RDMA window mapped across processes and outputs staged for node peers).
std::int64_t run_process_group_exchange(const std::shared_ptr<Group>& group, int ranks_per_node) {
  namespace ref = moe_ep::reference;
  constexpr int kTokens = 200, kHidden = 1024, kTopk = 4, kExperts = 16, kScales = kHidden / 128;
  const int R = group->size(), me = group->rank();
  std::mt19937_64 rng(77);
  std::vector<ref::RankDispatchInput> inputs(R);
  for (auto& in : inputs) {
    in.num_tokens = kTokens;
    in.topk_idx = random_topk_idx(rng, kTokens, kTopk, kExperts, 0.1, Routing::kUniform, R);
    in.topk_weights = random_weights(rng, in.topk_idx.size());
    in.x = random_e4m3(rng, static_cast<std::size_t>(kTokens) * kHidden);
    in.x_scales = random_scales(rng, static_cast<std::size_t>(kTokens) * kScales);
  }
  const auto want = ref::dispatch({R, kExperts, kTopk, kHidden, kScales, 1}, inputs);
  const auto& mine = inputs[me];

  const bool internode = ranks_per_node > 0 && ranks_per_node < R;
  const int N = internode ? R / ranks_per_node : 1;
  BufferOptions options;
  options.emulated_ranks_per_node = ranks_per_node;
  const std::int64_t num_rdma_bytes =
      internode ? Buffer::internode_size_hint(kTokens, kHidden, R, ranks_per_node, kTopk) : 0;
  Buffer buffer(group, Buffer::intranode_size_hint(kTokens, R, kHidden * 2), num_rdma_bytes, options);
  cudaStream_t stream;
  MOE_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  DeviceArray<std::uint8_t> x(mine.x);
  DeviceArray<float> scales(mine.x_scales), weights(mine.topk_weights);
  DeviceArray<std::int64_t> topk(mine.topk_idx);
  DeviceArray<int> per_rank(R), per_expert(kExperts), prefix(R * R), send_pos(kTokens * R);
  DeviceArray<std::uint8_t> in_rank(kTokens * R);
  DeviceArray<int> per_node(N), rdma_send_pos(kTokens * N), forwarded_prefix(N);
  const TensorView per_node_view = internode ? per_node.view(DType::kInt32, {N}) : TensorView{};
  LayoutArgs layout{topk.view(DType::kInt64, {kTokens, kTopk}), kExperts, per_rank.view(DType::kInt32, {R}), per_node_view,
                    per_expert.view(DType::kInt32, {kExperts}), in_rank.view(DType::kBool, {kTokens, R}), {stream}};
  buffer.get_dispatch_layout(layout);
  DispatchArgs args;
  args.x = x.view(DType::kFloat8E4M3, {kTokens, kHidden});
  args.x_scales = scales.view(DType::kFloat32, {kTokens, kScales});
  args.topk_idx = layout.topk_idx;
  args.topk_weights = weights.view(DType::kFloat32, {kTokens, kTopk});
  args.num_tokens_per_rank = layout.num_tokens_per_rank;
  args.num_tokens_per_expert = layout.num_tokens_per_expert;
  args.is_token_in_rank = layout.is_token_in_rank;
  args.num_tokens_per_rdma_rank = per_node_view;
  args.config.num_sms = 4;
  args.stream.compute_stream = stream;
  DispatchHandle handle;
  handle.rank_prefix_matrix = prefix.view(DType::kInt32, {R, R});
  handle.send_pos = send_pos.view(DType::kInt32, {kTokens, R});
  if (internode) {
    handle.rdma_send_pos = rdma_send_pos.view(DType::kInt32, {kTokens, N});
    handle.forwarded_prefix = forwarded_prefix.view(DType::kInt32, {N});
  }
  const DispatchCounts counts = buffer.dispatch_notify(args, handle);
  DeviceArray<int> forward_rows(counts.num_forward_rows * ranks_per_node);
  if (internode) handle.forward_rows = forward_rows.view(DType::kInt32, {counts.num_forward_rows, ranks_per_node});
  const std::int64_t rows = counts.num_recv_rows;
  DeviceArray<std::uint8_t> recv_x(rows * kHidden);
  DeviceArray<float> recv_scales(rows * kScales), recv_weights(rows * kTopk);
  DeviceArray<std::int64_t> recv_topk(rows * kTopk);
  DeviceArray<int> src_idx(rows);
  handle.recv_src_idx = src_idx.view(DType::kInt32, {rows});
  DispatchOutputs out{recv_x.view(DType::kFloat8E4M3, {rows, kHidden}), recv_scales.view(DType::kFloat32, {rows, kScales}),
                      recv_topk.view(DType::kInt64, {rows, kTopk}), recv_weights.view(DType::kFloat32, {rows, kTopk})};
  buffer.dispatch_receive(args, handle, out);
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();

  std::int64_t bad = rows == want[me].num_recv_tokens ? 0 : 1;
  bad += recv_x.download() != want[me].recv_x;
  bad += recv_scales.download() != want[me].recv_x_scales;
  bad += recv_topk.download() != want[me].recv_topk_idx;
  bad += recv_weights.download() != want[me].recv_topk_weights;
  bad += src_idx.download() != want[me].recv_src_idx;
  if (bad != 0) return bad;

  // Combine the received rows (dequantized, scaled by 1 + rank) back to their homes.
  std::vector<ref::RankCombineInput> combine_inputs(R);
  for (int r = 0; r < R; ++r) {
    const auto& got = want[r];
    combine_inputs[r].topk_weights = got.recv_topk_weights;
    for (std::size_t i = 0; i < got.recv_x.size(); ++i) {
      const float scale = got.recv_x_scales[i / kHidden * kScales + (i % kHidden) / 128];
      combine_inputs[r].x.push_back(ref::float_to_bf16(ref::e4m3_to_float(got.recv_x[i]) * scale * (1.0f + r)));
    }
  }
  const auto sums = ref::combine(kHidden, kTopk, want, std::vector<int>(R, kTokens), combine_inputs);
  DeviceArray<std::uint16_t> combine_x(combine_inputs[me].x), combined(kTokens * kHidden);
  DeviceArray<float> combined_weights(kTokens * kTopk);
  CombineArgs c;
  c.x = combine_x.view(DType::kBFloat16, {rows, kHidden});
  c.topk_weights = out.recv_topk_weights;
  c.combined_x = combined.view(DType::kBFloat16, {kTokens, kHidden});
  c.combined_topk_weights = combined_weights.view(DType::kFloat32, {kTokens, kTopk});
  c.config.num_sms = 4;
  c.stream.compute_stream = stream;
  buffer.combine(c, handle);
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();
  const auto got = combined.download();
  // Every returned row of a token has the same sign per element (one row scaled by 1 + r),
  // so each node's bf16 partial adds at most |w| / 256 more across nodes.
  const double rounding = internode ? 2.0 / 256 : 1.0 / 256;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double w = sums[me].combined_x[i];
    bad += std::fabs(ref::bf16_to_float(got[i]) - w) > std::fabs(w) * rounding + 1e-3;
  }
  const auto got_weights = combined_weights.download();
  for (std::size_t i = 0; i < got_weights.size(); ++i) {
    bad += std::fabs(got_weights[i] - sums[me].combined_topk_weights[i]) > 1e-5;
  }
  MOE_EP_CUDA_CHECK(cudaStreamDestroy(stream));
  return bad;
}

}  // namespace

int run_process_group_child(int rank, int size, const std::string& dir) {
  try {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    auto group = make_process_group(rank, size, 0, FileAllgather(dir, rank, size));
    std::vector<std::uint64_t> seen(size);
    {
      runtime::PeerMapping mapping(*group, 4096);
      for (int q = 0; q < size; ++q) {
        const std::uint64_t value = 1000ull * (rank + 1) + q;  // slot `rank` of peer q
        MOE_EP_CUDA_CHECK(cudaMemcpy(mapping.bases()[q] + 8 * rank, &value, 8, cudaMemcpyHostToDevice));
      }
      MOE_EP_CUDA_CHECK(cudaDeviceSynchronize());
      group->barrier();  // every rank has written into every buffer
      MOE_EP_CUDA_CHECK(cudaMemcpy(seen.data(), mapping.local(), 8 * size, cudaMemcpyDeviceToHost));
      group->barrier();  // nobody unmaps while a peer still writes
    }
    for (int q = 0; q < size; ++q) {
      if (seen[q] != 1000ull * (q + 1) + rank) {
        std::fprintf(stderr, "rank %d: slot %d holds %llu\n", rank, q, static_cast<unsigned long long>(seen[q]));
        return 1;
      }
    }
    // One node, then every rank its own emulated node (2 processes: 2x1).
    for (const int ranks_per_node : {0, 1}) {
      const std::int64_t bad = run_process_group_exchange(group, ranks_per_node);
      if (bad != 0) {
        std::fprintf(stderr, "rank %d: %lld mismatching elements in dispatch/combine (ranks_per_node %d)\n", rank,
                     static_cast<long long>(bad), ranks_per_node);
        return 1;
      }
    }
    group->barrier();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 1;
  }
}

}  // namespace moe_ep::test
