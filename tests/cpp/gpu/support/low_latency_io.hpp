// Device inputs and outputs of low-latency dispatch -> fake expert -> combine rounds on
// in-process ranks, and their comparison with the CPU reference, element by element.
// Every device array is allocated once, for the shape's max_tokens (T), before any
// collective; set_inputs() uploads into the same arrays (so captured CUDA graphs see
// fresh inputs) and poisons every output. The fake expert (ll_kernels.hpp) turns each
// valid dispatched row into row * (global expert + 1), and kHugeBf16 elsewhere, so the
// CPU reference predicts every combined value and a combine that reads an invalid row
// fails loudly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "reference/reference.hpp"
#include "support/device_array.hpp"
#include "support/ll_kernels.hpp"
#include "support/random_inputs.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::test {

// The dispatched payload: BF16, or FP8 with fp32 scales, power-of-two fp32 scales
// (round_scale), or packed UE8M0 scales (round_scale + use_ue8m0).
enum class ScaleMode { kBf16, kFp8, kFp8RoundScale, kFp8Ue8m0 };
const char* scale_mode_name(ScaleMode mode);

// What every rank of one round shares.
struct LlShape {
  int num_ranks = 2;
  int hidden = 2048;
  int num_experts = 16;
  int num_topk = 8;
  int max_tokens = 64;  // T = num_max_dispatch_tokens_per_rank
  ScaleMode mode = ScaleMode::kFp8;
  bool int32_topk = false;  // pass topk_idx as int32 (accepted like int64)

  int num_local_experts() const { return num_experts / num_ranks; }
  std::int64_t rows_per_expert() const { return static_cast<std::int64_t>(num_ranks) * max_tokens; }  // N
  bool fp8() const { return mode != ScaleMode::kBf16; }
  bool round_scale() const { return mode == ScaleMode::kFp8RoundScale || mode == ScaleMode::kFp8Ue8m0; }
  bool ue8m0() const { return mode == ScaleMode::kFp8Ue8m0; }
  int scale_columns() const { return ue8m0() ? (hidden / 128 + 3) / 4 : hidden / 128; }  // S
  std::size_t recv_x_bytes() const;       // [E, N, hidden] fp8 or bf16
  std::size_t recv_scales_bytes() const;  // [E, N, S] 4-byte elements (0 for bf16)
  LlPayload payload() const;
  reference::LowLatencySpec spec() const;
  std::string describe() const;
};

// Random routing of low-latency inputs.
struct LlRouting {
  double hole_fraction = 0.1;       // slots set to -1
  double duplicate_fraction = 0.05; // tokens whose last slot repeats their first valid expert
                                    // (when that expert still has room in its N rows)
  Routing routing = Routing::kUniform;
};

// Random inputs (bf16 rows never zero, weights in [0.05, 1)) of every rank.
std::vector<reference::RankLowLatencyInput> random_ll_inputs(const LlShape& shape, const std::vector<int>& num_tokens,
                                                             std::uint64_t seed, const LlRouting& routing = {});
// Throws std::invalid_argument when inputs do not fit the shape (tokens > T, an expert
// receiving more than N rows through duplicate slots, wrong sizes).
void check_ll_inputs_fit(const LlShape& shape, const std::vector<reference::RankLowLatencyInput>& inputs);
// The same token count on every rank.
std::vector<int> ll_tokens_everywhere(const LlShape& shape, int num_tokens);

// How one round calls the library.
struct LlCallOptions {
  bool dispatch_hook = false;       // return_recv_hook on dispatch
  bool combine_hook = false;        // return_recv_hook on combine
  bool async_finish = false;        // not combined with hooks (the contract leaves that open)
  bool use_logfmt = false;
  bool zero_copy = false;           // the fake expert writes into next_low_latency_combine_buffer()
  std::uint64_t unrelated_spin_ns = 20'000;  // unrelated kernel before each hook
};

