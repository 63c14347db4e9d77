// Groups: the in-process factory (N ranks of this process, returned as a list) and the
// process group whose allgather is a Python callable bytes -> bytes (all ranks' bytes in
// rank order). The callback runs with the GIL released around it, so it acquires it.
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "moe_ep/errors.hpp"
#include "moe_ep/group.hpp"

namespace moe_ep::bindings {
namespace {

// Owns the Python callable; whoever drops the last reference takes the GIL to release it.
std::shared_ptr<nb::object> hold_callable(nb::callable fn) {
  return std::shared_ptr<nb::object>(new nb::object(std::move(fn)), [](nb::object* o) {
    if (!Py_IsInitialized()) return;  // interpreter gone: leak rather than touch it
    nb::gil_scoped_acquire gil;
    delete o;
  });
}

struct PythonAllgather {
  std::shared_ptr<nb::object> fn;
  int size = 0;

  void operator()(const void* in, std::size_t bytes, void* out) const {
    nb::gil_scoped_acquire gil;
    try {
      nb::object result = (*fn)(nb::bytes(static_cast<const char*>(in), bytes));
      const auto gathered = nb::cast<nb::bytes>(result);
      if (gathered.size() != bytes * static_cast<std::size_t>(size)) {
        throw InvalidArgument("process group allgather returned " + std::to_string(gathered.size()) +
                              " bytes; expected " + std::to_string(size) + " ranks x " + std::to_string(bytes));
      }
      std::memcpy(out, gathered.c_str(), gathered.size());
    } catch (const nb::python_error& e) {
      throw std::runtime_error(std::string("process group allgather callback raised: ") + e.what());
    } catch (const std::bad_cast&) {
      throw InvalidArgument("process group allgather callback must return bytes");
    }
  }
};

}  // namespace

void bind_group(nb::module_& m) {
  using namespace nb::literals;
  nb::class_<Group>(m, "Group", "How ranks find each other (allgather, barrier).")
      .def_prop_ro("rank", &Group::rank)
      .def_prop_ro("size", &Group::size)
      .def_prop_ro("device", &Group::device)
      .def_prop_ro("num_ranks_per_node", &Group::num_ranks_per_node)
      .def_prop_ro("shares_address_space", &Group::shares_address_space)
      .def("barrier", &Group::barrier, nb::call_guard<nb::gil_scoped_release>());
  m.def(
      "make_in_process_group",
      [](const std::vector<int>& devices, double timeout_s) {
        return make_in_process_group(devices, std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000)));
      },
      "devices"_a, "timeout_s"_a = 60.0,
      "N ranks of this process, rank i on devices[i]; drive each from its own thread.");
  m.def(
      "make_process_group",
      [](int rank, int size, int device, nb::callable allgather, int num_ranks_per_node) {
        return make_process_group(rank, size, device, PythonAllgather{hold_callable(std::move(allgather)), size},
                                  num_ranks_per_node);
      },
      "rank"_a, "size"_a, "device"_a, "allgather"_a, "num_ranks_per_node"_a = 0,
      "One process per rank; allgather(bytes) -> bytes of every rank's contribution in rank order.");
}

}  // namespace moe_ep::bindings
