// A non-owning view of device (or host) memory: pointer, dtype, shape, strides in
// elements. What every public call takes instead of a framework tensor.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "moe_ep/dtype.hpp"

namespace moe_ep {

struct TensorView {
  static constexpr int kMaxDims = 4;
  void* data = nullptr;
  DType dtype = DType::kBFloat16;
  int ndim = 0;
  std::array<std::int64_t, kMaxDims> shape{};
  std::array<std::int64_t, kMaxDims> strides{};  // in elements

  bool defined() const { return data != nullptr || ndim > 0; }
  std::int64_t size(int dim) const { return shape[dim < 0 ? dim + ndim : dim]; }
  std::int64_t stride(int dim) const { return strides[dim < 0 ? dim + ndim : dim]; }
  std::int64_t numel() const;
  bool is_contiguous() const;
  std::string describe() const;  // "bfloat16[4096, 7168] strides [7168, 1]"
  template <typename T> T* ptr() const { return static_cast<T*>(data); }

  // A contiguous view of the given shape.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape);
};

}  // namespace moe_ep