// Everything one rank's round wrote, downloaded whole (padding rows included).
struct LlRankOutputs {
  std::vector<std::uint8_t> recv_x;       // raw bytes [E, N, hidden]
  std::vector<std::uint8_t> recv_scales;  // raw bytes [E, S, N] (column-major storage)
  std::vector<int> recv_count;            // [E]
  std::vector<int> src_info;              // [E, N]
  std::vector<std::int64_t> layout_range; // [E, R]
  std::vector<int> combine_slots;         // [T, k]
  bool absolute_slots = false;            // the handle's: combine_slots hold the owners' slots
  std::vector<std::uint16_t> out;         // [T, hidden]
  std::vector<int> unrelated;             // scratch of the unrelated kernel
  std::vector<int> stats_recv;            // [E] cumulative_local_expert_recv_stats (with stats)
  std::vector<std::int64_t> stats_wait;   // [R] dispatch_wait_recv_cost_stats (with stats)
};
// True when every array holds the same bytes.
bool bitwise_equal(const LlRankOutputs& a, const LlRankOutputs& b, std::string* first_difference);

// One rank's device arrays and its handle.
class LlRankIo {
 public:
  static constexpr int kUnrelatedCount = 4096;

  LlRankIo(const LlShape& shape, int rank, bool with_stats = false);

  // Uploads the rank's inputs (num_tokens <= T) and poisons every output. From a thread
  // with no collective in flight.
  void set_inputs(const reference::RankLowLatencyInput& input);
  // Replaces the uploaded top-k ids only (e.g. with ids outside [-1, num_experts)).
  void overwrite_topk_idx(const std::vector<std::int64_t>& topk_idx);
  void poison_outputs();
  void zero_stats();
  int num_tokens() const { return num_tokens_; }
  int rank() const { return rank_; }
  const LlShape& shape() const { return shape_; }

  // The arguments of this rank's calls (views of the rank's arrays).
  LowLatencyDispatchArgs dispatch_args(cudaStream_t stream, const LlCallOptions& options = {}) const;
  LowLatencyDispatchOutputs dispatch_outputs() const;
  LowLatencyCombineArgs combine_args(Buffer& buffer, cudaStream_t stream, const LlCallOptions& options = {}) const;
  TensorView combine_x_view() const;  // the caller-owned combine input [E, N, hidden] bf16

  // The calls, enqueued on `stream`; nothing synchronizes. dispatch() sets the handle's views.
  LowLatencyCall dispatch(Buffer& buffer, cudaStream_t stream, const LlCallOptions& options = {});
  // The fake expert, writing into `dest` (combine_x_view() or the zero-copy buffer).
  void expert_compute(cudaStream_t stream, const TensorView& dest) const;
  // expert_compute into the combine input the options call for.
  void expert_compute(Buffer& buffer, cudaStream_t stream, const LlCallOptions& options);
  LowLatencyCall combine(Buffer& buffer, cudaStream_t stream, const LlCallOptions& options = {});
  // Checks the call carries what was asked (a pending hook iff requested, an event iff
  // async; throws std::runtime_error otherwise), then: the unrelated kernel and the hook,
  // or the compute stream's wait for the event.
  void complete(const LowLatencyCall& call, bool hook_requested, cudaStream_t stream, const LlCallOptions& options);
  // dispatch, fake expert, combine (with hooks/async as asked): everything enqueued on
  // `stream`, nothing synchronized (capturable unless async_finish).
  void enqueue_round(Buffer& buffer, cudaStream_t stream, const LlCallOptions& options = {});
  // enqueue_round, then a stream sync, check_error(), and a check that the unrelated
  // kernel ran (with hooks).
  void run_round(Buffer& buffer, cudaStream_t stream, const LlCallOptions& options = {});
  // The second half of run_round: the stream sync and the checks.
  void finish_round(Buffer& buffer, cudaStream_t stream, const LlCallOptions& options = {});
  // The unrelated kernel's scratch holds its result (after a sync).
  bool unrelated_work_seen() const;

  LlRankOutputs download() const;
  bool with_stats() const { return with_stats_; }

  LowLatencyHandle handle;

 private:
  void set_handle_views();

  LlShape shape_;
  int rank_ = 0;
  bool with_stats_ = false;
  int num_tokens_ = 0;
  DeviceArray<std::uint16_t> x_;
  DeviceArray<std::int64_t> topk_idx_;
  DeviceArray<std::int32_t> topk_idx32_;
  DeviceArray<float> topk_weights_;
  DeviceArray<std::uint8_t> recv_x_;
  DeviceArray<std::uint8_t> recv_scales_;
  DeviceArray<int> recv_count_, src_info_, combine_slots_;
  DeviceArray<std::int64_t> layout_range_;
  DeviceArray<std::uint16_t> combine_x_, out_;
  DeviceArray<int> stats_recv_;
  DeviceArray<std::int64_t> stats_wait_;
  DeviceArray<int> unrelated_;
};

