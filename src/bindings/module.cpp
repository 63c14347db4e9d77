// Entry point of moe_ep._C: registers every binding. Objects alive at interpreter exit
// (buffers held by a user's globals) are normal, so nanobind's leak report is off.
#include "bindings.hpp"

NB_MODULE(_C, m) {
  using namespace moe_ep::bindings;
  m.doc() = "moe_ep: MoE expert-parallel dispatch/combine (C++ core; use the moe_ep package)";
  nb::set_leak_warnings(false);
  bind_errors(m);
  bind_device(m);
  bind_tensor_view(m);
  bind_config(m);
  bind_event(m);
  bind_stream(m);
  bind_group(m);
  bind_call_args(m);
  bind_dispatch_handle(m);
  bind_low_latency_args(m);
  bind_buffer(m);
}
