// TEST_CASES.md B1..B13 for intranode layout/dispatch/combine on in-process ranks of one
// GPU: each bad input raises the exact exception type with a message naming the argument
// and its value; host-side rejections leave the buffer usable (a correct round follows,
// checked against the CPU reference); device-detected ones need a collective reset().
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "runtime/cuda_check.hpp"
#include "support/device_array.hpp"
#include "support/expect_error.hpp"
#include "support/rank_io.hpp"

namespace moe_ep::test {
namespace {

namespace ref = moe_ep::reference;

constexpr int kTokens = 32;             // per rank in every round of this file
constexpr int kBufferTokens = 64;       // tokens the buffers are sized for
constexpr std::uint64_t kTimeoutMs = 1000;

IoShape small_shape() {
  IoShape s;
  s.num_ranks = 2;
  s.hidden = 512;
  s.num_experts = 16;
  s.num_topk = 4;
  s.max_tokens = kTokens;
  return s;
}

std::string str(std::int64_t v) { return std::to_string(v); }

// One rank's input with the given top-k ids ([num_tokens, num_topk]) and random payload.
ref::RankDispatchInput input_with_topk(const IoShape& s, std::vector<std::int64_t> topk_idx, std::mt19937_64& rng) {
  ref::RankDispatchInput in;
  in.num_tokens = static_cast<int>(topk_idx.size()) / s.num_topk;
  in.topk_idx = std::move(topk_idx);
  in.topk_weights = random_weights(rng, in.topk_idx.size());
  const auto x = random_bf16(rng, static_cast<std::size_t>(in.num_tokens) * s.hidden);
  in.x.resize(x.size() * 2);
  if (!x.empty()) std::memcpy(in.x.data(), x.data(), in.x.size());
  return in;
}

class BadInput : public ::testing::Test {
 protected:
  BadInput()
      : shape_(small_shape()),
        cluster_(shape_.num_ranks, Buffer::intranode_size_hint(kBufferTokens, shape_.num_ranks),
                 options_with_timeout_ms(kTimeoutMs)),
        io_(shape_),
        scratch_(1 << 20) {
    io_.set_random_inputs(tokens_everywhere(shape_, kTokens), 1);
  }

  Buffer& buffer(int r) { return *cluster_.buffers[r]; }
  cudaStream_t stream(int r) { return cluster_.streams[r]; }

  // A view of any dtype/shape over scratch memory: the backing of malformed arguments
  // (large enough that a call that wrongly accepts one still stays in bounds).
  TensorView scratch_view(DType dtype, std::initializer_list<std::int64_t> shape) const {
    TensorView v = scratch_.view(dtype, shape);
    if (v.numel() * static_cast<std::int64_t>(dtype_bytes(dtype)) > static_cast<std::int64_t>(scratch_.size())) {
      throw std::invalid_argument("test: scratch view larger than the scratch array");
    }
    return v;
  }

  // Every rank's dispatch_notify with its correct arguments changed by `mutate`.
  void expect_dispatch_rejected(const std::function<void(DispatchArgs&)>& mutate,
                                const std::vector<std::string>& needles) {
    expect_rejected_on_every_rank<InvalidArgument>(
        cluster_,
        [&](int r) {
          DispatchArgs args = io_.rank(r).dispatch_args(stream(r));
          mutate(args);
          buffer(r).dispatch_notify(args, io_.rank(r).handle);
        },
        needles);
  }

  // Every rank's combine (with the handle of the last round) with its arguments changed.
  void expect_combine_rejected(const std::function<void(CombineArgs&)>& mutate,
                               const std::function<std::vector<std::string>(int)>& needles_of) {
    expect_rejected_on_every_rank<InvalidArgument>(
        cluster_,
        [&](int r) {
          CombineArgs args = io_.rank(r).combine_args(stream(r));
          mutate(args);
          buffer(r).combine(args, io_.rank(r).handle);
        },
        needles_of);
  }

  // The buffers still work: a correct round with fresh inputs matches the reference.
  void expect_usable(std::uint64_t seed) {
    io_.set_random_inputs(tokens_everywhere(shape_, kTokens), seed);
    run_round_on_all_ranks(cluster_, io_);
    EXPECT_EQ(io_.count_mismatches("round after the error"), 0);
  }

