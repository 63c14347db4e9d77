// DLPack arrays (torch tensors on CUDA) -> moe_ep::TensorView: pointer, dtype from the
// DLPack (code << 8 | bits), shape and strides in elements. Arrays are never converted
// or copied (.noconvert()): an output written to a temporary would be lost. And back:
// to_array exports a view of library memory (e.g. the zero-copy combine buffer).
#include <string>
#include <vector>

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "moe_ep/errors.hpp"
#include "moe_ep/tensor_view.hpp"

namespace moe_ep::bindings {
namespace {

TensorView to_view(CudaArray array) {
  const nb::dlpack::dtype dt = array.dtype();
  const auto dtype = static_cast<DType>((static_cast<unsigned>(dt.code) << 8) | dt.bits);
  if (dt.lanes != 1 || dtype_name(dtype) == "unknown") {
    throw InvalidArgument("tensor of DLPack dtype (code " + std::to_string(dt.code) + ", bits " +
                          std::to_string(dt.bits) + ", lanes " + std::to_string(dt.lanes) +
                          ") is not one moe_ep takes (bool, int32, int64, float32, bfloat16, float8_e4m3fn)");
  }
  if (array.ndim() > static_cast<std::size_t>(TensorView::kMaxDims)) {
    throw InvalidArgument("tensor with " + std::to_string(array.ndim()) + " dimensions; moe_ep takes at most " +
                          std::to_string(TensorView::kMaxDims));
  }
  TensorView view;
  view.data = array.data();
  view.dtype = dtype;
  view.ndim = static_cast<int>(array.ndim());
  for (int d = 0; d < view.ndim; ++d) {
    view.shape[d] = static_cast<std::int64_t>(array.shape(d));
    view.strides[d] = static_cast<std::int64_t>(array.stride(d));
  }
  return view;
}

std::vector<std::int64_t> first(const std::array<std::int64_t, TensorView::kMaxDims>& values, int n) {
  return std::vector<std::int64_t>(values.begin(), values.begin() + n);
}

}  // namespace

CudaArray to_array(const TensorView& view, int device, nb::handle owner) {
  std::size_t shape[TensorView::kMaxDims] = {};
  std::int64_t strides[TensorView::kMaxDims] = {};
  for (int d = 0; d < view.ndim; ++d) {
    shape[d] = static_cast<std::size_t>(view.shape[d]);
    strides[d] = view.strides[d];
  }
  const auto code = static_cast<unsigned>(view.dtype);
  nb::dlpack::dtype dt;
  dt.code = static_cast<std::uint8_t>(code >> 8);
  dt.bits = static_cast<std::uint8_t>(code & 0xffu);
  dt.lanes = 1;
  return CudaArray(view.data, static_cast<std::size_t>(view.ndim), shape, owner, strides, dt,
                   nb::device::cuda::value, device);
}

void bind_tensor_view(nb::module_& m) {
  nb::class_<TensorView>(m, "TensorView", "Non-owning view of CUDA memory (the caller keeps the tensor alive).")
      .def(nb::init<>())
      .def_prop_ro("defined", &TensorView::defined)
      .def_prop_ro("data", [](const TensorView& v) { return to_handle(v.data); })
      .def_prop_ro("dtype", [](const TensorView& v) { return std::string(dtype_name(v.dtype)); })
      .def_prop_ro("shape", [](const TensorView& v) { return first(v.shape, v.ndim); })
      .def_prop_ro("strides", [](const TensorView& v) { return first(v.strides, v.ndim); })
      .def("__repr__", [](const TensorView& v) { return "TensorView(" + v.describe() + ")"; });
  m.def("view", &to_view, nb::arg("array").noconvert(),
        "View of a CUDA array (DLPack: torch tensor, CuPy array, ...) as the C++ calls take it.");
}

}  // namespace moe_ep::bindings
