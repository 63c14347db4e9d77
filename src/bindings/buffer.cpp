// Buffer: construction from a Group (collective), the high-throughput calls (intranode, or
// internode across real or emulated nodes) taking the argument structs, error check and
// reset; the low-latency methods are in buffer_low_latency.cpp.
// Every call that can block (on peers, on the device or on a host collective) releases
// the GIL so the other ranks' threads can run.
#include <memory>

#include <nanobind/stl/shared_ptr.h>

#include "bindings.hpp"
#include "moe_ep/buffer.hpp"

namespace moe_ep::bindings {

void bind_buffer(nb::module_& m) {
  using namespace nb::literals;
  using release = nb::call_guard<nb::gil_scoped_release>;
  nb::class_<Buffer> cls(m, "Buffer", "The communication buffer of one rank (every call is collective).");
  cls.def(
          "__init__",
          [](Buffer* self, std::shared_ptr<Group> group, std::int64_t num_nvl_bytes, std::int64_t num_rdma_bytes,
             std::uint64_t timeout_ns, bool low_latency_mode, bool enable_shrink, bool allow_nvlink_for_low_latency,
             int emulated_ranks_per_node) {
            BufferOptions options;
            options.timeout_ns = timeout_ns;
            options.low_latency_mode = low_latency_mode;
            options.enable_shrink = enable_shrink;
            options.allow_nvlink_for_low_latency = allow_nvlink_for_low_latency;
            options.emulated_ranks_per_node = emulated_ranks_per_node;
            new (self) Buffer(std::move(group), num_nvl_bytes, num_rdma_bytes, options);
          },
          "group"_a, "num_nvl_bytes"_a, "num_rdma_bytes"_a = 0, "timeout_ns"_a = kDefaultTimeoutNs,
          "low_latency_mode"_a = false, "enable_shrink"_a = false, "allow_nvlink_for_low_latency"_a = true,
          "emulated_ranks_per_node"_a = 0, release())
      .def_prop_ro("rank", &Buffer::rank)
      .def_prop_ro("num_ranks", &Buffer::num_ranks)
      .def_prop_ro("device", &Buffer::device)
      .def_prop_ro("num_device_sms", &Buffer::num_device_sms)
      .def_prop_ro("id", &Buffer::id)
      .def_prop_ro("generation", &Buffer::generation)
      .def_prop_ro("comm_stream", [](const Buffer& b) { return to_handle(b.comm_stream()); })
      .def_prop_ro("num_nvl_bytes", &Buffer::num_nvl_bytes)
      .def_prop_ro("local_nvl_buffer", [](const Buffer& b) { return to_handle(b.local_nvl_buffer()); })
      .def_prop_ro("max_dispatch_tokens", &Buffer::max_dispatch_tokens)
      .def_prop_ro("max_num_sms", &Buffer::max_num_sms)
      .def_prop_ro("num_ranks_per_node", &Buffer::num_ranks_per_node)
      .def_prop_ro("is_internode", &Buffer::is_internode)
      .def("get_dispatch_layout", &Buffer::get_dispatch_layout, "args"_a, release())
      .def("dispatch_notify", &Buffer::dispatch_notify, "args"_a, "handle"_a, "cached"_a = false, release())
      .def("dispatch_receive", &Buffer::dispatch_receive, "args"_a, "handle"_a, "outputs"_a, "cached"_a = false,
           release())
      .def("combine", &Buffer::combine, "args"_a, "handle"_a, release())
      .def("check_error", &Buffer::check_error, release())
      .def("reset", &Buffer::reset, release())
      .def(
          "set_fault_injection",
          [](Buffer& b, int skip_calls, std::uint64_t delay_ns) { b.set_fault_injection({skip_calls, delay_ns}); },
          "skip_calls"_a = 0, "delay_ns"_a = 0)
      .def_static("intranode_size_hint", &Buffer::intranode_size_hint, "max_tokens_per_rank"_a, "num_ranks"_a,
                  "hidden_bytes"_a = 0)
      .def_static("internode_size_hint", &Buffer::internode_size_hint, "max_tokens_per_rank"_a, "hidden"_a,
                  "num_ranks"_a, "ranks_per_node"_a, "num_topk"_a = kMaxTopk);
  bind_buffer_low_latency(cls);
}

}  // namespace moe_ep::bindings
