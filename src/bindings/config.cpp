// Config: deep_ep's constructor (same fields, order and defaults, taken from the C++
// struct's own initializers), the size hints, and the tuned defaults per rank count.
#include <string>

#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "moe_ep/config.hpp"

namespace moe_ep::bindings {

void bind_config(nb::module_& m) {
  using namespace nb::literals;
  const Config d{};
  nb::class_<Config>(m, "Config", "Tuning knobs of one dispatch/combine call (deep_ep's Config).")
      .def(
          "__init__",
          [](Config* self, int num_sms, int nvl_send, int nvl_recv, int rdma_send, int rdma_recv) {
            new (self) Config{num_sms, nvl_send, nvl_recv, rdma_send, rdma_recv};
          },
          "num_sms"_a = d.num_sms, "num_max_nvl_chunked_send_tokens"_a = d.num_max_nvl_chunked_send_tokens,
          "num_max_nvl_chunked_recv_tokens"_a = d.num_max_nvl_chunked_recv_tokens,
          "num_max_rdma_chunked_send_tokens"_a = d.num_max_rdma_chunked_send_tokens,
          "num_max_rdma_chunked_recv_tokens"_a = d.num_max_rdma_chunked_recv_tokens)
      .def_rw("num_sms", &Config::num_sms)
      .def_rw("num_max_nvl_chunked_send_tokens", &Config::num_max_nvl_chunked_send_tokens)
      .def_rw("num_max_nvl_chunked_recv_tokens", &Config::num_max_nvl_chunked_recv_tokens)
      .def_rw("num_max_rdma_chunked_send_tokens", &Config::num_max_rdma_chunked_send_tokens)
      .def_rw("num_max_rdma_chunked_recv_tokens", &Config::num_max_rdma_chunked_recv_tokens)
      .def("get_nvl_buffer_size_hint", &Config::get_nvl_buffer_size_hint, "hidden_bytes"_a, "num_ranks"_a)
      .def("get_rdma_buffer_size_hint", &Config::get_rdma_buffer_size_hint, "hidden_bytes"_a, "num_ranks"_a)
      .def("__repr__", [](const Config& c) {
        return "Config(num_sms=" + std::to_string(c.num_sms) + ", num_max_nvl_chunked_send_tokens=" +
               std::to_string(c.num_max_nvl_chunked_send_tokens) + ", num_max_nvl_chunked_recv_tokens=" +
               std::to_string(c.num_max_nvl_chunked_recv_tokens) + ", num_max_rdma_chunked_send_tokens=" +
               std::to_string(c.num_max_rdma_chunked_send_tokens) + ", num_max_rdma_chunked_recv_tokens=" +
               std::to_string(c.num_max_rdma_chunked_recv_tokens) + ")";
      });
  m.def("get_dispatch_config", &get_dispatch_config, "num_ranks"_a);
  m.def("get_combine_config", &get_combine_config, "num_ranks"_a);
}

}  // namespace moe_ep::bindings
