// Shared declarations of the nanobind module moe_ep._C: one bind_* function per source
// file, the array type every tensor argument takes (CUDA memory, any dtype, never
// converted), the view -> array export, and the integer form of raw CUDA handles.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

namespace moe_ep {
class Buffer;
struct TensorView;
}  // namespace moe_ep

namespace moe_ep::bindings {

namespace nb = nanobind;

using CudaArray = nb::ndarray<nb::device::cuda>;

inline std::uintptr_t to_handle(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr); }
inline cudaStream_t to_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }
inline cudaEvent_t to_event(std::uintptr_t handle) { return reinterpret_cast<cudaEvent_t>(handle); }

// A DLPack array over a view of library-owned memory on `device`; `owner` (a Python object)
// stays alive as long as the array or any tensor made from it (tensor_view.cpp).
CudaArray to_array(const TensorView& view, int device, nb::handle owner);

void bind_errors(nb::module_& m);
void bind_device(nb::module_& m);
void bind_tensor_view(nb::module_& m);
void bind_config(nb::module_& m);
void bind_event(nb::module_& m);
void bind_stream(nb::module_& m);
void bind_group(nb::module_& m);
void bind_call_args(nb::module_& m);
void bind_dispatch_handle(nb::module_& m);
void bind_low_latency_args(nb::module_& m);
void bind_buffer(nb::module_& m);
void bind_buffer_low_latency(nb::class_<Buffer>& cls);  // called by bind_buffer

}  // namespace moe_ep::bindings
