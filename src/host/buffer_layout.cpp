// Buffer::get_dispatch_layout: the layout for this buffer's group, on its comm stream.
#include "host/buffer_impl.hpp"
#include "host/layout_launch.hpp"

namespace moe_ep {

Event Buffer::get_dispatch_layout(const LayoutArgs& args) {
  runtime::DeviceGuard guard(impl_->device);
  impl_->ensure_usable("get_dispatch_layout");
  // Nodes as the high-throughput calls see them (emulated ones included); low-latency
  // buffers ignore the layout's per-node counts, so they keep the group's.
  const int per_node = impl_->internode() ? impl_->ranks_per_node : impl_->group->num_ranks_per_node();
  host::validate_layout_args(args, impl_->num_ranks, per_node);
  cudaStream_t comm = impl_->begin(args.stream);
  host::launch_dispatch_layout(args, impl_->num_ranks, per_node, impl_->rank,
                               impl_->layout_workspace, impl_->device_state(), &impl_->host_on_device()->error, comm);
  return impl_->end(args.stream);
}

}  // namespace moe_ep
