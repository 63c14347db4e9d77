// LlRankIo / LlSet (see low_latency_io.hpp): uploads into preallocated arrays, the calls
// of a round, the CPU oracle and the element-by-element comparison.
#include "support/low_latency_io.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <stdexcept>

#include "protocol/ll_buffer_layout.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep::test {
namespace {

namespace ref = moe_ep::reference;

std::string str(std::int64_t v) { return std::to_string(v); }

template <typename T>
void zero(const DeviceArray<T>& array) {
  if (array.size() == 0) return;
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(array.get(), 0, array.size() * sizeof(T), cudaStreamPerThread));
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
}

bool all_poison(const void* data, std::size_t bytes) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < bytes; ++i) {
    if (p[i] != kPoisonByte) return false;
  }
  return true;
}

template <typename T>
std::int64_t count_unpoisoned_bytes(const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
  std::int64_t n = 0;
  for (std::size_t i = 0; i < v.size() * sizeof(T); ++i) n += p[i] != kPoisonByte ? 1 : 0;
  return n;
}

// Counts mismatching elements and reports the first few of each context.
class Mismatches {
 public:
  explicit Mismatches(std::string context) : context_(std::move(context)) {}
  void fail(const std::string& message) {
    if (++count_ <= 10) ADD_FAILURE() << context_ << ": " << message;
  }
  // Builds the message only on a mismatch (these run once per element).
  template <typename T, typename U>
  void equal(const std::string& prefix, const char* what, std::size_t i, T got, U want) {
    if (!(got == static_cast<T>(want))) {
      fail(prefix + what + "[" + str(static_cast<std::int64_t>(i)) + "] = " + std::to_string(got) + ", expected " +
           std::to_string(want));
    }
  }
  std::int64_t count() const { return count_; }

 private:
  std::string context_;
  std::int64_t count_ = 0;
};

// ulp of bf16 at |v| (8 significant bits): 2^(floor(log2 |v|) - 7); 0 for 0.
double ulp_bf16(double v) {
  v = std::fabs(v);
  if (v == 0.0 || !std::isfinite(v)) return 0.0;
  int exponent = 0;
  std::frexp(v, &exponent);  // v = m * 2^exponent, m in [0.5, 1)
  return std::ldexp(1.0, exponent - 8);
}

// The dequantized values the fake expert reads for one dispatched row.
std::vector<float> dequantized(const LlShape& s, const ref::LowLatencySlot& entry) {
  std::vector<float> v(s.hidden);
  if (!s.fp8()) {
    for (int c = 0; c < s.hidden; ++c) v[c] = ref::bf16_to_float(entry.x_bf16[c]);
    return v;
  }
  for (int c = 0; c < s.hidden; ++c) {
    const int group = c / 128;
    float scale = entry.fp8.scales[group];
    if (s.ue8m0()) {
      const auto word = static_cast<std::uint32_t>(entry.fp8.ue8m0[group / 4]);
      scale = std::bit_cast<float>(((word >> (8 * (group % 4))) & 0xffu) << 23);
    }
    v[c] = ref::e4m3_to_float(entry.fp8.q[c]) * scale;
  }
  return v;
}

// The inputs as the library sees them with `masked` ranks: their tokens never arrive and
// slots naming experts they own are holes.
std::vector<ref::RankLowLatencyInput> effective_inputs(const LlShape& s, std::vector<ref::RankLowLatencyInput> inputs,
                                                       const std::vector<bool>& masked) {
  const int E = s.num_local_experts();
  for (int r = 0; r < s.num_ranks; ++r) {
    auto& in = inputs[r];
    if (masked[r]) {
      in = ref::RankLowLatencyInput{};
      continue;
    }
    for (auto& id : in.topk_idx) {
      if (id >= 0 && masked[static_cast<std::size_t>(id / E)]) id = -1;
    }
  }
  return inputs;
}

