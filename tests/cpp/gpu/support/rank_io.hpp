// Device inputs and outputs of one layout -> dispatch -> combine round per rank, for the
// bad-input, stress, fault and graph tests. All device arrays are allocated once, for the
// largest shape, before any collective (an allocation during a collective can wait for the
// whole device); rounds take views of the rows they need. Combine returns every received
// row unchanged (x = recv_x), so the CPU reference predicts every output.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "reference/reference.hpp"
#include "support/device_array.hpp"
#include "support/random_inputs.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::test {

// What every rank of one test shares. The payload is bf16.
struct IoShape {
  int num_ranks = 2;
  int ranks_per_node = 0;     // < num_ranks: emulated nodes (internode kernels); 0: one node
  int hidden = 512;
  int num_experts = 16;
  int num_topk = 4;
  int max_tokens = 64;        // per rank: the device arrays hold this many tokens
  int num_worst_tokens = 0;   // > 0: fixed-size receive outputs, no host sync
  int num_sms = 4;

  int row_bytes() const { return hidden * 2; }
  int per_node() const { return ranks_per_node > 0 ? ranks_per_node : num_ranks; }
  int num_nodes() const { return num_ranks / per_node(); }
  bool internode() const { return per_node() < num_ranks; }
  // Rows of the receive arrays: num_worst_tokens, else every token of every rank.
  std::int64_t recv_capacity() const {
    return num_worst_tokens > 0 ? num_worst_tokens : static_cast<std::int64_t>(num_ranks) * max_tokens;
  }
};

// Everything one rank's round wrote, downloaded (whole arrays, padding included).
struct RankOutputs {
  std::vector<int> num_tokens_per_rank, num_tokens_per_expert, num_tokens_per_rdma_rank;
  std::vector<std::uint8_t> is_token_in_rank;
  std::vector<int> rank_prefix_matrix, send_pos, recv_src_idx;
  std::vector<std::uint16_t> recv_x;
  std::vector<std::int64_t> recv_topk_idx;
  std::vector<float> recv_topk_weights;
  std::vector<std::uint16_t> combined_x;
  std::vector<float> combined_topk_weights;
  DispatchCounts counts;
};
// True when every array holds the same bytes (and the counts are equal).
bool bitwise_equal(const RankOutputs& a, const RankOutputs& b, std::string* first_difference);

// One rank's device arrays and its dispatch handle.
class RankIo {
 public:
  explicit RankIo(const IoShape& shape);

  // Uploads x / topk_idx / topk_weights into the existing arrays (so captured graphs see
  // them) and poisons every output. From a thread with no collective in flight.
  void set_inputs(const reference::RankDispatchInput& input);
  void poison_outputs();
  void poison_combine_outputs();  // only what combine writes (the handle stays usable)
  // Replaces the uploaded top-k ids only (e.g. with ids the layout never saw).
  void overwrite_topk_idx(const std::vector<std::int64_t>& topk_idx);
  int num_tokens() const { return num_tokens_; }

  // The calls of a round, enqueued on `stream` from the rank's thread. dispatch() waits on
  // the host for the counts unless num_worst_tokens; nothing else synchronizes.
  LayoutArgs layout_args(cudaStream_t stream) const;
  DispatchArgs dispatch_args(cudaStream_t stream) const;
  CombineArgs combine_args(cudaStream_t stream) const;  // needs a dispatched handle
  void layout(Buffer& buffer, cudaStream_t stream);
  void dispatch(Buffer& buffer, cudaStream_t stream);
  void combine(Buffer& buffer, cudaStream_t stream);
  // layout + dispatch + combine, then a stream sync and check_error().
  void run_round(Buffer& buffer, cudaStream_t stream);

  RankOutputs download() const;

  DispatchHandle handle;  // rank_prefix_matrix and send_pos views set by set_inputs
  DispatchCounts counts;

 private:
  void prepare_handle();

  IoShape shape_;
  int num_tokens_ = 0;
  DeviceArray<std::uint16_t> x_;
  DeviceArray<std::int64_t> topk_idx_;
  DeviceArray<float> topk_weights_;
  DeviceArray<int> num_tokens_per_rank_, num_tokens_per_expert_;
  DeviceArray<std::uint8_t> is_token_in_rank_;
  DeviceArray<int> rank_prefix_matrix_, send_pos_;
  DeviceArray<int> num_tokens_per_rdma_rank_, rdma_send_pos_, forwarded_prefix_, forward_rows_;  // internode
  DeviceArray<int> recv_src_idx_;
  DeviceArray<std::uint16_t> recv_x_;
  DeviceArray<std::int64_t> recv_topk_idx_;
  DeviceArray<float> recv_topk_weights_;
  DeviceArray<std::uint16_t> combined_x_;
  DeviceArray<float> combined_topk_weights_;
};

// What the CPU reference says every rank must hold after a round.
struct Expected {
  std::vector<reference::Layout> layouts;
  std::vector<reference::RankDispatchOutput> dispatched;
  std::vector<reference::RankCombineOutput> combined;
};

// One RankIo per rank, with the current inputs and their expected results.
class IoSet {
 public:
  explicit IoSet(const IoShape& shape);
  const IoShape& shape() const { return shape_; }
  RankIo& rank(int r) { return ranks_[r]; }

  // Uploads `inputs` (one per rank, num_tokens <= max_tokens), poisons the outputs and
  // computes the expected results. From the main thread, between collectives.
  void set_inputs(std::vector<reference::RankDispatchInput> inputs);
  // Random bf16 rows and routing (abs(randn)+1 top-k, `hole_fraction` of slots -1).
  void set_random_inputs(const std::vector<int>& num_tokens, std::uint64_t seed, double hole_fraction = 0.1,
                         Routing routing = Routing::kUniform);
  void poison_outputs();
  void poison_combine_outputs();
  const std::vector<reference::RankDispatchInput>& inputs() const { return inputs_; }
  const Expected& expected() const { return expected_; }

  // Downloads every rank's outputs and compares them with the expected results; records
  // a gtest failure for the first mismatches and returns how many elements differ.
  std::int64_t count_mismatches(const std::string& context) const;

 private:
  IoShape shape_;
  std::vector<RankIo> ranks_;
  std::vector<reference::RankDispatchInput> inputs_;
  Expected expected_;
};

// Random inputs of every rank for `shape`.
std::vector<reference::RankDispatchInput> random_dispatch_inputs(const IoShape& shape,
                                                                 const std::vector<int>& num_tokens,
                                                                 std::uint64_t seed, double hole_fraction = 0.1,
                                                                 Routing routing = Routing::kUniform);
Expected expected_results(const IoShape& shape, const std::vector<reference::RankDispatchInput>& inputs);
// The same token count on every rank.
std::vector<int> tokens_everywhere(const IoShape& shape, int num_tokens);

// Every rank runs RankIo::run_round on its own thread; throws if any rank failed.
void run_round_on_all_ranks(Cluster& cluster, IoSet& io);
// Collective reset() on every rank.
void reset_all_ranks(Cluster& cluster);
// BufferOptions with a short device timeout, for tests that expect waits to expire.
BufferOptions options_with_timeout_ms(std::uint64_t timeout_ms);
// A cluster for `shape` (emulated nodes when shape.internode(), RDMA window sized for
// max_tokens) whose buffers hold buffer_tokens per rank.
std::unique_ptr<Cluster> make_cluster(const IoShape& shape, std::int64_t buffer_tokens, BufferOptions options);

}  // namespace moe_ep::test
