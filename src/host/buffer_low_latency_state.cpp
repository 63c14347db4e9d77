// Low-latency state of a Buffer: the two halves of the LL region, the size hint, the
// zero-copy view, cleaning, rank masks, and the context every LL kernel gets.
#include <algorithm>
#include <string>

#include "host/buffer_impl.hpp"
#include "host/validation.hpp"
#include "kernels/low_latency/ll_trace.hpp"
#include "runtime/cuda_check.hpp"

namespace moe_ep {

std::int64_t Buffer::low_latency_size_hint(int max_tokens_per_rank, int hidden, int num_ranks, int num_experts,
                                           int ranks_per_node, bool allow_nvlink) {
  const std::string op = "get_low_latency_rdma_size_hint";
  host::require(max_tokens_per_rank >= 1 && max_tokens_per_rank <= kMaxLowLatencyTokens, op,
                "num_max_dispatch_tokens_per_rank=" + std::to_string(max_tokens_per_rank) + " outside [1, " +
                    std::to_string(kMaxLowLatencyTokens) + "]");
  host::require(hidden > 0 && hidden % 128 == 0, op, "hidden=" + std::to_string(hidden) + " must be a positive multiple of 128");
  host::require(num_ranks >= 1 && num_experts >= num_ranks && num_experts % num_ranks == 0 && num_experts <= kMaxExperts,
                op, "num_experts=" + std::to_string(num_experts) + " must be a multiple of num_ranks=" +
                        std::to_string(num_ranks) + " and at most " + std::to_string(kMaxExperts));
  if (ranks_per_node == 0) ranks_per_node = std::min(num_ranks, kMaxNvlRanks);
  host::require(ranks_per_node > 0 && num_ranks % ranks_per_node == 0, op,
                "ranks_per_node=" + std::to_string(ranks_per_node) + " must divide num_ranks=" + std::to_string(num_ranks));
  if (ranks_per_node < num_ranks || (!allow_nvlink && num_ranks > 1)) {
    return protocol::ll_mirrored_region_bytes(max_tokens_per_rank, hidden, num_experts, num_ranks, /*combine_staging=*/true);
  }
  return protocol::ll_region_bytes(max_tokens_per_rank, hidden, num_experts, /*combine_staging=*/true);
}

std::int64_t Buffer::num_rdma_bytes() const { return impl_->ll ? static_cast<std::int64_t>(impl_->ll->bytes()) : 0; }

TensorView Buffer::next_low_latency_combine_buffer(const LowLatencyHandle& handle) const {
  const std::string op = "get_next_low_latency_combine_buffer";
  Impl& m = *impl_;
  m.ensure_low_latency(op);
  m.check_handle(op, handle.buffer_id, handle.buffer_generation);
  const protocol::LlHalfLayout layout = protocol::carve_ll_half(handle.num_max_dispatch_tokens_per_rank, handle.hidden,
                                                                handle.num_topk, handle.num_experts, true);
  m.check_ll_fits(op, m.ll_mirrors(layout, handle.num_max_dispatch_tokens_per_rank, handle.hidden, handle.num_experts), true);
  const std::int64_t experts = handle.num_experts / m.num_ranks;
  const std::int64_t slots = static_cast<std::int64_t>(m.num_ranks) * handle.num_max_dispatch_tokens_per_rank;
  return TensorView::contiguous(m.ll_local_half(m.ll_next_parity) + layout.rows_offset, DType::kBFloat16,
                                {experts, slots, handle.hidden});
}

void Buffer::clean_low_latency_buffer() {
  Impl& m = *impl_;
  m.ensure_low_latency("clean_low_latency_buffer");
  runtime::DeviceGuard guard(m.device);
  m.group->barrier();  // every rank's LL calls have ended (callers synchronized their streams)
  m.group->reset_peer_launches();
  m.clear_low_latency_state();
  m.group->barrier();  // nobody signals before every rank has cleared
}

void Buffer::Impl::clear_low_latency_state() {
  if (!ll) return;
  cudaStream_t stream = comm_stream.get();
  for (int parity = 0; parity < 2; ++parity) {
    MOE_EP_CUDA_CHECK(cudaMemsetAsync(ll_local_half(parity), 0, protocol::ll_reset_bytes(ll_half_bytes), stream));
  }
  protocol::DeviceState* s = device_state();
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(&s->ll_epoch, 0, sizeof(s->ll_epoch), stream));
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(&s->ll_plan_ready, 0, sizeof(s->ll_plan_ready), stream));
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(&s->ll_ticket, 0, sizeof(s->ll_ticket), stream));
  MOE_EP_CUDA_CHECK(cudaMemsetAsync(&s->ll_send_ticket, 0, sizeof(s->ll_send_ticket), stream));
  MOE_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  ll_next_parity = 0;
  ll_awaiting_hook[0] = ll_awaiting_hook[1] = false;
}

void Buffer::low_latency_update_mask(int rank_to_mask, bool mask, cudaStream_t stream) {
  const std::string op = "low_latency_update_mask_buffer";
  impl_->ensure_low_latency(op);
  host::require(rank_to_mask >= 0 && rank_to_mask < impl_->num_ranks, op,
                "rank " + std::to_string(rank_to_mask) + " outside [0, " + std::to_string(impl_->num_ranks) + ")");
  runtime::DeviceGuard guard(impl_->device);
  kernels::launch_ll_mask_update(impl_->device_state(), rank_to_mask, mask ? 1 : 0, stream);
}

