// Buffer::low_latency_dispatch / low_latency_combine: checks, then the send kernel now and
// the receive kernel now or from the hook. Launches on the caller's stream (the comm
// stream with async_finish); no host sync, so both are graph-capturable.
#include <algorithm>
#include <string>

#include "host/buffer_impl.hpp"
#include "host/ll_validation.hpp"
#include "host/validation.hpp"
#include "kernels/low_latency/ll_direct_layout.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep {
namespace {


protocol::LlPublished published_shape(const host::LowLatencyShape& s, protocol::LlFormat format) {
  protocol::LlPublished p{};
  p.num_tokens = s.num_tokens;
  p.format = static_cast<std::int32_t>(format);
  p.hidden = s.hidden;
  p.num_topk = s.num_topk;
  p.num_experts = s.num_experts;
  p.max_tokens = s.max_tokens;
  return p;
}

// Whether each block of the launch that signals `done` signals its own (`blocks` of them,
// published so that peers wait for each), into both phases' contexts.
void set_block_done(kernels::LlContext& send, kernels::LlContext& recv, bool block_done, int blocks) {
  for (kernels::LlContext* ctx : {&send, &recv}) {
    ctx->block_done = block_done;
    ctx->shape.done_blocks = block_done ? blocks : 0;
  }
}

// The stream a call launches on: the caller's, or the comm stream (after the caller's
// work) with async_finish.
cudaStream_t launch_stream(Buffer::Impl& m, const StreamOptions& s) {
  if (!s.async_finish) return s.compute_stream;
  return m.begin(s);
}

// Fault injection: a skipped call launches nothing; its hook (if asked for) only passes
// the launch gate, as a receive launch would (not after a reset, like a real hook).
LowLatencyCall skipped_call(Buffer::Impl& m, bool use_hook) {
  LowLatencyCall call;
  if (use_hook) {
    call.hook = LowLatencyHook([&m, generation = m.generation] {
      if (m.generation == generation) m.pass_launch_gate();
    });
  }
  return call;
}

// After the send (or fused) launch: takes the half, wraps the receive in the hook if
// asked, and returns the call's event.
LowLatencyCall finish_call(Buffer::Impl& m, int parity, bool use_hook, const StreamOptions& s, cudaStream_t stream,
                           std::function<void()> receive, const std::string& op) {
  m.ll_next_parity = parity ^ 1;  // the send kernel is launched: this half is taken
  LowLatencyCall call;
  if (use_hook) {
    m.ll_awaiting_hook[parity] = true;
    const std::uint64_t generation = m.generation;
    call.hook = LowLatencyHook([&m, parity, generation, receive = std::move(receive), op] {
      host::require(m.generation == generation, op + " hook", "the buffer was reset after the call; its hook is void");
      m.ensure_usable(op + " hook");
      const Buffer::Impl::LaunchGatePass gate{m};  // committed: passes even if the launch throws
      runtime::DeviceGuard guard(m.device);
      m.ll_awaiting_hook[parity] = false;
      receive();
    });
  }
  if (s.async_finish) call.event = Event::record(stream);
  return call;
}

}  // namespace

