// Buffer's low-latency methods (the LL section of buffer.hpp), added to the class that
// buffer.cpp registers. Launching calls release the GIL (in-process ranks run on other
// threads of this interpreter); the zero-copy combine buffer is exported as a DLPack
// array that keeps the Python Buffer (and so the memory it views) alive.
#include "bindings.hpp"
#include "moe_ep/buffer.hpp"

namespace moe_ep::bindings {

void bind_buffer_low_latency(nb::class_<Buffer>& cls) {
  using namespace nb::literals;
  using release = nb::call_guard<nb::gil_scoped_release>;
  cls.def_prop_ro("num_rdma_bytes", &Buffer::num_rdma_bytes)
      .def("low_latency_dispatch", &Buffer::low_latency_dispatch, "args"_a, "outputs"_a, "handle"_a, release(),
           "Fills outputs and the handle's scalars; returns LowLatencyCall (event, hook).")
      .def("low_latency_combine", &Buffer::low_latency_combine, "args"_a, "handle"_a, release())
      .def(
          "next_low_latency_combine_buffer",
          [](nb::handle_t<Buffer> self, const LowLatencyHandle& handle) {
            const Buffer& buffer = nb::cast<const Buffer&>(self);
            return to_array(buffer.next_low_latency_combine_buffer(handle), buffer.device(), self);
          },
          "handle"_a, "[num_local_experts, num_ranks * max_tokens, hidden] bf16 DLPack array (zero_copy input).")
      .def("clean_low_latency_buffer", &Buffer::clean_low_latency_buffer, release())
      .def(
          "low_latency_update_mask",
          [](Buffer& b, int rank_to_mask, bool mask, std::uintptr_t stream) {
            b.low_latency_update_mask(rank_to_mask, mask, to_stream(stream));
          },
          "rank_to_mask"_a, "mask"_a, "stream"_a, release())
      .def(
          "low_latency_query_mask",
          [](Buffer& b, const TensorView& mask_status, std::uintptr_t stream) {
            b.low_latency_query_mask(mask_status, to_stream(stream));
          },
          "mask_status"_a, "stream"_a, release())
      .def(
          "low_latency_clean_mask", [](Buffer& b, std::uintptr_t stream) { b.low_latency_clean_mask(to_stream(stream)); },
          "stream"_a, release())
      .def_static("low_latency_size_hint", &Buffer::low_latency_size_hint, "max_tokens_per_rank"_a, "hidden"_a,
                  "num_ranks"_a, "num_experts"_a, "ranks_per_node"_a = 0, "allow_nvlink"_a = true);
}

}  // namespace moe_ep::bindings
