// Kernel parameters that the intranode and internode launches share, filled from the
// call's arguments in one place (their parameter structs name these fields alike).
#pragma once
#include "host/dispatch_checks.hpp"

namespace moe_ep::host {

// The publication of this rank's dispatch outputs (the sink peers write into), on `ctx`'s
// ranks: the whole group within one node, the node's ranks across nodes.
kernels::PublishParams sink_publication(const Buffer::Impl& b, const kernels::CollectiveContext& ctx,
                                        const DispatchArgs& a, const DispatchShape& s, const DispatchHandle& handle,
                                        const DispatchOutputs& out, bool cached);

// What a dispatch's send kernel reads: the tokens (x with any row stride, FP8 scales with
// any strides, top-k ids and weights) and the handle's routing.
template <typename SendParams>
void fill_send_payload(SendParams& p, const DispatchArgs& a, const DispatchShape& s, const DispatchHandle& handle) {
  p.num_tokens = static_cast<int>(s.num_tokens);
  p.x = static_cast<const std::uint8_t*>(a.x.data);
  p.x_row_stride = a.x.stride(0) * static_cast<std::int64_t>(dtype_bytes(a.x.dtype));
  p.row_bytes = s.row_bytes;
  if (s.fp8) {
    p.x_scales = a.x_scales.ptr<const float>();
    p.scale_token_stride = a.x_scales.stride(0);
    p.scale_hidden_stride = a.x_scales.ndim == 2 ? a.x_scales.stride(1) : 0;
    p.num_scales = s.num_scales;
  }
  p.topk_idx = s.num_topk > 0 ? a.topk_idx.ptr<const std::int64_t>() : nullptr;
  p.topk_weights = s.num_topk > 0 ? a.topk_weights.ptr<const float>() : nullptr;
  p.num_topk = s.num_topk;
  p.send_pos = handle.send_pos.ptr<const int>();
  p.rank_prefix_matrix = handle.rank_prefix_matrix.ptr<const int>();
}

// What a combine's last kernel writes and adds: the combined outputs and the biases.
template <typename ReduceParams>
void fill_combine_outputs(ReduceParams& p, const CombineArgs& a, int num_topk) {
  p.bias0 = a.bias0.ptr<const std::uint16_t>();
  p.bias1 = a.bias1.ptr<const std::uint16_t>();
  p.bias0_row_stride = a.bias0.defined() ? a.bias0.stride(0) : 0;
  p.bias1_row_stride = a.bias1.defined() ? a.bias1.stride(0) : 0;
  p.combined_x = a.combined_x.ptr<std::uint16_t>();
  p.combined_topk_weights = num_topk > 0 ? a.combined_topk_weights.ptr<float>() : nullptr;
}

}  // namespace moe_ep::host
