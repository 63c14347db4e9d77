// TEST_CASES.md bad inputs for the low-latency calls on in-process ranks of one GPU. Host
// checks raise InvalidArgument naming the argument and the value before any launch: every
// output is still poisoned afterwards and the buffer stays usable (an exact round
// follows). Device-detected errors (B1 expert ids, B7 ranks that disagree) are raised by
// check_error() after a sync (or by the next call) and need a collective reset().
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "protocol/ll_buffer_layout.hpp"
#include "runtime/cuda_check.hpp"
#include "support/device_array.hpp"
#include "support/expect_error.hpp"
#include "support/low_latency_io.hpp"

namespace moe_ep::test {
namespace {

namespace ref = moe_ep::reference;

constexpr int kRanks = 2;
constexpr int kTokens = 32;
constexpr std::uint64_t kTimeoutMs = 1000;

std::string str(std::int64_t v) { return std::to_string(v); }

LlShape small_shape() {
  LlShape s;
  s.num_ranks = kRanks;
  s.hidden = 512;
  s.num_experts = 16;
  s.num_topk = 4;
  s.max_tokens = kTokens;
  s.mode = ScaleMode::kFp8;
  return s;
}

// Views of any dtype/shape over one device allocation, handed out in order: the backing
// of malformed arguments (never read by a call that rejects them).
class Scratch {
 public:
  Scratch() : memory_(std::size_t{64} << 20) {}
  TensorView take(DType dtype, std::initializer_list<std::int64_t> shape) {
    const std::lock_guard<std::mutex> lock(mutex_);  // rank threads take views concurrently
    TensorView v = TensorView::contiguous(nullptr, dtype, shape);
    const std::size_t bytes = static_cast<std::size_t>(v.numel()) * dtype_bytes(dtype);
    if (used_ + bytes > memory_.size()) throw std::invalid_argument("test: scratch exhausted");
    v.data = memory_.get() + used_;
    used_ += (bytes + 255) / 256 * 256;
    return v;
  }
  void clear() { used_ = 0; }

 private:
  DeviceArray<std::uint8_t> memory_;
  std::mutex mutex_;
  std::size_t used_ = 0;
};

// Every argument of one dispatch call.
struct DispatchCall {
  LowLatencyDispatchArgs args;
  LowLatencyDispatchOutputs out;
  LowLatencyHandle handle;
};

class LowLatencyBadInput : public ::testing::Test {
 protected:
  LowLatencyBadInput()
      : shape_(small_shape()),
        cluster_(make_ll_cluster(kRanks, ll_buffer_bytes(shape_, /*staging=*/true), ll_options(kTimeoutMs))),
        io_(shape_) {
    io_.set_random_inputs(ll_tokens_everywhere(shape_, kTokens), 1);
  }

  Buffer& buffer(int r) { return *cluster_->buffers[r]; }
  cudaStream_t stream(int r) { return cluster_->streams[r]; }

  DispatchCall correct_dispatch(int r) {
    return {io_.rank(r).dispatch_args(stream(r)), io_.rank(r).dispatch_outputs(), io_.rank(r).handle};
  }

  // A whole dispatch call of any shape over scratch memory (outputs shaped for it).
  DispatchCall scratch_dispatch(int r, int max_tokens, int hidden, int num_topk, int num_experts, int num_tokens) {
    const std::int64_t E = num_experts / kRanks, N = static_cast<std::int64_t>(kRanks) * max_tokens,
                       S = hidden / 128;
    DispatchCall c;
    c.args = io_.rank(r).dispatch_args(stream(r));
    c.args.x = scratch_.take(DType::kBFloat16, {num_tokens, hidden});
    c.args.topk_idx = scratch_.take(DType::kInt64, {num_tokens, num_topk});
    c.args.num_max_dispatch_tokens_per_rank = max_tokens;
    c.args.num_experts = num_experts;
    c.out.recv_x = scratch_.take(DType::kFloat8E4M3, {E, N, hidden});
    c.out.recv_x_scales = scratch_.take(DType::kFloat32, {E, N, S});
    c.out.recv_x_scales.strides = {N * S, 1, N, 0};
    c.out.recv_count = scratch_.take(DType::kInt32, {E});
    c.handle.src_info = scratch_.take(DType::kInt32, {E, N});
    c.handle.layout_range = scratch_.take(DType::kInt64, {E, kRanks});
    c.handle.combine_slots = scratch_.take(DType::kInt32, {max_tokens, num_topk});
    return c;
  }

