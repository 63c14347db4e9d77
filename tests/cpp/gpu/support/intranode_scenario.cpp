// The intranode end-to-end check (see intranode_scenario.hpp). Host inputs are made on the
// main thread; each rank's device work runs on its own thread; comparisons run on the
// main thread after every rank has synchronized.
#include "support/intranode_scenario.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "moe_ep/buffer.hpp"
#include "reference/reference.hpp"
#include "support/device_array.hpp"

namespace moe_ep::test {
namespace {

namespace ref = moe_ep::reference;

constexpr std::uint16_t kHugeBf16 = 0x7f00;  // rows combine must never read hold this

struct RankData {
  // inputs
  ref::RankDispatchInput host;
  DeviceArray<std::int64_t> topk_idx;
  DeviceArray<float> topk_weights;
  DeviceArray<std::uint8_t> x;
  DeviceArray<float> x_scales;
  // layout
  DeviceArray<int> num_tokens_per_rank, num_tokens_per_rdma_rank, num_tokens_per_expert;
  DeviceArray<std::uint8_t> is_token_in_rank;
  // handle + outputs
  DeviceArray<int> rank_prefix_matrix, send_pos, recv_src_idx;
  DeviceArray<int> rdma_send_pos, forwarded_prefix, forward_rows;  // internode
  DeviceArray<std::uint8_t> recv_x;
  DeviceArray<float> recv_x_scales, recv_topk_weights;
  DeviceArray<std::int64_t> recv_topk_idx;
  DispatchHandle handle;
  DispatchCounts counts;
  // combine
  ref::RankCombineInput combine_host;
  DeviceArray<std::uint16_t> combine_x, bias0, bias1, combined_x;
  DeviceArray<float> combine_weights, combined_weights;
};

struct Shape {
  int row_bytes;
  int num_scales;
};

Shape shape_of(const IntranodeScenario& s) {
  return {s.fp8 ? s.hidden : s.hidden * 2, s.fp8 ? s.hidden / 128 : 0};
}

TensorView scales_view(const IntranodeScenario& s, const DeviceArray<float>& scales, int num_tokens) {
  const int num_scales = s.hidden / 128;
  if (!s.column_major_scales) return scales.view(DType::kFloat32, {num_tokens, num_scales});
  TensorView v = scales.view(DType::kFloat32, {num_tokens, num_scales});
  v.strides = {1, num_tokens, 0, 0};  // stored [num_scales, num_tokens]
  return v;
}

// Host payload of one rank (row-major scales; the device copy may be column-major).
void make_inputs(const IntranodeScenario& s, std::mt19937_64& rng, int rank, RankData& d) {
  const int n = s.tokens_of(rank);
  const Shape shape = shape_of(s);
  d.host.num_tokens = n;
  d.host.topk_idx = random_topk_idx(rng, n, s.num_topk, s.num_experts, s.hole_fraction, s.routing, s.num_ranks);
  d.host.topk_weights = random_weights(rng, d.host.topk_idx.size());
  if (s.fp8) {
    d.host.x = random_e4m3(rng, static_cast<std::size_t>(n) * shape.row_bytes);
    d.host.x_scales = random_scales(rng, static_cast<std::size_t>(n) * shape.num_scales);
  } else {
    auto bf16 = random_bf16(rng, static_cast<std::size_t>(n) * s.hidden);
    d.host.x.resize(bf16.size() * 2);
    std::memcpy(d.host.x.data(), bf16.data(), d.host.x.size());
  }
}

void upload_payload(const IntranodeScenario& s, RankData& d) {
  d.x = DeviceArray<std::uint8_t>(d.host.x);
  if (!s.fp8) return;
  const int n = d.host.num_tokens, ns = s.hidden / 128;
  std::vector<float> stored = d.host.x_scales;
  if (s.column_major_scales) {
    for (int t = 0; t < n; ++t)
      for (int c = 0; c < ns; ++c) stored[static_cast<std::size_t>(c) * n + t] = d.host.x_scales[t * ns + c];
  }
  d.x_scales = DeviceArray<float>(stored);
}

DispatchArgs dispatch_args(const IntranodeScenario& s, RankData& d, cudaStream_t stream, bool cached) {
  const int n = d.host.num_tokens;
  DispatchArgs a;
  a.x = d.x.view(s.fp8 ? DType::kFloat8E4M3 : DType::kBFloat16, {n, s.hidden});
  if (s.fp8) a.x_scales = scales_view(s, d.x_scales, n);
  if (!cached) {
    if (s.pass_topk) {
      a.topk_idx = d.topk_idx.view(DType::kInt64, {n, s.num_topk});
      a.topk_weights = d.topk_weights.view(DType::kFloat32, {n, s.num_topk});
    }
    a.num_tokens_per_rank = d.num_tokens_per_rank.view(DType::kInt32, {s.num_ranks});
    a.num_tokens_per_expert = d.num_tokens_per_expert.view(DType::kInt32, {s.num_experts});
    a.is_token_in_rank = d.is_token_in_rank.view(DType::kBool, {n, s.num_ranks});
    if (s.internode()) a.num_tokens_per_rdma_rank = d.num_tokens_per_rdma_rank.view(DType::kInt32, {s.num_nodes()});
    a.expert_alignment = s.expert_alignment;
    a.num_worst_tokens = s.num_worst_tokens;
  }
  a.config.num_sms = s.num_sms;
  a.stream.compute_stream = stream;
  a.stream.async_finish = s.async_finish;
  return a;
}

// Every device array a rank touches during a collective is allocated (and poisoned)
// before the collective starts: an allocation that grows the memory pool can wait for the
// whole device, i.e. for peers that are waiting for this rank.
void allocate_dispatch_outputs(const IntranodeScenario& s, RankData& d, std::int64_t capacity_rows, bool cached) {
  const int n = d.host.num_tokens;
  const Shape shape = shape_of(s);
  if (!cached) {
    d.rank_prefix_matrix = DeviceArray<int>(static_cast<std::size_t>(s.num_ranks) * s.num_ranks);
    d.send_pos = DeviceArray<int>(static_cast<std::size_t>(n) * s.num_ranks);
    if (s.internode()) {
      d.rdma_send_pos = DeviceArray<int>(static_cast<std::size_t>(n) * s.num_nodes());
      d.forwarded_prefix = DeviceArray<int>(s.num_nodes());
      // A relayed token reaches at least one rank of the node: at most every received row.
      d.forward_rows = DeviceArray<int>(static_cast<std::size_t>(capacity_rows) * s.per_node() * s.per_node());
    }
    d.recv_src_idx = DeviceArray<int>(static_cast<std::size_t>(capacity_rows));
    d.recv_topk_idx = DeviceArray<std::int64_t>(static_cast<std::size_t>(capacity_rows) * s.num_topk);
    d.recv_topk_weights = DeviceArray<float>(static_cast<std::size_t>(capacity_rows) * s.num_topk);
  }
  d.recv_x = DeviceArray<std::uint8_t>(static_cast<std::size_t>(capacity_rows) * shape.row_bytes);
  d.recv_x_scales = DeviceArray<float>(static_cast<std::size_t>(capacity_rows) * std::max(1, shape.num_scales));
}

// Counting step, then views of the preallocated outputs sized by it, then the copy step.
void run_dispatch(const IntranodeScenario& s, Buffer& buffer, RankData& d, cudaStream_t stream, bool cached) {
  DispatchArgs a = dispatch_args(s, d, stream, cached);
  Event previous;
  if (s.previous_event) {
    previous = Event::record(stream);
    a.stream.previous_event = previous.get();
  }
  const int n = d.host.num_tokens;
  if (!cached) {
    d.handle.rank_prefix_matrix = d.rank_prefix_matrix.view(DType::kInt32, {s.num_ranks, s.num_ranks});
    d.handle.send_pos = d.send_pos.view(DType::kInt32, {n, s.num_ranks});
    if (s.internode()) {
      d.handle.rdma_send_pos = d.rdma_send_pos.view(DType::kInt32, {n, s.num_nodes()});
      d.handle.forwarded_prefix = d.forwarded_prefix.view(DType::kInt32, {s.num_nodes()});
    }
  }
  d.counts = buffer.dispatch_notify(a, d.handle, cached);
  if (s.internode() && !cached) {
    const std::int64_t relayed = d.counts.num_forward_rows;
    if (relayed * s.per_node() > static_cast<std::int64_t>(d.forward_rows.size())) {
      throw std::runtime_error("test: relayed rows " + std::to_string(relayed) + " exceed the preallocated capacity");
    }
    d.handle.forward_rows = d.forward_rows.view(DType::kInt32, {relayed, s.per_node()});
  }
  const std::int64_t rows = d.counts.num_recv_rows;
  if (rows * shape_of(s).row_bytes > static_cast<std::int64_t>(d.recv_x.size())) {
    throw std::runtime_error("test: receive rows " + std::to_string(rows) + " exceed the preallocated capacity");
  }
  DispatchOutputs out;
  out.recv_x = d.recv_x.view(a.x.dtype, {rows, s.hidden});
  if (s.fp8) out.recv_x_scales = d.recv_x_scales.view(DType::kFloat32, {rows, shape_of(s).num_scales});
  if (!cached) {
    d.handle.recv_src_idx = d.recv_src_idx.view(DType::kInt32, {rows});
    if (s.pass_topk) {
      out.recv_topk_idx = d.recv_topk_idx.view(DType::kInt64, {rows, s.num_topk});
      out.recv_topk_weights = d.recv_topk_weights.view(DType::kFloat32, {rows, s.num_topk});
    }
  }
  Event done = buffer.dispatch_receive(a, d.handle, out, cached);
  if (s.async_finish) done.stream_wait(stream);
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();
}

void allocate_layout(const IntranodeScenario& s, RankData& d) {
  const int n = d.host.num_tokens;
  d.topk_idx = DeviceArray<std::int64_t>(d.host.topk_idx);
  d.topk_weights = DeviceArray<float>(d.host.topk_weights);
  d.num_tokens_per_rank = DeviceArray<int>(s.num_ranks);
  if (s.internode()) d.num_tokens_per_rdma_rank = DeviceArray<int>(s.num_nodes());
  d.num_tokens_per_expert = DeviceArray<int>(s.num_experts);
  d.is_token_in_rank = DeviceArray<std::uint8_t>(static_cast<std::size_t>(n) * s.num_ranks);
}

void run_layout(const IntranodeScenario& s, Buffer& buffer, RankData& d, cudaStream_t stream) {
  const int n = d.host.num_tokens;
  LayoutArgs a;
  a.topk_idx = d.topk_idx.view(DType::kInt64, {n, s.num_topk});
  a.num_experts = s.num_experts;
  a.num_tokens_per_rank = d.num_tokens_per_rank.view(DType::kInt32, {s.num_ranks});
  if (s.internode()) a.num_tokens_per_rdma_rank = d.num_tokens_per_rdma_rank.view(DType::kInt32, {s.num_nodes()});
  a.num_tokens_per_expert = d.num_tokens_per_expert.view(DType::kInt32, {s.num_experts});
  a.is_token_in_rank = d.is_token_in_rank.view(DType::kBool, {n, s.num_ranks});
  a.stream.compute_stream = stream;
  buffer.get_dispatch_layout(a);
}

// Counts mismatches and reports the first few of each named array.
class Checker {
 public:
  explicit Checker(std::string context) : context_(std::move(context)) {}
  template <typename T, typename U>
  void equal(const std::string& what, const std::vector<T>& got, const std::vector<U>& want, std::size_t count) {
    if (got.size() < count || want.size() < count) {
      ADD_FAILURE() << context_ << ": " << what << " has " << got.size() << " elements, expected " << count;
      ++mismatches_;
      return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      if (!(got[i] == static_cast<T>(want[i]))) report(what, i, static_cast<double>(got[i]), static_cast<double>(want[i]));
    }
  }
  void close(const std::string& what, double got, double want, double tolerance, std::size_t i) {
    if (!(std::fabs(got - want) <= tolerance)) report(what, i, got, want);
  }
  std::int64_t mismatches() const { return mismatches_; }

