// The direct dispatch's `ready` (every rank in this process on this GPU) as tagged words
// (protocol::LlReadyWord; LlHeader::ready_words, the half's ready counts): each 8-byte word
// holds a value and, above it, the op's epoch and a failed bit, stored at once (only a
// direct dispatch writes them, so no op; 31 bits of epoch wrap after 2^31 ops on a half).
// The writer publishes its shape, outputs and counts with plain stores: no fence, no flag. A reader polls exactly
// the words it uses until they carry this op's tag: no flag to see first and then a round
// trip for the data. The values are the data (nothing else of the writer's is read on
// their word), so no acquire is needed either. H100, 8 ranks, old and new binaries
// alternately, three runs each, kernel start to end: one token per rank, dispatch 11.1 ->
// 10.75 us; ll-v3 dispatch 42.0 -> 41.65 us.
// Tried for the combine of its handle (rows in place) too, where the words must release
// the owner's x (a fence before the stores, acquire polls): 9.35 -> 9.85 us, not kept.
//
// Ranks on another path (the pulling dispatch) or in another op wait on `ready` flags
// instead. So a direct rank still sets its flags, late (block 0 before its final wait,
// after a fence, so its words are older than its flags): such a peer then reads the
// published struct and names the disagreement; and a direct reader that finds a peer's
// flag set while its word is stale knows the peer took another path or op, and says so.
// Shapes are compared from the words before any count is awaited (a peer of fewer experts
// never writes some counts).
#pragma once
#include <cstdint>

#include "kernels/low_latency/ll_collective.cuh"

namespace moe_ep::kernels {

inline constexpr protocol::Phase kLlDirectPhase = protocol::Phase::kLowLatencyDispatchSend;

// The tag of this op's words (their high half); `failed`: the writer failed the op.
__device__ __forceinline__ std::uint32_t ll_word_tag(std::uint64_t epoch, bool failed = false) {
  return static_cast<std::uint32_t>((epoch << 1) | (failed ? 1u : 0u));
}
// The word carries this op's tag, failed or not.
__device__ __forceinline__ bool ll_word_current(std::uint64_t word, std::uint32_t tag) {
  return ((static_cast<std::uint32_t>(word >> 32) ^ tag) & ~1u) == 0;
}
// The word carries this op's tag and did not fail: its value is final.
__device__ __forceinline__ bool ll_word_ready(std::uint64_t word, std::uint32_t tag) {
  return static_cast<std::uint32_t>(word >> 32) == tag;
}

// Pointer i (0..2) of this rank's ready record: its outputs (recv_x, scales, src_info).
__device__ __forceinline__ std::uint64_t ll_ready_pointer_value(const protocol::LlPublished& s, int i) {
  const void* ptr = i == 0 ? static_cast<const void*>(s.recv_x) : i == 1 ? s.recv_scales : s.src_info;  // no local array
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(ptr));
}

// Word w of this rank's ready record (ctx.shape).
__device__ __forceinline__ std::uint32_t ll_ready_value(const LlContext& ctx, int w) {
  const protocol::LlPublished& s = ctx.shape;
  switch (w) {
    case protocol::kReadyHidden: return s.hidden;
    case protocol::kReadyTopk: return s.num_topk;
    case protocol::kReadyExperts: return s.num_experts;
    case protocol::kReadyMaxTokens: return s.max_tokens;
    case protocol::kReadyFormat: return s.format;
    case protocol::kReadyDirect: return s.direct;
    case protocol::kReadyNumTokens: return s.num_tokens;
    case protocol::kReadyDoneBlocks: return s.done_blocks;
    default: break;
  }
  const int p = w - protocol::kReadyPointers;
  return static_cast<std::uint32_t>(ll_ready_pointer_value(s, p / 2) >> (32 * (p % 2)));
}