void check_rank(const LlShape& s, int r, int num_tokens, const LlRankOutputs& got, const LlExpected& want,
                const LlCheck& check, Mismatches& m) {
  const std::string at = "rank " + str(r) + " ";
  const int E = s.num_local_experts(), R = s.num_ranks, H = s.hidden, S = s.scale_columns(), k = s.num_topk;
  const std::int64_t N = s.rows_per_expert();
  const std::size_t elem = s.fp8() ? 1 : 2;
  const std::size_t row_bytes = static_cast<std::size_t>(H) * elem;
  const ref::RankLowLatencyOutput& d = want.dispatched[r];

  if (got.recv_count.size() < static_cast<std::size_t>(E)) {
    m.fail(at + "recv_count has " + str(static_cast<std::int64_t>(got.recv_count.size())) + " elements");
    return;
  }
  for (int l = 0; l < E; ++l) {
    const auto& entries = d.per_expert[l];
    const std::int64_t count = static_cast<std::int64_t>(entries.size());
    const std::string ex = at + "expert " + str(l) + " (global " + str(r * E + l) + ") ";
    m.equal(ex, "recv_count", l, got.recv_count[l], count);
    // src_info: source token of each valid row, untouched (poison) after.
    for (std::int64_t i = 0; i < N; ++i) {
      if (i < count) {
        m.equal(ex, "src_info", static_cast<std::size_t>(i), got.src_info[l * N + i], entries[i].src_token);
      } else if (!all_poison(&got.src_info[l * N + i], sizeof(std::int32_t))) {
        m.fail(ex + "src_info " + str(i) + " past recv_count was written");
      }
    }
    // layout_range: (count << 32) | begin per source rank; begin checked where count > 0.
    std::int64_t begin = 0;
    for (int src = 0; src < R; ++src) {
      std::int64_t n = 0;
      for (const auto& e : entries) n += e.src_rank == src ? 1 : 0;
      const auto v = static_cast<std::uint64_t>(got.layout_range[static_cast<std::size_t>(l) * R + src]);
      const auto got_count = static_cast<std::int64_t>(v >> 32), got_begin = static_cast<std::int64_t>(v & 0xffffffffu);
      if (got_count != n || (n > 0 && got_begin != begin)) {
        m.fail(ex + "layout_range[src " + str(src) + "] = (count " + str(got_count) + ", begin " + str(got_begin) +
               "), expected (count " + str(n) + ", begin " + str(begin) + ")");
      }
      begin += n;
    }
    // Rows: exact below recv_count, untouched (poison) after.
    for (std::int64_t i = 0; i < N; ++i) {
      const std::uint8_t* row = got.recv_x.data() + (static_cast<std::size_t>(l) * N + i) * row_bytes;
      if (i >= count) {
        if (!all_poison(row, row_bytes)) m.fail(ex + "recv_x row " + str(i) + " past recv_count was written");
        for (int g = 0; g < S && s.fp8(); ++g) {
          if (!all_poison(got.recv_scales.data() + ((static_cast<std::size_t>(l) * S + g) * N + i) * 4, 4)) {
            m.fail(ex + "recv_x_scales row " + str(i) + " column " + str(g) + " past recv_count was written");
          }
        }
        continue;
      }
      const ref::LowLatencySlot& e = entries[i];
      const std::string where = ex + "row " + str(i) + " (src rank " + str(e.src_rank) + " token " + str(e.src_token) + ")";
      const void* want_row = s.fp8() ? static_cast<const void*>(e.fp8.q.data()) : static_cast<const void*>(e.x_bf16.data());
      if (std::memcmp(row, want_row, row_bytes) != 0) {
        std::size_t c = 0;
        while (std::memcmp(row + c * elem, static_cast<const std::uint8_t*>(want_row) + c * elem, elem) == 0) ++c;
        m.fail(where + " recv_x differs first at channel " + str(static_cast<std::int64_t>(c)));
      }
      for (int g = 0; g < S && s.fp8(); ++g) {
        std::uint32_t got_bits, want_bits;
        std::memcpy(&got_bits, got.recv_scales.data() + ((static_cast<std::size_t>(l) * S + g) * N + i) * 4, 4);
        if (s.ue8m0()) {
          want_bits = static_cast<std::uint32_t>(e.fp8.ue8m0[g]);
        } else {
          want_bits = std::bit_cast<std::uint32_t>(e.fp8.scales[g]);
        }
        if (got_bits != want_bits) {
          std::ostringstream msg;
          msg << where << " recv_x_scales column " << g << " bits 0x" << std::hex << got_bits << ", expected 0x"
              << want_bits;
          m.fail(msg.str());
        }
      }
    }
  }
  if (check.stats_rounds > 0) {
    if (got.stats_recv.size() != static_cast<std::size_t>(E) || got.stats_wait.size() != static_cast<std::size_t>(R)) {
      m.fail(at + "the stats tensors were not downloaded");
      return;
    }
    const auto& stats = got.stats_recv;
    for (int l = 0; l < E; ++l) {
      m.equal(at, "cumulative_local_expert_recv_stats", l, stats[l],
              check.stats_rounds * static_cast<std::int64_t>(d.per_expert[l].size()));
    }
    const auto& waits = got.stats_wait;
    for (int src = 0; src < R; ++src) {
      if (waits[src] < 0) m.fail(at + "dispatch_wait_recv_cost_stats[" + str(src) + "] = " + str(waits[src]) + " < 0");
    }
  }
  if (!check.combine) return;

  for (int t = 0; t < num_tokens; ++t) {
    for (int j = 0; j < k; ++j) {
      const std::size_t i = static_cast<std::size_t>(t) * k + j;
      // -2: the owner masked this rank, so no row answers the slot (its value is free).
      const int expected = (got.absolute_slots ? want.combine_rows : want.combine_slots)[r][i];
      if (expected != -2) m.equal(at, "combine_slots (t * k + slot)", i, got.combine_slots[i], expected);
    }
  }
  for (int t = 0; t < num_tokens; ++t) {
    for (int c = 0; c < H; ++c) {
      const std::size_t i = static_cast<std::size_t>(t) * H + c;
      const double value = ref::bf16_to_float(got.out[i]);
      const double expected = want.combined[r][i];
      double tolerance = ulp_bf16(expected) + 1e-5 * want.sum_abs[r][i];
      if (check.logfmt) tolerance += want.logfmt_bound[r][i];
      if (!(std::fabs(value - expected) <= tolerance)) {
        m.fail(at + "out[" + str(t) + "][" + str(c) + "] = " + std::to_string(value) + ", expected " +
               std::to_string(expected) + " +- " + std::to_string(tolerance));
      }
    }
  }
  const std::size_t out_bytes = static_cast<std::size_t>(H) * 2;
  for (int t = num_tokens; t < s.max_tokens; ++t) {
    if (!all_poison(got.out.data() + static_cast<std::size_t>(t) * H, out_bytes)) {
      m.fail(at + "out row " + str(t) + " (past num_tokens) was written");
    }
  }
}

}  // namespace