  IoShape shape_;
  Cluster cluster_;
  IoSet io_;
  DeviceArray<std::uint8_t> scratch_;
};

// B1: an id >= num_experts or < -1 reaches dispatch (the layout came from valid ids): the
// counting kernel of that rank reports token, slot and value; its peer learns that the
// rank failed (Timeout naming it); reset() on all ranks makes the group usable again.
TEST_F(BadInput, B1BadExpertIdRejectedByDispatch) {
  constexpr int kBadRank = 1, kBadToken = 5, kBadSlot = 2;
  for (std::int64_t bad : {std::int64_t{16}, std::int64_t{-2}, std::int64_t{1} << 40}) {
    SCOPED_TRACE("bad id " + str(bad));
    run_on_ranks(shape_.num_ranks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      io_.rank(r).layout(buffer(r), stream(r));
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      buffer(r).check_error();
    });
    auto topk = io_.inputs()[kBadRank].topk_idx;
    topk[kBadToken * shape_.num_topk + kBadSlot] = bad;
    io_.rank(kBadRank).overwrite_topk_idx(topk);

    const auto errors = run_on_ranks_collect(shape_.num_ranks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
      io_.rank(r).dispatch(buffer(r), stream(r));
    });
    expect_error(caught_as<InvalidArgument>(errors[kBadRank]),
                 {"rank " + str(kBadRank), "dispatch.notify", "topk_idx[" + str(kBadToken) + "][" + str(kBadSlot) + "] = " + str(bad),
                  "num_experts"},
                 "bad rank");
    expect_error(caught_as<Timeout>(errors[0]), {"rank 0", "peer rank " + str(kBadRank), "failed"}, "peer of the bad rank");
    reset_all_ranks(cluster_);
    expect_usable(100 + static_cast<std::uint64_t>(bad & 0xff));
  }
}

// B1 for get_dispatch_layout (local, no peers): the id is reported through the error
// record; check_error() raises it on that rank only.
TEST_F(BadInput, B1BadExpertIdReportedByLayout) {
  auto topk = io_.inputs()[1].topk_idx;
  topk[7 * shape_.num_topk + 3] = shape_.num_experts;
  io_.rank(1).overwrite_topk_idx(topk);
  const auto errors = run_on_ranks_collect(shape_.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
    io_.rank(r).layout(buffer(r), stream(r));
    MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
    buffer(r).check_error();
  });
  expect_error(caught_as<InvalidArgument>(errors[1]), {"rank 1", "get_dispatch_layout", "topk_idx[7][3] = 16"},
               "rank with the bad id");
  expect_no_error(errors[0], "rank 0 (valid ids)");
  reset_all_ranks(cluster_);
  expect_usable(2);
}

// B2: rows of all -1, ranks without tokens, and every rank without tokens are valid:
// empty outputs where nothing arrives, exact results elsewhere.
TEST_F(BadInput, B2EmptyRowsAndRanksWithoutTokens) {
  struct Case {
    std::vector<int> num_tokens;
    double hole_fraction;
  };
  for (const Case& c : {Case{{0, 0}, 0.1}, Case{{kTokens, 0}, 1.0}, Case{{0, kTokens}, 0.1}, Case{{kTokens, 3}, 1.0}}) {
    SCOPED_TRACE(::testing::Message() << "tokens " << c.num_tokens[0] << "," << c.num_tokens[1] << " holes "
                                      << c.hole_fraction);
    io_.set_random_inputs(c.num_tokens, 3, c.hole_fraction);
    run_round_on_all_ranks(cluster_, io_);
    EXPECT_EQ(io_.count_mismatches("B2"), 0);
  }
}