 private:
  void report(const std::string& what, std::size_t i, double got, double want) {
    if (++mismatches_ <= 8) ADD_FAILURE() << context_ << ": " << what << "[" << i << "] = " << got << ", expected " << want;
  }
  std::string context_;
  std::int64_t mismatches_ = 0;
};

void check_dispatch(const IntranodeScenario& s, int rank, RankData& d, const ref::RankDispatchOutput& want,
                    const ref::Layout& layout, Checker& check, bool cached) {
  const Shape shape = shape_of(s);
  const std::size_t nrecv = want.num_recv_tokens;
  if (!cached) {
    check.equal("num_tokens_per_rank", d.num_tokens_per_rank.download(), layout.num_tokens_per_rank, s.num_ranks);
    if (s.internode()) {
      check.equal("num_tokens_per_rdma_rank", d.num_tokens_per_rdma_rank.download(), layout.num_tokens_per_rdma_rank,
                  s.num_nodes());
    }
    check.equal("num_tokens_per_expert", d.num_tokens_per_expert.download(), layout.num_tokens_per_expert,
                s.num_experts);
    check.equal("is_token_in_rank", d.is_token_in_rank.download(), layout.is_token_in_rank,
                layout.is_token_in_rank.size());
    check.equal("rank_prefix_matrix", d.rank_prefix_matrix.download(), want.rank_prefix_matrix,
                want.rank_prefix_matrix.size());
    if (s.num_worst_tokens == 0) {
      if (d.counts.num_recv_tokens != want.num_recv_tokens) {
        ADD_FAILURE() << "rank " << rank << ": num_recv_tokens " << d.counts.num_recv_tokens << " vs "
                      << want.num_recv_tokens;
      }
      check.equal("num_recv_tokens_per_expert", d.counts.num_recv_tokens_per_expert, want.num_recv_tokens_per_expert,
                  want.num_recv_tokens_per_expert.size());
    } else {
      EXPECT_EQ(d.counts.num_recv_tokens, -1);
      EXPECT_TRUE(d.counts.num_recv_tokens_per_expert.empty());
    }
    check.equal("recv_src_idx", d.recv_src_idx.download(), want.recv_src_idx, nrecv);
    if (s.pass_topk) {
      check.equal("recv_topk_idx", d.recv_topk_idx.download(), want.recv_topk_idx, nrecv * s.num_topk);
      check.equal("recv_topk_weights", d.recv_topk_weights.download(), want.recv_topk_weights, nrecv * s.num_topk);
    }
  }
  check.equal("recv_x", d.recv_x.download(), want.recv_x, nrecv * shape.row_bytes);
  if (s.fp8) check.equal("recv_x_scales", d.recv_x_scales.download(), want.recv_x_scales, nrecv * shape.num_scales);
}

// Expert-specific transform of the received rows: scale by 1 + (first local expert % 4),
// or by rank + 2 without a local expert in the row. Rows past the valid prefix get huge
// values so a combine that reads them fails loudly.
void make_combine_inputs(const IntranodeScenario& s, std::mt19937_64& rng, int rank, RankData& d,
                         const ref::RankDispatchOutput& got) {
  const std::int64_t rows = d.counts.num_recv_rows;
  const int nrecv = got.num_recv_tokens;
  const int ns = s.hidden / 128;
  std::vector<std::uint16_t> x(static_cast<std::size_t>(rows) * s.hidden, kHugeBf16);
  for (int i = 0; i < nrecv; ++i) {
    float factor = static_cast<float>(rank + 2);
    for (int k = 0; k < s.num_topk; ++k) {
      const std::int64_t e = got.recv_topk_idx[static_cast<std::size_t>(i) * s.num_topk + k];
      if (e >= 0) {
        factor = 1.0f + static_cast<float>(e % 4);
        break;
      }
    }
    for (int c = 0; c < s.hidden; ++c) {
      const std::size_t at = static_cast<std::size_t>(i) * s.hidden + c;
      float v;
      if (s.fp8) {
        v = ref::e4m3_to_float(got.recv_x[at]) * got.recv_x_scales[static_cast<std::size_t>(i) * ns + c / 128];
      } else {
        std::uint16_t bits;
        std::memcpy(&bits, &got.recv_x[at * 2], 2);
        v = ref::bf16_to_float(bits);
      }
      x[at] = ref::float_to_bf16(v * factor);
    }
  }
  d.combine_host.x.assign(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(nrecv) * s.hidden);
  d.combine_x = DeviceArray<std::uint16_t>(x);
  const int n = d.host.num_tokens;
  if (s.pass_topk) {
    d.combine_host.topk_weights = got.recv_topk_weights;
    std::vector<float> w(static_cast<std::size_t>(rows) * s.num_topk, 1e30f);
    std::copy(got.recv_topk_weights.begin(), got.recv_topk_weights.end(), w.begin());
    d.combine_weights = DeviceArray<float>(w);
    d.combined_weights = DeviceArray<float>(static_cast<std::size_t>(n) * s.num_topk);
  }
  if (s.num_biases >= 1) {
    d.combine_host.bias0 = random_bf16(rng, static_cast<std::size_t>(n) * s.hidden);
    d.bias0 = DeviceArray<std::uint16_t>(d.combine_host.bias0);
  }
  if (s.num_biases >= 2) {
    d.combine_host.bias1 = random_bf16(rng, static_cast<std::size_t>(n) * s.hidden);
    d.bias1 = DeviceArray<std::uint16_t>(d.combine_host.bias1);
  }
  d.combined_x = DeviceArray<std::uint16_t>(static_cast<std::size_t>(n) * s.hidden);
}

void run_combine(const IntranodeScenario& s, Buffer& buffer, RankData& d, cudaStream_t stream) {
  const int n = d.host.num_tokens;
  const std::int64_t rows = d.counts.num_recv_rows;
  CombineArgs a;
  a.x = d.combine_x.view(DType::kBFloat16, {rows, s.hidden});
  if (s.pass_topk) {
    a.topk_weights = d.combine_weights.view(DType::kFloat32, {rows, s.num_topk});
    a.combined_topk_weights = d.combined_weights.view(DType::kFloat32, {n, s.num_topk});
  }
  if (s.num_biases >= 1) a.bias0 = d.bias0.view(DType::kBFloat16, {n, s.hidden});
  if (s.num_biases >= 2) a.bias1 = d.bias1.view(DType::kBFloat16, {n, s.hidden});
  a.combined_x = d.combined_x.view(DType::kBFloat16, {n, s.hidden});
  a.config.num_sms = s.num_sms;
  a.stream.compute_stream = stream;
  a.stream.async_finish = s.async_finish;
  Event previous;
  if (s.previous_event) {
    previous = Event::record(stream);
    a.stream.previous_event = previous.get();
  }
  Event done = buffer.combine(a, d.handle);
  if (s.async_finish) done.stream_wait(stream);
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();
}

// Across nodes each forwarder rounds its node's partial sum to bf16 once: the tolerance
// grows by that rounding, at most |partial| / 256 <= (sum of |rows|) / 256 per element.
void check_combine(const IntranodeScenario& s, RankData& d, const ref::RankCombineOutput& want,
                   const ref::RankCombineOutput& sum_abs, Checker& check) {
  const auto got = d.combined_x.download();
  for (std::size_t i = 0; i < want.combined_x.size(); ++i) {
    const double w = want.combined_x[i];
    const double partials = s.internode() ? sum_abs.combined_x[i] / 256.0 : 0.0;
    check.close("combined_x", ref::bf16_to_float(got[i]), w, std::fabs(w) / 256.0 + partials + 1e-3, i);
  }
  if (!s.pass_topk) return;
  const auto weights = d.combined_weights.download();
  for (std::size_t i = 0; i < want.combined_topk_weights.size(); ++i) {
    const double w = want.combined_topk_weights[i];
    check.close("combined_topk_weights", weights[i], w, std::fabs(w) * 1e-6 + 1e-6, i);
  }
}

}  // namespace

std::string IntranodeScenario::name() const {
  std::ostringstream out;
  out << "ranks=" << num_ranks;
  if (internode()) out << " (" << num_nodes() << " emulated nodes)";
  out << " tokens=" << default_tokens << " hidden=" << hidden << " experts=" << num_experts
      << " topk=" << num_topk << (pass_topk ? "" : "(not passed)") << (fp8 ? " fp8" : " bf16")
      << (column_major_scales ? "(col-major scales)" : "") << " holes=" << hole_fraction
      << " align=" << expert_alignment << " worst=" << num_worst_tokens << " biases=" << num_biases
      << (async_finish ? " async" : "") << (previous_event ? " prev_event" : "") << " sms=" << num_sms
      << " seed=" << seed;
  return out.str();
}

std::int64_t run_intranode_scenario(Cluster& cluster, const IntranodeScenario& s) {
  const int R = s.num_ranks;
  std::mt19937_64 rng(s.seed);
  std::vector<RankData> data(R);
  std::int64_t capacity_rows = s.num_worst_tokens;
  for (int r = 0; r < R; ++r) {
    make_inputs(s, rng, r, data[r]);
    if (s.num_worst_tokens == 0) capacity_rows += s.tokens_of(r);
  }
  for (int r = 0; r < R; ++r) {
    upload_payload(s, data[r]);
    allocate_layout(s, data[r]);
    allocate_dispatch_outputs(s, data[r], capacity_rows, false);
  }
  run_on_ranks(R, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    run_layout(s, *cluster.buffers[r], data[r], cluster.streams[r]);
    run_dispatch(s, *cluster.buffers[r], data[r], cluster.streams[r], false);
  });