// ---- LlShape -------------------------------------------------------------------------

const char* scale_mode_name(ScaleMode mode) {
  switch (mode) {
    case ScaleMode::kBf16: return "bf16";
    case ScaleMode::kFp8: return "fp8";
    case ScaleMode::kFp8RoundScale: return "fp8+round_scale";
    case ScaleMode::kFp8Ue8m0: return "fp8+ue8m0";
  }
  return "?";
}

std::size_t LlShape::recv_x_bytes() const {
  return static_cast<std::size_t>(num_local_experts()) * rows_per_expert() * hidden * (fp8() ? 1 : 2);
}

std::size_t LlShape::recv_scales_bytes() const {
  return fp8() ? static_cast<std::size_t>(num_local_experts()) * rows_per_expert() * scale_columns() * 4 : 0;
}

LlPayload LlShape::payload() const {
  return !fp8() ? LlPayload::kBf16 : (ue8m0() ? LlPayload::kFp8Ue8m0 : LlPayload::kFp8);
}

ref::LowLatencySpec LlShape::spec() const {
  return {.num_ranks = num_ranks,
          .num_experts = num_experts,
          .num_topk = num_topk,
          .hidden = hidden,
          .num_max_dispatch_tokens_per_rank = max_tokens,
          .use_fp8 = fp8(),
          .round_scale = round_scale()};
}

std::string LlShape::describe() const {
  std::ostringstream out;
  out << "ranks=" << num_ranks << " hidden=" << hidden << " experts=" << num_experts << " topk=" << num_topk
      << " T=" << max_tokens << " " << scale_mode_name(mode) << (int32_topk ? " int32-ids" : "");
  return out.str();
}

// ---- inputs ----------------------------------------------------------------------------

std::vector<int> ll_tokens_everywhere(const LlShape& s, int num_tokens) { return std::vector<int>(s.num_ranks, num_tokens); }

void check_ll_inputs_fit(const LlShape& s, const std::vector<ref::RankLowLatencyInput>& inputs) {
  if (static_cast<int>(inputs.size()) != s.num_ranks) throw std::invalid_argument("test: one input per rank");
  std::vector<std::int64_t> per_expert(s.num_experts, 0);
  for (int r = 0; r < s.num_ranks; ++r) {
    const auto& in = inputs[r];
    const std::size_t n = static_cast<std::size_t>(in.num_tokens);
    if (in.num_tokens < 0 || in.num_tokens > s.max_tokens || in.x.size() != n * s.hidden ||
        in.topk_idx.size() != n * s.num_topk || in.topk_weights.size() != n * s.num_topk) {
      throw std::invalid_argument("test: rank " + str(r) + " inputs do not fit " + s.describe());
    }
    for (std::int64_t id : in.topk_idx) {
      if (id < -1 || id >= s.num_experts) throw std::invalid_argument("test: expert id " + str(id) + " out of range");
      if (id >= 0) ++per_expert[id];
    }
  }
  for (int e = 0; e < s.num_experts; ++e) {
    if (per_expert[e] > s.rows_per_expert()) {
      throw std::invalid_argument("test: expert " + str(e) + " would receive " + str(per_expert[e]) +
                                  " rows, more than N = " + str(s.rows_per_expert()));
    }
  }
}

