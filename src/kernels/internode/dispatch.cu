// Internode dispatch copy phases.
// send (RDMA stage): a warp per token stages it once in this rank's window (payload,
// scales, global top-k ids, weights, source index) and puts it once to each node it goes
// to, at the rank with this rank's local index there, with the rows it takes at that
// node's ranks. The last block signals each node after every block's puts.
// forward (NVLink stage): once every node has signalled, a warp per relayed token writes
// it into the outputs of its ranks on this node, at the rows the sender computed (grouped
// by source rank, then token, as in intranode dispatch), and keeps those rows for combine.
#include "device/copy.cuh"
#include "kernels/internode/internode_collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kVectorsPerLane = 7;  // loads in flight per lane (divides 7168-wide rows)

// Stages token t's node-independent record; lanes write disjoint words.
template <typename Windows>
__device__ __forceinline__ void stage_record(const InternodeSendParams<Windows>& p, std::uint8_t* rec, int t, int lane) {
  const protocol::DispatchRecord& r = p.carve.record;
  device::warp_copy_row(reinterpret_cast<int4*>(rec), reinterpret_cast<const int4*>(p.x + t * p.x_row_stride),
                        static_cast<int>(p.row_bytes / 16), lane);
  float* scales = reinterpret_cast<float*>(rec + r.scales_offset);
  for (int c = lane; c < p.num_scales; c += 32) scales[c] = p.x_scales[t * p.scale_token_stride + c * p.scale_hidden_stride];
  if (lane < p.num_topk) {
    const std::int64_t slot = static_cast<std::int64_t>(t) * p.num_topk + lane;
    reinterpret_cast<int*>(rec + r.topk_offset)[lane] = static_cast<int>(p.topk_idx[slot]);
    reinterpret_cast<float*>(rec + r.weights_offset)[lane] = p.topk_weights != nullptr ? p.topk_weights[slot] : 0.0f;
  }
  if (lane == 0) *reinterpret_cast<int*>(rec + r.src_offset) = t;
}

template <typename Windows>
__global__ void __launch_bounds__(kThreads) internode_send_kernel(const __grid_constant__ InternodeSendParams<Windows> p) {
  const auto& ctx = p.ctx;
  if (ctx.state->abort != 0) return;  // the counting phase failed; the host raises
  const auto t = make_transport(ctx.windows);
  const NodeView v = node_view(ctx);
  const int R = v.num_nodes * v.per_node, N = v.num_nodes;
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int token = blockIdx.x * warps + threadIdx.x / 32; token < p.num_tokens; token += gridDim.x * warps) {
    const int* slots = p.rdma_send_pos + static_cast<std::int64_t>(token) * N;  // per node, -1: not sent
    bool any = false;
    for (int m = 0; m < N; ++m) any = any || slots[m] >= 0;
    if (!any) continue;
    stage_record(p, t.own(p.carve.stage(token)), token, lane);
    for (int m = 0; m < N; ++m) {
      if (slots[m] < 0 || lane >= v.per_node) continue;
      const int dst = m * v.per_node + lane;
      const int pos = p.send_pos[static_cast<std::int64_t>(token) * R + dst];
      const int first = v.rank == 0 ? 0 : p.rank_prefix_matrix[(v.rank - 1) * R + dst];
      reinterpret_cast<int*>(t.own(p.carve.positions_stage(token, m, N)))[lane] = pos < 0 ? -1 : first + pos;
    }
    __syncwarp();
    for (int m = 0; m < N; ++m) {
      if (slots[m] < 0) continue;
      const int peer = m * v.per_node + v.local;
      const std::int64_t dst = p.carve.recv(v.node, slots[m]);
      t.put_warp(peer, dst, p.carve.stage(token), p.carve.record.bytes, lane);
      t.put_warp(peer, dst + p.carve.record.bytes, p.carve.positions_stage(token, m, N), p.carve.record.positions_bytes,
                 lane);
    }
  }
  if (internode_last_block(ctx, t) && threadIdx.x == 0) {
    for (int m = 0; m < N; ++m) t.signal_add(m * v.per_node + v.local, ctx.slots.dispatch_data_from(v.node), 1);
  }
}