// B3: duplicate expert ids in one token's top-k are valid. The rule (the reference's):
// num_tokens_per_expert and num_recv_tokens_per_expert count once per slot, the token is
// sent once per rank, and recv_topk_idx keeps every slot.
TEST_F(BadInput, B3DuplicateExpertIdsCountOncePerSlotAndSendOncePerRank) {
  std::mt19937_64 rng(4);
  // Experts 0..7 live on rank 0, 8..15 on rank 1.
  io_.set_inputs({input_with_topk(shape_, {5, 5, -1, -1, /**/ 12, 3, 12, 3}, rng),
                  input_with_topk(shape_, {12, 12, 12, 3}, rng)});
  run_round_on_all_ranks(cluster_, io_);
  EXPECT_EQ(io_.count_mismatches("B3 crafted"), 0);
  const RankOutputs rank0 = io_.rank(0).download(), rank1 = io_.rank(1).download();
  EXPECT_EQ(rank0.num_tokens_per_expert[12], 2) << "token 1 names expert 12 in two slots";
  EXPECT_EQ(rank0.num_tokens_per_rank[1], 1) << "token 1 goes to rank 1 once";
  EXPECT_EQ(rank0.counts.num_recv_tokens, 3);
  EXPECT_EQ(rank0.counts.num_recv_tokens_per_expert[3], 3);
  EXPECT_EQ(rank0.counts.num_recv_tokens_per_expert[5], 2);
  EXPECT_EQ(rank1.counts.num_recv_tokens, 2);
  EXPECT_EQ(rank1.counts.num_recv_tokens_per_expert[4], 5);
  EXPECT_EQ(std::vector<int>(rank1.recv_src_idx.begin(), rank1.recv_src_idx.begin() + 2), (std::vector<int>{1, 0}));
  EXPECT_EQ(std::vector<std::int64_t>(rank1.recv_topk_idx.begin(), rank1.recv_topk_idx.begin() + 4),
            (std::vector<std::int64_t>{4, -1, 4, -1}));

  // Random routing with slot 1 repeating slot 0 in every other token.
  auto inputs = random_dispatch_inputs(shape_, tokens_everywhere(shape_, kTokens), 5);
  for (auto& in : inputs) {
    for (int t = 0; t < in.num_tokens; t += 2) {
      in.topk_idx[t * shape_.num_topk + 1] = in.topk_idx[t * shape_.num_topk];
    }
  }
  io_.set_inputs(inputs);
  run_round_on_all_ranks(cluster_, io_);
  EXPECT_EQ(io_.count_mismatches("B3 random duplicates"), 0);
}

// B4: top-k ids are int64 and weights fp32; int32 ids and bf16 weights get a dtype error.
TEST_F(BadInput, B4TopkDtypesRejected) {
  expect_dispatch_rejected([&](DispatchArgs& a) { a.topk_idx = scratch_view(DType::kInt32, {kTokens, 4}); },
                           {"topk_idx", "int64", "int32[32, 4]"});
  expect_dispatch_rejected([&](DispatchArgs& a) { a.topk_weights = scratch_view(DType::kBFloat16, {kTokens, 4}); },
                           {"topk_weights", "float32", "bfloat16[32, 4]"});
  expect_rejected_on_every_rank<InvalidArgument>(
      cluster_,
      [&](int r) {
        LayoutArgs a = io_.rank(r).layout_args(stream(r));
        a.topk_idx = scratch_view(DType::kInt32, {kTokens, 4});
        buffer(r).get_dispatch_layout(a);
      },
      {"get_dispatch_layout", "topk_idx", "int32[32, 4]"});
  expect_usable(6);
}

// B5: x of another dtype, 3-D, not contiguous, or with rows != topk_idx rows: an error
// naming x (or topk_idx) with the expected and the given shape.
TEST_F(BadInput, B5MalformedXRejected) {
  expect_dispatch_rejected([&](DispatchArgs& a) { a.x = scratch_view(DType::kFloat32, {kTokens, 512}); },
                           {"x:", "bfloat16 or float8_e4m3fn", "float32[32, 512]"});
  expect_dispatch_rejected([&](DispatchArgs& a) { a.x = scratch_view(DType::kBFloat16, {2, 16, 512}); },
                           {"x:", "bfloat16[2, 16, 512]"});
  expect_dispatch_rejected(
      [&](DispatchArgs& a) {
        a.x = scratch_view(DType::kBFloat16, {kTokens, 1024});
        a.x.shape[1] = 512;  // every other half row: row stride 1024
      },
      {"x:", "contiguous", "bfloat16[32, 512] strides [1024, 1]"});
  expect_dispatch_rejected([&](DispatchArgs& a) { a.topk_idx = scratch_view(DType::kInt64, {kTokens + 1, 4}); },
                           {"topk_idx", "int64[32, *]", "int64[33, 4]"});
  expect_usable(7);
}