  // Every rank's dispatch, changed by `mutate`, must be rejected naming every needle, and
  // launch nothing.
  void expect_dispatch_rejected(const std::function<void(int, DispatchCall&)>& mutate,
                                const std::vector<std::string>& needles) {
    io_.poison_outputs();
    expect_rejected_on_every_rank<InvalidArgument>(
        *cluster_,
        [&](int r) {
          DispatchCall c = correct_dispatch(r);
          mutate(r, c);
          buffer(r).low_latency_dispatch(c.args, c.out, c.handle);
        },
        needles);
    expect_nothing_written(true);
    scratch_.clear();
  }

  // Every rank's combine (with the handle of an exact round), changed by `mutate`.
  void expect_combine_rejected(const std::function<void(int, LowLatencyCombineArgs&, LowLatencyHandle&)>& mutate,
                               const std::function<std::vector<std::string>(int)>& needles_of) {
    run_ll_round_on_all_ranks(*cluster_, io_);
    for (int r = 0; r < kRanks; ++r) io_.rank(r).poison_outputs();
    expect_rejected_on_every_rank<InvalidArgument>(
        *cluster_,
        [&](int r) {
          LowLatencyCombineArgs a = io_.rank(r).combine_args(buffer(r), stream(r));
          LowLatencyHandle h = io_.rank(r).handle;
          mutate(r, a, h);
          buffer(r).low_latency_combine(a, h);
        },
        needles_of);
    expect_nothing_written(false);
    scratch_.clear();
  }
  void expect_combine_rejected(const std::function<void(int, LowLatencyCombineArgs&, LowLatencyHandle&)>& mutate,
                               const std::vector<std::string>& needles) {
    expect_combine_rejected(mutate, [&](int) { return needles; });
  }

  // No kernel ran: every output of every rank is still poisoned (after a stream sync).
  void expect_nothing_written(bool dispatch_outputs) {
    for (int r = 0; r < kRanks; ++r) {
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      EXPECT_EQ(io_.count_unpoisoned(r, dispatch_outputs, true), 0) << "rank " << r << ": a rejected call wrote outputs";
    }
  }

  // The buffers still work: an exact round with fresh inputs.
  void expect_usable(std::uint64_t seed) {
    io_.set_random_inputs(ll_tokens_everywhere(shape_, kTokens), seed);
    run_ll_round_on_all_ranks(*cluster_, io_);
    EXPECT_EQ(io_.count_mismatches("round after the error"), 0);
  }

  // Every rank runs `call` (then syncs and raises its device error): every rank fails
  // within the bound, and one raises InvalidArgument holding every needle.
  void expect_every_rank_fails_one_naming(const std::vector<std::string>& needles,
                                          const std::function<void(int)>& call) {
    const auto start = std::chrono::steady_clock::now();
    const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      call(r);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      buffer(r).check_error();
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 3.0 * kTimeoutMs / 1000.0) << "a rank hung";
    bool named = false;
    for (int r = 0; r < kRanks; ++r) {
      EXPECT_TRUE(errors[r]) << "rank " << r << " did not fail";
      bool all = caught_as<InvalidArgument>(errors[r]).matched;
      for (const std::string& n : needles) all = all && message_of(errors[r]).find(n) != std::string::npos;
      named = named || all;
    }
    EXPECT_TRUE(named) << "no rank named it: " << message_of(errors[0]) << " | " << message_of(errors[1]);
  }

  void reset_all() {
    run_on_ranks(kRanks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      buffer(r).reset();
    });
  }

  LlShape shape_;
  std::unique_ptr<Cluster> cluster_;
  LlSet io_;
  Scratch scratch_;
};

