// Checks of the errors the library raises: the exact exception type and the words its
// message must contain. Errors are captured on rank threads and checked on the main
// thread (gtest assertions stay on the test's thread).
#pragma once
#include <exception>
#include <functional>
#include <string>
#include <typeinfo>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/cuda_check.hpp"
#include "support/rank_threads.hpp"

namespace moe_ep::test {

// What a call that should fail did: `matched` when it threw exactly E.
struct CaughtError {
  bool matched = false;
  std::string message;  // e.what(), or why it did not match
};

// Interprets a captured exception as E. Anything else (no exception, another type) is
// reported in `message`. E must be a leaf type (InvalidArgument, Timeout, CudaError).
template <typename E>
CaughtError caught_as(const std::exception_ptr& error) {
  if (!error) return {false, "no exception was raised"};
  try {
    std::rethrow_exception(error);
  } catch (const E& e) {
    return {true, e.what()};
  } catch (const std::exception& e) {
    return {false, std::string("wrong exception type ") + typeid(e).name() + ": " + e.what()};
  } catch (...) {
    return {false, "a non-std exception"};
  }
}

template <typename E>
CaughtError error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (...) {
    return caught_as<E>(std::current_exception());
  }
  return {false, "no exception was raised"};
}

// Expects `error` to be the wanted type with every needle in its message.
inline void expect_error(const CaughtError& error, const std::vector<std::string>& needles,
                         const std::string& context = "") {
  EXPECT_TRUE(error.matched) << context << ": " << error.message;
  if (!error.matched) return;
  for (const std::string& needle : needles) {
    EXPECT_NE(error.message.find(needle), std::string::npos)
        << context << ": message lacks \"" << needle << "\": " << error.message;
  }
}

// The message of a captured exception ("" when none).
inline std::string message_of(const std::exception_ptr& error) {
  if (!error) return "";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "a non-std exception";
  }
}

// Expects no exception; reports the one captured otherwise.
inline void expect_no_error(const std::exception_ptr& error, const std::string& context) {
  if (error) ADD_FAILURE() << context << ": unexpected error: " << message_of(error);
}

// Every rank makes `bad_call(rank)` on its own thread; each must throw exactly E naming
// every needle of needles_of(rank). Host-side rejections launch nothing, so peers are
// never involved.
template <typename E>
void expect_rejected_on_every_rank(Cluster& cluster, const std::function<void(int rank)>& bad_call,
                                   const std::function<std::vector<std::string>(int rank)>& needles_of) {
  std::vector<CaughtError> errors(cluster.num_ranks);
  run_on_ranks(cluster.num_ranks, [&](int r) {
    MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
    errors[r] = error_of<E>([&] { bad_call(r); });
  });
  for (int r = 0; r < cluster.num_ranks; ++r) expect_error(errors[r], needles_of(r), "rank " + std::to_string(r));
}

template <typename E>
void expect_rejected_on_every_rank(Cluster& cluster, const std::function<void(int rank)>& bad_call,
                                   const std::vector<std::string>& needles) {
  expect_rejected_on_every_rank<E>(cluster, bad_call, [&](int) { return needles; });
}

}  // namespace moe_ep::test