void Buffer::low_latency_query_mask(const TensorView& mask_status, cudaStream_t stream) {
  const std::string op = "low_latency_query_mask_buffer";
  impl_->ensure_low_latency(op);
  host::check_tensor(op, mask_status, {"mask_status", {DType::kInt32}, {impl_->num_ranks}});
  runtime::DeviceGuard guard(impl_->device);
  kernels::launch_ll_mask_query(impl_->device_state(), impl_->num_ranks, mask_status.ptr<int>(), stream);
}

void Buffer::low_latency_clean_mask(cudaStream_t stream) {
  impl_->ensure_low_latency("low_latency_clean_mask_buffer");
  runtime::DeviceGuard guard(impl_->device);
  kernels::launch_ll_mask_clear(impl_->device_state(), stream);
}

void Buffer::Impl::ensure_low_latency(const std::string& op) {
  host::require(ll != nullptr, op, "the buffer was not built with low_latency_mode=True and num_rdma_bytes > 0");
  ensure_usable(op);
}

int Buffer::Impl::next_ll_parity(const std::string& op) const {
  host::require(!ll_awaiting_hook[ll_next_parity], op,
                "two low-latency calls already await their receive hooks; call the older hook first");
  return ll_next_parity;
}

std::uint8_t* Buffer::Impl::ll_local_half(int parity) const {
  return static_cast<std::uint8_t*>(ll->local()) + parity * ll_half_bytes;
}

protocol::LlMirrorLayout Buffer::Impl::ll_mirrors(const protocol::LlHalfLayout& layout, std::int64_t max_tokens,
                                                  std::int64_t hidden, std::int64_t num_experts) const {
  return protocol::carve_ll_mirrors(layout, max_tokens, hidden, num_experts, num_ranks, ll_mirrored());
}

void Buffer::Impl::check_ll_fits(const std::string& op, const protocol::LlMirrorLayout& mirrors, bool staged) const {
  host::require(mirrors.end() <= ll_half_bytes, op,
                "num_rdma_bytes=" + std::to_string(ll->bytes()) + " is too small: this call needs " +
                    std::to_string(2 * mirrors.end()) + " bytes" +
                    (staged ? " (with the combine staging that process groups, zero_copy and use_logfmt use)" : "") +
                    (mirrors.count > 0 ? " (with a mirror slot per peer for the RDMA transport)" : "") +
                    "; size it with get_low_latency_rdma_size_hint");
}

kernels::LlContext Buffer::Impl::ll_context(protocol::Op op, int parity, const protocol::LlHalfLayout& layout,
                                            const protocol::LlMirrorLayout& mirrors) const {
  kernels::LlContext ctx{};
  ctx.mirrors = mirrors;
  ctx.ranks_per_node = ranks_per_node;
  ctx.all_rdma = ll_all_rdma;
  for (int r = 0; r < num_ranks; ++r) ctx.peer_bases[r] = ll->bases()[r];
  ctx.half_bytes = ll_half_bytes;
  ctx.layout = layout;
  ctx.parity = parity;
  ctx.rank = rank;
  ctx.num_ranks = num_ranks;
  ctx.op = op;
  ctx.enable_shrink = options.enable_shrink;
  ctx.gpu_scope = ranks_on_device == num_ranks;
  ctx.own_flags = ll_block_done();
  ctx.timeout_ns = options.timeout_ns;
  ctx.delay_ns = fault.delay_ns;
  ctx.state = device_state();
  ctx.error = &host_on_device()->error;
#ifdef MOE_EP_LL_TRACE
  ctx.trace = kernels::ll_trace_slot(rank);
#endif
  return ctx;
}

int Buffer::Impl::ll_blocks(std::int64_t items) const {
  constexpr std::int64_t kItemsPerBlock = kernels::kLlWarps;
  const std::int64_t wanted = std::max<std::int64_t>(1, (items + kItemsPerBlock - 1) / kItemsPerBlock);
  return static_cast<int>(std::min<std::int64_t>(wanted, ll_block_share()));
}

int Buffer::Impl::ll_block_share() const {
  // One block per SM of the share, though two fit: all ranks' blocks then stay resident
  // beside other work (another process's ranks under MPS, a kernel on another stream, an SM
  // configured for another kernel's shared memory). A 4-rank test timed out with two.
  return ll_sm_share();
}

bool Buffer::Impl::ll_block_done() const {
  return num_ranks > 1 && ranks_on_device == num_ranks && !options.enable_shrink &&
         ll_block_share() <= protocol::kLlDoneSlots / num_ranks;
}

int Buffer::Impl::ll_sm_share() const {
  return std::max(1, (num_device_sms - kernels::kLlReservedSms) / ranks_on_device);
}

void LowLatencyHook::operator()() {
  host::require(pending(), "low-latency hook", "called twice, or on a call made without return_recv_hook");
  std::function<void()> receive = std::move(*receive_);
  *receive_ = nullptr;
  receive();
}

}  // namespace moe_ep
