// Internode combine, the reverse of dispatch's two stages.
// forward: each forwarder, once every home rank it serves has freed its receive slots,
// sums the rows its node's ranks return for each relayed token (fp32, local rank order)
// into one bf16 partial (+ fp32 top-k weight sums), stages it and puts it to the token's
// home rank: one RDMA row per (token, node). The last block signals every home.
// reduce: the home rank sums each token's partials in node order, adds the biases, and
// rounds once to bf16.
#include "device/bf16_vector.cuh"
#include "kernels/internode/internode_collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kThreads = 512;

// Block 0 of combine_forward: this rank, as a home, puts the shape of the records it
// expects to every forwarder that serves it, then signals that its receive slots are free
// (its previous combine has ended).
template <typename Windows, typename Transport>
__device__ void announce_home(const InternodeCombineForwardParams<Windows>& p, const Transport& t, const NodeView& v) {
  const protocol::InternodeWindow& w = p.ctx.window;
  const std::int64_t staged = w.shapes_offset + 16LL * v.num_nodes * v.per_node;
  if (threadIdx.x < 32) {
    if (threadIdx.x == 0) *reinterpret_cast<protocol::CombineShape*>(t.own(staged)) = {p.hidden, p.num_topk, {0, 0}};
    __syncwarp();
    for (int m = 0; m < v.num_nodes; ++m) {
      t.put_warp(m * v.per_node + v.local, w.shapes_offset + 16LL * v.rank, staged, 16, threadIdx.x);
    }
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < v.num_nodes) {
    t.signal_add(threadIdx.x * v.per_node + v.local, p.ctx.slots.combine_ready_from(v.node), 1);
  }
}

// Whole block, after the homes' signals: each home's shape must be this rank's (records
// of another size would land at other offsets). Thread n reads home n, whose signal it
// acquired itself.
template <typename Windows, typename Transport>
__device__ bool homes_agree_on_shape(const InternodeCombineForwardParams<Windows>& p, const Transport& t,
                                     const NodeView& v) {
  __shared__ bool agree;
  if (threadIdx.x == 0) agree = true;
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < v.num_nodes) {
    const int home = threadIdx.x * v.per_node + v.local;
    const auto* theirs = reinterpret_cast<const protocol::CombineShape*>(t.own(p.ctx.window.shapes_offset + 16LL * home));
    const int mine[] = {p.hidden, p.num_topk};
    const int got[] = {theirs->hidden, theirs->num_topk};
    const protocol::ShapeField fields[] = {protocol::ShapeField::kHidden, protocol::ShapeField::kNumTopk};
    for (int f = 0; f < 2; ++f) {
      if (mine[f] == got[f]) continue;
      device::record_error(p.ctx.error, protocol::ErrorCode::kShapeMismatch, v.rank,
                           protocol::Phase::kInternodeCombineForward, home, mine[f], got[f], 0,
                           static_cast<std::int32_t>(fields[f]));
      agree = false;
    }
  }
  __syncthreads();
  if (!agree && threadIdx.x == 0) p.ctx.state->abort = 1;
  return agree;
}

template <typename Windows>
__global__ void __launch_bounds__(kThreads)
    internode_combine_forward_kernel(const __grid_constant__ InternodeCombineForwardParams<Windows> p) {
  const auto& ctx = p.ctx;
  if (ctx.state->abort != 0) return;
  const auto t = make_transport(ctx.windows);
  const NodeView v = node_view(ctx);
  const int P = v.per_node;
  const std::uint64_t calls = ctx.state->internode_calls[1] + 1;  // reduce counts it at its end
  const std::uint64_t epoch = current_op_epoch(ctx.node);
  if (blockIdx.x == 0) announce_home(p, t, v);
  if (!wait_nodes(ctx, t, calls, protocol::Phase::kInternodeCombineForward,
                  [&](int n) { return ctx.slots.combine_ready_from(n); }, [&](int n) { return n * P + v.local; }) ||
      !homes_agree_on_shape(p, t, v)) {
    return;
  }
  __shared__ protocol::SourceDescriptor sources[kMaxNvlRanks];
  if (static_cast<int>(threadIdx.x) < P) {
    sources[threadIdx.x] = rebase(peer_header(ctx.node, threadIdx.x)->source, ctx.node.peer_bases[threadIdx.x]);
  }
  __syncthreads();

  const int num_relayed = p.forwarded_prefix[v.num_nodes - 1];
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int num_vectors = p.hidden / 8;
  for (int i = blockIdx.x * warps + threadIdx.x / 32; i < num_relayed; i += gridDim.x * warps) {
    int slot = 0;
    const int n = relayed_source(p.forwarded_prefix, v.num_nodes, i, &slot);
    // Rows of this token on the node's ranks; indices stay compile-time constants
    // (unrolled over kMaxNvlRanks) so nothing spills to local memory.
    std::int64_t row[kMaxNvlRanks];
    const int4* rows[kMaxNvlRanks];
    unsigned mask = 0;
#pragma unroll
    for (int j = 0; j < kMaxNvlRanks; ++j) {
      row[j] = j < P ? p.forward_rows[static_cast<std::int64_t>(i) * P + j] : -1;
      rows[j] = nullptr;
      if (row[j] >= 0 && row[j] < sources[j].num_tokens) {
        mask |= 1u << j;
        rows[j] = reinterpret_cast<const int4*>(sources[j].x + row[j] * sources[j].x_row_stride);
      }
    }
    int4* staged = reinterpret_cast<int4*>(t.own(p.carve.stage(n, slot)));
    for (int k = lane; k < num_vectors; k += 32) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      device::accumulate_rows_bf16x8(acc, rows, mask, k);
      staged[k] = device::pack_bf16x8(acc);
    }
    if (lane < p.num_topk) {
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < kMaxNvlRanks; ++j) {
        if (mask & (1u << j)) sum += sources[j].topk_weights[row[j] * p.num_topk + lane];
      }
      reinterpret_cast<float*>(reinterpret_cast<std::uint8_t*>(staged) + p.carve.weights_offset)[lane] = sum;
    }
    __syncwarp();
    t.put_warp(n * P + v.local, p.carve.recv(v.node, slot), p.carve.stage(n, slot), p.carve.record_bytes, lane);
  }
  if (internode_last_block(ctx, t) && threadIdx.x == 0) {
    for (int n = 0; n < v.num_nodes; ++n) t.signal_add(n * P + v.local, ctx.slots.combine_data_from(v.node), 1);
  }
  finish_with_done_barrier(ctx.node, epoch, protocol::Phase::kCombineReduce);
}

