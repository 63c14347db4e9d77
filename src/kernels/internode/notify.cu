// Internode dispatch counting, one block: each token's position among what this rank
// sends to every rank (send_pos) and to every node (rdma_send_pos), checked against the
// layout's counts; then every rank puts its count row to every rank and signals it. From
// the full matrix each rank computes the prefix matrix (where its rows land on each
// receiver), its received counts, and the tokens it relays for its node.
#include "device/expert_ids.cuh"
#include "kernels/internode/internode_collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kColumnsPerPass = 16;  // columns: ranks, then nodes
constexpr int kMaxColumns = 2 * kMaxInternodeRanks;

// Column c of token t: is it sent to rank c (c < R), or to node c - R (any rank there).
template <typename Windows>
__device__ __forceinline__ bool token_in_column(const InternodeNotifyParams<Windows>& p, int t, int c, int R, int P) {
  const bool* row = p.is_token_in_rank + static_cast<std::int64_t>(t) * R;
  if (c < R) return row[c];
  bool any = false;
  for (int j = 0; j < P; ++j) any = any || row[(c - R) * P + j];
  return any;
}

// Block-wide scan over tokens, 1024 per round, kColumnsPerPass columns per pass;
// totals[c] ends as column c's count.
template <typename Windows>
__device__ void count_positions(const InternodeNotifyParams<Windows>& p, const NodeView& v, int* totals) {
  const int R = v.num_nodes * v.per_node, N = v.num_nodes, columns = R + N;
  __shared__ int warp_counts[kWarps][kColumnsPerPass];
  __shared__ int running[kColumnsPerPass];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int first = 0; first < columns; first += kColumnsPerPass) {
    if (threadIdx.x < kColumnsPerPass) running[threadIdx.x] = 0;
    __syncthreads();
    for (int chunk = 0; chunk < p.num_tokens; chunk += kThreads) {
      const int t = chunk + threadIdx.x;
      const bool valid = t < p.num_tokens;
      bool in[kColumnsPerPass];
      int lane_prefix[kColumnsPerPass];
#pragma unroll
      for (int i = 0; i < kColumnsPerPass; ++i) {
        in[i] = valid && first + i < columns && token_in_column(p, t, first + i, R, v.per_node);
        const unsigned ballot = __ballot_sync(0xffffffffu, in[i]);
        lane_prefix[i] = __popc(ballot & ((1u << lane) - 1u));
        if (lane == 0) warp_counts[warp][i] = __popc(ballot);
      }
      __syncthreads();
      if (threadIdx.x < kColumnsPerPass) {  // exclusive scan over warps, per column
        int sum = running[threadIdx.x];
        for (int w = 0; w < kWarps; ++w) {
          const int c = warp_counts[w][threadIdx.x];
          warp_counts[w][threadIdx.x] = sum;
          sum += c;
        }
        running[threadIdx.x] = sum;
      }
      __syncthreads();
      if (valid) {
#pragma unroll
        for (int i = 0; i < kColumnsPerPass; ++i) {
          const int c = first + i;
          if (c >= columns) break;
          const int pos = in[i] ? warp_counts[warp][i] + lane_prefix[i] : -1;
          if (c < R) {
            p.send_pos[static_cast<std::int64_t>(t) * R + c] = pos;
          } else {
            p.rdma_send_pos[static_cast<std::int64_t>(t) * N + (c - R)] = pos;
          }
        }
      }
      __syncthreads();
    }
    if (threadIdx.x < kColumnsPerPass && first + threadIdx.x < columns) totals[first + threadIdx.x] = running[threadIdx.x];
    __syncthreads();
  }
}

