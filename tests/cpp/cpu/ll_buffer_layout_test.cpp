// The low-latency region carve (protocol::carve_ll_half / ll_region_bytes) and the size
// hint: offsets aligned and regions non-overlapping for any call, room for every row
// format, smaller calls fit a region sized for larger ones, the hint is exactly the carve
// of the largest call, and it is no larger than DeepEP V1's get_low_latency_rdma_size_hint.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "moe_ep/buffer.hpp"
#include "moe_ep/errors.hpp"
#include "protocol/ll_buffer_layout.hpp"

namespace moe_ep::protocol {
namespace {

constexpr std::int64_t kHiddens[] = {128, 2048, 3072, 4096, 5120, 7168};
constexpr std::int64_t kTokens[] = {1, 32, 128, 256, kMaxLowLatencyTokens};
constexpr std::int64_t kTopks[] = {1, 8, kMaxTopk};
constexpr std::int64_t kExperts[] = {1, 8, 64, 256, 288};

// DeepEP V1's get_low_latency_rdma_size_hint, from its published layout (csrc/config.hpp,
// LowLatencyLayout): two symmetric send, receive and signaling buffers (odd/even), with
//   dispatch message = sizeof(int4) + max(hidden * 2, hidden + num_scales * 4)
//   combine message  = num_scales * sizeof(nv_bfloat162) + hidden * 2
//   send  = max(T * dispatch_msg, E * T * combine_msg)
//   recv  = max(E * T * dispatch_msg, E * T * combine_msg)
//   signaling = align_up(E * sizeof(int), 128)
// total = 2 * (send + recv + signaling), then ((total + 128) / 128) * 128.
std::int64_t deep_ep_low_latency_rdma_size_hint(std::int64_t max_tokens, std::int64_t hidden, std::int64_t num_ranks,
                                                std::int64_t num_experts) {
  static_cast<void>(num_ranks);  // DeepEP's layout does not depend on it either
  const std::int64_t num_scales = hidden / 128;
  const std::int64_t dispatch_msg = 16 + std::max(hidden * 2, hidden + num_scales * 4);
  const std::int64_t combine_msg = num_scales * 4 + hidden * 2;
  const std::int64_t send = std::max(max_tokens * dispatch_msg, num_experts * max_tokens * combine_msg);
  const std::int64_t recv = std::max(num_experts * max_tokens * dispatch_msg, num_experts * max_tokens * combine_msg);
  const std::int64_t signaling = align_up(num_experts * 4, 128);
  const std::int64_t total = 2 * send + 2 * recv + 2 * signaling;
  return ((total + 128) / 128) * 128;
}

std::string at(std::int64_t t, std::int64_t h, std::int64_t k, std::int64_t e, bool staging) {
  return "T=" + std::to_string(t) + " hidden=" + std::to_string(h) + " topk=" + std::to_string(k) +
         " experts=" + std::to_string(e) + (staging ? " staged" : "");
}

// A reset zeroes the header and the tagged ready counts of every call that fits the half
// (a stale word must never carry a later op's tag), and never more than the half.
TEST(LlBufferLayout, ResetCoversTheReadyCountsOfEveryCallThatFits) {
  for (std::int64_t t : kTokens) {
    for (std::int64_t h : kHiddens) {
      for (std::int64_t e : {std::int64_t{1}, std::int64_t{288}, std::int64_t{kMaxExperts}}) {
        SCOPED_TRACE(at(t, h, kMaxTopk, e, false));
        const LlHalfLayout l = carve_ll_half(t, h, kMaxTopk, e, false);
        for (std::int64_t half : {l.total_bytes, l.total_bytes + 128, std::int64_t{1} << 30}) {
          EXPECT_GE(ll_reset_bytes(half), l.ready_counts_offset + 16 * e) << half;
          EXPECT_GE(ll_reset_bytes(half), static_cast<std::int64_t>(sizeof(LlHeader))) << half;
          EXPECT_LE(ll_reset_bytes(half), half) << half;
        }
      }
    }
  }
}

TEST(LlBufferLayout, RegionsAreAlignedOrderedAndDoNotOverlap) {
  EXPECT_EQ(sizeof(LlHeader) % 128, 0u);
  for (std::int64_t t : kTokens) {
    for (std::int64_t h : kHiddens) {
      for (std::int64_t k : kTopks) {
        for (std::int64_t e : kExperts) {
          for (bool staging : {false, true}) {
            SCOPED_TRACE(at(t, h, k, e, staging));
            const LlHalfLayout l = carve_ll_half(t, h, k, e, staging);
            for (std::int64_t offset : {l.ready_counts_offset, l.expert_counts_offset, l.plan_offset,
                                        l.topk_ids_offset, l.ranks_offset, l.rows_offset, l.total_bytes}) {
              EXPECT_EQ(offset % 128, 0) << offset;
            }
            EXPECT_GE(l.ready_counts_offset, static_cast<std::int64_t>(sizeof(LlHeader)));
            EXPECT_GE(l.expert_counts_offset, l.ready_counts_offset + 16 * e);  // two sets of tagged counts
            EXPECT_GE(l.plan_offset, l.expert_counts_offset + 4 * e);
            EXPECT_GE(l.topk_ids_offset, l.plan_offset + 8 * e);
            EXPECT_GE(l.ranks_offset, l.topk_ids_offset + 4 * t * k);
            EXPECT_GE(l.rows_offset, l.ranks_offset + 4 * t * k);
            EXPECT_GE(l.total_bytes, l.rows_offset + l.rows_bytes);
          }
        }
      }
    }
  }
}

TEST(LlBufferLayout, RowsHoldEveryFormat) {
  for (std::int64_t t : kTokens) {
    for (std::int64_t h : kHiddens) {
      for (std::int64_t e : kExperts) {
        SCOPED_TRACE(at(t, h, kMaxTopk, e, false));
        const LlHalfLayout plain = carve_ll_half(t, h, kMaxTopk, e, false);
        EXPECT_GE(plain.rows_bytes, t * 2 * h) << "bf16 dispatch rows";
        EXPECT_GE(plain.rows_bytes, t * ll_fp8_row_bytes(h)) << "fp8 dispatch rows with their scales";
        const LlHalfLayout staged = carve_ll_half(t, h, kMaxTopk, e, true);
        EXPECT_GE(staged.rows_bytes, e * t * 2 * h) << "staged bf16 expert outputs";
        EXPECT_GE(staged.rows_bytes, e * t * ll_logfmt_row_bytes(h)) << "LogFMT expert outputs";
        EXPECT_GE(staged.rows_bytes, plain.rows_bytes);
        EXPECT_EQ(ll_fp8_row_bytes(h) % 16, 0);
        EXPECT_EQ(ll_logfmt_row_bytes(h) % 16, 0);
      }
    }
  }
}

// A buffer sized for (T, hidden, experts) serves every call with fewer tokens, a smaller
// top-k, and (staged) fewer experts: each half of the region holds that call's carve.
TEST(LlBufferLayout, SmallerCallsFitTheRegionOfALargerOne) {
  for (std::int64_t h : kHiddens) {
    for (std::int64_t e : kExperts) {
      for (bool staging : {false, true}) {
        const std::int64_t half = ll_region_bytes(kMaxLowLatencyTokens, h, e, staging) / 2;
        EXPECT_EQ(2 * carve_ll_half(kMaxLowLatencyTokens, h, kMaxTopk, e, staging).total_bytes, 2 * half);
        for (std::int64_t t : kTokens) {
          for (std::int64_t k : kTopks) {
            for (std::int64_t smaller_e : kExperts) {
              if (smaller_e > e) continue;
              EXPECT_LE(carve_ll_half(t, h, k, smaller_e, staging).total_bytes, half)
                  << at(t, h, k, smaller_e, staging) << " in a region for " << at(kMaxLowLatencyTokens, h, kMaxTopk, e, staging);
            }
          }
        }
      }
    }
  }
}

// The hint is exactly the staged carve of the largest call (process groups, zero_copy and
// LogFMT stage the combine), for any rank count; it rejects shapes no call accepts.
TEST(LlBufferLayout, SizeHintIsTheStagedCarve) {
  for (int ranks : {1, 2, 4, 8}) {
    for (std::int64_t t : kTokens) {
      for (std::int64_t h : kHiddens) {
        for (std::int64_t e : {8 * ranks, 256, 288}) {
          if (e % ranks != 0) continue;
          EXPECT_EQ(Buffer::low_latency_size_hint(static_cast<int>(t), static_cast<int>(h), ranks, static_cast<int>(e)),
                    ll_region_bytes(t, h, e, /*combine_staging=*/true))
              << at(t, h, kMaxTopk, e, true) << " ranks=" << ranks;
        }
      }
    }
  }
  EXPECT_THROW(Buffer::low_latency_size_hint(0, 2048, 2, 16), InvalidArgument);
  EXPECT_THROW(Buffer::low_latency_size_hint(kMaxLowLatencyTokens + 1, 2048, 2, 16), InvalidArgument);
  EXPECT_THROW(Buffer::low_latency_size_hint(128, 2000, 2, 16), InvalidArgument);
  EXPECT_THROW(Buffer::low_latency_size_hint(128, 2048, 2, 15), InvalidArgument);
}

// No larger than DeepEP V1's hint (issue #5): our region keeps one copy of the rows per
// half where DeepEP keeps a send and a receive buffer, and its tables are sized by the
// call's experts.
TEST(LlBufferLayout, SizeHintAtMostDeepEpV1) {
  for (int ranks : {1, 2, 4, 8}) {
    for (std::int64_t t : kTokens) {
      for (std::int64_t h : {2048, 3072, 4096, 5120, 7168}) {
        for (std::int64_t e : {8 * ranks, 64, 256, 288}) {
          if (e % ranks != 0) continue;
          const std::int64_t ours =
              Buffer::low_latency_size_hint(static_cast<int>(t), static_cast<int>(h), ranks, static_cast<int>(e));
          const std::int64_t deep_ep = deep_ep_low_latency_rdma_size_hint(t, h, ranks, e);
          const std::string where = at(t, h, kMaxTopk, e, true) + " ranks=" + std::to_string(ranks);
          EXPECT_LE(ours, deep_ep) << where;
        }
      }
    }
  }
}

// Mirror slots (peers reached by RDMA push into them): after the own part, aligned, each
// holding the dispatch part at the half's own offsets and the combine rows of one source;
// a smaller call's slots fit a region sized for the largest.
TEST(LlBufferLayout, MirrorSlotsFollowTheOwnPartAndFit) {
  for (int ranks : {2, 4, 8}) {
    for (std::int64_t t : kTokens) {
      for (std::int64_t h : kHiddens) {
        for (std::int64_t e : {8 * ranks, 256}) {
          const std::int64_t half = ll_mirrored_region_bytes(kMaxLowLatencyTokens, h, e, ranks, true) / 2;
          for (std::int64_t k : kTopks) {
            SCOPED_TRACE(at(t, h, k, e, true) + " ranks=" + std::to_string(ranks));
            const LlHalfLayout own = carve_ll_half(t, h, k, e, true);
            const LlMirrorLayout m = carve_ll_mirrors(own, t, h, e, ranks, true);
            EXPECT_EQ(m.offset, own.total_bytes);
            EXPECT_EQ(m.count, ranks - 1);
            EXPECT_EQ(m.stride % 128, 0);
            EXPECT_GE(m.stride, own.rows_offset + t * 2 * h);                  // dispatch rows
            EXPECT_GE(m.stride, own.rows_offset + (e / ranks) * t * 2 * h);    // combine rows
            EXPECT_LE(m.end(), half);
            EXPECT_EQ(carve_ll_mirrors(own, t, h, e, ranks, false).count, 0);
            EXPECT_EQ(carve_ll_mirrors(own, t, h, e, ranks, false).end(), own.total_bytes);
          }
        }
      }
    }
  }
}

// The hint with peers on other nodes (or no NVLink) is the mirrored carve, still no larger
// than DeepEP V1's; deep_ep's own call (no ranks_per_node) assumes 8 ranks per node.
TEST(LlBufferLayout, MirroredSizeHintIsExactAndAtMostDeepEpV1) {
  for (int ranks : {2, 4, 8}) {
    for (std::int64_t t : kTokens) {
      for (std::int64_t h : {2048, 3072, 4096, 5120, 7168}) {
        for (std::int64_t e : {8 * ranks, 64, 256, 288}) {
          if (e % ranks != 0) continue;
          const int ti = static_cast<int>(t), hi = static_cast<int>(h), ei = static_cast<int>(e);
          const std::string where = at(t, h, kMaxTopk, e, true) + " ranks=" + std::to_string(ranks);
          const std::int64_t mirrored = ll_mirrored_region_bytes(t, h, e, ranks, true);
          EXPECT_EQ(Buffer::low_latency_size_hint(ti, hi, ranks, ei, ranks / 2), mirrored) << where;
          EXPECT_EQ(Buffer::low_latency_size_hint(ti, hi, ranks, ei, ranks, /*allow_nvlink=*/false), mirrored) << where;
          EXPECT_EQ(Buffer::low_latency_size_hint(ti, hi, ranks, ei, ranks), Buffer::low_latency_size_hint(ti, hi, ranks, ei))
              << where;
          EXPECT_LE(mirrored, deep_ep_low_latency_rdma_size_hint(t, h, ranks, e)) << where;
        }
      }
    }
  }
  EXPECT_THROW(Buffer::low_latency_size_hint(128, 2048, 8, 64, 3), InvalidArgument);
}

}  // namespace
}  // namespace moe_ep::protocol
