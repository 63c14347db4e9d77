// The allocating convenience API (moe_ep/allocating.hpp): outputs from the stream-ordered
// allocator, results equal to the CPU reference (dispatch exact, combine within bf16).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "moe_ep/allocating.hpp"
#include "reference/reference.hpp"
#include "runtime/cuda_check.hpp"
#include "support/device_array.hpp"
#include "support/random_inputs.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::test {
namespace {

// The view's bytes as elements of T (T need not be the view's dtype).
template <typename T>
std::vector<T> download_view(const TensorView& v) {
  std::vector<T> host(static_cast<std::size_t>(v.numel()) * dtype_bytes(v.dtype) / sizeof(T));
  MOE_EP_CUDA_CHECK(cudaMemcpy(host.data(), v.data, host.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

TEST(AllocatingApi, DispatchAndCombineMatchTheReference) {
  constexpr int kRanks = 4, kTokens = 96, kHidden = 1024, kTopk = 4, kExperts = 32;
  Cluster cluster(kRanks, Buffer::intranode_size_hint(kTokens, kRanks));
  std::mt19937_64 rng(3);
  std::vector<reference::RankDispatchInput> inputs(kRanks);
  std::vector<DeviceArray<std::uint8_t>> x(kRanks);
  std::vector<DeviceArray<std::int64_t>> topk(kRanks);
  std::vector<DeviceArray<float>> weights(kRanks);
  std::vector<DeviceArray<int>> per_rank(kRanks), per_expert(kRanks);
  std::vector<DeviceArray<std::uint8_t>> in_rank(kRanks);
  for (int r = 0; r < kRanks; ++r) {
    auto& in = inputs[r];
    in.num_tokens = kTokens;
    in.topk_idx = random_topk_idx(rng, kTokens, kTopk, kExperts, 0.2, Routing::kUniform, kRanks);
    in.topk_weights = random_weights(rng, in.topk_idx.size());
    const auto bf16 = random_bf16(rng, static_cast<std::size_t>(kTokens) * kHidden);
    in.x.resize(bf16.size() * 2);
    std::memcpy(in.x.data(), bf16.data(), in.x.size());
    x[r] = DeviceArray<std::uint8_t>(in.x);
    topk[r] = DeviceArray<std::int64_t>(in.topk_idx);
    weights[r] = DeviceArray<float>(in.topk_weights);
    per_rank[r] = DeviceArray<int>(kRanks);
    per_expert[r] = DeviceArray<int>(kExperts);
    in_rank[r] = DeviceArray<std::uint8_t>(static_cast<std::size_t>(kTokens) * kRanks);
  }
  std::vector<DispatchResult> dispatched(kRanks);
  std::vector<CombineResult> combined(kRanks);
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer& buffer = *cluster.buffers[r];
    const cudaStream_t stream = cluster.streams[r];
    LayoutArgs layout{topk[r].view(DType::kInt64, {kTokens, kTopk}), kExperts,
                      per_rank[r].view(DType::kInt32, {kRanks}), {}, per_expert[r].view(DType::kInt32, {kExperts}),
                      in_rank[r].view(DType::kBool, {kTokens, kRanks}), {stream}};
    buffer.get_dispatch_layout(layout);
    DispatchArgs args;
    args.x = x[r].view(DType::kBFloat16, {kTokens, kHidden});
    args.topk_idx = layout.topk_idx;
    args.topk_weights = weights[r].view(DType::kFloat32, {kTokens, kTopk});
    args.num_tokens_per_rank = layout.num_tokens_per_rank;
    args.num_tokens_per_expert = layout.num_tokens_per_expert;
    args.is_token_in_rank = layout.is_token_in_rank;
    args.config.num_sms = 4;
    args.stream.compute_stream = stream;
    dispatched[r] = dispatch(buffer, args);
    // Identity experts: combine the received rows themselves.
    Config config;
    config.num_sms = 4;
    combined[r] = combine(buffer, dispatched[r].recv_x.view(), dispatched[r], dispatched[r].recv_topk_weights.view(), {},
                          {}, config, StreamOptions{stream});
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
    buffer.check_error();
  });
  const auto want = reference::dispatch({kRanks, kExperts, kTopk, kHidden * 2, 0, 1}, inputs);
  std::vector<reference::RankCombineInput> combine_inputs(kRanks);
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(download_view<std::uint8_t>(dispatched[r].recv_x.view()), want[r].recv_x) << "rank " << r;
    EXPECT_EQ(download_view<std::int64_t>(dispatched[r].recv_topk_idx.view()), want[r].recv_topk_idx);
    EXPECT_EQ(dispatched[r].num_recv_tokens_per_expert, want[r].num_recv_tokens_per_expert);
    combine_inputs[r].x.resize(want[r].recv_x.size() / 2);
    std::memcpy(combine_inputs[r].x.data(), want[r].recv_x.data(), want[r].recv_x.size());
    combine_inputs[r].topk_weights = want[r].recv_topk_weights;
  }
  const auto sums = reference::combine(kHidden, kTopk, want, std::vector<int>(kRanks, kTokens), combine_inputs);
  for (int r = 0; r < kRanks; ++r) {
    const auto got = download_view<std::uint16_t>(combined[r].combined_x.view());
    int bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const double w = sums[r].combined_x[i];
      bad += std::fabs(reference::bf16_to_float(got[i]) - w) > std::fabs(w) / 256 + 1e-3;
    }
    EXPECT_EQ(bad, 0) << "rank " << r;
  }
}

}  // namespace
}  // namespace moe_ep::test