// B1: an id >= num_experts or < -1 on rank 1 (token 5, slot 2): check_error() after the
// sync raises InvalidArgument on that rank naming token, slot, value and num_experts; its
// peer completes or learns that rank 1 failed; reset() makes the group usable again.
TEST_F(LowLatencyBadInput, B1BadExpertIdRaisedByCheckError) {
  constexpr int kBadRank = 1, kBadToken = 5, kBadSlot = 2;
  for (std::int64_t bad : {std::int64_t{16}, std::int64_t{-2}, std::int64_t{1} << 40}) {
    SCOPED_TRACE("bad id " + str(bad));
    auto ids = io_.inputs()[kBadRank].topk_idx;
    ids[kBadToken * shape_.num_topk + kBadSlot] = bad;
    io_.rank(kBadRank).overwrite_topk_idx(ids);
    const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      io_.rank(r).dispatch(buffer(r), stream(r));
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      buffer(r).check_error();
    });
    expect_error(caught_as<InvalidArgument>(errors[kBadRank]),
                 {"rank 1", "topk_idx[" + str(kBadToken) + "][" + str(kBadSlot) + "] = " + str(bad), "num_experts"},
                 "the rank with the bad id");
    if (errors[0]) {
      EXPECT_NE(message_of(errors[0]).find("peer rank 1"), std::string::npos) << message_of(errors[0]);
    }
    reset_all();
    expect_usable(100 + static_cast<std::uint64_t>(bad & 0xff));
  }
}

// B1: the recorded error is raised by the next call on the buffer (before it launches).
TEST_F(LowLatencyBadInput, B1BadExpertIdRaisedByTheNextCall) {
  auto ids = io_.inputs()[1].topk_idx;
  ids[3 * shape_.num_topk] = shape_.num_experts + 5;
  io_.rank(1).overwrite_topk_idx(ids);
  run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
    io_.rank(r).dispatch(buffer(r), stream(r));
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
  });
  io_.rank(1).poison_outputs();
  const CaughtError next = error_of<InvalidArgument>([&] { io_.rank(1).dispatch(buffer(1), stream(1)); });
  expect_error(next, {"rank 1", "topk_idx[3][0] = " + str(shape_.num_experts + 5)}, "the next call of rank 1");
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(1)));
  EXPECT_EQ(io_.count_unpoisoned(1), 0) << "the refused call wrote outputs";
  reset_all();
  expect_usable(2);
}

// B3: a token naming one expert in two slots is received twice (adjacent rows, slot
// order) and combined once per slot. Experts 0..7 live on rank 0, 8..15 on rank 1.
TEST_F(LowLatencyBadInput, B3DuplicateExpertIdsReceivedOncePerSlot) {
  std::mt19937_64 rng(4);
  auto input = [&](std::vector<std::int64_t> ids) {
    ref::RankLowLatencyInput in;
    in.num_tokens = static_cast<int>(ids.size()) / shape_.num_topk;
    in.topk_idx = std::move(ids);
    in.topk_weights = random_weights(rng, in.topk_idx.size());
    in.x = random_bf16(rng, static_cast<std::size_t>(in.num_tokens) * shape_.hidden);
    return in;
  };
  io_.set_inputs({input({5, 5, -1, -1, /**/ 12, 3, 12, 3}), input({12, 12, 12, 3})});
  run_ll_round_on_all_ranks(*cluster_, io_);
  EXPECT_EQ(io_.count_mismatches("B3"), 0);
  const LlRankOutputs rank0 = io_.rank(0).download(), rank1 = io_.rank(1).download();
  EXPECT_EQ(rank0.recv_count[5], 2);
  EXPECT_EQ(rank0.recv_count[3], 3);
  EXPECT_EQ(rank1.recv_count[4], 5);
  const std::int64_t N = shape_.rows_per_expert();
  EXPECT_EQ(std::vector<int>(rank1.src_info.begin() + 4 * N, rank1.src_info.begin() + 4 * N + 5),
            (std::vector<int>{1, 1, 0, 0, 0}));
}

// B4: topk_idx of another dtype (int32 and int64 are accepted); fp32 weights only.
TEST_F(LowLatencyBadInput, B4TopkDtypesRejected) {
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.args.topk_idx = scratch_.take(DType::kFloat32, {kTokens, 4}); },
      {"topk_idx:", "float32[32, 4]"});
  expect_combine_rejected(
      [&](int, LowLatencyCombineArgs& a, LowLatencyHandle&) {
        a.topk_weights = scratch_.take(DType::kBFloat16, {kTokens, 4});
      },
      {"topk_weights:", "bfloat16[32, 4]"});
  expect_usable(3);
}

