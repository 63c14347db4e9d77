// Intranode dispatch + combine on N in-process ranks sharing one GPU, SMs split evenly.
// Per iteration all ranks launch after a host barrier; the time of an op is last end minus
// first start over ranks (CUDA events); median/p99 over iterations after warm-up, input
// sets rotated. After timing, every received row and every combined token of the last
// iteration is checked on the host, so a fast wrong kernel cannot report a number.
#include "intranode_bench.hpp"

#include <algorithm>
#include <barrier>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

#include "fast_random.hpp"
#include "moe_ep/buffer.hpp"
#include "rank_spans.hpp"
#include "reference/reference.hpp"
#include "runtime/cuda_check.hpp"
#include "support/device_array.hpp"
#include "support/random_inputs.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::bench {
namespace {

using test::DeviceArray;

constexpr int kHidden = 7168, kTopk = 8, kExperts = 256, kInputSets = 2, kWarmup = 5;

struct RankState {
  std::vector<std::vector<std::uint8_t>> host_x;  // per input set
  std::vector<DeviceArray<std::uint8_t>> x;
  std::vector<DeviceArray<float>> scales;
  std::vector<std::int64_t> host_topk;
  DeviceArray<std::int64_t> topk;
  DeviceArray<int> per_rank, per_expert, prefix, send_pos, src_idx;
  DeviceArray<int> per_node, rdma_send_pos, forwarded_prefix, forward_rows;  // emulated nodes
  DeviceArray<std::uint8_t> in_rank, recv_x;
  DeviceArray<float> recv_scales, weights, recv_weights;
  DeviceArray<std::int64_t> recv_topk;
  std::vector<std::uint16_t> host_combine_x;
  DeviceArray<std::uint16_t> combine_x, combined;
  DispatchHandle handle;
  std::int64_t num_recv = 0;
};

void check_results(const std::vector<RankState>& ranks, int row_bytes, int set) {
  const int R = static_cast<int>(ranks.size());
  std::vector<std::vector<int>> prefixes;
  for (const auto& rs : ranks) prefixes.push_back(rs.prefix.download());
  test::run_on_ranks(R, [&](int r) {
    const auto& me = ranks[r];
    const auto& prefix = prefixes[r];
    const auto src = me.src_idx.download();
    const auto recv = me.recv_x.download();
    std::int64_t row = 0;
    for (int s = 0; s < R; ++s) {
      const auto layout = reference::get_dispatch_layout(ranks[s].host_topk, static_cast<int>(ranks[s].host_x[0].size() / row_bytes),
                                                         kTopk, kExperts, R, R);
      const int n = static_cast<int>(layout.is_token_in_rank.size() / R);
      for (int t = 0; t < n; ++t) {
        if (!layout.is_token_in_rank[static_cast<std::size_t>(t) * R + r]) continue;
        if (src[row] != t || std::memcmp(&recv[row * row_bytes], &ranks[s].host_x[set][static_cast<std::size_t>(t) * row_bytes], row_bytes) != 0) {
          throw std::runtime_error("bench check: rank " + std::to_string(r) + " row " + std::to_string(row) + " wrong");
        }
        ++row;
      }
    }
    if (row != me.num_recv || prefix[(R - 1) * R + r] != row) throw std::runtime_error("bench check: row count");
    // Combine: each home token is the sum of its rows on every rank it went to (every
    // token, every 97th channel), within the rounding of per-node partial sums.
    const auto send_pos = me.send_pos.download();
    const auto got = me.combined.download();
    const auto in_rank = me.in_rank.download();
    const int n = static_cast<int>(in_rank.size() / R);
    for (int t = 0; t < n; ++t) {
      for (int c = 0; c < kHidden; c += 97) {
        double want = 0, sum_abs = 0;
        for (int q = 0; q < R; ++q) {
          if (!in_rank[static_cast<std::size_t>(t) * R + q]) continue;
          const std::int64_t rr = (r == 0 ? 0 : prefixes[q][(r - 1) * R + q]) + send_pos[static_cast<std::size_t>(t) * R + q];
          const double v = reference::bf16_to_float(ranks[q].host_combine_x[rr * kHidden + c]);
          want += v;
          sum_abs += std::fabs(v);
        }
        const double g = reference::bf16_to_float(got[static_cast<std::size_t>(t) * kHidden + c]);
        if (std::fabs(g - want) > sum_abs / 128 + 1e-2) {
          throw std::runtime_error("bench check: combined token " + std::to_string(t) + " rank " + std::to_string(r));
        }
      }
    }
  });
}

// "...-NxP" -> P (checked against num_ranks = N x P); otherwise every rank on one node.
int emulated_ranks_per_node(const std::string& problem, int num_ranks) {
  const std::size_t dash = problem.rfind('-'), x = problem.rfind('x');
  if (dash == std::string::npos || x == std::string::npos || x < dash) return num_ranks;
  const int nodes = std::stoi(problem.substr(dash + 1, x - dash - 1));
  const int per_node = std::stoi(problem.substr(x + 1));
  if (nodes * per_node != num_ranks) throw std::invalid_argument("bench: " + problem + " needs " + std::to_string(nodes * per_node) + " ranks");
  return per_node;
}

}  // namespace

