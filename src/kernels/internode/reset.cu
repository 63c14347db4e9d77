// reset() of an internode buffer: this rank's signal slots back to zero (after a barrier,
// so no peer is signalling), as the call counts in DeviceState restart at zero. Over peer
// memory the window's memset does the same; GIN keeps its signals apart from the window.
#include "kernels/internode/internode_collective.cuh"
#include "runtime/cuda_check.hpp"

namespace moe_ep::kernels {
namespace {

template <typename Windows>
__global__ void internode_reset_kernel(const __grid_constant__ InternodeContext<Windows> ctx) {
  const auto t = make_transport(ctx.windows);
  for (int slot = threadIdx.x; slot < ctx.slots.total(); slot += blockDim.x) t.reset_signal(slot);
}

}  // namespace

template <typename Windows>
void launch_internode_reset(const InternodeContext<Windows>& ctx, cudaStream_t stream) {
  internode_reset_kernel<Windows><<<1, 256, 0, stream>>>(ctx);
  MOE_EP_CHECK_LAUNCH();
}
#define MOE_EP_INSTANTIATE(W) template void launch_internode_reset(const InternodeContext<W>&, cudaStream_t);
MOE_EP_FOR_EACH_WINDOWS(MOE_EP_INSTANTIATE)
#undef MOE_EP_INSTANTIATE

}  // namespace moe_ep::kernels
