// TensorView helpers: element count, contiguity, and a printable description.
#include "moe_ep/tensor_view.hpp"

#include <sstream>

namespace moe_ep {

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  std::int64_t expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

std::string TensorView::describe() const {
  std::ostringstream out;
  out << dtype_name(dtype) << "[";
  for (int d = 0; d < ndim; ++d) out << (d ? ", " : "") << shape[d];
  out << "] strides [";
  for (int d = 0; d < ndim; ++d) out << (d ? ", " : "") << strides[d];
  out << "]";
  return out.str();
}

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.ndim = static_cast<int>(shape.size());
  int d = 0;
  for (std::int64_t s : shape) v.shape[d++] = s;
  std::int64_t stride = 1;
  for (d = v.ndim - 1; d >= 0; --d) {
    v.strides[d] = stride;
    stride *= v.shape[d];
  }
  return v;
}

}  // namespace moe_ep