// Compares the counts with the layout's (num_tokens_per_rank, num_tokens_per_rdma_rank).
template <typename Windows>
__device__ bool counts_match_layout(const InternodeNotifyParams<Windows>& p, const NodeView& v, const int* totals) {
  const int R = v.num_nodes * v.per_node;
  __shared__ bool ok;
  if (threadIdx.x == 0) ok = true;
  __syncthreads();
  for (int c = threadIdx.x; c < R + v.num_nodes; c += blockDim.x) {
    if (c < R && totals[c] != p.num_tokens_per_rank[c]) {
      device::record_error(p.ctx.error, protocol::ErrorCode::kCountMismatch, v.rank, protocol::Phase::kDispatchNotify,
                           c, totals[c], p.num_tokens_per_rank[c]);
      ok = false;
    }
    if (p.num_tokens_per_rdma_rank != nullptr && c >= R && totals[c] != p.num_tokens_per_rdma_rank[c - R]) {
      device::record_error(p.ctx.error, protocol::ErrorCode::kCountMismatch, v.rank, protocol::Phase::kDispatchNotify,
                           -1, totals[c], p.num_tokens_per_rdma_rank[c - R], c - R, protocol::kCountMismatchPerNode);
      ok = false;
    }
  }
  __syncthreads();
  return ok;
}

// After the exchange: every sender's shape must equal ours, and none may have failed.
template <typename Windows>
__device__ bool rows_agree(const InternodeNotifyParams<Windows>& p, const NodeView& v, const int* rows, int row_ints) {
  const int R = v.num_nodes * v.per_node;
  __shared__ bool agree;
  if (threadIdx.x == 0) agree = true;
  __syncthreads();
  for (int s = threadIdx.x; s < R; s += blockDim.x) {
    const int* theirs = rows + static_cast<std::int64_t>(s) * row_ints;
    if (theirs[protocol::kCountFailed] != 0) {
      device::record_error(p.ctx.error, protocol::ErrorCode::kPeerFailed, v.rank, protocol::Phase::kDispatchNotify, s);
      agree = false;
    }
    const int mine[] = {p.row_bytes, p.num_topk, p.num_experts, p.num_scales};
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      if (theirs[f] != mine[f]) {
        device::record_error(p.ctx.error, protocol::ErrorCode::kShapeMismatch, v.rank, protocol::Phase::kDispatchNotify,
                             s, mine[f], theirs[f], 0, f + 1);
        agree = false;
      }
    }
  }
  __syncthreads();
  return agree;
}

// The prefix matrix, this rank's received counts and relayed-token prefix, for the host.
template <typename Windows>
__device__ void compute_received_counts(const InternodeNotifyParams<Windows>& p, const NodeView& v, const int* rows,
                                        const protocol::CountRows& layout) {
  const int R = v.num_nodes * v.per_node, row_ints = layout.row_ints();
  auto row = [&](int s) { return rows + static_cast<std::int64_t>(s) * row_ints; };
  if (static_cast<int>(threadIdx.x) < R) {
    const int j = threadIdx.x;
    int running = 0;
    for (int s = 0; s < R; ++s) {
      running += row(s)[layout.per_rank() + j];
      p.rank_prefix_matrix[s * R + j] = running;
    }
    if (j == v.rank) {
      p.host_state->num_recv_tokens = running;
      if (p.num_worst_tokens > 0 && running > p.num_worst_tokens) {
        device::record_error(p.ctx.error, protocol::ErrorCode::kCapacity, v.rank, protocol::Phase::kDispatchNotify, -1,
                             running, p.num_worst_tokens);
      }
    }
  }
  if (threadIdx.x == 0) {  // tokens of the same local rank on each node that this rank relays
    int running = 0;
    for (int n = 0; n < v.num_nodes; ++n) {
      running += row(n * v.per_node + v.local)[layout.per_node() + v.node];
      p.forwarded_prefix[n] = running;
    }
    p.host_state->num_forward_rows = running;
    if (running > p.forward_capacity) {
      device::record_error(p.ctx.error, protocol::ErrorCode::kCapacity, v.rank, protocol::Phase::kDispatchNotify, -1,
                           running, p.forward_capacity, 0, protocol::kCapacityForwardRows);
    }
  }
  const int num_local = p.num_experts / R, begin = v.rank * num_local;
  for (int e = threadIdx.x; e < num_local; e += blockDim.x) {
    int count = 0;
    for (int s = 0; s < R; ++s) count += row(s)[layout.per_expert() + begin + e];
    const int a = p.expert_alignment;
    p.host_state->num_recv_tokens_per_expert[e] = (count + a - 1) / a * a;
  }
}

