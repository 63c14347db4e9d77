// Host checks of a tensor's alignment (host/validation.hpp): a row tensor whose pointer or
// row stride is not a multiple of the kernels' vector width is refused with an error that
// names it, before any launch (a misaligned vector access would end the CUDA context).
// The pointers are never dereferenced.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "host/validation.hpp"

namespace moe_ep::host {
namespace {

void* address(std::uintptr_t a) { return reinterpret_cast<void*>(a); }

// The message of check_tensor's failure, or "" when the tensor passes.
std::string failure(const TensorView& t, int align, bool contiguous = true) {
  try {
    check_tensor("op", t, {"x", {DType::kBFloat16}, {kAnySize, kAnySize}, contiguous, align});
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

TEST(TensorAlignment, RowTensorsNeedAlignedPointers) {
  EXPECT_EQ(failure(TensorView::contiguous(address(0x10000), DType::kBFloat16, {4, 128}), kRowAlign), "");
  const std::string message = failure(TensorView::contiguous(address(0x10002), DType::kBFloat16, {4, 128}), kRowAlign);
  EXPECT_NE(message.find("x: the data pointer 0x10002 is not 16-byte aligned"), std::string::npos) << message;
  // Element alignment is all a tensor without a row spec needs.
  EXPECT_EQ(failure(TensorView::contiguous(address(0x10002), DType::kBFloat16, {4, 128}), 0), "");
  // An empty tensor moves nothing.
  EXPECT_EQ(failure(TensorView::contiguous(address(0x10002), DType::kBFloat16, {0, 128}), kRowAlign), "");
}

TEST(TensorAlignment, RowStridesMustKeepEveryRowAligned) {
  TensorView strided = TensorView::contiguous(address(0x10000), DType::kBFloat16, {4, 128});
  strided.strides[0] = 136;  // 272 bytes: every row on 16 bytes
  EXPECT_EQ(failure(strided, kRowAlign, /*contiguous=*/false), "");
  strided.strides[0] = 132;  // 264 bytes: odd rows are not
  const std::string message = failure(strided, kRowAlign, /*contiguous=*/false);
  EXPECT_NE(message.find("stride 132 of dimension 0 is not a multiple of 16 bytes"), std::string::npos) << message;
  // A single row has no stride to keep aligned.
  TensorView one_row = TensorView::contiguous(address(0x10000), DType::kBFloat16, {1, 128});
  one_row.strides[0] = 132;
  EXPECT_EQ(failure(one_row, kRowAlign, /*contiguous=*/false), "");
}

}  // namespace
}  // namespace moe_ep::host