LowLatencyCall Buffer::low_latency_dispatch(const LowLatencyDispatchArgs& a, const LowLatencyDispatchOutputs& out,
                                            LowLatencyHandle& handle) {
  const std::string op = "low_latency_dispatch";
  Impl& m = *impl_;
  runtime::DeviceGuard guard(m.device);
  m.ensure_low_latency(op);
  const host::LowLatencyShape s = host::check_low_latency_dispatch(op, m.num_ranks, a, out, handle);
  const protocol::LlHalfLayout layout = protocol::carve_ll_half(s.max_tokens, s.hidden, s.num_topk, s.num_experts, false);
  const protocol::LlMirrorLayout mirrors = m.ll_mirrors(layout, s.max_tokens, s.hidden, s.num_experts);
  m.check_ll_fits(op, mirrors, false);
  handle.num_max_dispatch_tokens_per_rank = s.max_tokens;
  handle.hidden = s.hidden;
  handle.num_experts = s.num_experts;
  handle.num_topk = s.num_topk;
  handle.num_tokens = s.num_tokens;
  handle.buffer_id = m.id;
  handle.buffer_generation = m.generation;
  if (m.consume_skip()) return skipped_call(m, a.return_recv_hook);
  const int parity = m.next_ll_parity(op);
  const Impl::LaunchGatePass gate{m};  // committed: passes after the launch, or if anything throws

  // Every rank in this process on this GPU, in one launch (a send phase alone must not wait
  // for peers, and direct senders wait for their counts), without shrink (where receivers
  // alone decide who takes part): senders write into the receivers' outputs. Otherwise
  // receivers pull: FP8 is cast once into the half; BF16 is read in place by peers of this
  // process (RDMA peers get pushes from the half).
  const bool direct = m.group->shares_address_space() && m.ranks_on_device == m.num_ranks && mirrors.count == 0 &&
                      !m.options.enable_shrink && !a.return_recv_hook && (m.num_ranks == 1 || m.ll_block_done());
  const bool stage = !direct && (a.use_fp8 || !m.group->shares_address_space() || mirrors.count > 0);
  const protocol::LlFormat format = !a.use_fp8        ? protocol::LlFormat::kBf16
                                    : a.use_ue8m0   ? protocol::LlFormat::kFp8Ue8m0
                                    : a.round_scale ? protocol::LlFormat::kFp8PowerOfTwo
                                                    : protocol::LlFormat::kFp8;
  kernels::LlContext ctx = m.ll_context(protocol::Op::kLowLatencyDispatch, parity, layout, mirrors);
  ctx.shape = published_shape(s, format);
  ctx.shape.owner_base = m.ll->bases()[m.rank];
  ctx.shape.rows = stage ? m.ll_local_half(parity) + layout.rows_offset : static_cast<const std::uint8_t*>(a.x.data);
  ctx.shape.row_stride = !stage ? a.x.stride(0) * 2 : a.use_fp8 ? protocol::ll_fp8_row_bytes(s.hidden) : 2 * s.hidden;
  ctx.direct_dispatch = direct;
  ctx.shape.direct = direct ? 1 : 0;
  handle.absolute_slots = direct;  // a direct dispatch places every entry itself
  ctx.shape.recv_x = static_cast<std::uint8_t*>(out.recv_x.data);
  ctx.shape.recv_scales = out.recv_x_scales.data;
  ctx.shape.src_info = handle.src_info.ptr<std::int32_t>();

  kernels::LlDispatchSendParams send{};
  send.ctx = ctx;
  send.x = a.x.ptr<const std::uint16_t>();
  send.x_row_stride = a.x.stride(0);
  send.num_tokens = s.num_tokens;
  send.hidden = s.hidden;
  send.topk_idx = a.topk_idx.data;
  send.topk_idx_int32 = a.topk_idx.dtype == DType::kInt32;
  send.num_topk = s.num_topk;
  send.num_experts = s.num_experts;
  send.stage_rows = stage;
  send.round_scale = a.round_scale;
  send.combine_slots = handle.combine_slots.ptr<int>();
  send.direct_parts = direct ? kernels::ll_direct_parts(s.num_tokens, s.num_topk, s.num_experts / m.num_ranks,
                                                       m.ll_block_share())
                            : 1;

  kernels::LlDispatchRecvParams recv{};
  recv.ctx = ctx;
  recv.hidden = s.hidden;
  recv.num_topk = s.num_topk;
  recv.num_experts = s.num_experts;
  recv.max_tokens = s.max_tokens;
  recv.fp8 = a.use_fp8;
  recv.ue8m0 = a.use_ue8m0;
  recv.recv_x = static_cast<std::uint8_t*>(out.recv_x.data);
  recv.recv_scales = out.recv_x_scales.data;
  recv.recv_count = out.recv_count.ptr<int>();
  recv.src_info = handle.src_info.ptr<int>();
  recv.layout_range = handle.layout_range.ptr<std::int64_t>();
  recv.cumulative_recv_stats = a.cumulative_local_expert_recv_stats.ptr<int>();
  recv.wait_stats = a.dispatch_wait_recv_cost_stats.ptr<std::int64_t>();

  cudaStream_t stream = launch_stream(m, a.stream);
  // The receiving phase's items (every source's tokens) are known only on the device: it
  // takes the rank's whole block share, and so does a launch of both phases.
  const int recv_blocks = m.ll_block_share();
  if (direct) {
    const int blocks = std::min(m.ll_block_share(), kernels::ll_direct_dispatch_blocks(send, recv));
    set_block_done(send.ctx, recv.ctx, m.num_ranks > 1, blocks);
    kernels::launch_ll_dispatch(send, recv, m.num_ranks == 1 ? kernels::LlPhases::kAlone : kernels::LlPhases::kBoth,
                                blocks, stream);
    return finish_call(m, parity, false, a.stream, stream, nullptr, op);
  }
  if (!a.return_recv_hook) {
    kernels::launch_ll_dispatch(send, recv, kernels::LlPhases::kBoth, recv_blocks, stream);
    return finish_call(m, parity, false, a.stream, stream, nullptr, op);
  }
  // Block 0 ranks the entries; the others stage rows, a chunk of channels per warp.
  const std::int64_t chunks =
      s.num_tokens * ((s.hidden + kernels::kLlStageChunkChannels - 1) / kernels::kLlStageChunkChannels);
  const int send_blocks = stage ? std::min(recv_blocks, 1 + m.ll_blocks(chunks)) : 1;
  kernels::launch_ll_dispatch(send, recv, kernels::LlPhases::kSend, send_blocks, stream);
  return finish_call(m, parity, true, a.stream, stream,
                     [send, recv, recv_blocks, stream] {
                       kernels::launch_ll_dispatch(send, recv, kernels::LlPhases::kRecv, recv_blocks, stream);
                     },
                     op);
}