template <typename Windows>
__global__ void __launch_bounds__(kThreads) internode_notify_kernel(const __grid_constant__ InternodeNotifyParams<Windows> p) {
  const auto& ctx = p.ctx;
  const auto t = make_transport(ctx.windows);
  const NodeView v = node_view(ctx);
  const int R = v.num_nodes * v.per_node;
  const protocol::CountRows& layout = ctx.window.counts;
  const int row_ints = layout.row_ints();
  int* rows = reinterpret_cast<int*>(t.own(ctx.window.counts_offset));
  int* own_row = rows + static_cast<std::int64_t>(R) * row_ints;
  const std::uint64_t calls = ctx.state->internode_calls[0] + 1;

  __shared__ int totals[kMaxColumns];
  bool ok = true;
  if (!p.cached) {
    if (p.topk_idx != nullptr) {
      ok = device::validate_expert_ids(p.topk_idx, p.num_tokens, p.num_topk, p.num_experts, ctx.error, v.rank);
    }
    count_positions(p, v, totals);
    ok = counts_match_layout(p, v, totals) && ok;
    for (int c = threadIdx.x; c < R + v.num_nodes; c += blockDim.x) own_row[layout.per_rank() + c] = totals[c];
    for (int e = threadIdx.x; e < p.num_experts; e += blockDim.x) {
      own_row[layout.per_expert() + e] = p.num_tokens_per_expert[e];
    }
  }
  if (threadIdx.x == 0) {
    own_row[protocol::kCountRowBytes] = p.row_bytes;
    own_row[protocol::kCountNumTopk] = p.num_topk;
    own_row[protocol::kCountNumExperts] = p.num_experts;
    own_row[protocol::kCountNumScales] = p.num_scales;
    own_row[protocol::kCountFailed] = ok ? 0 : 1;
  }
  __syncthreads();
  // A cached call exchanges only the header: the shapes, and the call count of the slots.
  const std::int64_t bytes =
      p.cached ? 4 * protocol::kCountHeaderInts : protocol::align_up(4LL * (layout.per_expert() + p.num_experts), 16);
  const int lane = threadIdx.x % 32;
  for (int q = threadIdx.x / 32; q < R; q += kWarps) {
    t.put_warp(q, ctx.window.counts_offset + 4LL * v.rank * row_ints, ctx.window.counts_offset + 4LL * R * row_ints,
               bytes, lane);
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < R) t.signal_add(threadIdx.x, ctx.slots.counts_from(v.rank), 1);
  t.flush_block();  // the own row is rewritten by the next call
  __shared__ bool arrived;
  if (threadIdx.x == 0) arrived = true;
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < R &&
      !transport::wait_signal(t, ctx.slots.counts_from(threadIdx.x), calls, ctx.timeout_ns, ctx.error,
                              protocol::Phase::kDispatchNotify, threadIdx.x)) {
    arrived = false;
  }
  __syncthreads();
  if (threadIdx.x == 0) ctx.state->internode_calls[0] = calls;  // the slots have counted this call
  if (!arrived || !rows_agree(p, v, rows, row_ints) || !ok) {
    if (threadIdx.x == 0) ctx.state->abort = 1;
    return;
  }
  if (p.cached) return;
  compute_received_counts(p, v, rows, layout);
  if (p.host_waits) {
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence_system();  // the counts before the flag; the host polls the flag
      *const_cast<volatile std::int32_t*>(&p.host_state->counts_ready) = 1;
    }
  }
}

}  // namespace

template <typename Windows>
void launch_internode_notify(const InternodeNotifyParams<Windows>& params, cudaStream_t stream) {
  internode_notify_kernel<Windows><<<1, kThreads, 0, stream>>>(params);
  MOE_EP_CHECK_LAUNCH();
}
#define MOE_EP_INSTANTIATE(W) template void launch_internode_notify(const InternodeNotifyParams<W>&, cudaStream_t);
MOE_EP_FOR_EACH_WINDOWS(MOE_EP_INSTANTIATE)
#undef MOE_EP_INSTANTIATE

void preload_internode_notify_kernel() {
  cudaFuncAttributes attributes;
#define MOE_EP_PRELOAD(W) MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, internode_notify_kernel<W>));
  MOE_EP_FOR_EACH_WINDOWS(MOE_EP_PRELOAD)
#undef MOE_EP_PRELOAD
}

}  // namespace moe_ep::kernels