template <typename Windows>
__global__ void __launch_bounds__(kThreads) internode_forward_kernel(const __grid_constant__ InternodeForwardParams<Windows> p) {
  const auto& ctx = p.ctx;
  if (ctx.state->abort != 0) return;
  const auto t = make_transport(ctx.windows);
  const NodeView v = node_view(ctx);
  const int P = v.per_node;
  const std::uint64_t calls = ctx.state->internode_calls[0];  // this call (notify counted it)
  const std::uint64_t epoch = current_op_epoch(ctx.node);
  if (!wait_nodes(ctx, t, calls, protocol::Phase::kInternodeDispatchForward,
                  [&](int n) { return ctx.slots.dispatch_data_from(n); }, [&](int n) { return n * P + v.local; })) {
    return;
  }
  __shared__ protocol::SinkDescriptor sinks[kMaxNvlRanks];
  if (static_cast<int>(threadIdx.x) < P) {
    sinks[threadIdx.x] = rebase(peer_header(ctx.node, threadIdx.x)->sink, ctx.node.peer_bases[threadIdx.x]);
  }
  __syncthreads();

  const protocol::DispatchRecord& r = p.carve.record;
  const int num_relayed = p.forwarded_prefix[v.num_nodes - 1];
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int num_vectors = p.row_bytes / 16;
  for (int i = blockIdx.x * warps + threadIdx.x / 32; i < num_relayed; i += gridDim.x * warps) {
    int slot = 0;
    const int n = relayed_source(p.forwarded_prefix, v.num_nodes, i, &slot);
    const std::uint8_t* rec = t.own(p.carve.recv(n, slot));
    const int* positions = reinterpret_cast<const int*>(rec + r.bytes);
    std::int64_t row[kMaxNvlRanks];
    unsigned mask = 0;
#pragma unroll
    for (int j = 0; j < kMaxNvlRanks; ++j) {
      row[j] = j < P ? positions[j] : -1;
      // Rows past a sink's capacity were reported by the receiver's notify (num_worst_tokens).
      if (row[j] >= 0 && row[j] < sinks[j].num_rows) mask |= 1u << j;
    }
    if (p.forward_rows != nullptr && lane < P && i < p.forward_capacity) {
      p.forward_rows[static_cast<std::int64_t>(i) * P + lane] = positions[lane];
    }
    const int4* src = reinterpret_cast<const int4*>(rec);
    for (int base = 0; base < num_vectors; base += 32 * kVectorsPerLane) {
      int4 vec[kVectorsPerLane];
#pragma unroll
      for (int u = 0; u < kVectorsPerLane; ++u) {
        const int k = base + u * 32 + lane;
        if (k < num_vectors) vec[u] = src[k];
      }
#pragma unroll
      for (int j = 0; j < kMaxNvlRanks; ++j) {
        if (!(mask & (1u << j))) continue;
        int4* dst = reinterpret_cast<int4*>(sinks[j].recv_x + row[j] * p.row_bytes);
#pragma unroll
        for (int u = 0; u < kVectorsPerLane; ++u) {
          const int k = base + u * 32 + lane;
          if (k < num_vectors) dst[k] = vec[u];
        }
      }
    }
    const float* scales = reinterpret_cast<const float*>(rec + r.scales_offset);
    for (int c = lane; c < p.num_scales; c += 32) {
      const float s = scales[c];
#pragma unroll
      for (int j = 0; j < kMaxNvlRanks; ++j) {
        if (mask & (1u << j)) sinks[j].recv_x_scales[row[j] * p.num_scales + c] = s;
      }
    }
    if (lane < p.num_topk) {
      const int e = reinterpret_cast<const int*>(rec + r.topk_offset)[lane];
      const float w = reinterpret_cast<const float*>(rec + r.weights_offset)[lane];
#pragma unroll
      for (int j = 0; j < kMaxNvlRanks; ++j) {
        if (!(mask & (1u << j)) || sinks[j].recv_topk_idx == nullptr) continue;
        const int begin = (v.node * P + j) * p.num_local_experts;
        const bool local = e >= begin && e < begin + p.num_local_experts;
        const std::int64_t out = row[j] * p.num_topk + lane;
        sinks[j].recv_topk_idx[out] = local ? e - begin : -1;
        if (sinks[j].recv_topk_weights != nullptr) sinks[j].recv_topk_weights[out] = local ? w : 0.0f;
      }
    }
    if (lane == 0) {
      const int source_token = *reinterpret_cast<const int*>(rec + r.src_offset);
#pragma unroll
      for (int j = 0; j < kMaxNvlRanks; ++j) {
        if ((mask & (1u << j)) && sinks[j].recv_src_idx != nullptr) sinks[j].recv_src_idx[row[j]] = source_token;
      }
    }
  }
  finish_with_done_barrier(ctx.node, epoch, protocol::Phase::kDispatchReceive);
}

}  // namespace

template <typename Windows>
void launch_internode_send(const InternodeSendParams<Windows>& params, int num_blocks, cudaStream_t stream) {
  internode_send_kernel<Windows><<<num_blocks, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

template <typename Windows>
void launch_internode_forward(const InternodeForwardParams<Windows>& params, int num_blocks, cudaStream_t stream) {
  internode_forward_kernel<Windows><<<num_blocks, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

#define MOE_EP_INSTANTIATE(W)                                                                          \
  template void launch_internode_send(const InternodeSendParams<W>&, int, cudaStream_t);               \
  template void launch_internode_forward(const InternodeForwardParams<W>&, int, cudaStream_t);
MOE_EP_FOR_EACH_WINDOWS(MOE_EP_INSTANTIATE)
#undef MOE_EP_INSTANTIATE

void preload_internode_dispatch_kernels() {
  cudaFuncAttributes attributes;
#define MOE_EP_PRELOAD(W)                                                                    \
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, internode_send_kernel<W>));           \
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, internode_forward_kernel<W>));
  MOE_EP_FOR_EACH_WINDOWS(MOE_EP_PRELOAD)
#undef MOE_EP_PRELOAD
}

}  // namespace moe_ep::kernels