// What the CPU reference says every rank must hold after a round.
struct LlExpected {
  std::vector<bool> masked;                                 // [rank]
  std::vector<reference::RankLowLatencyOutput> dispatched;  // [owner rank]
  std::vector<std::vector<double>> combined;                // [home rank][T * hidden]
  std::vector<std::vector<float>> sum_abs;                  // [home][..]: sum_k |w_k x_k|
  std::vector<std::vector<float>> logfmt_bound;             // [home][..]: sum_k |w_k| (0.07|x_k| + gmax_k 2^-20)
  std::vector<std::vector<int>> combine_slots;              // [home rank][num_tokens * k]
  std::vector<std::vector<int>> combine_rows;               // the same as the owners' slots (absolute_slots)
};
// The reference results; with masked ranks: their tokens are never received and experts
// they own contribute nothing (their slots count as holes).
LlExpected expected_ll(const LlShape& shape, const std::vector<reference::RankLowLatencyInput>& inputs,
                       const std::vector<bool>& masked = {});

// What count_mismatches compares.
struct LlCheck {
  bool combine = true;             // combine_slots and out (else dispatch outputs only)
  bool logfmt = false;             // out within the LogFMT bound
  int stats_rounds = 0;            // > 0: cumulative stats hold this many dispatches
  std::vector<bool> skip_ranks;    // ranks not compared (those that skipped the round)
};

// Compares one rank's downloaded outputs with the expected results (what
// LlSet::count_mismatches does for each rank); records gtest failures for the first
// mismatches under `context` and returns how many elements differ.
std::int64_t compare_ll_rank(const LlShape& shape, int rank, int num_tokens, const LlRankOutputs& got,
                             const LlExpected& expected, const LlCheck& check, const std::string& context);

// One LlRankIo per rank, with the current inputs and their expected results.
class LlSet {
 public:
  explicit LlSet(const LlShape& shape, bool with_stats = false);
  const LlShape& shape() const { return shape_; }
  LlRankIo& rank(int r) { return ranks_[r]; }
  const LlRankIo& rank(int r) const { return ranks_[r]; }

  // Uploads `inputs` (one per rank), poisons the outputs and computes the expected
  // results. From the main thread, between collectives.
  void set_inputs(std::vector<reference::RankLowLatencyInput> inputs);
  void set_random_inputs(const std::vector<int>& num_tokens, std::uint64_t seed, const LlRouting& routing = {});
  void poison_outputs();
  void zero_stats();
  // Expected results as if `masked` ranks were masked (see expected_ll).
  void expect_masked(const std::vector<bool>& masked);
  const std::vector<reference::RankLowLatencyInput>& inputs() const { return inputs_; }
  const LlExpected& expected() const { return expected_; }

  // Downloads every compared rank's outputs and compares them with the expected results;
  // records gtest failures for the first mismatches, returns how many elements differ.
  std::int64_t count_mismatches(const std::string& context, const LlCheck& check = {}) const;
  // Bytes of rank r's outputs that are not poison (0: no kernel wrote them).
  std::int64_t count_unpoisoned(int r, bool dispatch_outputs = true, bool combine_outputs = true) const;

 private:
  LlShape shape_;
  std::vector<LlRankIo> ranks_;
  std::vector<reference::RankLowLatencyInput> inputs_;
  LlExpected expected_;
};

// Every rank runs LlRankIo::run_round on its own thread (all enqueue before any waits);
// throws if any rank failed.
void run_ll_round_on_all_ranks(Cluster& cluster, LlSet& set, const LlCallOptions& options = {});

// Options of a low-latency buffer with a device timeout.
BufferOptions ll_options(std::uint64_t timeout_ms, bool enable_shrink = false);
// num_rdma_bytes for calls of this shape: without staging the in-process minimum
// (protocol::ll_region_bytes), with it (zero_copy, LogFMT) Buffer::low_latency_size_hint.
std::int64_t ll_buffer_bytes(const LlShape& shape, bool staging);
// num_ranks in-process low-latency buffers on device 0 (no NVL bytes).
std::unique_ptr<Cluster> make_ll_cluster(int num_ranks, std::int64_t num_rdma_bytes, BufferOptions options);

}  // namespace moe_ep::test
