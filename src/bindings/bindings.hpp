// Shared declarations of the nanobind module moe_ep._C: one bind_* function per source
// file, the array type every tensor argument takes (CUDA memory, any dtype, never
// converted) and the integer form of raw CUDA handles (streams, events, pointers).
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

namespace moe_ep::bindings {

namespace nb = nanobind;

using CudaArray = nb::ndarray<nb::device::cuda>;

inline std::uintptr_t to_handle(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr); }
inline cudaStream_t to_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }
inline cudaEvent_t to_event(std::uintptr_t handle) { return reinterpret_cast<cudaEvent_t>(handle); }

void bind_errors(nb::module_& m);
void bind_device(nb::module_& m);
void bind_tensor_view(nb::module_& m);
void bind_config(nb::module_& m);
void bind_event(nb::module_& m);
void bind_stream(nb::module_& m);
void bind_group(nb::module_& m);
void bind_call_args(nb::module_& m);
void bind_dispatch_handle(nb::module_& m);
void bind_buffer(nb::module_& m);

}  // namespace moe_ep::bindings
