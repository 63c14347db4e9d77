// The low-latency structs of low_latency.hpp, field for field: the handle a dispatch fills
// (its tensors are caller-allocated views, its scalars set by the call), the argument and
// output structs, and the call's result (event + receive hook). Tensors are TensorView
// fields set from moe_ep._C.view; the caller keeps them alive until the hook ran.
#include "bindings.hpp"
#include "moe_ep/low_latency.hpp"

namespace moe_ep::bindings {

void bind_low_latency_args(nb::module_& m) {
  m.attr("MAX_LOW_LATENCY_TOKENS") = kMaxLowLatencyTokens;

  nb::class_<LowLatencyHandle>(m, "LowLatencyHandle")
      .def(nb::init<>())
      .def_rw("src_info", &LowLatencyHandle::src_info)            // [E, N] int32
      .def_rw("layout_range", &LowLatencyHandle::layout_range)    // [E, num_ranks] int64
      .def_rw("combine_slots", &LowLatencyHandle::combine_slots)  // [T, num_topk] int32
      .def_rw("absolute_slots", &LowLatencyHandle::absolute_slots)
      .def_rw("num_max_dispatch_tokens_per_rank", &LowLatencyHandle::num_max_dispatch_tokens_per_rank)
      .def_rw("hidden", &LowLatencyHandle::hidden)
      .def_rw("num_experts", &LowLatencyHandle::num_experts)
      .def_rw("num_topk", &LowLatencyHandle::num_topk)
      .def_rw("num_tokens", &LowLatencyHandle::num_tokens)
      .def_rw("buffer_id", &LowLatencyHandle::buffer_id)
      .def_rw("buffer_generation", &LowLatencyHandle::buffer_generation);

  nb::class_<LowLatencyDispatchArgs>(m, "LowLatencyDispatchArgs")
      .def(nb::init<>())
      .def_rw("x", &LowLatencyDispatchArgs::x)
      .def_rw("topk_idx", &LowLatencyDispatchArgs::topk_idx)
      .def_rw("num_max_dispatch_tokens_per_rank", &LowLatencyDispatchArgs::num_max_dispatch_tokens_per_rank)
      .def_rw("num_experts", &LowLatencyDispatchArgs::num_experts)
      .def_rw("cumulative_local_expert_recv_stats", &LowLatencyDispatchArgs::cumulative_local_expert_recv_stats)
      .def_rw("dispatch_wait_recv_cost_stats", &LowLatencyDispatchArgs::dispatch_wait_recv_cost_stats)
      .def_rw("use_fp8", &LowLatencyDispatchArgs::use_fp8)
      .def_rw("round_scale", &LowLatencyDispatchArgs::round_scale)
      .def_rw("use_ue8m0", &LowLatencyDispatchArgs::use_ue8m0)
      .def_rw("return_recv_hook", &LowLatencyDispatchArgs::return_recv_hook)
      .def_rw("stream", &LowLatencyDispatchArgs::stream);

  nb::class_<LowLatencyDispatchOutputs>(m, "LowLatencyDispatchOutputs")
      .def(nb::init<>())
      .def_rw("recv_x", &LowLatencyDispatchOutputs::recv_x)                // [E, N, hidden]
      .def_rw("recv_x_scales", &LowLatencyDispatchOutputs::recv_x_scales)  // [E, N, S] column-major
      .def_rw("recv_count", &LowLatencyDispatchOutputs::recv_count);       // [E] int32

  nb::class_<LowLatencyCombineArgs>(m, "LowLatencyCombineArgs")
      .def(nb::init<>())
      .def_rw("x", &LowLatencyCombineArgs::x)
      .def_rw("topk_idx", &LowLatencyCombineArgs::topk_idx)
      .def_rw("topk_weights", &LowLatencyCombineArgs::topk_weights)
      .def_rw("out", &LowLatencyCombineArgs::out)
      .def_rw("combine_wait_recv_cost_stats", &LowLatencyCombineArgs::combine_wait_recv_cost_stats)
      .def_rw("use_logfmt", &LowLatencyCombineArgs::use_logfmt)
      .def_rw("zero_copy", &LowLatencyCombineArgs::zero_copy)
      .def_rw("return_recv_hook", &LowLatencyCombineArgs::return_recv_hook)
      .def_rw("stream", &LowLatencyCombineArgs::stream);

  // Calling the hook launches the receive on the call's stream (no host wait); it may be
  // called once. The GIL is released around the launch like every other call.
  nb::class_<LowLatencyHook>(m, "LowLatencyHook", "The receive half of a low-latency call (return_recv_hook).")
      .def(nb::init<>())
      .def_prop_ro("pending", &LowLatencyHook::pending)
      .def("__call__", &LowLatencyHook::operator(), nb::call_guard<nb::gil_scoped_release>());

  nb::class_<LowLatencyCall>(m, "LowLatencyCall")
      .def_prop_ro("event", [](const LowLatencyCall& c) { return c.event; })
      .def_prop_ro("hook", [](const LowLatencyCall& c) { return c.hook; });
}

}  // namespace moe_ep::bindings