LowLatencyCall Buffer::low_latency_combine(const LowLatencyCombineArgs& a, const LowLatencyHandle& handle) {
  const std::string op = "low_latency_combine";
  Impl& m = *impl_;
  runtime::DeviceGuard guard(m.device);
  m.ensure_low_latency(op);
  m.check_handle(op, handle.buffer_id, handle.buffer_generation);
  const host::LowLatencyShape s = host::check_low_latency_combine(op, m.num_ranks, a, handle);
  // Peers in other processes (or reached by RDMA) cannot read x: stage it (BF16) or encode
  // it (LogFMT).
  const bool staged = a.use_logfmt || a.zero_copy || !m.group->shares_address_space() || m.ll_mirrored();
  const protocol::LlHalfLayout layout = protocol::carve_ll_half(s.max_tokens, s.hidden, s.num_topk, s.num_experts, staged);
  const protocol::LlMirrorLayout mirrors = m.ll_mirrors(layout, s.max_tokens, s.hidden, s.num_experts);
  m.check_ll_fits(op, mirrors, staged);
  if (m.consume_skip()) return skipped_call(m, a.return_recv_hook);
  std::uint8_t* half_rows = m.ll_local_half(m.ll_next_parity) + layout.rows_offset;
  host::require(!a.zero_copy || a.x.data == half_rows, op,
                "zero_copy: x is not the view returned by next_low_latency_combine_buffer() for this call");
  const int parity = m.next_ll_parity(op);
  const Impl::LaunchGatePass gate{m};  // committed: passes after the launch, or if anything throws

  kernels::LlContext ctx = m.ll_context(protocol::Op::kLowLatencyCombine, parity, layout, mirrors);
  ctx.shape = published_shape(s, a.use_logfmt ? protocol::LlFormat::kLogFmt : protocol::LlFormat::kBf16);
  ctx.shape.owner_base = m.ll->bases()[m.rank];
  ctx.shape.rows = staged ? half_rows : static_cast<const std::uint8_t*>(a.x.data);
  ctx.shape.row_stride = a.use_logfmt ? protocol::ll_logfmt_row_bytes(s.hidden) : 2 * s.hidden;
  // Whether the handle's slots are absolute: every rank must agree (checked with the shape),
  // as owners then publish no plan.
  ctx.shape.direct = handle.absolute_slots ? 1 : 0;

  kernels::LlCombineSendParams send{};
  send.ctx = ctx;
  send.x = a.x.ptr<const std::uint16_t>();
  send.hidden = s.hidden;
  send.max_tokens = s.max_tokens;
  send.stage_rows = staged && !a.use_logfmt && !a.zero_copy;
  // Without a hook this launch's receive reads this rank's own rows in x (a hook's receive
  // runs later: every row is staged, so x may change after the send, as with deep_ep).
  send.skip_own_rows = send.stage_rows && !a.return_recv_hook;
  send.logfmt = a.use_logfmt;
  send.layout_range = handle.layout_range.ptr<const std::int64_t>();
  send.absolute_slots = handle.absolute_slots;

  kernels::LlCombineRecvParams recv{};
  recv.ctx = ctx;
  recv.num_tokens = s.num_tokens;
  recv.hidden = s.hidden;
  recv.num_topk = s.num_topk;
  recv.num_experts = s.num_experts;
  recv.max_tokens = s.max_tokens;
  recv.topk_idx = a.topk_idx.data;
  recv.topk_idx_int32 = a.topk_idx.dtype == DType::kInt32;
  recv.topk_weights = a.topk_weights.ptr<const float>();
  recv.combine_slots = handle.combine_slots.ptr<const int>();
  recv.absolute_slots = handle.absolute_slots;
  recv.layout_range = handle.layout_range.ptr<const std::int64_t>();
  recv.own_rows_ready = (!send.stage_rows && !send.logfmt) || send.skip_own_rows;
  recv.own_rows = static_cast<const std::uint8_t*>(a.x.data);  // the half's rows with zero_copy
  recv.out = a.out.ptr<std::uint16_t>();
  recv.wait_stats = a.combine_wait_recv_cost_stats.ptr<std::int64_t>();

  cudaStream_t stream = launch_stream(m, a.stream);
  const bool copies = send.stage_rows || send.logfmt || mirrors.count > 0;  // rows staged or pushed
  const int send_blocks = copies ? m.ll_blocks(s.num_local_experts() * s.slots_per_expert()) : 1;
  // One block per item (token, channel range), at most the rank's block share; a block with
  // no item still joins the barriers.
  recv.item_channels = kernels::ll_combine_item_channels(s.num_tokens, s.hidden, m.ll_block_share());
  const std::int64_t parts = (s.hidden + recv.item_channels - 1) / recv.item_channels;
  const std::int64_t items = s.num_tokens * parts;
  const int recv_blocks = m.ll_blocks(items * kernels::kLlWarps);
  const bool block_done = m.ll_block_done();
  if (!a.return_recv_hook) {
    // Alone with its rows in place (one launch, see ll_combine_alone_kernel), it waits for
    // nobody, so its blocks need not all be resident at once: two per SM, an item each, keep
    // twice the loads in flight.
    const bool alone = m.num_ranks == 1 && recv.own_rows_ready && mirrors.count == 0;
    const int blocks = alone ? static_cast<int>(std::clamp<std::int64_t>(
                                   items, 1, std::int64_t{kernels::kLlMinBlocksPerSm} * m.num_device_sms))
                             : std::max(send_blocks, recv_blocks);
    set_block_done(send.ctx, recv.ctx, block_done, blocks);
    kernels::launch_ll_combine(send, recv, alone ? kernels::LlPhases::kAlone : kernels::LlPhases::kBoth, blocks,
                               stream);
    return finish_call(m, parity, false, a.stream, stream, nullptr, op);
  }
  set_block_done(send.ctx, recv.ctx, block_done, recv_blocks);  // the receive launch signals `done`
  kernels::launch_ll_combine(send, recv, kernels::LlPhases::kSend, send_blocks, stream);
  return finish_call(m, parity, true, a.stream, stream,
                     [send, recv, recv_blocks, stream] {
                       kernels::launch_ll_combine(send, recv, kernels::LlPhases::kRecv, recv_blocks, stream);
                     },
                     op);
}

}  // namespace moe_ep
