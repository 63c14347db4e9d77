// Low-latency combine, receiving phase (the home rank). Waits for every owner's `ready`,
// then for each of its tokens finds the row of every top-k slot in its owner's
// published outputs (begin from the owner's layout + the slot's rank) and writes the
// weighted sum, accumulated in fp32 in slot order and rounded to bf16 once. Slots whose
// owner is masked contribute nothing. Ends with the done barrier. A rank alone (kAlone)
// has no `ready` to wait for and no barrier.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

#include "device/bf16_vector.cuh"
#include "device/read_once.cuh"
#include "kernels/low_latency/ll_collective.cuh"
#include "kernels/low_latency/logfmt.cuh"

namespace moe_ep::kernels {

inline constexpr protocol::Phase kLlCombineRecvPhase = protocol::Phase::kLowLatencyCombineRecv;

// Rows a block resolves at once: the items it will sum next (one per warp and round).
inline constexpr int kLlCombineBatch = 2 * kLlWarps;

// The rows (in slot order) and weights of the items of one batch.
struct CombineBatch {
  const std::uint8_t* rows[kLlCombineBatch][kMaxTopk];
  float weights[kLlCombineBatch][kMaxTopk];
  int count[kLlCombineBatch];
};

// Lane k of a warp: top-k entry k of a home token, from this rank's own tensors (readable
// before any peer is ready).
struct HomeEntry {
  int owner;           // rank of the expert, or -1
  int local;           // the expert's index there
  int rank_in_expert;  // the entry's rank among this rank's rows for the expert (absolute_slots: its slot)
  float weight;
};
__device__ __forceinline__ HomeEntry load_home_entry(const LlCombineRecvParams& p, int t, int lane) {
  HomeEntry h{-1, 0, -1, 0.0f};
  if (lane < p.num_topk) {
    const int i = t * p.num_topk + lane;
    const std::int64_t e = p.topk_idx_int32 ? static_cast<const std::int32_t*>(p.topk_idx)[i]
                                            : static_cast<const std::int64_t*>(p.topk_idx)[i];
    const int num_local = p.num_experts / p.ctx.num_ranks;
    h.rank_in_expert = p.combine_slots[i];
    h.weight = p.topk_weights[i];
    if (e >= 0 && e < p.num_experts) {
      h.owner = static_cast<int>(e / num_local);
      h.local = static_cast<int>(e) - h.owner * num_local;
    }
  }
  return h;
}

// One warp, after the owners' `ready` (alone: none): the rows (in slot order) of a token's
// entries, into batch entry j.
template <bool kRdma, bool kAlone>
__device__ __forceinline__ void find_rows(const LlCombineRecvParams& p, unsigned arrived, const HomeEntry& h,
                                          CombineBatch& batch, int j, int lane) {
  const LlContext& ctx = p.ctx;
  const std::uint8_t* row = nullptr;
  const std::int64_t slots = static_cast<std::int64_t>(ctx.num_ranks) * p.max_tokens;
  if constexpr (kAlone) {
    // Alone, every expert is ours and an entry's slot is its rank (no rank comes before
    // this one), absolute or not; a slot past the expert's last was never placed.
    if (h.owner == 0 && h.rank_in_expert >= 0 && h.rank_in_expert < slots) {
      row = p.own_rows + (h.local * slots + h.rank_in_expert) * ctx.shape.row_stride;
    }
  } else if (p.absolute_slots) {
    // The slot is the handle's (every rank on this GPU, in place, no plan): the owner's
    // published rows alone. A slot past the expert's last was never placed (-1).
    if (h.owner >= 0 && h.rank_in_expert >= 0 && h.rank_in_expert < slots && (arrived & (1u << h.owner))) {
      const std::int64_t at = h.local * slots + h.rank_in_expert;
      if (h.owner == ctx.rank && p.own_rows_ready) {
        row = p.own_rows + at * ctx.shape.row_stride;
      } else {
        const protocol::LlPublished& pub = ll_source_published<kRdma>(ctx, h.owner);
        row = ll_rebase(ctx, h.owner, pub, pub.rows) + at * pub.row_stride;
      }
    }
  } else if (h.owner == ctx.rank && p.own_rows_ready) {
    // Our own rows: our layout and x, from the call (our `ready` is not awaited). Alone,
    // our rows of an expert are its first. A slot past the expert's last means the
    // dispatch overflowed (its error is recorded; this combine's result is void): it is
    // never read.
    const std::int64_t range = ctx.num_ranks == 1 ? static_cast<std::int64_t>(p.max_tokens) << 32
                                                  : p.layout_range[h.local * ctx.num_ranks + ctx.rank];
    const std::int64_t slot = (range & 0xffffffff) + h.rank_in_expert;
    if (h.rank_in_expert >= 0 && h.rank_in_expert < (range >> 32) && slot < slots) {
      row = p.own_rows + (h.local * slots + slot) * ctx.shape.row_stride;
    }
  } else if (h.owner >= 0 && h.rank_in_expert >= 0 && (arrived & (1u << h.owner))) {
    // The owner's range and its published rows load together (one round trip): the row
    // is computed from both and kept only if the range holds the entry.
    const std::uint8_t* half = ll_source_half<kRdma>(ctx, h.owner);
    const std::int64_t range =
        reinterpret_cast<const std::int64_t*>(half + ctx.layout.plan_offset)[h.local * ctx.num_ranks + ctx.rank];
    const protocol::LlPublished& pub = ll_source_published<kRdma>(ctx, h.owner);
    const std::int64_t row_stride = pub.row_stride;
    const std::uint8_t* candidate;
    bool in_range = h.rank_in_expert < (range >> 32);  // else the owner did not receive it (it masked us)
    if (ll_rdma_peer<kRdma>(ctx, h.owner)) {
      // The owner pushed our rows into its mirror slot, by (local expert, rank).
      candidate = half + ctx.layout.rows_offset +
                  (static_cast<std::int64_t>(h.local) * p.max_tokens + h.rank_in_expert) * row_stride;
    } else {
      in_range = in_range && (range & 0xffffffff) + h.rank_in_expert < slots;  // else as above
      const std::int64_t slot = h.local * slots + (range & 0xffffffff) + h.rank_in_expert;
      candidate = ll_rebase(ctx, h.owner, pub, pub.rows) + slot * row_stride;
    }
    if (in_range) row = candidate;
  }
  const unsigned valid = __ballot_sync(0xffffffffu, row != nullptr);
  if (row != nullptr) {
    const int at = __popc(valid & ((1u << lane) - 1));
    batch.rows[j][at] = row;
    batch.weights[j][at] = h.weight;
  }
  if (lane == 0) batch.count[j] = __popc(valid);
}

// Channels [c + 2048 u, + 8) for u < kLlCombineColumns (those below `end`) of the weighted
// sum, BF16 rows: the loads of up to 8 rows of every column are issued before the first
// use, so one thread keeps 16 in flight. Each row is read once (device/read_once.cuh).
__device__ __forceinline__ void sum_bf16(const std::uint8_t* const* rows, const float* weights, int count, int c,
                                         int end, float (&acc)[kLlCombineColumns][8]) {
  constexpr int kGroup = 8;
  const std::uint64_t policy = device::l2_evict_first_policy();
  constexpr int kStride = kLlThreads * 8;
  for (int k0 = 0; k0 < count; k0 += kGroup) {
    int4 raw[kLlCombineColumns][kGroup];
#pragma unroll
    for (int u = 0; u < kLlCombineColumns; ++u) {
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (k0 + g < count && c + u * kStride < end) {
          raw[u][g] = device::load_read_once(rows[k0 + g] + 2 * (c + u * kStride), policy);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kLlCombineColumns; ++u) {
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (k0 + g < count && c + u * kStride < end) device::accumulate_bf16x8(acc[u], raw[u][g], weights[k0 + g]);
      }
    }
  }
}

// Channels [c, c + 8) of the weighted sum, LogFMT rows.
__device__ __forceinline__ void sum_logfmt(const std::uint8_t* const* rows, const float* weights, int count, int c,
                                           int hidden, float (&acc)[8]) {
  for (int k = 0; k < count; ++k) {
    const std::uint8_t* row = rows[k];
    const float2 header = reinterpret_cast<const float2*>(row)[c / 128];
    const uint2 codes = *reinterpret_cast<const uint2*>(row + 8 * (hidden / 128) + c);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      acc[i] = fmaf(weights[k], logfmt_decode(codes.x >> (8 * i), header.x, header.y), acc[i]);
      acc[4 + i] = fmaf(weights[k], logfmt_decode(codes.y >> (8 * i), header.x, header.y), acc[4 + i]);
    }
  }
}