std::vector<ref::RankLowLatencyInput> random_ll_inputs(const LlShape& s, const std::vector<int>& num_tokens,
                                                       std::uint64_t seed, const LlRouting& routing) {
  if (s.num_topk > s.num_experts) throw std::invalid_argument("test: top-k above num_experts");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform;
  std::vector<ref::RankLowLatencyInput> inputs(s.num_ranks);
  // Distinct experts per token: no expert receives more than the tokens of all ranks (<= N).
  std::vector<std::int64_t> per_expert(s.num_experts, 0);
  for (int r = 0; r < s.num_ranks; ++r) {
    auto& in = inputs[r];
    in.num_tokens = num_tokens.at(r);
    in.topk_idx = random_topk_idx(rng, in.num_tokens, s.num_topk, s.num_experts, routing.hole_fraction,
                                  routing.routing, s.num_ranks);
    for (std::int64_t id : in.topk_idx) {
      if (id >= 0) ++per_expert[id];
    }
  }
  // Duplicates: the last slot repeats the token's first valid expert, while that expert
  // stays within its N rows.
  for (int r = 0; r < s.num_ranks; ++r) {
    auto& in = inputs[r];
    for (int t = 0; t < in.num_tokens && s.num_topk >= 2; ++t) {
      if (uniform(rng) >= routing.duplicate_fraction) continue;
      std::int64_t* ids = in.topk_idx.data() + static_cast<std::size_t>(t) * s.num_topk;
      for (int j = 0; j < s.num_topk - 1; ++j) {
        if (ids[j] < 0) continue;
        if (per_expert[ids[j]] < s.rows_per_expert()) {
          std::int64_t& last = ids[s.num_topk - 1];
          if (last >= 0) --per_expert[last];
          last = ids[j];
          ++per_expert[last];
        }
        break;
      }
    }
  }
  for (int r = 0; r < s.num_ranks; ++r) {
    auto& in = inputs[r];
    in.topk_weights = random_weights(rng, in.topk_idx.size());
    in.x = random_bf16(rng, static_cast<std::size_t>(in.num_tokens) * s.hidden);
  }
  check_ll_inputs_fit(s, inputs);
  return inputs;
}

// ---- expected --------------------------------------------------------------------------

LlExpected expected_ll(const LlShape& s, const std::vector<ref::RankLowLatencyInput>& inputs,
                       const std::vector<bool>& masked) {
  const int R = s.num_ranks, E = s.num_local_experts(), H = s.hidden, k = s.num_topk, T = s.max_tokens;
  LlExpected e;
  e.masked = masked.empty() ? std::vector<bool>(R, false) : masked;
  const auto eff = effective_inputs(s, inputs, e.masked);
  const ref::LowLatencySpec spec = s.spec();
  e.dispatched = ref::low_latency_dispatch(spec, eff);

  ref::ExpertOutputs outputs;
  for (int owner = 0; owner < R; ++owner) {
    auto& owner_rows = outputs.rows.emplace_back();
    for (int l = 0; l < E; ++l) {
      auto& expert_rows = owner_rows.emplace_back();
      for (const ref::LowLatencySlot& entry : e.dispatched[owner].per_expert[l]) {
        const std::vector<float> v = dequantized(s, entry);
        std::vector<std::uint16_t> row(H);
        for (int c = 0; c < H; ++c) row[c] = expert_output_bf16(v[c], owner * E + l);
        expert_rows.push_back(std::move(row));
      }
    }
  }
  e.combined = ref::low_latency_combine(spec, eff, e.dispatched, outputs);

  // Row of each (home, token) in each expert's list: entries are sorted by (rank, token),
  // so duplicates of one token are adjacent and the k-th occurrence is first + k.
  std::vector<std::vector<std::vector<int>>> first_index(R, std::vector<std::vector<int>>(E));
  for (int owner = 0; owner < R; ++owner) {
    for (int l = 0; l < E; ++l) {
      auto& first = first_index[owner][l];
      first.assign(static_cast<std::size_t>(R) * T, -1);
      const auto& entries = e.dispatched[owner].per_expert[l];
      for (int i = static_cast<int>(entries.size()) - 1; i >= 0; --i) {
        first[static_cast<std::size_t>(entries[i].src_rank) * T + entries[i].src_token] = i;
      }
    }
  }

  e.sum_abs.resize(R);
  e.logfmt_bound.resize(R);
  e.combine_slots.resize(R);
  e.combine_rows.resize(R);
  for (int home = 0; home < R; ++home) {
    const auto& in = eff[home];
    e.sum_abs[home].assign(static_cast<std::size_t>(in.num_tokens) * H, 0.0f);
    e.logfmt_bound[home].assign(static_cast<std::size_t>(in.num_tokens) * H, 0.0f);
    e.combine_slots[home].assign(static_cast<std::size_t>(in.num_tokens) * k, -1);
    // Slots whose owner is masked: the send phase ranks them before any wait, so their
    // value is free (-2); the combine ignores them.
    for (std::size_t slot = 0; slot < e.combine_slots[home].size(); ++slot) {
      const std::int64_t g = inputs[home].topk_idx[slot];
      if (g >= 0 && e.masked[static_cast<std::size_t>(g / E)]) e.combine_slots[home][slot] = -2;
    }
    e.combine_rows[home] = e.combine_slots[home];
    for (int t = 0; t < in.num_tokens; ++t) {
      ref::LowLatencySlot source;
      const std::uint16_t* x = in.x.data() + static_cast<std::size_t>(t) * H;
      if (s.fp8()) {
        source.fp8 = ref::cast_fp8_per_128(x, H, s.round_scale());
      } else {
        source.x_bf16.assign(x, x + H);
      }
      const std::vector<float> v = dequantized(s, source);
      for (int j = 0; j < k; ++j) {
        const std::size_t slot = static_cast<std::size_t>(t) * k + j;
        const std::int64_t g = in.topk_idx[slot];
        if (g < 0) continue;
        const int owner = static_cast<int>(g / E), l = static_cast<int>(g % E);
        int occurrence = 0;
        for (int before = 0; before < j; ++before) occurrence += in.topk_idx[static_cast<std::size_t>(t) * k + before] == g;
        const int first = first_index[owner][l][static_cast<std::size_t>(home) * T + t];
        // The entry's index among the rows this home rank sent to expert (owner, l): the
        // owner's list is sorted by (source rank, token), so subtract the rows of lower ranks.
        int rows_of_lower_ranks = 0;
        for (const auto& entry : e.dispatched[owner].per_expert[l]) rows_of_lower_ranks += entry.src_rank < home ? 1 : 0;
        e.combine_slots[home][slot] = first < 0 ? -2 : first + occurrence - rows_of_lower_ranks;
        e.combine_rows[home][slot] = first < 0 ? -2 : first + occurrence;  // the owner's slot

        const double w = in.topk_weights[slot];
        std::vector<float> xk(H);
        for (int c = 0; c < H; ++c) xk[c] = ref::bf16_to_float(expert_output_bf16(v[c], static_cast<int>(g)));
        for (int g0 = 0; g0 < H; g0 += 128) {
          float group_max = 0.0f;
          for (int c = g0; c < g0 + 128; ++c) group_max = std::max(group_max, std::fabs(xk[c]));
          for (int c = g0; c < g0 + 128; ++c) {
            const std::size_t i = static_cast<std::size_t>(t) * H + c;
            e.sum_abs[home][i] += static_cast<float>(std::fabs(w * xk[c]));
            e.logfmt_bound[home][i] +=
                static_cast<float>(std::fabs(w) * (0.07 * std::fabs(xk[c]) + group_max * std::ldexp(1.0, -20)));
          }
        }
      }
    }
  }
  return e;
}

