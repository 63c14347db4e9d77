// Rank masks of low latency (enable_shrink) as tiny kernels, so updates and queries are
// ordered on the caller's stream without a host sync; and the preload of every LL kernel.
#include "kernels/low_latency/ll_params.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {

void preload_ll_dispatch_kernels();
void preload_ll_combine_kernels();

namespace {

__global__ void mask_update_kernel(protocol::DeviceState* state, int rank, int value) {
  state->ll_masked[rank] = value;
}

__global__ void mask_clear_kernel(protocol::DeviceState* state) {
  if (threadIdx.x < kMaxNvlRanks) state->ll_masked[threadIdx.x] = 0;
}

__global__ void mask_query_kernel(const protocol::DeviceState* state, int num_ranks, int* out) {
  if (static_cast<int>(threadIdx.x) < num_ranks) out[threadIdx.x] = state->ll_masked[threadIdx.x] != 0 ? 1 : 0;
}

}  // namespace

void launch_ll_mask_update(protocol::DeviceState* state, int rank, int value, cudaStream_t stream) {
  mask_update_kernel<<<1, 1, 0, stream>>>(state, rank, value);
  MOE_EP_CHECK_LAUNCH();
}

void launch_ll_mask_clear(protocol::DeviceState* state, cudaStream_t stream) {
  mask_clear_kernel<<<1, kMaxNvlRanks, 0, stream>>>(state);
  MOE_EP_CHECK_LAUNCH();
}

void launch_ll_mask_query(const protocol::DeviceState* state, int num_ranks, int* out, cudaStream_t stream) {
  mask_query_kernel<<<1, kMaxNvlRanks, 0, stream>>>(state, num_ranks, out);
  MOE_EP_CHECK_LAUNCH();
}

void preload_low_latency_kernels() {
  preload_ll_dispatch_kernels();
  preload_ll_combine_kernels();
  cudaFuncAttributes attributes;
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, mask_update_kernel));
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, mask_clear_kernel));
  MOE_EP_CUDA_CHECK(cudaFuncGetAttributes(&attributes, mask_query_kernel));
}

}  // namespace moe_ep::kernels