// B5: a row tensor one element past a 16-byte boundary (its rows move in 16-byte vectors;
// a misaligned access would end the CUDA context): refused, naming it.
TEST_F(BadInput, B5MisalignedRowsRejected) {
  const auto one_element_in = [](TensorView& t) {
    t.data = static_cast<std::uint8_t*>(t.data) + dtype_bytes(t.dtype);  // never read: the call is refused
  };
  const std::string misaligned = "is not 16-byte aligned";
  expect_dispatch_rejected([&](DispatchArgs& a) { one_element_in(a.x); }, {"x: the data pointer", misaligned});
  run_round_on_all_ranks(cluster_, io_);
  for (const auto& tensor : {std::pair{"x", &CombineArgs::x}, std::pair{"combined_x", &CombineArgs::combined_x}}) {
    expect_combine_rejected(
        [&](CombineArgs& a) { one_element_in(a.*tensor.second); },
        [&](int) { return std::vector<std::string>{std::string(tensor.first) + ": the data pointer", misaligned}; });
  }
  expect_combine_rejected(
      [&](CombineArgs& a) {
        a.bias0 = scratch_view(DType::kBFloat16, {a.combined_x.size(0) + 1, a.combined_x.size(1)});
        a.bias0.shape[0] = a.combined_x.size(0);
        one_element_in(a.bias0);
      },
      [&](int) { return std::vector<std::string>{"bias0: the data pointer", misaligned}; });
  expect_usable(8);
}

// B6: more tokens than the buffer was sized for (host check, names both numbers), and
// more received rows than num_worst_tokens (device check, raised by check_error()).
TEST_F(BadInput, B6TokensAboveCapacityRejected) {
  const std::int64_t capacity = buffer(0).max_dispatch_tokens();
  ASSERT_EQ(capacity, kBufferTokens);
  expect_dispatch_rejected(
      [&](DispatchArgs& a) { a.x = scratch_view(DType::kBFloat16, {capacity + 1, 512}); },
      {"x has " + str(capacity + 1) + " tokens", "sized for " + str(capacity), "intranode_size_hint"});
  expect_usable(8);
}

TEST_F(BadInput, B6WorstTokensBelowReceivedRowsReported) {
  IoShape tight = shape_;
  tight.num_worst_tokens = 4;
  IoSet io(tight);
  io.set_random_inputs(tokens_everywhere(tight, kTokens), 9, 0.0);
  std::vector<CaughtError> errors(shape_.num_ranks);
  run_on_ranks(shape_.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
    errors[r] = error_of<InvalidArgument>([&] {
      io.rank(r).layout(buffer(r), stream(r));
      io.rank(r).dispatch(buffer(r), stream(r));
      MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream(r)));
      buffer(r).check_error();
    });
  });
  for (int r = 0; r < shape_.num_ranks; ++r) {
    const int received = io.expected().dispatched[r].num_recv_tokens;
    ASSERT_GT(received, tight.num_worst_tokens);
    expect_error(errors[r], {"rank " + str(r), "receives " + str(received) + " tokens", "num_worst_tokens is 4"},
                 "rank " + str(r));
  }
  reset_all_ranks(cluster_);
  expect_usable(10);
}

// B7 at call time: ranks that disagree on the shape of a call (here hidden) fail that
// dispatch on every rank with an error naming the field and both values, instead of a
// peer writing past the end of this rank's tensors; after reset() the buffer works.
TEST_F(BadInput, B7RanksDisagreeOnHiddenAtDispatch) {
  IoShape wide = shape_;
  wide.hidden = shape_.hidden * 2;
  IoSet narrow_io(shape_), wide_io(wide);
  narrow_io.set_random_inputs(tokens_everywhere(shape_, kTokens), 11, 0.0);
  wide_io.set_random_inputs(tokens_everywhere(wide, kTokens), 11, 0.0);
  std::vector<CaughtError> errors(shape_.num_ranks);
  run_on_ranks(shape_.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
    RankIo& io = r == 1 ? wide_io.rank(r) : narrow_io.rank(r);
    errors[r] = error_of<InvalidArgument>([&] {
      io.layout(buffer(r), stream(r));
      io.dispatch(buffer(r), stream(r));
    });
  });
  for (int r = 0; r < shape_.num_ranks; ++r) {
    expect_error(errors[r], {"rank " + str(r), "ranks disagree on row bytes", str(shape_.row_bytes()), str(wide.row_bytes())},
                 "rank " + str(r));
  }
  reset_all_ranks(cluster_);
  expect_usable(12);
}

// B7: ranks that disagree on the buffer size fail at construction, every rank, with an
// error listing the ranks and their values (never a hang).
TEST(BadInputConstruction, B7RanksDisagreeOnBufferSize) {
  constexpr int kRanks = 2;
  const std::int64_t bytes[kRanks] = {Buffer::intranode_size_hint(64, kRanks), Buffer::intranode_size_hint(128, kRanks)};
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer buffer(groups[r], bytes[r]);
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<InvalidArgument>(errors[r]),
                 {"disagree", "rank 0: num_nvl_bytes=" + str(bytes[0]), "rank 1: num_nvl_bytes=" + str(bytes[1])},
                 "rank " + str(r));
  }
}