// B5: x of another dtype, 3-D, not contiguous, rows != topk rows; outputs and combine
// tensors of the wrong shape: an error naming the tensor and what it got.
TEST_F(LowLatencyBadInput, B5MalformedTensorsRejected) {
  expect_dispatch_rejected([&](int, DispatchCall& c) { c.args.x = scratch_.take(DType::kFloat32, {kTokens, 512}); },
                           {"x:", "float32[32, 512]"});
  expect_dispatch_rejected([&](int, DispatchCall& c) { c.args.x = scratch_.take(DType::kFloat8E4M3, {kTokens, 512}); },
                           {"x:", "float8_e4m3fn[32, 512]"});
  expect_dispatch_rejected([&](int, DispatchCall& c) { c.args.x = scratch_.take(DType::kBFloat16, {2, 16, 512}); },
                           {"x:", "bfloat16[2, 16, 512]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) {
        c.args.x = scratch_.take(DType::kBFloat16, {kTokens, 1024});
        c.args.x.shape[1] = 512;  // every other half row: row stride 1024
      },
      {"x:", "bfloat16[32, 512] strides [1024, 1]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.args.topk_idx = scratch_.take(DType::kInt64, {kTokens - 1, 4}); },
      {"topk_idx:", "int64[31, 4]"});
  const std::int64_t E = shape_.num_local_experts(), N = shape_.rows_per_expert();
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.out.recv_x = scratch_.take(DType::kFloat8E4M3, {E, N, 1024}); },
      {"recv_x:", "float8_e4m3fn[" + str(E) + ", " + str(N) + ", 1024]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.out.recv_count = scratch_.take(DType::kInt32, {E + 1}); },
      {"recv_count:", "int32[" + str(E + 1) + "]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.handle.src_info = scratch_.take(DType::kInt32, {E, N - 1}); },
      {"src_info", "int32[" + str(E) + ", " + str(N - 1) + "]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.handle.combine_slots = scratch_.take(DType::kInt32, {kTokens, 5}); },
      {"combine_slots", "int32[32, 5]"});
  expect_combine_rejected(
      [&](int, LowLatencyCombineArgs& a, LowLatencyHandle&) {
        a.x = scratch_.take(DType::kBFloat16, {E, N, 640});
      },
      {"x:", "bfloat16[" + str(E) + ", " + str(N) + ", 640]"});
  expect_combine_rejected(
      [&](int, LowLatencyCombineArgs& a, LowLatencyHandle&) { a.out = scratch_.take(DType::kBFloat16, {kTokens - 1, 512}); },
      {"out:", "bfloat16[31, 512]"});
  expect_usable(4);
}

// B5: a row tensor one element past a 16-byte boundary (its rows move in 16-byte vectors;
// a misaligned access would end the CUDA context): refused, naming it.
TEST_F(LowLatencyBadInput, B5MisalignedRowsRejected) {
  // A view of `shape` that starts one element into scratch memory holding one row more.
  const auto one_element_in = [&](DType dtype, std::vector<std::int64_t> shape) {
    std::vector<std::int64_t> larger = shape;
    larger[0] += 1;
    TensorView t = larger.size() == 2 ? scratch_.take(dtype, {larger[0], larger[1]})
                                      : scratch_.take(dtype, {larger[0], larger[1], larger[2]});
    t.shape[0] = shape[0];
    t.data = static_cast<std::uint8_t*>(t.data) + dtype_bytes(dtype);
    return t;
  };
  const std::int64_t E = shape_.num_local_experts(), N = shape_.rows_per_expert(), H = shape_.hidden;
  expect_dispatch_rejected([&](int, DispatchCall& c) { c.args.x = one_element_in(DType::kBFloat16, {kTokens, H}); },
                           {"x: the data pointer", "is not 16-byte aligned"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.out.recv_x = one_element_in(DType::kFloat8E4M3, {E, N, H}); },
      {"recv_x: the data pointer", "is not 16-byte aligned"});
  expect_combine_rejected(
      [&](int, LowLatencyCombineArgs& a, LowLatencyHandle&) { a.x = one_element_in(DType::kBFloat16, {E, N, H}); },
      {"x: the data pointer", "is not 16-byte aligned"});
  expect_combine_rejected(
      [&](int, LowLatencyCombineArgs& a, LowLatencyHandle&) { a.out = one_element_in(DType::kBFloat16, {kTokens, H}); },
      {"out: the data pointer", "is not 16-byte aligned"});
  expect_usable(5);
}

// B6: more tokens than num_max_dispatch_tokens_per_rank; T outside [1, 1024]; a buffer
// too small for the call (names the bytes it has and needs).
TEST_F(LowLatencyBadInput, B6TokensAboveCapacityRejected) {
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) {
        c.args.x = scratch_.take(DType::kBFloat16, {kTokens + 1, 512});
        c.args.topk_idx = scratch_.take(DType::kInt64, {kTokens + 1, 4});
      },
      {"x has 33 tokens", "num_max_dispatch_tokens_per_rank=32"});
  for (int max_tokens : {0, kMaxLowLatencyTokens + 1}) {
    expect_dispatch_rejected(
        [&](int r, DispatchCall& c) {
          c = scratch_dispatch(r, std::max(1, max_tokens), 512, 4, 16, 1);
          c.args.num_max_dispatch_tokens_per_rank = max_tokens;
        },
        {"num_max_dispatch_tokens_per_rank=" + str(max_tokens), str(kMaxLowLatencyTokens)});
  }
  expect_usable(5);
}

