// The argument structs of the collective calls, field for field as in intranode.hpp:
// tensors are TensorView fields (set them from moe_ep._C.view), streams and events raw
// integer handles. The caller keeps every viewed tensor alive until the call's event.
#include "bindings.hpp"
#include "moe_ep/intranode.hpp"

namespace moe_ep::bindings {

void bind_call_args(nb::module_& m) {
  nb::class_<StreamOptions>(m, "StreamOptions")
      .def(nb::init<>())
      .def_prop_rw(
          "compute_stream", [](const StreamOptions& s) { return to_handle(s.compute_stream); },
          [](StreamOptions& s, std::uintptr_t h) { s.compute_stream = to_stream(h); })
      .def_prop_rw(
          "previous_event", [](const StreamOptions& s) { return to_handle(s.previous_event); },
          [](StreamOptions& s, std::uintptr_t h) { s.previous_event = to_event(h); })
      .def_rw("async_finish", &StreamOptions::async_finish);

  nb::class_<LayoutArgs>(m, "LayoutArgs")
      .def(nb::init<>())
      .def_rw("topk_idx", &LayoutArgs::topk_idx)
      .def_rw("num_experts", &LayoutArgs::num_experts)
      .def_rw("num_tokens_per_rank", &LayoutArgs::num_tokens_per_rank)
      .def_rw("num_tokens_per_rdma_rank", &LayoutArgs::num_tokens_per_rdma_rank)
      .def_rw("num_tokens_per_expert", &LayoutArgs::num_tokens_per_expert)
      .def_rw("is_token_in_rank", &LayoutArgs::is_token_in_rank)
      .def_rw("stream", &LayoutArgs::stream);

  nb::class_<DispatchArgs>(m, "DispatchArgs")
      .def(nb::init<>())
      .def_rw("x", &DispatchArgs::x)
      .def_rw("x_scales", &DispatchArgs::x_scales)
      .def_rw("topk_idx", &DispatchArgs::topk_idx)
      .def_rw("topk_weights", &DispatchArgs::topk_weights)
      .def_rw("num_tokens_per_rank", &DispatchArgs::num_tokens_per_rank)
      .def_rw("num_tokens_per_expert", &DispatchArgs::num_tokens_per_expert)
      .def_rw("is_token_in_rank", &DispatchArgs::is_token_in_rank)
      .def_rw("num_tokens_per_rdma_rank", &DispatchArgs::num_tokens_per_rdma_rank)
      .def_rw("expert_alignment", &DispatchArgs::expert_alignment)
      .def_rw("num_worst_tokens", &DispatchArgs::num_worst_tokens)
      .def_rw("config", &DispatchArgs::config)
      .def_rw("stream", &DispatchArgs::stream);

  nb::class_<CombineArgs>(m, "CombineArgs")
      .def(nb::init<>())
      .def_rw("x", &CombineArgs::x)
      .def_rw("topk_weights", &CombineArgs::topk_weights)
      .def_rw("bias0", &CombineArgs::bias0)
      .def_rw("bias1", &CombineArgs::bias1)
      .def_rw("combined_x", &CombineArgs::combined_x)
      .def_rw("combined_topk_weights", &CombineArgs::combined_topk_weights)
      .def_rw("config", &CombineArgs::config)
      .def_rw("stream", &CombineArgs::stream);
}

}  // namespace moe_ep::bindings
