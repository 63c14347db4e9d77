// Shared kernel parameters (see kernel_args.hpp).
#include "host/kernel_args.hpp"

namespace moe_ep::host {

kernels::PublishParams sink_publication(const Buffer::Impl& b, const kernels::CollectiveContext& ctx,
                                        const DispatchArgs& a, const DispatchShape& s, const DispatchHandle& handle,
                                        const DispatchOutputs& out, bool cached) {
  kernels::PublishParams p{};
  p.ctx = ctx;
  p.flags = protocol::FlagSet::kSinkReady;
  p.phase = protocol::Phase::kDispatchPublishOutputs;
  p.sink.owner_base = static_cast<std::uint8_t*>(b.nvl->local());
  p.sink.recv_x = out.recv_x.ptr<std::uint8_t>();
  p.sink.recv_x_scales = s.fp8 ? out.recv_x_scales.ptr<float>() : nullptr;
  p.sink.recv_topk_idx = s.num_topk > 0 ? out.recv_topk_idx.ptr<std::int64_t>() : nullptr;
  p.sink.recv_topk_weights =
      s.num_topk > 0 && a.topk_weights.defined() ? out.recv_topk_weights.ptr<float>() : nullptr;
  p.sink.recv_src_idx = cached ? nullptr : handle.recv_src_idx.ptr<int>();
  p.sink.num_rows = static_cast<int>(handle.num_recv_rows);
  return p;
}

}  // namespace moe_ep::host
