// Launch sequences of the internode (hierarchical) high-throughput calls. Buffer's
// dispatch and combine check the arguments, then hand over here when ranks span nodes.
#pragma once
#include <cuda_runtime_api.h>

#include "host/dispatch_checks.hpp"

namespace moe_ep::host {

// Counting kernel: positions per rank and node into the handle, count rows exchanged.
void launch_internode_notify(const Buffer::Impl& b, const DispatchArgs& a, const DispatchShape& s,
                             DispatchHandle& handle, bool cached, bool host_sync, cudaStream_t comm);
// Outputs published within the node, then the RDMA stage and the NVLink stage.
void launch_internode_dispatch(const Buffer::Impl& b, const DispatchArgs& a, const DispatchShape& s,
                               const DispatchHandle& handle, const DispatchOutputs& out, bool cached, int num_sms,
                               cudaStream_t comm);
// After the caller published its expert outputs within the node: partial sums at the
// forwarders, then the reduction at the home ranks.
void launch_internode_combine(const Buffer::Impl& b, const CombineArgs& a, const DispatchHandle& handle,
                              int hidden, int num_topk, int num_sms, cudaStream_t comm);
// reset(), after a barrier: the transport's signals and window of this rank back to zero.
void reset_internode_transport(const Buffer::Impl& b, cudaStream_t comm);
// Combine's records must fit the combine half of the window (checked before any launch).
void check_internode_combine_capacity(const std::string& op, const Buffer::Impl& b, std::int64_t num_tokens,
                                      std::int64_t hidden, int num_topk);
// Throws unless the handle carries the internode tensors of this buffer's node shape.
void check_internode_handle(const std::string& op, const Buffer::Impl& b, const DispatchHandle& handle);

}  // namespace moe_ep::host