TEST(LowLatencyBadInputBuffer, B6BufferTooSmallForTheCall) {
  constexpr std::int64_t kBytes = 1 << 16;
  const LlShape shape = small_shape();
  auto cluster = make_ll_cluster(kRanks, kBytes, ll_options(kTimeoutMs));
  LlSet io(shape);
  io.set_random_inputs(ll_tokens_everywhere(shape, kTokens), 6);
  const std::int64_t needed =
      2 * protocol::carve_ll_half(shape.max_tokens, shape.hidden, shape.num_topk, shape.num_experts, false).total_bytes;
  ASSERT_GT(needed, kBytes);
  std::vector<CaughtError> errors(kRanks);
  run_on_ranks(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    errors[r] = error_of<InvalidArgument>([&] { io.rank(r).dispatch(*cluster->buffers[r], cluster->streams[r]); });
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(errors[r], {str(kBytes), str(needed)}, "rank " + str(r));
    EXPECT_EQ(io.count_unpoisoned(r), 0);
  }
}

// B6 found on the device: every token names expert 0 in every top-k slot, so expert 0
// gets 2 x 32 x 4 = 256 rows for its 2 x 32 slots. Its owner (rank 0) raises
// InvalidArgument naming both numbers, on the direct path (no hook) and the pulled one
// (hook); reset() recovers.
TEST_F(LowLatencyBadInput, B6ExpertSlotsOverflowRaised) {
  for (bool hook : {false, true}) {
    SCOPED_TRACE(hook ? "pulled (receive hook)" : "direct");
    for (int r = 0; r < kRanks; ++r) {
      io_.rank(r).overwrite_topk_idx(std::vector<std::int64_t>(static_cast<std::size_t>(kTokens) * shape_.num_topk, 0));
    }
    const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      const LlCallOptions options{.dispatch_hook = hook};
      const LowLatencyCall call = io_.rank(r).dispatch(buffer(r), stream(r), options);
      io_.rank(r).complete(call, hook, stream(r), options);
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      buffer(r).check_error();
    });
    const std::string rows = str(kRanks * kTokens * shape_.num_topk), slots = str(kRanks * kTokens);
    expect_error(caught_as<InvalidArgument>(errors[0]),
                 {"rank 0", "a local expert receives " + rows + " rows but has only " + slots + " slots"},
                 "the owner of expert 0");
    reset_all();
  }
  expect_usable(11);
}

// B7 at construction: ranks that disagree on num_rdma_bytes fail on every rank, listing
// the values (never a hang).
TEST(LowLatencyBadInputConstruction, B7RanksDisagreeOnRdmaBytes) {
  const std::int64_t bytes[kRanks] = {std::int64_t{1} << 20, std::int64_t{2} << 20};
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer buffer(groups[r], 0, bytes[r], ll_options(kTimeoutMs));
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<InvalidArgument>(errors[r]),
                 {"disagree", "num_rdma_bytes=" + str(bytes[0]), "num_rdma_bytes=" + str(bytes[1])}, "rank " + str(r));
  }
}