template <typename Windows>
__global__ void __launch_bounds__(kThreads)
    internode_combine_reduce_kernel(const __grid_constant__ InternodeCombineReduceParams<Windows> p) {
  const auto& ctx = p.ctx;
  if (ctx.state->abort != 0) return;
  const auto t = make_transport(ctx.windows);
  const NodeView v = node_view(ctx);
  const int N = v.num_nodes;
  const std::uint64_t calls = ctx.state->internode_calls[1] + 1;
  if (!wait_nodes(ctx, t, calls, protocol::Phase::kInternodeCombineReduce,
                  [&](int n) { return ctx.slots.combine_data_from(n); },
                  [&](int n) { return n * v.per_node + v.local; })) {
    return;
  }
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int num_vectors = p.hidden / 8;
  for (int token = blockIdx.x * warps + threadIdx.x / 32; token < p.num_tokens; token += gridDim.x * warps) {
    const int* slots = p.rdma_send_pos + static_cast<std::int64_t>(token) * N;  // per node, -1: not sent
    // The partial of node m, or null.
    auto partial = [&](int m) { return m < N && slots[m] >= 0 ? t.own(p.carve.recv(m, slots[m])) : nullptr; };
    int4* out = reinterpret_cast<int4*>(p.combined_x + static_cast<std::int64_t>(token) * p.hidden);
    const int4* bias0 = p.bias0 == nullptr ? nullptr : reinterpret_cast<const int4*>(p.bias0 + token * p.bias0_row_stride);
    const int4* bias1 = p.bias1 == nullptr ? nullptr : reinterpret_cast<const int4*>(p.bias1 + token * p.bias1_row_stride);
    for (int k = lane; k < num_vectors; k += 32) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      // Nodes in order, kMaxNvlRanks loads in flight before their adds (plain loads: peers
      // put the partials while this kernel runs).
      for (int first = 0; first < N; first += kMaxNvlRanks) {
        const int4* rows[kMaxNvlRanks];
        unsigned mask = 0;
#pragma unroll
        for (int i = 0; i < kMaxNvlRanks; ++i) {
          rows[i] = reinterpret_cast<const int4*>(partial(first + i));
          if (rows[i] != nullptr) mask |= 1u << i;
        }
        device::accumulate_rows_bf16x8<kMaxNvlRanks, /*kReadOnly=*/false>(acc, rows, mask, k);
      }
      device::accumulate_biases_bf16x8(acc, bias0, bias1, k);
      out[k] = device::pack_bf16x8(acc);
    }
    if (p.combined_topk_weights != nullptr && lane < p.num_topk) {
      float sum = 0.0f;
      for (int m = 0; m < N; ++m) {
        if (const std::uint8_t* row = partial(m)) sum += reinterpret_cast<const float*>(row + p.carve.weights_offset)[lane];
      }
      p.combined_topk_weights[static_cast<std::int64_t>(token) * p.num_topk + lane] = sum;
    }
  }
  if (internode_last_block(ctx, t) && threadIdx.x == 0) ctx.state->internode_calls[1] = calls;
}

}  // namespace

template <typename Windows>
void launch_internode_combine_forward(const InternodeCombineForwardParams<Windows>& params, int num_blocks,
                                      cudaStream_t stream) {
  internode_combine_forward_kernel<Windows><<<num_blocks, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

template <typename Windows>
void launch_internode_combine_reduce(const InternodeCombineReduceParams<Windows>& params, int num_blocks,
                                     cudaStream_t stream) {
  internode_combine_reduce_kernel<Windows><<<num_blocks, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}

#define MOE_EP_INSTANTIATE(W)                                                                                     \
  template void launch_internode_combine_forward(const InternodeCombineForwardParams<W>&, int, cudaStream_t);     \
  template void launch_internode_combine_reduce(const InternodeCombineReduceParams<W>&, int, cudaStream_t);
MOE_EP_FOR_EACH_WINDOWS(MOE_EP_INSTANTIATE)
#undef MOE_EP_INSTANTIATE

void preload_internode_combine_kernels() {
  cudaFuncAttributes attributes;
#define MOE_EP_PRELOAD(W)                                                                      \
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, internode_combine_forward_kernel<W>));  \
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, internode_combine_reduce_kernel<W>));
  MOE_EP_FOR_EACH_WINDOWS(MOE_EP_PRELOAD)
#undef MOE_EP_PRELOAD
}

}  // namespace moe_ep::kernels
