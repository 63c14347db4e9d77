// RankIo / IoSet (see rank_io.hpp): uploads into preallocated arrays, the round's calls,
// and the comparison of every output with the CPU reference.
#include "support/rank_io.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

namespace moe_ep::test {
namespace {

namespace ref = moe_ep::reference;

// Counts mismatching elements and reports the first few of each test context.
class Mismatches {
 public:
  explicit Mismatches(std::string context) : context_(std::move(context)) {}

  template <typename T, typename U>
  void equal(const std::string& what, const std::vector<T>& got, const std::vector<U>& want, std::size_t count) {
    if (got.size() < count || want.size() < count) {
      fail(what + " has " + std::to_string(got.size()) + " elements, the reference " + std::to_string(want.size()) +
           ", expected at least " + std::to_string(count));
      return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      if (!(got[i] == static_cast<T>(want[i]))) {
        fail(what + "[" + std::to_string(i) + "] = " + std::to_string(got[i]) + ", expected " +
             std::to_string(want[i]));
      }
    }
  }
  // Whole rows of bytes: one mismatch per bad row.
  void rows(const std::string& what, const void* got, const void* want, std::size_t num_rows, std::size_t row_bytes) {
    for (std::size_t i = 0; i < num_rows; ++i) {
      if (std::memcmp(static_cast<const std::uint8_t*>(got) + i * row_bytes,
                      static_cast<const std::uint8_t*>(want) + i * row_bytes, row_bytes) != 0) {
        fail(what + " row " + std::to_string(i) + " differs");
      }
    }
  }
  void close(const std::string& what, std::size_t i, double got, double want, double tolerance) {
    if (!(std::fabs(got - want) <= tolerance)) {
      fail(what + "[" + std::to_string(i) + "] = " + std::to_string(got) + ", expected " + std::to_string(want));
    }
  }
  void fail(const std::string& message) {
    if (++count_ <= 8) ADD_FAILURE() << context_ << ": " << message;
  }
  std::int64_t count() const { return count_; }