// B8: unsupported shapes: a row that is not a multiple of 16 bytes, fp8 hidden not a
// multiple of 128, top-k above kMaxTopk, num_experts not divisible by the ranks (dispatch
// and layout), combine hidden not a multiple of 8.
TEST_F(BadInput, B8UnsupportedShapesRejected) {
  expect_dispatch_rejected([&](DispatchArgs& a) { a.x = scratch_view(DType::kBFloat16, {kTokens, 100}); },
                           {"x row of 100 elements", "200 bytes", "multiple of 16"});
  expect_dispatch_rejected(
      [&](DispatchArgs& a) {
        a.x = scratch_view(DType::kFloat8E4M3, {kTokens, 144});
        a.x_scales = scratch_view(DType::kFloat32, {kTokens, 1});
      },
      {"hidden % 128", "hidden=144"});
  expect_dispatch_rejected([&](DispatchArgs& a) { a.topk_idx = scratch_view(DType::kInt64, {kTokens, kMaxTopk + 1}); },
                           {"top-k of 17", "[1, 16]"});
  expect_dispatch_rejected(
      [&](DispatchArgs& a) { a.num_tokens_per_expert = scratch_view(DType::kInt32, {15}); },
      {"15 experts", "multiple of num_ranks=2"});
  expect_rejected_on_every_rank<InvalidArgument>(
      cluster_,
      [&](int r) {
        LayoutArgs a = io_.rank(r).layout_args(stream(r));
        a.num_experts = 15;
        a.num_tokens_per_expert = scratch_view(DType::kInt32, {15});
        buffer(r).get_dispatch_layout(a);
      },
      {"num_experts=15", "num_ranks=2"});
  run_round_on_all_ranks(cluster_, io_);  // a handle for combine
  expect_combine_rejected(
      [&](CombineArgs& a) {
        a.x = scratch_view(DType::kBFloat16, {a.x.size(0), 12});
        a.combined_x = scratch_view(DType::kBFloat16, {kTokens, 12});
        a.topk_weights = {};
        a.combined_topk_weights = {};
      },
      [](int) { return std::vector<std::string>{"hidden=12", "multiple of 8"}; });
  expect_usable(11);
}

// B9: fp8 x with missing scales, scales of the wrong shape or dtype, or scales with bf16 x.
// (UE8M0 / round_scale belong to the low-latency path, not implemented yet.)
TEST_F(BadInput, B9Fp8ScalesMalformedRejected) {
  const auto fp8_x = [&](DispatchArgs& a) { a.x = scratch_view(DType::kFloat8E4M3, {kTokens, 512}); };
  expect_dispatch_rejected([&](DispatchArgs& a) { fp8_x(a); }, {"x_scales", "fp8 x needs"});
  expect_dispatch_rejected(
      [&](DispatchArgs& a) {
        fp8_x(a);
        a.x_scales = scratch_view(DType::kFloat32, {kTokens, 5});
      },
      {"x_scales", "float32[32, 4]", "float32[32, 5]"});
  expect_dispatch_rejected(
      [&](DispatchArgs& a) {
        fp8_x(a);
        a.x_scales = scratch_view(DType::kFloat32, {kTokens - 1, 4});
      },
      {"x_scales", "float32[31, 4]"});
  expect_dispatch_rejected(
      [&](DispatchArgs& a) {
        fp8_x(a);
        a.x_scales = scratch_view(DType::kBFloat16, {kTokens, 4});
      },
      {"x_scales", "bfloat16[32, 4]"});
  expect_dispatch_rejected([&](DispatchArgs& a) { a.x_scales = scratch_view(DType::kFloat32, {kTokens, 4}); },
                           {"x_scales given", "bfloat16"});
  expect_usable(12);
}