// Whole block: item (token t, channels [base, base + p.item_channels)) of batch entry j.
__device__ __forceinline__ void sum_item(const LlCombineRecvParams& p, const CombineBatch& batch, int j, int t,
                                         int base, bool logfmt) {
  std::uint16_t* out = p.out + static_cast<std::int64_t>(t) * p.hidden;
  const int end = min(base + p.item_channels, p.hidden);
  const int c = base + threadIdx.x * 8;
  if (logfmt) {
    for (int u = 0; u < kLlCombineColumns; ++u) {
      const int cu = c + u * kLlThreads * 8;
      if (cu >= end) break;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      sum_logfmt(batch.rows[j], batch.weights[j], batch.count[j], cu, p.hidden, acc);
      *reinterpret_cast<int4*>(out + cu) = device::pack_bf16x8(acc);
    }
    return;
  }
  float acc[kLlCombineColumns][8] = {};
  sum_bf16(batch.rows[j], batch.weights[j], batch.count[j], c, end, acc);
#pragma unroll
  for (int u = 0; u < kLlCombineColumns; ++u) {
    const int cu = c + u * kLlThreads * 8;
    if (cu < end) *reinterpret_cast<int4*>(out + cu) = device::pack_bf16x8(acc[u]);
  }
}

// Every block of the kernel: items (token, channel range) in batches (the rows of a batch
// are resolved together, one warp per item, before any is summed), then the done barrier.
// kAlone: this rank is alone and its rows are ready (LlPhases::kAlone): no flag to wait for
// or signal (see ll_mark_entered), so none of that code is in the kernel. kInPlace: this
// rank's rows are in place, so the call is not LogFMT (a peer's format is checked against
// ours with the shape).
template <bool kRdma, bool kAlone = false, bool kInPlace = false>
__device__ __forceinline__ void ll_combine_recv_phase(const LlCombineRecvParams& p) {
  static_assert(!(kRdma && (kAlone || kInPlace)), "rows in place have no RDMA peer");
  __shared__ CombineBatch batch;
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = kAlone ? 0 : ll_op_epoch(ctx);  // alone: moved on at entry, never read
  const int parts = (p.hidden + p.item_channels - 1) / p.item_channels;
  const int num_items = p.num_tokens * parts;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  constexpr int kItemsPerWarp = kLlCombineBatch / kLlWarps;
  // This warp's items of the first batch: their entries load while the owners get ready.
  HomeEntry first_entries[kItemsPerWarp];
#pragma unroll
  for (int m = 0; m < kItemsPerWarp; ++m) {
    const int item = blockIdx.x + (warp + m * kLlWarps) * gridDim.x;
    if (item < num_items) first_entries[m] = load_home_entry(p, item / parts, lane);
  }
  const LlArrivals arrivals =
      kAlone ? LlArrivals{1u, false}
           : ll_wait_peers<kRdma>(ctx, &protocol::LlHeader::ready, epoch, kLlCombineRecvPhase,
                                  blockIdx.x == 0 ? p.wait_stats : nullptr, p.own_rows_ready);
  if (blockIdx.x == 0 && threadIdx.x == 0) ll_stamp(ctx, kTraceReadySeen);
  // The shape check's loads and the first batch's rows are in flight together; rows found
  // with a mismatched shape are never read.
  const LlShapeFields shapes = kAlone ? LlShapeFields{} : ll_load_peer_shape<kRdma>(ctx, arrivals.arrived);
  __shared__ int peer_blocks[kMaxNvlRanks];  // with ctx.block_done, for the done barrier
  if (!kAlone && blockIdx.x == 0) ll_load_peer_blocks(ctx, arrivals.arrived, peer_blocks);
  bool failed = arrivals.failed;
  bool checked = kAlone;  // block-uniform, like failed (alone: no peer shape to check)
  if (!failed) {
    // Rows in place are never LogFMT (it is staged), nor, then, any peer's (the shape check).
    const bool logfmt = !kInPlace && ctx.shape.format == static_cast<int>(protocol::LlFormat::kLogFmt);
    for (int first = blockIdx.x; first < num_items; first += gridDim.x * kLlCombineBatch) {
#pragma unroll
      for (int m = 0; m < kItemsPerWarp; ++m) {
        const int j = warp + m * kLlWarps;
        const int item = first + j * gridDim.x;
        if (item >= num_items) continue;
        const HomeEntry entry = first == static_cast<int>(blockIdx.x) ? first_entries[m]
                                                                       : load_home_entry(p, item / parts, lane);
        find_rows<kRdma, kAlone>(p, arrivals.arrived, entry, batch, j, lane);
      }
      if (!checked) {  // the first batch's rows are found meanwhile
        checked = true;
        if (!ll_check_peer_shape(ctx, shapes, kLlCombineRecvPhase)) {
          failed = true;
          break;
        }
      }
      __syncthreads();
      if (blockIdx.x == 0 && threadIdx.x == 0 && first == 0) ll_stamp(ctx, kTraceLaidOut);
      for (int j = 0; j < kLlCombineBatch; ++j) {
        const int item = first + j * gridDim.x;
        if (item >= num_items) break;
        sum_item(p, batch, j, item / parts, (item % parts) * p.item_channels, logfmt);
      }
      __syncthreads();
    }
  }
  if (!failed && !checked) failed = !ll_check_peer_shape(ctx, shapes, kLlCombineRecvPhase);  // a block with no item
  if (failed && threadIdx.x == 0) ctx.state->abort = 1;
  if constexpr (kAlone) {
    if (threadIdx.x == 0) ll_stamp(ctx, kTraceItemsDone, true);
  } else {
    ll_done_barrier<kRdma>(ctx, epoch, failed, kLlCombineRecvPhase, peer_blocks);
  }
}

}  // namespace moe_ep::kernels