// ---- LlRankIo ------------------------------------------------------------------------

LlRankIo::LlRankIo(const LlShape& s, int rank, bool with_stats)
    : shape_(s),
      rank_(rank),
      with_stats_(with_stats),
      x_(static_cast<std::size_t>(s.max_tokens) * s.hidden),
      topk_idx_(static_cast<std::size_t>(s.max_tokens) * s.num_topk),
      topk_idx32_(static_cast<std::size_t>(s.max_tokens) * s.num_topk),
      topk_weights_(static_cast<std::size_t>(s.max_tokens) * s.num_topk),
      recv_x_(s.recv_x_bytes()),
      recv_scales_(s.recv_scales_bytes()),
      recv_count_(s.num_local_experts()),
      src_info_(static_cast<std::size_t>(s.num_local_experts()) * s.rows_per_expert()),
      combine_slots_(static_cast<std::size_t>(s.max_tokens) * s.num_topk),
      layout_range_(static_cast<std::size_t>(s.num_local_experts()) * s.num_ranks),
      combine_x_(static_cast<std::size_t>(s.num_local_experts()) * s.rows_per_expert() * s.hidden),
      out_(static_cast<std::size_t>(s.max_tokens) * s.hidden),
      stats_recv_(with_stats ? s.num_local_experts() : 0),
      stats_wait_(with_stats ? s.num_ranks : 0),
      unrelated_(kUnrelatedCount) {
  zero_stats();
  set_handle_views();
}

void LlRankIo::set_inputs(const ref::RankLowLatencyInput& in) {
  if (in.num_tokens < 0 || in.num_tokens > shape_.max_tokens) {
    throw std::invalid_argument("test: " + str(in.num_tokens) + " tokens, arrays hold " + str(shape_.max_tokens));
  }
  num_tokens_ = in.num_tokens;
  x_.upload_prefix(in.x.data(), in.x.size() * sizeof(std::uint16_t));
  overwrite_topk_idx(in.topk_idx);
  topk_weights_.upload_prefix(in.topk_weights.data(), in.topk_weights.size() * sizeof(float));
  poison_outputs();
}