// B10: combine with a handle of another buffer, with a handle from before reset(), and
// with x rows != the received rows.
TEST_F(BadInput, B10CombineWithForeignStaleOrMismatchedHandleRejected) {
  run_round_on_all_ranks(cluster_, io_);
  const int R = shape_.num_ranks;
  std::vector<DispatchHandle> handles;
  for (int r = 0; r < R; ++r) handles.push_back(io_.rank(r).handle);

  expect_rejected_on_every_rank<InvalidArgument>(
      cluster_,
      [&](int r) { buffer(r).combine(io_.rank(r).combine_args(stream(r)), handles[(r + 1) % R]); },
      [&](int r) {
        return std::vector<std::string>{"handle comes from buffer " + std::to_string(buffer((r + 1) % R).id()),
                                        "not this buffer " + std::to_string(buffer(r).id())};
      });
  expect_combine_rejected([&](CombineArgs& a) { a.x.shape[0] += 1; },
                          [&](int r) {
                            const std::int64_t rows = handles[r].num_recv_rows;
                            return std::vector<std::string>{"x has " + str(rows + 1) + " rows",
                                                            "received " + str(rows)};
                          });
  reset_all_ranks(cluster_);
  expect_rejected_on_every_rank<InvalidArgument>(
      cluster_, [&](int r) { buffer(r).combine(io_.rank(r).combine_args(stream(r)), handles[r]); },
      [&](int r) {
        return std::vector<std::string>{"before a reset", "generation " + str(handles[r].buffer_generation),
                                        "buffer is at " + str(buffer(r).generation())};
      });
  expect_usable(13);
}

// B11: a dispatch that waits on the host for counts (num_worst_tokens == 0) is refused
// during stream capture, before anything is captured; the capture still ends cleanly.
TEST_F(BadInput, B11HostSyncDispatchRejectedDuringGraphCapture) {
  std::vector<CaughtError> errors(shape_.num_ranks);
  run_on_ranks(shape_.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(buffer(r).device()));
    MOE_EP_CUDA_CHECK(cudaStreamBeginCapture(stream(r), cudaStreamCaptureModeThreadLocal));
    errors[r] = error_of<InvalidArgument>(
        [&] { buffer(r).dispatch_notify(io_.rank(r).dispatch_args(stream(r)), io_.rank(r).handle); });
    cudaGraph_t graph = nullptr;
    MOE_EP_CUDA_CHECK(cudaStreamEndCapture(stream(r), &graph));
    if (graph != nullptr) MOE_EP_CUDA_CHECK(cudaGraphDestroy(graph));
  });
  for (int r = 0; r < shape_.num_ranks; ++r) {
    expect_error(errors[r], {"CUDA graph capture", "num_worst_tokens"}, "rank " + str(r));
  }
  expect_usable(14);
}

// B12: num_sms of 0 or above the rank's share of the device, for dispatch and combine.
TEST_F(BadInput, B12NumSmsOutsideBudgetRejected) {
  const int max_sms = buffer(0).max_num_sms();
  for (int num_sms : {0, max_sms + 1}) {
    const std::vector<std::string> needles{"config.num_sms=" + str(num_sms), "outside [1, " + str(max_sms) + "]"};
    expect_dispatch_rejected([&](DispatchArgs& a) { a.config.num_sms = num_sms; }, needles);
  }
  run_round_on_all_ranks(cluster_, io_);
  for (int num_sms : {0, max_sms + 1}) {
    expect_combine_rejected([&](CombineArgs& a) { a.config.num_sms = num_sms; },
                            [&](int) {
                              return std::vector<std::string>{"config.num_sms=" + str(num_sms),
                                                              "outside [1, " + str(max_sms) + "]"};
                            });
  }
  expect_usable(15);
}

// B13: a buffer larger than the device: CudaError naming the bytes requested, on every
// rank (no hang), and the device stays usable.
TEST(BadInputConstruction, B13BufferLargerThanDeviceMemory) {
  constexpr int kRanks = 2;
  constexpr std::int64_t kBytes = std::int64_t{1} << 50;
  auto groups = make_in_process_group(std::vector<int>(kRanks, 0));
  const auto errors = run_on_ranks_collect(kRanks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(0));
    Buffer buffer(groups[r], kBytes);
  });
  for (int r = 0; r < kRanks; ++r) {
    expect_error(caught_as<CudaError>(errors[r]), {str(kBytes)}, "rank " + str(r));
  }
  IoShape shape = small_shape();
  Cluster cluster(kRanks, Buffer::intranode_size_hint(kBufferTokens, kRanks), options_with_timeout_ms(kTimeoutMs));
  IoSet io(shape);
  io.set_random_inputs(tokens_everywhere(shape, kTokens), 16);
  run_round_on_all_ranks(cluster, io);
  EXPECT_EQ(io.count_mismatches("after the failed construction"), 0);
}

}  // namespace
}  // namespace moe_ep::test