void run_intranode_bench(Report& report, double copy_bandwidth, const std::string& problem, int R, int num_tokens,
                         int iterations) {
  // "-2x4": the ranks split into emulated nodes of 4 (the internode kernels, RDMA between
  // nodes emulated over the same memory).
  const bool fp8 = problem.rfind("ht-v3-bf16", 0) != 0;
  const int per_node = emulated_ranks_per_node(problem, R);
  const int N = R / per_node;
  const int row_bytes = fp8 ? kHidden : kHidden * 2;
  const int num_scales = kHidden / 128;
  int device_sms = 0;
  MOE_EP_CUDA_CHECK(cudaDeviceGetAttribute(&device_sms, cudaDevAttrMultiProcessorCount, 0));
  const int num_sms = device_sms / R;  // SMs split evenly
  BufferOptions options;
  std::int64_t num_rdma_bytes = 0;
  if (N > 1) {
    options.emulated_ranks_per_node = per_node;
    num_rdma_bytes = Buffer::internode_size_hint(num_tokens, kHidden, R, per_node, kTopk);
  }
  test::Cluster cluster(R, Buffer::intranode_size_hint(num_tokens, R), options, 0, num_rdma_bytes);
  std::vector<RankState> ranks(R);
  std::mt19937_64 rng(1234 + R);
  // Receive capacity: the largest count any rank receives (from the host layout).
  std::vector<int> recv_counts(R, 0);
  for (auto& rs : ranks) {
    rs.host_topk = test::random_topk_idx(rng, num_tokens, kTopk, kExperts, 0.0, test::Routing::kUniform, R);
    const auto layout = reference::get_dispatch_layout(rs.host_topk, num_tokens, kTopk, kExperts, R, R);
    for (int r = 0; r < R; ++r) recv_counts[r] += layout.num_tokens_per_rank[r];
  }
  const std::int64_t capacity = *std::max_element(recv_counts.begin(), recv_counts.end());
  for (auto& rs : ranks) {
    rs.topk = DeviceArray<std::int64_t>(rs.host_topk);
    rs.weights = DeviceArray<float>(test::random_weights(rng, rs.host_topk.size()));
    rs.recv_topk = DeviceArray<std::int64_t>(capacity * kTopk);
    rs.recv_weights = DeviceArray<float>(capacity * kTopk);
    for (int i = 0; i < kInputSets; ++i) {
      if (fp8) {
        rs.host_x.push_back(fast_e4m3(rng(), static_cast<std::size_t>(num_tokens) * row_bytes));
      } else {
        auto bf16 = fast_bf16(rng(), static_cast<std::size_t>(num_tokens) * kHidden);
        rs.host_x.emplace_back(bf16.size() * 2);
        std::memcpy(rs.host_x.back().data(), bf16.data(), rs.host_x.back().size());
      }
      rs.x.emplace_back(rs.host_x.back());
      rs.scales.emplace_back(test::random_scales(rng, static_cast<std::size_t>(num_tokens) * num_scales));
    }
    rs.per_rank = DeviceArray<int>(R);
    rs.per_expert = DeviceArray<int>(kExperts);
    rs.prefix = DeviceArray<int>(R * R);
    rs.send_pos = DeviceArray<int>(static_cast<std::size_t>(num_tokens) * R);
    rs.src_idx = DeviceArray<int>(capacity);
    rs.per_node = DeviceArray<int>(N);
    rs.rdma_send_pos = DeviceArray<int>(static_cast<std::size_t>(num_tokens) * N);
    rs.forwarded_prefix = DeviceArray<int>(N);
    rs.forward_rows = DeviceArray<int>(capacity * per_node * per_node);  // num_worst_tokens x P rows
    rs.in_rank = DeviceArray<std::uint8_t>(static_cast<std::size_t>(num_tokens) * R);
    rs.recv_x = DeviceArray<std::uint8_t>(capacity * row_bytes);
    rs.recv_scales = DeviceArray<float>(capacity * num_scales);
    rs.host_combine_x = fast_bf16(rng(), capacity * kHidden);
    rs.combine_x = DeviceArray<std::uint16_t>(rs.host_combine_x);
    rs.combined = DeviceArray<std::uint16_t>(static_cast<std::size_t>(num_tokens) * kHidden);
  }

  std::barrier sync_point(R);
  const int total = iterations + kWarmup;
  // Dispatch (host sync on counts), combine, dispatch without host sync (num_worst_tokens).
  RankSpans dispatch_spans(R, total), combine_spans(R, total), worst_spans(R, total);
  test::run_on_ranks(R, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    auto& rs = ranks[r];
    Buffer& buffer = *cluster.buffers[r];
    cudaStream_t stream = cluster.streams[r];
    LayoutArgs layout;
    layout.topk_idx = rs.topk.view(DType::kInt64, {num_tokens, kTopk});
    layout.num_experts = kExperts;
    layout.num_tokens_per_rank = rs.per_rank.view(DType::kInt32, {R});
    layout.num_tokens_per_expert = rs.per_expert.view(DType::kInt32, {kExperts});
    layout.is_token_in_rank = rs.in_rank.view(DType::kBool, {num_tokens, R});
    if (N > 1) layout.num_tokens_per_rdma_rank = rs.per_node.view(DType::kInt32, {N});
    layout.stream.compute_stream = stream;
    buffer.get_dispatch_layout(layout);
    rs.handle.rank_prefix_matrix = rs.prefix.view(DType::kInt32, {R, R});
    rs.handle.send_pos = rs.send_pos.view(DType::kInt32, {num_tokens, R});
    if (N > 1) {
      rs.handle.rdma_send_pos = rs.rdma_send_pos.view(DType::kInt32, {num_tokens, N});
      rs.handle.forwarded_prefix = rs.forwarded_prefix.view(DType::kInt32, {N});
    }
    // Views of the preallocated outputs (and the handle's source indices) for `rows` rows.
    auto outputs_for = [&](const DispatchCounts& counts) {
      const std::int64_t rows = counts.num_recv_rows;
      rs.handle.recv_src_idx = rs.src_idx.view(DType::kInt32, {rows});
      if (N > 1) rs.handle.forward_rows = rs.forward_rows.view(DType::kInt32, {counts.num_forward_rows, per_node});
      DispatchOutputs out;
      out.recv_x = rs.recv_x.view(fp8 ? DType::kFloat8E4M3 : DType::kBFloat16, {rows, kHidden});
      if (fp8) out.recv_x_scales = rs.recv_scales.view(DType::kFloat32, {rows, num_scales});
      out.recv_topk_idx = rs.recv_topk.view(DType::kInt64, {rows, kTopk});
      out.recv_topk_weights = rs.recv_weights.view(DType::kFloat32, {rows, kTopk});
      return out;
    };
    for (int it = 0; it < total; ++it) {
      const int set = it % kInputSets;
      DispatchArgs a;
      a.x = rs.x[set].view(fp8 ? DType::kFloat8E4M3 : DType::kBFloat16, {num_tokens, kHidden});
      if (fp8) a.x_scales = rs.scales[set].view(DType::kFloat32, {num_tokens, num_scales});
      a.topk_idx = rs.topk.view(DType::kInt64, {num_tokens, kTopk});
      a.topk_weights = rs.weights.view(DType::kFloat32, {num_tokens, kTopk});
      a.num_tokens_per_rank = layout.num_tokens_per_rank;
      a.num_tokens_per_expert = layout.num_tokens_per_expert;
      a.is_token_in_rank = layout.is_token_in_rank;
      a.config.num_sms = num_sms;
      a.stream.compute_stream = stream;
      sync_point.arrive_and_wait();
      dispatch_spans.start(r, it, stream);
      const DispatchCounts counts = buffer.dispatch_notify(a, rs.handle);
      rs.num_recv = counts.num_recv_tokens;
      buffer.dispatch_receive(a, rs.handle, outputs_for(counts));
      dispatch_spans.stop(r, it, stream);
      CombineArgs c;
      c.x = rs.combine_x.view(DType::kBFloat16, {counts.num_recv_rows, kHidden});
      c.combined_x = rs.combined.view(DType::kBFloat16, {num_tokens, kHidden});
      c.config.num_sms = num_sms;
      c.stream.compute_stream = stream;
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      sync_point.arrive_and_wait();
      combine_spans.start(r, it, stream);
      buffer.combine(c, rs.handle);
      combine_spans.stop(r, it, stream);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      buffer.check_error();
      // The same dispatch without the host sync on counts (num_worst_tokens): the
      // kernel-side time; rows past the received count stay untouched.
      a.num_worst_tokens = static_cast<int>(capacity);
      sync_point.arrive_and_wait();
      worst_spans.start(r, it, stream);
      const DispatchCounts worst = buffer.dispatch_notify(a, rs.handle);
      buffer.dispatch_receive(a, rs.handle, outputs_for(worst));
      worst_spans.stop(r, it, stream);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
      buffer.check_error();
    }
  });
  check_results(ranks, row_bytes, (total - 1) % kInputSets);

  double dispatch_bytes = 0, combine_bytes = 0, recv_rows = 0;
  const double row_with_scales = fp8 ? row_bytes + 4.0 * num_scales : row_bytes;
  for (const auto& rs : ranks) {
    dispatch_bytes += (num_tokens + static_cast<double>(rs.num_recv)) * row_with_scales;
    combine_bytes += (num_tokens + static_cast<double>(rs.num_recv)) * kHidden * 2.0;
    recv_rows += static_cast<double>(rs.num_recv);
  }
  recv_rows /= R;
  const char* names[] = {"dispatch", "combine", "dispatch"};
  const char* notes[] = {"API-level, host sync on counts", "checked", "num_worst_tokens: no host sync"};
  const RankSpans* spans[] = {&dispatch_spans, &combine_spans, &worst_spans};
  for (int op = 0; op < 3; ++op) {
    Row row;
    row.bench = names[op];
    row.problem = problem;
    row.num_ranks = R;
    row.num_sms = num_sms;
    row.time_us = spans[op]->stats(kWarmup);
    const bool is_dispatch = op != 1;
    const double logical = recv_rows * (is_dispatch ? row_with_scales : kHidden * 2.0);
    row.logical_gbps_per_rank = logical / (row.time_us.median * 1e-6) / 1e9;
    row.floor_us = (is_dispatch ? dispatch_bytes : combine_bytes) / copy_bandwidth * 1e6;
    row.efficiency = row.floor_us / row.time_us.median;
    row.note = notes[op];
    report.add(row);
  }
}

}  // namespace moe_ep::bench