  ref::DispatchSpec spec{R, s.num_experts, s.num_topk, shape_of(s).row_bytes, shape_of(s).num_scales,
                         s.expert_alignment};
  std::vector<ref::RankDispatchInput> inputs;
  for (auto& d : data) inputs.push_back(d.host);
  const auto want = ref::dispatch(spec, inputs);
  Checker check(s.name());
  for (int r = 0; r < R; ++r) {
    const auto layout = ref::get_dispatch_layout(data[r].host.topk_idx, data[r].host.num_tokens, s.num_topk,
                                                 s.num_experts, R, s.per_node());
    check_dispatch(s, r, data[r], want[r], layout, check, false);
  }

  for (int r = 0; r < R; ++r) make_combine_inputs(s, rng, r, data[r], want[r]);
  run_on_ranks(R, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    run_combine(s, *cluster.buffers[r], data[r], cluster.streams[r]);
  });
  std::vector<ref::RankCombineInput> combine_inputs;
  std::vector<int> home_tokens;
  for (auto& d : data) {
    combine_inputs.push_back(d.combine_host);
    home_tokens.push_back(d.host.num_tokens);
  }
  const auto combined = ref::combine(s.hidden, s.pass_topk ? s.num_topk : 0, want, home_tokens, combine_inputs);
  for (auto& input : combine_inputs) {  // the sums of |row| bound the partial sums' rounding
    for (auto& v : input.x) v &= 0x7fff;
    input.bias0.clear();
    input.bias1.clear();
  }
  const auto sum_abs = ref::combine(s.hidden, 0, want, home_tokens, combine_inputs);
  for (int r = 0; r < R; ++r) check_combine(s, data[r], combined[r], sum_abs[r], check);

  if (s.cached_round) {
    // Fresh payloads, same routing: the handle's routing must be reused exactly.
    for (int r = 0; r < R; ++r) {
      auto topk = data[r].host.topk_idx;
      auto weights = data[r].host.topk_weights;
      make_inputs(s, rng, r, data[r]);
      data[r].host.topk_idx = topk;
      data[r].host.topk_weights = weights;
    }
    for (int r = 0; r < R; ++r) {
      upload_payload(s, data[r]);
      allocate_dispatch_outputs(s, data[r], capacity_rows, true);
    }
    run_on_ranks(R, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
      run_dispatch(s, *cluster.buffers[r], data[r], cluster.streams[r], true);
    });
    inputs.clear();
    for (auto& d : data) inputs.push_back(d.host);
    const auto want_cached = ref::dispatch(spec, inputs);
    for (int r = 0; r < R; ++r) {
      check_dispatch(s, r, data[r], want_cached[r], ref::Layout{}, check, true);
    }
  }
  return check.mismatches();
}

}  // namespace moe_ep::test