// One warp of block 0, while the ids load: this rank's ready record (lane w: word w). A
// fault-injected delay comes first, as before any signal.
__device__ __forceinline__ void ll_write_ready_words(const LlContext& ctx, std::uint64_t epoch, int lane) {
  if (ctx.delay_ns != 0) device::sleep_until(device::global_timer_ns() + ctx.delay_ns);
  if (lane >= protocol::kLlReadyWords) return;
  const std::uint64_t tag = ll_word_tag(epoch);
  device::store_relaxed(&ll_header(ctx, ctx.rank)->ready_words[lane], (tag << 32) | ll_ready_value(ctx, lane),
                        /*gpu_scope=*/true);
}

// Rank q's tagged count for global expert e, in the set of this op's epoch parity: a peer
// lays out from this op's counts after signalling its `done`, while this rank may already
// publish the half's next op (its next-but-one op cannot start before the peer finished).
__device__ __forceinline__ std::uint64_t* ll_count_word(const LlContext& ctx, int q, int e, std::uint64_t epoch) {
  return reinterpret_cast<std::uint64_t*>(ll_half(ctx, q) + ctx.layout.ready_counts_offset) +
         static_cast<std::int64_t>(epoch & 1) * ctx.shape.num_experts + e;
}

// Block 0, once it holds this rank's count per expert: the counts (failed: the op failed
// here, which every reader of a count then reports).
__device__ __forceinline__ void ll_write_ready_counts(const LlContext& ctx, const int* counts, int num_experts,
                                                      std::uint64_t epoch, bool failed) {
  const std::uint64_t tag = ll_word_tag(epoch, failed);
  std::uint64_t* out = ll_count_word(ctx, ctx.rank, 0, epoch);
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
    device::store_relaxed(&out[e], (tag << 32) | static_cast<std::uint32_t>(counts[e]), /*gpu_scope=*/true);
  }
}

// One thread, block 0, before its final wait: the late `ready` flags (see the top), after a
// fence that orders every word (and the published struct) of the block before them.
__device__ __forceinline__ void ll_signal_ready_flags(const LlContext& ctx, std::uint64_t epoch, bool failed) {
  __threadfence();
  // Read in our header (ll_own_flags: the direct path has every rank on this GPU).
  device::store_relaxed(&ll_header(ctx, ctx.rank)->ready[ctx.rank], protocol::make_tag(epoch, ctx.op, failed), true);
}

struct LlWordRead {
  std::uint32_t value;
  bool ok;
};

// Peer q set its `ready` flag for this op while its `word` is still stale: it runs another
// op or the other dispatch path (a shape that differs is found from the words first).
// Records which and returns true.
__device__ __forceinline__ bool ll_peer_elsewhere(const LlContext& ctx, int q, const std::uint64_t* word,
                                                  std::uint64_t epoch, protocol::Phase phase) {
  const std::uint64_t flag = device::load_acquire(ll_peer_flag<false>(ctx, &protocol::LlHeader::ready, q), true);
  if (protocol::tag_epoch(flag) < epoch) return false;
  // A direct peer wrote its words before its flag: read after it, a stale word is final.
  if (ll_word_current(device::load_relaxed(word, true), ll_word_tag(epoch))) return false;
  if (protocol::tag_op(flag) != static_cast<std::uint32_t>(ctx.op)) {
    device::record_error(ctx.error, protocol::ErrorCode::kOpMismatch, ctx.rank, phase, q, static_cast<int>(ctx.op),
                         protocol::tag_op(flag));
  } else {
    device::record_error(ctx.error, protocol::ErrorCode::kShapeMismatch, ctx.rank, phase, q, ctx.shape.direct,
                         1 - ctx.shape.direct, 0, static_cast<std::int32_t>(protocol::ShapeField::kDispatchPath));
  }
  return true;
}