void LlRankIo::overwrite_topk_idx(const std::vector<std::int64_t>& ids) {
  topk_idx_.upload_prefix(ids.data(), ids.size() * sizeof(std::int64_t));
  std::vector<std::int32_t> ids32(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids32[i] = static_cast<std::int32_t>(ids[i]);
  topk_idx32_.upload_prefix(ids32.data(), ids32.size() * sizeof(std::int32_t));
}

void LlRankIo::poison_outputs() {
  recv_x_.poison();
  recv_scales_.poison();
  recv_count_.poison();
  src_info_.poison();
  combine_slots_.poison();
  layout_range_.poison();
  combine_x_.poison();
  out_.poison();
  unrelated_.poison();
}

void LlRankIo::zero_stats() {
  zero(stats_recv_);
  zero(stats_wait_);
}

void LlRankIo::set_handle_views() {
  const std::int64_t E = shape_.num_local_experts(), N = shape_.rows_per_expert();
  handle.src_info = src_info_.view(DType::kInt32, {E, N});
  handle.layout_range = layout_range_.view(DType::kInt64, {E, shape_.num_ranks});
  handle.combine_slots = combine_slots_.view(DType::kInt32, {shape_.max_tokens, shape_.num_topk});
}

LowLatencyDispatchArgs LlRankIo::dispatch_args(cudaStream_t stream, const LlCallOptions& o) const {
  LowLatencyDispatchArgs a;
  a.x = x_.view(DType::kBFloat16, {num_tokens_, shape_.hidden});
  a.topk_idx = shape_.int32_topk ? topk_idx32_.view(DType::kInt32, {num_tokens_, shape_.num_topk})
                                 : topk_idx_.view(DType::kInt64, {num_tokens_, shape_.num_topk});
  a.num_max_dispatch_tokens_per_rank = shape_.max_tokens;
  a.num_experts = shape_.num_experts;
  if (with_stats_) {
    a.cumulative_local_expert_recv_stats = stats_recv_.view(DType::kInt32, {shape_.num_local_experts()});
    a.dispatch_wait_recv_cost_stats = stats_wait_.view(DType::kInt64, {shape_.num_ranks});
  }
  a.use_fp8 = shape_.fp8();
  a.round_scale = shape_.round_scale();
  a.use_ue8m0 = shape_.ue8m0();
  a.return_recv_hook = o.dispatch_hook;
  a.stream.compute_stream = stream;
  a.stream.async_finish = o.async_finish;
  return a;
}

LowLatencyDispatchOutputs LlRankIo::dispatch_outputs() const {
  const std::int64_t E = shape_.num_local_experts(), N = shape_.rows_per_expert(), S = shape_.scale_columns();
  LowLatencyDispatchOutputs out;
  out.recv_x = recv_x_.view(shape_.fp8() ? DType::kFloat8E4M3 : DType::kBFloat16, {E, N, shape_.hidden});
  if (shape_.fp8()) {
    out.recv_x_scales = recv_scales_.view(shape_.ue8m0() ? DType::kInt32 : DType::kFloat32, {E, N, S});
    out.recv_x_scales.strides = {N * S, 1, N, 0};  // column-major in the last two dims
  }
  out.recv_count = recv_count_.view(DType::kInt32, {E});
  return out;
}

TensorView LlRankIo::combine_x_view() const {
  return combine_x_.view(DType::kBFloat16, {shape_.num_local_experts(), shape_.rows_per_expert(), shape_.hidden});
}

LowLatencyCombineArgs LlRankIo::combine_args(Buffer& buffer, cudaStream_t stream, const LlCallOptions& o) const {
  LowLatencyCombineArgs a;
  a.x = o.zero_copy ? buffer.next_low_latency_combine_buffer(handle) : combine_x_view();
  a.topk_idx = shape_.int32_topk ? topk_idx32_.view(DType::kInt32, {num_tokens_, shape_.num_topk})
                                 : topk_idx_.view(DType::kInt64, {num_tokens_, shape_.num_topk});
  a.topk_weights = topk_weights_.view(DType::kFloat32, {num_tokens_, shape_.num_topk});
  a.out = out_.view(DType::kBFloat16, {num_tokens_, shape_.hidden});
  a.use_logfmt = o.use_logfmt;
  a.zero_copy = o.zero_copy;
  a.return_recv_hook = o.combine_hook;
  a.stream.compute_stream = stream;
  a.stream.async_finish = o.async_finish;
  return a;
}

LowLatencyCall LlRankIo::dispatch(Buffer& buffer, cudaStream_t stream, const LlCallOptions& o) {
  set_handle_views();
  return buffer.low_latency_dispatch(dispatch_args(stream, o), dispatch_outputs(), handle);
}

void LlRankIo::expert_compute(cudaStream_t stream, const TensorView& dest) const {
  const std::int64_t E = shape_.num_local_experts(), N = shape_.rows_per_expert();
  if (dest.dtype != DType::kBFloat16 || dest.ndim != 3 || dest.shape[0] != E || dest.shape[1] != N ||
      dest.shape[2] != shape_.hidden || !dest.is_contiguous() || dest.data == nullptr) {
    throw std::runtime_error("test: rank " + str(rank_) + ": the combine input is " + dest.describe() +
                             ", expected bfloat16[" + str(E) + ", " + str(N) + ", " + str(shape_.hidden) + "] contiguous");
  }
  ExpertTransformArgs a;
  a.recv_x = recv_x_.get();
  a.recv_x_scales = recv_scales_.get();
  a.recv_count = recv_count_.get();
  a.out = static_cast<std::uint16_t*>(dest.data);
  a.num_local_experts = static_cast<int>(E);
  a.rows_per_expert = N;
  a.hidden = shape_.hidden;
  a.first_global_expert = rank_ * static_cast<int>(E);
  a.payload = shape_.payload();
  launch_expert_transform(a, stream);
}

void LlRankIo::expert_compute(Buffer& buffer, cudaStream_t stream, const LlCallOptions& o) {
  expert_compute(stream, o.zero_copy ? buffer.next_low_latency_combine_buffer(handle) : combine_x_view());
}

LowLatencyCall LlRankIo::combine(Buffer& buffer, cudaStream_t stream, const LlCallOptions& o) {
  return buffer.low_latency_combine(combine_args(buffer, stream, o), handle);
}

void LlRankIo::complete(const LowLatencyCall& call, bool hook_requested, cudaStream_t stream, const LlCallOptions& o) {
  if (call.hook.pending() != hook_requested) {
    throw std::runtime_error("test: rank " + str(rank_) + ": the call returned " +
                             (call.hook.pending() ? "a pending hook" : "no pending hook") + " with return_recv_hook=" +
                             (hook_requested ? "true" : "false"));
  }
  if (o.async_finish && !call.event.valid()) {
    throw std::runtime_error("test: rank " + str(rank_) + ": async_finish returned no event");
  }
  if (hook_requested) {
    launch_unrelated_work(unrelated_.get(), kUnrelatedCount, o.unrelated_spin_ns, stream);
    LowLatencyHook hook = call.hook;
    hook();
  }
  if (o.async_finish) call.event.stream_wait(stream);
}

void LlRankIo::enqueue_round(Buffer& buffer, cudaStream_t stream, const LlCallOptions& o) {
  if (o.async_finish && (o.dispatch_hook || o.combine_hook)) {
    throw std::invalid_argument("test: async_finish and return_recv_hook exclude each other");
  }
  const LowLatencyCall d = dispatch(buffer, stream, o);
  complete(d, o.dispatch_hook, stream, o);
  expert_compute(buffer, stream, o);
  const LowLatencyCall c = combine(buffer, stream, o);
  complete(c, o.combine_hook, stream, o);
}

void LlRankIo::run_round(Buffer& buffer, cudaStream_t stream, const LlCallOptions& o) {
  enqueue_round(buffer, stream, o);
  finish_round(buffer, stream, o);
}

void LlRankIo::finish_round(Buffer& buffer, cudaStream_t stream, const LlCallOptions& o) {
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  buffer.check_error();
  if ((o.dispatch_hook || o.combine_hook) && !unrelated_work_seen()) {
    throw std::runtime_error("test: rank " + str(rank_) + ": the unrelated kernel's output is wrong");
  }
}

bool LlRankIo::unrelated_work_seen() const {
  const auto scratch = unrelated_.download();
  return unrelated_work_done(scratch.data(), kUnrelatedCount);
}

LlRankOutputs LlRankIo::download() const {
  LlRankOutputs o;
  o.recv_x = recv_x_.download();
  o.recv_scales = recv_scales_.download();
  o.recv_count = recv_count_.download();
  o.src_info = src_info_.download();
  o.layout_range = layout_range_.download();
  o.combine_slots = combine_slots_.download();
  o.absolute_slots = handle.absolute_slots;
  o.out = out_.download();
  o.unrelated = unrelated_.download();
  o.stats_recv = stats_recv_.download();
  o.stats_wait = stats_wait_.download();
  return o;
}

bool bitwise_equal(const LlRankOutputs& a, const LlRankOutputs& b, std::string* first_difference) {
  bool same = true;
  same &= same_bytes("recv_x", a.recv_x, b.recv_x, first_difference);
  same &= same_bytes("recv_x_scales", a.recv_scales, b.recv_scales, first_difference);
  same &= same_bytes("recv_count", a.recv_count, b.recv_count, first_difference);
  same &= same_bytes("src_info", a.src_info, b.src_info, first_difference);
  same &= same_bytes("layout_range", a.layout_range, b.layout_range, first_difference);
  same &= same_bytes("combine_slots", a.combine_slots, b.combine_slots, first_difference);
  same &= same_bytes("out", a.out, b.out, first_difference);
  return same;
}

// ---- LlSet ---------------------------------------------------------------------------

LlSet::LlSet(const LlShape& s, bool with_stats) : shape_(s) {
  if (s.num_ranks <= 0 || s.num_experts % s.num_ranks != 0) throw std::invalid_argument("test: bad shape " + s.describe());
  ranks_.reserve(s.num_ranks);
  for (int r = 0; r < s.num_ranks; ++r) ranks_.emplace_back(s, r, with_stats);
}

void LlSet::set_inputs(std::vector<ref::RankLowLatencyInput> inputs) {
  check_ll_inputs_fit(shape_, inputs);
  expected_ = expected_ll(shape_, inputs);
  inputs_ = std::move(inputs);
  for (int r = 0; r < shape_.num_ranks; ++r) ranks_[r].set_inputs(inputs_[r]);
}

void LlSet::set_random_inputs(const std::vector<int>& num_tokens, std::uint64_t seed, const LlRouting& routing) {
  set_inputs(random_ll_inputs(shape_, num_tokens, seed, routing));
}

void LlSet::poison_outputs() {
  for (auto& r : ranks_) r.poison_outputs();
}

void LlSet::zero_stats() {
  for (auto& r : ranks_) r.zero_stats();
}

void LlSet::expect_masked(const std::vector<bool>& masked) { expected_ = expected_ll(shape_, inputs_, masked); }

std::int64_t compare_ll_rank(const LlShape& shape, int rank, int num_tokens, const LlRankOutputs& got,
                             const LlExpected& expected, const LlCheck& check, const std::string& context) {
  Mismatches m(context);
  check_rank(shape, rank, num_tokens, got, expected, check, m);
  return m.count();
}

std::int64_t LlSet::count_mismatches(const std::string& context, const LlCheck& check) const {
  std::int64_t mismatches = 0;
  for (int r = 0; r < shape_.num_ranks; ++r) {
    const bool skipped = static_cast<std::size_t>(r) < check.skip_ranks.size() && check.skip_ranks[r];
    if (skipped || expected_.masked[r]) continue;
    mismatches += compare_ll_rank(shape_, r, ranks_[r].num_tokens(), ranks_[r].download(), expected_, check,
                                  context + " [" + shape_.describe() + "]");
  }
  return mismatches;
}

std::int64_t LlSet::count_unpoisoned(int r, bool dispatch_outputs, bool combine_outputs) const {
  const LlRankOutputs o = ranks_[r].download();
  std::int64_t n = 0;
  if (dispatch_outputs) {
    n += count_unpoisoned_bytes(o.recv_x) + count_unpoisoned_bytes(o.recv_scales) +
         count_unpoisoned_bytes(o.recv_count) + count_unpoisoned_bytes(o.src_info) +
         count_unpoisoned_bytes(o.layout_range) + count_unpoisoned_bytes(o.combine_slots);
  }
  if (combine_outputs) n += count_unpoisoned_bytes(o.out);
  return n;
}

// ---- cluster ---------------------------------------------------------------------------

void run_ll_round_on_all_ranks(Cluster& cluster, LlSet& set, const LlCallOptions& options) {
  // Every rank enqueues its round before any rank blocks on its stream (as the benchmark).
  // On failure, when each rank's host thread finished enqueueing and waiting tells a host
  // stall (a rank launching late) from a device one.
  std::barrier enqueued(cluster.num_ranks);
  const auto start = std::chrono::steady_clock::now();
  std::vector<double> enqueued_us(cluster.num_ranks, -1), synced_us(cluster.num_ranks, -1);
  const auto since_start = [&] {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  };
  try {
    run_on_ranks(cluster.num_ranks, [&](int r) {
      MOE_EP_CUDA_CHECK(cudaSetDevice(cluster.buffers[r]->device()));
      try {
        set.rank(r).enqueue_round(*cluster.buffers[r], cluster.streams[r], options);
      } catch (...) {
        enqueued.arrive_and_drop();
        throw;
      }
      enqueued_us[r] = since_start();
      enqueued.arrive_and_wait();
      set.rank(r).finish_round(*cluster.buffers[r], cluster.streams[r], options);
      synced_us[r] = since_start();
    });
  } catch (const std::exception& e) {
    std::string timeline;
    for (int r = 0; r < cluster.num_ranks; ++r) {
      timeline += "\n  rank " + str(r) + ": enqueued at " + str(std::llround(enqueued_us[r])) + " us, synchronized at " +
                  str(std::llround(synced_us[r])) + " us";
    }
    throw std::runtime_error(std::string(e.what()) + "\nhost timeline of the round (-1: not reached):" + timeline);
  }
}

BufferOptions ll_options(std::uint64_t timeout_ms, bool enable_shrink) {
  BufferOptions options;
  options.low_latency_mode = true;
  options.timeout_ns = timeout_ms * 1'000'000ull;
  options.enable_shrink = enable_shrink;
  return options;
}

std::int64_t ll_buffer_bytes(const LlShape& s, bool staging) {
  if (staging) return Buffer::low_latency_size_hint(s.max_tokens, s.hidden, s.num_ranks, s.num_experts);
  return protocol::ll_region_bytes(s.max_tokens, s.hidden, s.num_experts, /*combine_staging=*/false);
}

std::unique_ptr<Cluster> make_ll_cluster(int num_ranks, std::int64_t num_rdma_bytes, BufferOptions options) {
  options.low_latency_mode = true;
  return std::make_unique<Cluster>(num_ranks, /*num_nvl_bytes=*/0, options, /*device=*/0, num_rdma_bytes);
}

}  // namespace moe_ep::test
