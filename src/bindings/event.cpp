// Event: an opaque shared CUDA event (what async calls return). Streams cross as raw
// integer handles (torch: stream.cuda_stream); synchronize() releases the GIL.
#include "bindings.hpp"
#include "moe_ep/event.hpp"

namespace moe_ep::bindings {

void bind_event(nb::module_& m) {
  using namespace nb::literals;
  nb::class_<Event>(m, "Event", "A CUDA event shared by everything that waits on it; empty means done.")
      .def(nb::init<>())
      .def_static("record", [](std::uintptr_t stream) { return Event::record(to_stream(stream)); }, "stream"_a,
                  "Records a new event on the stream (a raw cudaStream_t as int).")
      .def_prop_ro("valid", &Event::valid)
      .def_prop_ro("handle", [](const Event& e) { return to_handle(e.get()); }, "The raw cudaEvent_t as int.")
      .def("stream_wait", [](const Event& e, std::uintptr_t stream) { e.stream_wait(to_stream(stream)); }, "stream"_a,
           "Makes the stream wait for the event (no host wait).")
      .def("synchronize", &Event::synchronize, nb::call_guard<nb::gil_scoped_release>(),
           "Waits on the host until the event completed.");
}

}  // namespace moe_ep::bindings