// One thread: the value of peer q's tagged `word` once it carries this op's tag (the
// caller's load of it was stale). Bounded: an expired wait, a peer on another path, op or
// shape, or a peer that failed the op are recorded and return ok = false. Callers inline it
// once each (a loop over their stale words): inlined at every count, or called out of line
// (registers spilled around the call), it cost one token per rank at 8 ranks about 3 us a
// dispatch.
__device__ __forceinline__ LlWordRead ll_await_word(const LlContext& ctx, int q, const std::uint64_t* word,
                                                    std::uint64_t epoch, protocol::Phase phase) {
  const std::uint32_t tag = ll_word_tag(epoch);
  const std::uint64_t start = device::global_timer_ns();
  std::uint64_t seen = device::load_relaxed(word, true);
  for (int polls = 0; !ll_word_current(seen, tag); ++polls) {
    if (device::global_timer_ns() - start > ctx.timeout_ns) {
      ll_record_timeout<false>(ctx, phase, q, protocol::make_tag(epoch, ctx.op),
                               ll_peer_flag<false>(ctx, &protocol::LlHeader::ready, q), start);
      return {0, false};
    }
    if (polls % 16 == 15 && ll_peer_elsewhere(ctx, q, word, epoch, phase)) return {0, false};
    seen = device::load_relaxed(word, true);
  }
  if ((seen >> 32) & 1u) {
    device::record_error(ctx.error, protocol::ErrorCode::kPeerFailed, ctx.rank, phase, q);
    return {0, false};
  }
  return {static_cast<std::uint32_t>(seen), true};
}

// One thread: the value of peer q's tagged `word`, at once if it is in (the common case),
// else through ll_await_word.
__device__ __forceinline__ LlWordRead ll_read_word(const LlContext& ctx, int q, const std::uint64_t* word,
                                                   std::uint64_t epoch, protocol::Phase phase) {
  const std::uint64_t seen = device::load_relaxed(word, true);
  if (ll_word_ready(seen, ll_word_tag(epoch))) return {static_cast<std::uint32_t>(seen), true};
  return ll_await_word(ctx, q, word, epoch, phase);
}

// Whole block: every peer's ready record into words[q] (shared; this rank's own is not
// read). Thread i polls word i % kLlReadyStride of peer i / kLlReadyStride, so every word
// is in flight at once. Needs kMaxNvlRanks * kLlReadyStride threads at most.
__device__ __forceinline__ LlArrivals ll_await_ready_words(const LlContext& ctx, std::uint64_t epoch,
                                                           protocol::Phase phase,
                                                           std::uint32_t (*words)[protocol::kLlReadyStride]) {
  __shared__ bool failed;
  if (threadIdx.x == 0) failed = false;
  __syncthreads();
  const int q = threadIdx.x / protocol::kLlReadyStride, w = threadIdx.x % protocol::kLlReadyStride;
  if (q < ctx.num_ranks && q != ctx.rank && w < protocol::kLlReadyWords) {
    const LlWordRead read = ll_read_word(ctx, q, &ll_header(ctx, q)->ready_words[w], epoch, phase);
    words[q][w] = read.value;
    if (!read.ok) failed = true;
  }
  __syncthreads();
  return ll_all_arrived(ctx, failed);
}

// Thread q < num_ranks, after ll_await_ready_words: peer q's shape (ours: ctx.shape).
__device__ __forceinline__ LlShapeFields ll_ready_shape(const LlContext& ctx,
                                                        const std::uint32_t (*words)[protocol::kLlReadyStride]) {
  const int q = threadIdx.x;
  if (q >= ctx.num_ranks || q == ctx.rank) return ll_shape_fields(ctx.shape);
  LlShapeFields f;
#pragma unroll
  for (int i = 0; i < LlShapeFields::kCount; ++i) f.values[i] = static_cast<std::int32_t>(words[q][protocol::kReadyHidden + i]);
  return f;
}

// Pointer i (ll_ready_pointer_value) of peer q's ready record.
template <typename T>
__device__ __forceinline__ T* ll_ready_pointer(const std::uint32_t (*words)[protocol::kLlReadyStride], int q, int i) {
  const int w = protocol::kReadyPointers + 2 * i;
  return reinterpret_cast<T*>((static_cast<std::uintptr_t>(words[q][w + 1]) << 32) | words[q][w]);
}

}  // namespace moe_ep::kernels