 private:
  std::string context_;
  std::int64_t count_ = 0;
};

// send_pos of one rank: the token's row among what it sends to each rank, -1 if not sent.
std::vector<int> expected_send_pos(const ref::Layout& layout, int num_tokens, int num_ranks) {
  std::vector<int> pos(static_cast<std::size_t>(num_tokens) * num_ranks, -1);
  for (int r = 0; r < num_ranks; ++r) {
    int sent = 0;
    for (int t = 0; t < num_tokens; ++t) {
      const std::size_t i = static_cast<std::size_t>(t) * num_ranks + r;
      if (layout.is_token_in_rank[i]) pos[i] = sent++;
    }
  }
  return pos;
}

void check_rank(const IoShape& s, int rank, int num_tokens, const RankOutputs& got, const Expected& want,
                Mismatches& check) {
  const std::string at = "rank " + std::to_string(rank) + " ";
  const ref::Layout& layout = want.layouts[rank];
  const ref::RankDispatchOutput& dispatched = want.dispatched[rank];
  const ref::RankCombineOutput& combined = want.combined[rank];
  const std::size_t n = static_cast<std::size_t>(num_tokens);
  const std::size_t R = static_cast<std::size_t>(s.num_ranks), k = static_cast<std::size_t>(s.num_topk);
  check.equal(at + "num_tokens_per_rank", got.num_tokens_per_rank, layout.num_tokens_per_rank, R);
  check.equal(at + "num_tokens_per_rdma_rank", got.num_tokens_per_rdma_rank, layout.num_tokens_per_rdma_rank,
              layout.num_tokens_per_rdma_rank.size());
  check.equal(at + "num_tokens_per_expert", got.num_tokens_per_expert, layout.num_tokens_per_expert,
              static_cast<std::size_t>(s.num_experts));
  check.equal(at + "is_token_in_rank", got.is_token_in_rank, layout.is_token_in_rank, n * R);
  check.equal(at + "send_pos", got.send_pos, expected_send_pos(layout, num_tokens, s.num_ranks), n * R);
  check.equal(at + "rank_prefix_matrix", got.rank_prefix_matrix, dispatched.rank_prefix_matrix, R * R);
  if (s.num_worst_tokens == 0) {
    if (got.counts.num_recv_tokens != dispatched.num_recv_tokens) {
      check.fail(at + "num_recv_tokens " + std::to_string(got.counts.num_recv_tokens) + ", expected " +
                 std::to_string(dispatched.num_recv_tokens));
    }
    check.equal(at + "num_recv_tokens_per_expert", got.counts.num_recv_tokens_per_expert,
                dispatched.num_recv_tokens_per_expert, dispatched.num_recv_tokens_per_expert.size());
  } else if (got.counts.num_recv_tokens != -1 || !got.counts.num_recv_tokens_per_expert.empty()) {
    check.fail(at + "counts are host-visible with num_worst_tokens");
  }
  const std::size_t nrecv = static_cast<std::size_t>(dispatched.num_recv_tokens);
  if (static_cast<std::int64_t>(nrecv) > s.recv_capacity()) {
    check.fail(at + "receives " + std::to_string(nrecv) + " rows, more than the test's capacity");
    return;
  }
  check.equal(at + "recv_src_idx", got.recv_src_idx, dispatched.recv_src_idx, nrecv);
  check.equal(at + "recv_topk_idx", got.recv_topk_idx, dispatched.recv_topk_idx, nrecv * k);
  check.equal(at + "recv_topk_weights", got.recv_topk_weights, dispatched.recv_topk_weights, nrecv * k);
  check.rows(at + "recv_x", got.recv_x.data(), dispatched.recv_x.data(), nrecv, static_cast<std::size_t>(s.row_bytes()));
  for (std::size_t i = 0; i < combined.combined_x.size(); ++i) {
    const double w = combined.combined_x[i];
    // Across nodes each node's partial sum is rounded to bf16 once more; the rows returned
    // here are the dispatched ones, all of one sign per element, so |partials| sum to |w|.
    const double rounding = (s.internode() ? 2.0 : 1.0) * std::fabs(w) / 256.0;
    check.close(at + "combined_x", i, ref::bf16_to_float(got.combined_x[i]), w, rounding + 1e-3);
  }
  for (std::size_t i = 0; i < combined.combined_topk_weights.size(); ++i) {
    const double w = combined.combined_topk_weights[i];
    check.close(at + "combined_topk_weights", i, got.combined_topk_weights[i], w, std::fabs(w) * 1e-6 + 1e-6);
  }
}

}  // namespace

bool bitwise_equal(const RankOutputs& a, const RankOutputs& b, std::string* first_difference) {
  bool same = true;
  same &= same_bytes("num_tokens_per_rank", a.num_tokens_per_rank, b.num_tokens_per_rank, first_difference);
  same &= same_bytes("num_tokens_per_expert", a.num_tokens_per_expert, b.num_tokens_per_expert, first_difference);
  same &= same_bytes("is_token_in_rank", a.is_token_in_rank, b.is_token_in_rank, first_difference);
  same &= same_bytes("rank_prefix_matrix", a.rank_prefix_matrix, b.rank_prefix_matrix, first_difference);
  same &= same_bytes("send_pos", a.send_pos, b.send_pos, first_difference);
  same &= same_bytes("recv_src_idx", a.recv_src_idx, b.recv_src_idx, first_difference);
  same &= same_bytes("recv_x", a.recv_x, b.recv_x, first_difference);
  same &= same_bytes("recv_topk_idx", a.recv_topk_idx, b.recv_topk_idx, first_difference);
  same &= same_bytes("recv_topk_weights", a.recv_topk_weights, b.recv_topk_weights, first_difference);
  same &= same_bytes("combined_x", a.combined_x, b.combined_x, first_difference);
  same &= same_bytes("combined_topk_weights", a.combined_topk_weights, b.combined_topk_weights, first_difference);
  same &= same_bytes("num_recv_tokens_per_expert", a.counts.num_recv_tokens_per_expert,
                     b.counts.num_recv_tokens_per_expert, first_difference);
  if (a.counts.num_recv_tokens != b.counts.num_recv_tokens || a.counts.num_recv_rows != b.counts.num_recv_rows) {
    same = false;
    if (first_difference != nullptr && first_difference->empty()) *first_difference = "host-visible counts differ";
  }
  return same;
}

RankIo::RankIo(const IoShape& s)
    : shape_(s),
      x_(static_cast<std::size_t>(s.max_tokens) * s.hidden),
      topk_idx_(static_cast<std::size_t>(s.max_tokens) * s.num_topk),
      topk_weights_(static_cast<std::size_t>(s.max_tokens) * s.num_topk),
      num_tokens_per_rank_(s.num_ranks),
      num_tokens_per_expert_(s.num_experts),
      is_token_in_rank_(static_cast<std::size_t>(s.max_tokens) * s.num_ranks),
      rank_prefix_matrix_(static_cast<std::size_t>(s.num_ranks) * s.num_ranks),
      send_pos_(static_cast<std::size_t>(s.max_tokens) * s.num_ranks),
      num_tokens_per_rdma_rank_(s.num_nodes()),
      rdma_send_pos_(static_cast<std::size_t>(s.max_tokens) * s.num_nodes()),
      forwarded_prefix_(s.num_nodes()),
      // A relayed token reaches at least one rank of the node: at most P x the received rows.
      forward_rows_(static_cast<std::size_t>(s.recv_capacity()) * s.per_node() * s.per_node()),
      recv_src_idx_(static_cast<std::size_t>(s.recv_capacity())),
      recv_x_(static_cast<std::size_t>(s.recv_capacity()) * s.hidden),
      recv_topk_idx_(static_cast<std::size_t>(s.recv_capacity()) * s.num_topk),
      recv_topk_weights_(static_cast<std::size_t>(s.recv_capacity()) * s.num_topk),
      combined_x_(static_cast<std::size_t>(s.max_tokens) * s.hidden),
      combined_topk_weights_(static_cast<std::size_t>(s.max_tokens) * s.num_topk) {}

void RankIo::set_inputs(const ref::RankDispatchInput& input) {
  if (input.num_tokens < 0 || input.num_tokens > shape_.max_tokens) {
    throw std::invalid_argument("test: " + std::to_string(input.num_tokens) + " tokens, arrays hold " +
                                std::to_string(shape_.max_tokens));
  }
  num_tokens_ = input.num_tokens;
  x_.upload_prefix(input.x.data(), input.x.size());
  topk_idx_.upload_prefix(input.topk_idx.data(), input.topk_idx.size() * sizeof(std::int64_t));
  topk_weights_.upload_prefix(input.topk_weights.data(), input.topk_weights.size() * sizeof(float));
  poison_outputs();
  prepare_handle();
}

void RankIo::overwrite_topk_idx(const std::vector<std::int64_t>& topk_idx) {
  topk_idx_.upload_prefix(topk_idx.data(), topk_idx.size() * sizeof(std::int64_t));
}

void RankIo::prepare_handle() {
  handle.rank_prefix_matrix = rank_prefix_matrix_.view(DType::kInt32, {shape_.num_ranks, shape_.num_ranks});
  handle.send_pos = send_pos_.view(DType::kInt32, {num_tokens_, shape_.num_ranks});
  if (!shape_.internode()) return;
  handle.rdma_send_pos = rdma_send_pos_.view(DType::kInt32, {num_tokens_, shape_.num_nodes()});
  handle.forwarded_prefix = forwarded_prefix_.view(DType::kInt32, {shape_.num_nodes()});
}

void RankIo::poison_outputs() {
  num_tokens_per_rank_.poison();
  num_tokens_per_expert_.poison();
  is_token_in_rank_.poison();
  rank_prefix_matrix_.poison();
  send_pos_.poison();
  num_tokens_per_rdma_rank_.poison();
  rdma_send_pos_.poison();
  forwarded_prefix_.poison();
  forward_rows_.poison();
  recv_src_idx_.poison();
  recv_x_.poison();
  recv_topk_idx_.poison();
  recv_topk_weights_.poison();
  poison_combine_outputs();
}

void RankIo::poison_combine_outputs() {
  combined_x_.poison();
  combined_topk_weights_.poison();
}

LayoutArgs RankIo::layout_args(cudaStream_t stream) const {
  LayoutArgs a;
  a.topk_idx = topk_idx_.view(DType::kInt64, {num_tokens_, shape_.num_topk});
  a.num_experts = shape_.num_experts;
  a.num_tokens_per_rank = num_tokens_per_rank_.view(DType::kInt32, {shape_.num_ranks});
  if (shape_.internode()) {
    a.num_tokens_per_rdma_rank = num_tokens_per_rdma_rank_.view(DType::kInt32, {shape_.num_nodes()});
  }
  a.num_tokens_per_expert = num_tokens_per_expert_.view(DType::kInt32, {shape_.num_experts});
  a.is_token_in_rank = is_token_in_rank_.view(DType::kBool, {num_tokens_, shape_.num_ranks});
  a.stream.compute_stream = stream;
  return a;
}

DispatchArgs RankIo::dispatch_args(cudaStream_t stream) const {
  DispatchArgs a;
  a.x = x_.view(DType::kBFloat16, {num_tokens_, shape_.hidden});
  a.topk_idx = topk_idx_.view(DType::kInt64, {num_tokens_, shape_.num_topk});
  a.topk_weights = topk_weights_.view(DType::kFloat32, {num_tokens_, shape_.num_topk});
  a.num_tokens_per_rank = num_tokens_per_rank_.view(DType::kInt32, {shape_.num_ranks});
  if (shape_.internode()) {
    a.num_tokens_per_rdma_rank = num_tokens_per_rdma_rank_.view(DType::kInt32, {shape_.num_nodes()});
  }
  a.num_tokens_per_expert = num_tokens_per_expert_.view(DType::kInt32, {shape_.num_experts});
  a.is_token_in_rank = is_token_in_rank_.view(DType::kBool, {num_tokens_, shape_.num_ranks});
  a.num_worst_tokens = shape_.num_worst_tokens;
  a.config.num_sms = shape_.num_sms;
  a.stream.compute_stream = stream;
  return a;
}

CombineArgs RankIo::combine_args(cudaStream_t stream) const {
  const std::int64_t rows = handle.num_recv_rows;
  CombineArgs a;
  a.x = recv_x_.view(DType::kBFloat16, {rows, shape_.hidden});
  a.topk_weights = recv_topk_weights_.view(DType::kFloat32, {rows, shape_.num_topk});
  a.combined_x = combined_x_.view(DType::kBFloat16, {num_tokens_, shape_.hidden});
  a.combined_topk_weights = combined_topk_weights_.view(DType::kFloat32, {num_tokens_, shape_.num_topk});
  a.config.num_sms = shape_.num_sms;
  a.stream.compute_stream = stream;
  return a;
}

void RankIo::layout(Buffer& buffer, cudaStream_t stream) { buffer.get_dispatch_layout(layout_args(stream)); }

void RankIo::dispatch(Buffer& buffer, cudaStream_t stream) {
  const DispatchArgs a = dispatch_args(stream);
  prepare_handle();
  counts = buffer.dispatch_notify(a, handle);
  if (shape_.internode()) {
    if (counts.num_forward_rows * shape_.per_node() > static_cast<std::int64_t>(forward_rows_.size())) {
      throw std::runtime_error("test: " + std::to_string(counts.num_forward_rows) + " relayed rows exceed the arrays");
    }
    handle.forward_rows = forward_rows_.view(DType::kInt32, {counts.num_forward_rows, shape_.per_node()});
  }
  const std::int64_t rows = counts.num_recv_rows;
  if (rows < 0 || rows > shape_.recv_capacity()) {
    throw std::runtime_error("test: dispatch receives " + std::to_string(rows) + " rows, the arrays hold " +
                             std::to_string(shape_.recv_capacity()));
  }
  handle.recv_src_idx = recv_src_idx_.view(DType::kInt32, {rows});
  DispatchOutputs out;
  out.recv_x = recv_x_.view(DType::kBFloat16, {rows, shape_.hidden});
  out.recv_topk_idx = recv_topk_idx_.view(DType::kInt64, {rows, shape_.num_topk});
  out.recv_topk_weights = recv_topk_weights_.view(DType::kFloat32, {rows, shape_.num_topk});
  buffer.dispatch_receive(a, handle, out);
}

void RankIo::combine(Buffer& buffer, cudaStream_t stream) { buffer.combine(combine_args(stream), handle); }

void RankIo::run_round(Buffer& buffer, cudaStream_t stream) {
  layout(buffer, stream);
  dispatch(buffer, stream);
  combine(buffer, stream);
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();
}

RankOutputs RankIo::download() const {
  RankOutputs o;
  o.num_tokens_per_rank = num_tokens_per_rank_.download();
  if (shape_.internode()) o.num_tokens_per_rdma_rank = num_tokens_per_rdma_rank_.download();
  o.num_tokens_per_expert = num_tokens_per_expert_.download();
  o.is_token_in_rank = is_token_in_rank_.download();
  o.rank_prefix_matrix = rank_prefix_matrix_.download();
  o.send_pos = send_pos_.download();
  o.recv_src_idx = recv_src_idx_.download();
  o.recv_x = recv_x_.download();
  o.recv_topk_idx = recv_topk_idx_.download();
  o.recv_topk_weights = recv_topk_weights_.download();
  o.combined_x = combined_x_.download();
  o.combined_topk_weights = combined_topk_weights_.download();
  o.counts = counts;
  return o;
}

std::vector<ref::RankDispatchInput> random_dispatch_inputs(const IoShape& s, const std::vector<int>& num_tokens,
                                                           std::uint64_t seed, double hole_fraction, Routing routing) {
  std::mt19937_64 rng(seed);
  std::vector<ref::RankDispatchInput> inputs(s.num_ranks);
  for (int r = 0; r < s.num_ranks; ++r) {
    ref::RankDispatchInput& in = inputs[r];
    in.num_tokens = num_tokens.at(r);
    in.topk_idx = random_topk_idx(rng, in.num_tokens, s.num_topk, s.num_experts, hole_fraction, routing, s.num_ranks);
    in.topk_weights = random_weights(rng, in.topk_idx.size());
    const auto bf16 = random_bf16(rng, static_cast<std::size_t>(in.num_tokens) * s.hidden);
    in.x.resize(bf16.size() * 2);
    if (!bf16.empty()) std::memcpy(in.x.data(), bf16.data(), in.x.size());
  }
  return inputs;
}

Expected expected_results(const IoShape& s, const std::vector<ref::RankDispatchInput>& inputs) {
  Expected e;
  std::vector<ref::RankCombineInput> returned(s.num_ranks);
  std::vector<int> home_tokens;
  for (const auto& in : inputs) {
    e.layouts.push_back(
        ref::get_dispatch_layout(in.topk_idx, in.num_tokens, s.num_topk, s.num_experts, s.num_ranks, s.per_node()));
    home_tokens.push_back(in.num_tokens);
  }
  const ref::DispatchSpec spec{s.num_ranks, s.num_experts, s.num_topk, s.row_bytes(), 0, 1};
  e.dispatched = ref::dispatch(spec, inputs);
  for (int r = 0; r < s.num_ranks; ++r) {
    const auto& d = e.dispatched[r];
    returned[r].x.resize(d.recv_x.size() / 2);
    if (!d.recv_x.empty()) std::memcpy(returned[r].x.data(), d.recv_x.data(), d.recv_x.size());
    returned[r].topk_weights = d.recv_topk_weights;
  }
  e.combined = ref::combine(s.hidden, s.num_topk, e.dispatched, home_tokens, returned);
  return e;
}

std::vector<int> tokens_everywhere(const IoShape& s, int num_tokens) { return std::vector<int>(s.num_ranks, num_tokens); }

IoSet::IoSet(const IoShape& s) : shape_(s) {
  ranks_.reserve(s.num_ranks);
  for (int r = 0; r < s.num_ranks; ++r) ranks_.emplace_back(s);
}

void IoSet::set_inputs(std::vector<ref::RankDispatchInput> inputs) {
  if (static_cast<int>(inputs.size()) != shape_.num_ranks) throw std::invalid_argument("test: one input per rank");
  expected_ = expected_results(shape_, inputs);
  inputs_ = std::move(inputs);
  for (int r = 0; r < shape_.num_ranks; ++r) ranks_[r].set_inputs(inputs_[r]);
}

void IoSet::set_random_inputs(const std::vector<int>& num_tokens, std::uint64_t seed, double hole_fraction,
                              Routing routing) {
  set_inputs(random_dispatch_inputs(shape_, num_tokens, seed, hole_fraction, routing));
}

void IoSet::poison_outputs() {
  for (auto& r : ranks_) r.poison_outputs();
}

void IoSet::poison_combine_outputs() {
  for (auto& r : ranks_) r.poison_combine_outputs();
}

std::int64_t IoSet::count_mismatches(const std::string& context) const {
  Mismatches check(context);
  for (int r = 0; r < shape_.num_ranks; ++r) {
    check_rank(shape_, r, ranks_[r].num_tokens(), ranks_[r].download(), expected_, check);
  }
  return check.count();
}

void run_round_on_all_ranks(Cluster& cluster, IoSet& io) {
  run_on_ranks(cluster.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    io.rank(r).run_round(*cluster.buffers[r], cluster.streams[r]);
  });
}

void reset_all_ranks(Cluster& cluster) {
  run_on_ranks(cluster.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    cluster.buffers[r]->reset();
  });
}

BufferOptions options_with_timeout_ms(std::uint64_t timeout_ms) {
  BufferOptions options;
  options.timeout_ns = timeout_ms * 1'000'000ull;
  return options;
}

std::unique_ptr<Cluster> make_cluster(const IoShape& shape, std::int64_t buffer_tokens, BufferOptions options) {
  std::int64_t num_rdma_bytes = 0;
  if (shape.internode()) {
    options.emulated_ranks_per_node = shape.per_node();
    num_rdma_bytes = Buffer::internode_size_hint(buffer_tokens, shape.hidden, shape.num_ranks, shape.per_node(),
                                                 shape.num_topk);
  }
  return std::make_unique<Cluster>(shape.num_ranks, Buffer::intranode_size_hint(buffer_tokens, shape.num_ranks),
                                   options, 0, num_rdma_bytes);
}

}  // namespace moe_ep::test