// B7 at construction: ranks that disagree on enable_shrink (which picks the dispatch path)
// fail on every rank, listing both values.
TEST(LowLatencyBadInputConstruction, B7RanksDisagreeOnShrink) {
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer buffer(groups[r], 0, std::int64_t{1} << 20, ll_options(kTimeoutMs, /*enable_shrink=*/r == 1));
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<InvalidArgument>(errors[r]), {"disagree", "enable_shrink=0", "enable_shrink=1"},
                 "rank " + str(r));
  }
}

// B7 at call time: rank 1 calls with another hidden / T / top-k / num_experts / format.
// Every rank fails that dispatch (none hangs past the bound), at least one with an
// InvalidArgument naming the field and both values; reset() recovers.
TEST_F(LowLatencyBadInput, B7RanksDisagreeOnTheCallShape) {
  struct Case {
    const char* field;
    std::function<void(LlShape&)> change;
    std::vector<std::string> values;  // in the message besides the field
  };
  const std::vector<Case> cases = {
      {"hidden", [](LlShape& s) { s.hidden = 1024; }, {"512", "1024"}},
      {"num_max_dispatch_tokens_per_rank", [](LlShape& s) { s.max_tokens = 64; }, {"32", "64"}},
      {"top-k", [](LlShape& s) { s.num_topk = 8; }, {"4", "8"}},
      {"num_experts", [](LlShape& s) { s.num_experts = 32; }, {"16", "32"}},
      {"row format", [](LlShape& s) { s.mode = ScaleMode::kBf16; }, {}},
      {"use_ue8m0", [](LlShape& s) { s.mode = ScaleMode::kFp8Ue8m0; }, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    LlShape other = shape_;
    c.change(other);
    LlSet odd(other);
    odd.set_random_inputs(ll_tokens_everywhere(other, kTokens), 7, {.hole_fraction = 0.0});
    io_.set_random_inputs(ll_tokens_everywhere(shape_, kTokens), 7, {.hole_fraction = 0.0});
    std::vector<std::string> needles = {"ranks disagree", c.field};
    needles.insert(needles.end(), c.values.begin(), c.values.end());
    expect_every_rank_fails_one_naming(needles, [&](int r) {
      LlRankIo& io = r == 1 ? odd.rank(r) : io_.rank(r);
      io.dispatch(buffer(r), stream(r));
    });
    reset_all();
  }
  expect_usable(8);
}

// B7 for the dispatch path: rank 1 dispatches with a receive hook (pulled), the others
// without (written directly into the receivers on this GPU). Every rank fails within the
// bound, one naming the path; reset() recovers.
TEST_F(LowLatencyBadInput, B7RanksDisagreeOnTheReceiveHook) {
  io_.set_random_inputs(ll_tokens_everywhere(shape_, kTokens), 9, {.hole_fraction = 0.0});
  expect_every_rank_fails_one_naming({"ranks disagree", "dispatch path"}, [&](int r) {
    const LlCallOptions options{.dispatch_hook = r == 1};
    const LowLatencyCall call = io_.rank(r).dispatch(buffer(r), stream(r), options);
    io_.rank(r).complete(call, options.dispatch_hook, stream(r), options);
  });
  reset_all();
  expect_usable(10);
}

// B8: unsupported shapes: hidden not a multiple of 128, top-k above kMaxTopk, num_experts
// not divisible by the ranks or above kMaxExperts.
TEST_F(LowLatencyBadInput, B8UnsupportedShapesRejected) {
  expect_dispatch_rejected([&](int r, DispatchCall& c) { c = scratch_dispatch(r, kTokens, 200, 4, 16, kTokens); },
                           {"hidden=200", "128"});
  expect_dispatch_rejected(
      [&](int r, DispatchCall& c) { c = scratch_dispatch(r, kTokens, 512, kMaxTopk + 1, 16, kTokens); },
      {"top-k of 17", "[1, 16]"});
  expect_dispatch_rejected([&](int r, DispatchCall& c) { c.args.num_experts = 15; }, {"num_experts=15"});
  expect_dispatch_rejected([&](int r, DispatchCall& c) { c = scratch_dispatch(r, 2, 512, 4, kMaxExperts + 2, 1); },
                           {"num_experts=" + str(kMaxExperts + 2), str(kMaxExperts)});
  expect_usable(9);
}

// B9: scales: UE8M0 without round_scale; missing, row-major, wrong dtype or width;
// recv_x of the wrong dtype for the mode; scales given for BF16.
TEST_F(LowLatencyBadInput, B9ScalesAndPayloadDtypesRejected) {
  const std::int64_t E = shape_.num_local_experts(), N = shape_.rows_per_expert(), S = shape_.hidden / 128;
  const auto column_major = [&](DType dtype, std::int64_t columns) {
    TensorView v = scratch_.take(dtype, {E, N, columns});
    v.strides = {N * columns, 1, N, 0};
    return v;
  };
  expect_dispatch_rejected([&](int, DispatchCall& c) { c.args.use_ue8m0 = true; }, {"use_ue8m0", "round_scale"});
  expect_dispatch_rejected([&](int, DispatchCall& c) { c.out.recv_x_scales = {}; }, {"recv_x_scales"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.out.recv_x_scales = scratch_.take(DType::kFloat32, {E, N, S}); },
      {"recv_x_scales", "column-major"});
  expect_dispatch_rejected([&](int, DispatchCall& c) { c.out.recv_x_scales = column_major(DType::kFloat32, S + 1); },
                           {"recv_x_scales", "float32[" + str(E) + ", " + str(N) + ", " + str(S + 1) + "]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) {
        c.args.round_scale = true;
        c.args.use_ue8m0 = true;
        c.out.recv_x_scales = column_major(DType::kFloat32, (S + 3) / 4);
      },
      {"recv_x_scales", "float32[" + str(E) + ", " + str(N) + ", " + str((S + 3) / 4) + "]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) { c.out.recv_x = scratch_.take(DType::kBFloat16, {E, N, shape_.hidden}); },
      {"recv_x:", "bfloat16[" + str(E) + ", " + str(N) + ", " + str(shape_.hidden) + "]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) {
        c.args.use_fp8 = false;
        c.out.recv_x = scratch_.take(DType::kFloat8E4M3, {E, N, shape_.hidden});
        c.out.recv_x_scales = {};
      },
      {"recv_x:", "float8_e4m3fn[" + str(E) + ", " + str(N) + ", " + str(shape_.hidden) + "]"});
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) {
        c.args.use_fp8 = false;
        c.out.recv_x = scratch_.take(DType::kBFloat16, {E, N, shape_.hidden});
      },
      {"recv_x_scales", "BF16"});
  expect_usable(10);
}

