// get_dispatch_layout without a Buffer: validation and launch for any rank count (the
// Buffer call and the layout tests/benchmarks for 1..1024 ranks share this).
#pragma once
#include <cuda_runtime_api.h>

#include "moe_ep/intranode.hpp"
#include "protocol/device_state.hpp"
#include "runtime/device_memory.hpp"

namespace moe_ep::host {

void validate_layout_args(const LayoutArgs& args, int num_ranks, int num_ranks_per_node);
// Grows `workspace` as needed. Errors in expert ids go to `error` (device side).
void launch_dispatch_layout(const LayoutArgs& args, int num_ranks, int num_ranks_per_node, int rank,
                            runtime::DeviceAllocation& workspace, protocol::DeviceState* state,
                            protocol::ErrorRecord* error, cudaStream_t stream);

}  // namespace moe_ep::host
