// Low-latency combine, receiving phase (the home rank). Waits for every owner's `ready`,
// then for each of its tokens finds the row of every top-k slot in its owner's
// published outputs (begin from the owner's layout + the slot's rank) and writes the
// weighted sum, accumulated in fp32 in slot order and rounded to bf16 once. Slots whose
// owner is masked contribute nothing. Ends with the done barrier.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

#include "kernels/low_latency/ll_collective.cuh"
#include "kernels/low_latency/logfmt.cuh"

namespace moe_ep::kernels {

inline constexpr protocol::Phase kLlCombineRecvPhase = protocol::Phase::kLowLatencyCombineRecv;

struct SourceRows {
  const std::uint8_t* rows[kMaxTopk];
  float weights[kMaxTopk];
  int count;
};

// Warp 0: the rows (in slot order) that token t sums.
template <bool kRdma>
__device__ __forceinline__ void find_rows(const LlCombineRecvParams& p, unsigned arrived, int t, SourceRows& out) {
  const LlContext& ctx = p.ctx;
  const int lane = threadIdx.x;
  const int num_local = p.num_experts / ctx.num_ranks;
  const std::uint8_t* row = nullptr;
  float weight = 0.0f;
  if (lane < p.num_topk) {
    const int i = t * p.num_topk + lane;
    const std::int64_t e = p.topk_idx_int32 ? static_cast<const std::int32_t*>(p.topk_idx)[i]
                                            : static_cast<const std::int64_t*>(p.topk_idx)[i];
    const int rank_in_expert = p.combine_slots[i];
    const int owner = e >= 0 && e < p.num_experts ? static_cast<int>(e / num_local) : -1;
    if (owner >= 0 && rank_in_expert >= 0 && (arrived & (1u << owner))) {
      const int local = static_cast<int>(e) - owner * num_local;
      const std::uint8_t* half = ll_source_half<kRdma>(ctx, owner);
      const std::int64_t range =
          reinterpret_cast<const std::int64_t*>(half + ctx.layout.plan_offset)[local * ctx.num_ranks + ctx.rank];
      if (rank_in_expert < (range >> 32)) {  // else the owner did not receive it (it masked us)
        const protocol::LlPublished& pub = ll_source_published<kRdma>(ctx, owner);
        if (ll_rdma_peer<kRdma>(ctx, owner)) {
          // The owner pushed our rows into its mirror slot, by (local expert, rank).
          row = half + ctx.layout.rows_offset +
                (static_cast<std::int64_t>(local) * p.max_tokens + rank_in_expert) * pub.row_stride;
        } else {
          const std::int64_t slot = static_cast<std::int64_t>(local) * ctx.num_ranks * p.max_tokens +
                                    (range & 0xffffffff) + rank_in_expert;
          row = ll_rebase(ctx, owner, pub, pub.rows) + slot * pub.row_stride;
        }
        weight = p.topk_weights[i];
      }
    }
  }
  const unsigned valid = __ballot_sync(0xffffffffu, row != nullptr);
  if (row != nullptr) {
    const int at = __popc(valid & ((1u << lane) - 1));
    out.rows[at] = row;
    out.weights[at] = weight;
  }
  if (lane == 0) out.count = __popc(valid);
}

__device__ __forceinline__ void accumulate_bf16x8(const int4& raw, float weight, float (&acc)[8]) {
  const std::uint32_t w[4] = {static_cast<std::uint32_t>(raw.x), static_cast<std::uint32_t>(raw.y),
                              static_cast<std::uint32_t>(raw.z), static_cast<std::uint32_t>(raw.w)};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    acc[2 * i] = fmaf(weight, bf16_bits_to_float(w[i] & 0xffffu), acc[2 * i]);
    acc[2 * i + 1] = fmaf(weight, bf16_bits_to_float(w[i] >> 16), acc[2 * i + 1]);
  }
}

// Channels [c, c + 8) of the weighted sum, BF16 rows: the loads of up to kGroup rows are
// issued before the first use, so one thread keeps several in flight.
__device__ __forceinline__ void sum_bf16(const SourceRows& sources, int c, float (&acc)[8]) {
  constexpr int kGroup = 8;
  for (int k0 = 0; k0 < sources.count; k0 += kGroup) {
    int4 raw[kGroup];
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      if (k0 + u < sources.count) raw[u] = *reinterpret_cast<const int4*>(sources.rows[k0 + u] + 2 * c);
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      if (k0 + u < sources.count) accumulate_bf16x8(raw[u], sources.weights[k0 + u], acc);
    }
  }
}

// Channels [c, c + 8) of the weighted sum, LogFMT rows.
__device__ __forceinline__ void sum_logfmt(const SourceRows& sources, int c, int hidden, float (&acc)[8]) {
  for (int k = 0; k < sources.count; ++k) {
    const std::uint8_t* row = sources.rows[k];
    const float2 header = reinterpret_cast<const float2*>(row)[c / 128];
    const uint2 codes = *reinterpret_cast<const uint2*>(row + 8 * (hidden / 128) + c);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      acc[i] = fmaf(sources.weights[k], logfmt_decode(codes.x >> (8 * i), header.x, header.y), acc[i]);
      acc[4 + i] = fmaf(sources.weights[k], logfmt_decode(codes.y >> (8 * i), header.x, header.y), acc[4 + i]);
    }
  }
}

// Every block of the kernel: a token per block at a time, then the done barrier.
template <bool kRdma>
__device__ __forceinline__ void ll_combine_recv_phase(const LlCombineRecvParams& p) {
  __shared__ SourceRows sources;
  const LlContext& ctx = p.ctx;
  const std::uint64_t epoch = ll_op_epoch(ctx);
  const LlArrivals arrivals =
      ll_wait_peers<kRdma>(ctx, &protocol::LlHeader::ready, epoch, kLlCombineRecvPhase, blockIdx.x == 0 ? p.wait_stats : nullptr);
  bool failed = arrivals.failed;
  if (!failed) failed = !ll_peers_share_shape<kRdma>(ctx, arrivals.arrived, kLlCombineRecvPhase);
  if (!failed) {
    const bool logfmt = ctx.shape.format == static_cast<int>(protocol::LlFormat::kLogFmt);
    for (int t = blockIdx.x; t < p.num_tokens; t += gridDim.x) {
      if (threadIdx.x < 32) find_rows<kRdma>(p, arrivals.arrived, t, sources);
      __syncthreads();
      for (int c = threadIdx.x * 8; c < p.hidden; c += blockDim.x * 8) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (logfmt) {
          sum_logfmt(sources, c, p.hidden, acc);
        } else {
          sum_bf16(sources, c, acc);
        }
        std::uint32_t packed[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const __nv_bfloat162 pair = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
          packed[i] = *reinterpret_cast<const std::uint32_t*>(&pair);
        }
        *reinterpret_cast<int4*>(p.out + static_cast<std::int64_t>(t) * p.hidden + c) =
            make_int4(packed[0], packed[1], packed[2], packed[3]);
      }
      __syncthreads();
    }
  }
  if (failed && threadIdx.x == 0) ctx.state->abort = 1;
  ll_done_barrier<kRdma>(ctx, epoch, failed, kLlCombineRecvPhase);
}

}  // namespace moe_ep::kernels
