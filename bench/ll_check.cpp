// Low-latency round check against the CPU reference (see ll_check.hpp).
#include "ll_check.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "runtime/cuda_check.hpp"

namespace moe_ep::bench {
namespace {

template <typename T>
std::vector<T> download(const T* device, std::size_t offset, std::size_t count) {
  std::vector<T> host(count);
  if (count == 0) return host;
  MOE_EP_CUDA_CHECK(
      cudaMemcpyAsync(host.data(), device + offset, count * sizeof(T), cudaMemcpyDeviceToHost, cudaStreamPerThread));
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  return host;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("low-latency bench check: " + what); }

double ulp_bf16(double v) {
  if (v == 0) return 0;
  int exponent = 0;
  std::frexp(v, &exponent);  // v in [2^(exponent-1), 2^exponent); bf16 keeps 8 significant bits
  return std::ldexp(1.0, exponent - 8);
}

// layout_range[e][s] = (count << 32) | begin of the rows from source s (begin checked
// where count > 0).
void check_layout_range(const std::vector<reference::LowLatencySlot>& entries,
                        const std::vector<std::int64_t>& range, const std::string& where) {
  std::int64_t begin = 0;
  for (std::size_t s = 0; s < range.size(); ++s) {
    std::int64_t count = 0;
    for (const auto& entry : entries) count += entry.src_rank == static_cast<int>(s) ? 1 : 0;
    const std::int64_t got_count = range[s] >> 32, got_begin = range[s] & 0xffffffffll;
    if (got_count != count || (count > 0 && got_begin != begin)) {
      fail(where + " layout_range[source " + std::to_string(s) + "] = count " + std::to_string(got_count) +
           " begin " + std::to_string(got_begin) + ", want count " + std::to_string(count) + " begin " +
           std::to_string(begin));
    }
    begin += count;
  }
}

// Row i of one expert: source token, payload and (FP8) scales; `scales` is the expert's
// [S, N] block.
void check_row(const LlRankArrays& io, const reference::LowLatencySlot& want, std::size_t i, int src_token,
               const std::uint8_t* payload, const std::vector<float>& scales, const std::string& where) {
  const std::size_t n = io.num_slots, bytes = io.problem.payload_bytes();
  const std::string row = where + " row " + std::to_string(i) + " (source rank " + std::to_string(want.src_rank) +
                          " token " + std::to_string(want.src_token) + ")";
  if (src_token != want.src_token) {
    fail(row + ": src_info " + std::to_string(src_token) + " (rows are compared in the reference's order)");
  }
  const void* expected = io.problem.use_fp8 ? static_cast<const void*>(want.fp8.q.data()) : want.x_bf16.data();
  if (std::memcmp(payload, expected, bytes) != 0) fail(row + ": payload differs");
  for (int g = 0; io.problem.use_fp8 && g < io.num_scales; ++g) {
    if (scales[g * n + i] != want.fp8.scales[g]) {
      fail(row + ": scale " + std::to_string(g) + " = " + std::to_string(scales[g * n + i]) + ", want " +
           std::to_string(want.fp8.scales[g]));
    }
  }
}

void check_expert(const LlRankArrays& io, const std::vector<reference::LowLatencySlot>& entries, int e,
                  const std::string& where) {
  const std::size_t n = io.num_slots, bytes = io.problem.payload_bytes(), count = entries.size();
  const std::size_t num_ranks = io.num_ranks, num_scales = io.num_scales;
  check_layout_range(entries, download(io.layout_range.get(), e * num_ranks, num_ranks), where);
  // Only the first `count` src_info entries are written (earlier rounds' counts differed).
  const std::vector<int> src = download(io.src_info.get(), e * n, count);
  const std::vector<std::uint8_t> rows = download(io.recv_x.get(), e * n * bytes, count * bytes);
  std::vector<float> scales;
  if (io.problem.use_fp8) scales = download(io.recv_scales.get(), e * n * num_scales, n * num_scales);
  for (std::size_t i = 0; i < count; ++i) check_row(io, entries[i], i, src[i], rows.data() + i * bytes, scales, where);
}

void check_dispatch(const reference::RankLowLatencyOutput& want, const LlRankArrays& io, int rank) {
  const std::vector<int> counts = io.recv_count.download();
  for (int e = 0; e < io.num_local_experts; ++e) {
    const std::string where = "rank " + std::to_string(rank) + " local expert " + std::to_string(e);
    if (counts[e] != want.recv_count[e]) {
      fail(where + ": recv_count " + std::to_string(counts[e]) + ", want " + std::to_string(want.recv_count[e]));
    }
    check_expert(io, want.per_expert[e], e, where);
  }
}

void check_combine(const std::vector<double>& want, const std::vector<double>& abs_sum, const LlRankArrays& io,
                   int rank) {
  const std::vector<std::uint16_t> got = io.out.download();
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = reference::bf16_to_float(got[i]);
    const double tolerance = ulp_bf16(std::fabs(want[i])) + 1e-5 * abs_sum[i];
    if (!(std::fabs(g - want[i]) <= tolerance)) {
      fail("rank " + std::to_string(rank) + " combined token " + std::to_string(i / io.problem.hidden) + " channel " +
           std::to_string(i % io.problem.hidden) + ": " + std::to_string(g) + ", want " + std::to_string(want[i]) +
           " +- " + std::to_string(tolerance));
    }
  }
}

}  // namespace

LlRoundExpected expected_ll_round(const LlWorkload& w, int set) {
  const reference::LowLatencySpec spec = w.spec();
  LlRoundExpected e;
  e.dispatched = reference::low_latency_dispatch(spec, w.inputs(set));
  e.combined = reference::low_latency_combine(spec, w.inputs(set), e.dispatched, w.expert_outputs(set, false));
  // Weights are positive, so |x| rows give the sum of |w_k x_k|.
  e.abs_sum = reference::low_latency_combine(spec, w.inputs(set), e.dispatched, w.expert_outputs(set, true));
  return e;
}

void check_ll_round(const LlRoundExpected& expected, const std::vector<LlRankArrays>& ranks) {
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    check_dispatch(expected.dispatched[r], ranks[r], static_cast<int>(r));
    check_combine(expected.combined[r], expected.abs_sum[r], ranks[r], static_cast<int>(r));
  }
}

}  // namespace moe_ep::bench