// B10: combine with a handle of another buffer, or from before reset(); a zero_copy x
// that is not the buffer's view; calls on a buffer built without low_latency_mode.
TEST_F(LowLatencyBadInput, B10ForeignStaleOrMismatchedHandleRejected) {
  run_ll_round_on_all_ranks(*cluster_, io_);
  std::vector<LowLatencyHandle> handles;
  for (int r = 0; r < kRanks; ++r) handles.push_back(io_.rank(r).handle);
  expect_combine_rejected([&](int r, LowLatencyCombineArgs&, LowLatencyHandle& h) { h = handles[(r + 1) % kRanks]; },
                          [&](int r) {
                            return std::vector<std::string>{
                                "handle comes from buffer " + str(static_cast<std::int64_t>(buffer((r + 1) % kRanks).id())),
                                "not this buffer " + str(static_cast<std::int64_t>(buffer(r).id()))};
                          });
  expect_combine_rejected(
      [&](int, LowLatencyCombineArgs& a, LowLatencyHandle&) { a.zero_copy = true; },  // x is the caller's array
      {"zero_copy"});
  reset_all();
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_, [&](int r) { buffer(r).low_latency_combine(io_.rank(r).combine_args(buffer(r), stream(r)), handles[r]); },
      {"before a reset", "generation 0"});
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_, [&](int r) { buffer(r).next_low_latency_combine_buffer(handles[r]); }, {"reset"});
  expect_usable(11);
}

