// gin_built() follows the build option; with GIN built, the host object's shape is checked
// at compile time only (constructing it needs a GPU).
#include <gtest/gtest.h>

#include <type_traits>

#include "transport/gin_availability.hpp"
#if defined(MOE_EP_WITH_GIN)
#include "transport/gin/gin_transport_host.hpp"
#endif

namespace moe_ep::test {
namespace {

#if defined(MOE_EP_WITH_GIN)
// Kernels take the windows by value; the host object owns the NCCL resources.
static_assert(std::is_trivially_copyable_v<transport::GinWindows>);
static_assert(!std::is_copy_constructible_v<transport::GinTransportHost>);
static_assert(std::is_nothrow_destructible_v<transport::GinTransportHost>);
static_assert(std::is_constructible_v<transport::GinTransportHost, Group&, std::int64_t, int, int>);
#endif

TEST(GinAvailability, MatchesTheBuildOption) {
#if defined(MOE_EP_WITH_GIN)
  EXPECT_TRUE(transport::gin_built());
#else
  EXPECT_FALSE(transport::gin_built());
#endif
}

}  // namespace
}  // namespace moe_ep::test