TEST(LowLatencyBadInputBuffer, B10CallsOnABufferWithoutLowLatencyMode) {
  const LlShape shape = small_shape();
  Cluster cluster(kRanks, Buffer::intranode_size_hint(64, kRanks));
  LlSet io(shape);
  io.set_random_inputs(ll_tokens_everywhere(shape, kTokens), 12);
  expect_rejected_on_every_rank<InvalidArgument>(
      cluster, [&](int r) { io.rank(r).dispatch(*cluster.buffers[r], cluster.streams[r]); }, {"low_latency_mode"});
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(io.count_unpoisoned(r), 0);
  // num_rdma_bytes without low_latency_mode is refused at construction.
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer buffer(groups[r], 0, std::int64_t{1} << 20, BufferOptions{});
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<InvalidArgument>(errors[r]), {"num_rdma_bytes", "low_latency_mode"}, "rank " + str(r));
  }
}

// Options that exclude each other: return_recv_hook with async_finish (dispatch and
// combine), use_logfmt with zero_copy.
TEST_F(LowLatencyBadInput, ExclusiveOptionsRejected) {
  expect_dispatch_rejected(
      [&](int, DispatchCall& c) {
        c.args.return_recv_hook = true;
        c.args.stream.async_finish = true;
      },
      {"return_recv_hook", "async_finish"});
  expect_combine_rejected(
      [&](int, LowLatencyCombineArgs& a, LowLatencyHandle&) {
        a.return_recv_hook = true;
        a.stream.async_finish = true;
      },
      {"return_recv_hook", "async_finish"});
  expect_combine_rejected(
      [&](int r, LowLatencyCombineArgs& a, LowLatencyHandle& h) {
        a.use_logfmt = true;
        a.zero_copy = true;
        a.x = buffer(r).next_low_latency_combine_buffer(h);
      },
      {"use_logfmt", "zero_copy"});
  expect_usable(13);
}

// Mask calls: a rank outside the group, a mask_status tensor of the wrong shape or dtype.
TEST_F(LowLatencyBadInput, MaskArgumentsRejected) {
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_, [&](int r) { buffer(r).low_latency_update_mask(kRanks, true, stream(r)); },
      {"low_latency_update_mask_buffer", "rank " + str(kRanks), "outside [0, " + str(kRanks) + ")"});
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_, [&](int r) { buffer(r).low_latency_update_mask(-1, true, stream(r)); }, {"rank -1", "outside"});
  const TensorView int64_status = scratch_.take(DType::kInt64, {kRanks});
  const TensorView long_status = scratch_.take(DType::kInt32, {kRanks + 1});
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_, [&](int r) { buffer(r).low_latency_query_mask(int64_status, stream(r)); },
      {"low_latency_query_mask_buffer", "mask_status", "int64[" + str(kRanks) + "]"});
  expect_rejected_on_every_rank<InvalidArgument>(
      *cluster_, [&](int r) { buffer(r).low_latency_query_mask(long_status, stream(r)); },
      {"mask_status", "int32[" + str(kRanks + 1) + "]"});
  scratch_.clear();
  expect_usable(15);
}

// A negative num_rdma_bytes: rejected on every rank before anything is allocated.
TEST(LowLatencyBadInputConstruction, NegativeRdmaBytesRejected) {
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer buffer(groups[r], 0, -1, ll_options(kTimeoutMs));
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<InvalidArgument>(errors[r]), {"num_rdma_bytes must be >= 0", "-1"}, "rank " + str(r));
  }
}

// B13: a low-latency region larger than the device: CudaError naming the bytes, on every
// rank (no hang), and the device stays usable.
TEST(LowLatencyBadInputConstruction, B13RegionLargerThanDeviceMemory) {
  constexpr std::int64_t kBytes = std::int64_t{1} << 50;
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer buffer(groups[r], 0, kBytes, ll_options(kTimeoutMs));
  });
  for (int r = 0; r < kRanks; ++r) expect_error(caught_as<CudaError>(errors[r]), {str(kBytes)}, "rank " + str(r));
  const LlShape shape = small_shape();
  auto cluster = make_ll_cluster(kRanks, ll_buffer_bytes(shape, false), ll_options(kTimeoutMs));
  LlSet io(shape);
  io.set_random_inputs(ll_tokens_everywhere(shape, kTokens), 14);
  run_ll_round_on_all_ranks(*cluster, io);
  EXPECT_EQ(io.count_mismatches("after the failed construction"), 0);
}

}  // namespace
}  // namespace moe_ep::test
