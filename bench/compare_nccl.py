"""The same token exchange done with torch.distributed.all_to_all_single (NCCL on GPUs, gloo
in the CPU dry run): each token is sent once to each rank that holds one of its top-k
experts, rows ordered by destination rank (token order within), preceded by the layout
exchange (all_to_all_single of the per-rank counts, read on the host for the split sizes);
combine sends the rows back and sums them on the token's home rank in fp32. All payloads
travel as bytes (uint8 views), so any dtype works on either backend."""
import dataclasses


@dataclasses.dataclass
class Route:
    """Local layout of one rank's send: computed once per routing, like get_dispatch_layout."""
    order: object        # [S] int64 token ids, grouped by destination rank
    dest: object         # [S] int64 destination rank of each sent row
    counts: object       # [R] int64 rows sent to each rank
    is_token_in_rank: object


def owner_ranks(torch, topk_idx, num_experts, num_ranks):
    """Rank holding each top-k slot's expert, -1 for empty slots."""
    per_rank = num_experts // num_ranks
    return torch.where(topk_idx >= 0, topk_idx // per_rank, torch.full_like(topk_idx, -1))


def make_route(torch, topk_idx, num_experts, num_ranks):
    owner = owner_ranks(torch, topk_idx, num_experts, num_ranks)
    ranks = torch.arange(num_ranks, device=topk_idx.device)
    is_token_in_rank = (owner.unsqueeze(2) == ranks.view(1, 1, -1)).any(dim=1)  # [T, R]
    pairs = is_token_in_rank.t().contiguous().nonzero()  # (dest, token), lexicographic
    return Route(order=pairs[:, 1].contiguous(), dest=pairs[:, 0].contiguous(),
                 counts=is_token_in_rank.sum(dim=0).to(torch.int64), is_token_in_rank=is_token_in_rank)


def as_bytes(torch, t):
    return t.contiguous().view(torch.uint8)


@dataclasses.dataclass
class Exchange:
    send_splits: list
    recv_splits: list


def exchange_layout(torch, dist, route):
    """The layout exchange: every rank learns how many rows each peer sends it (one host read)."""
    recv_counts = torch.empty_like(route.counts)
    dist.all_to_all_single(recv_counts, route.counts)
    both = torch.cat([route.counts, recv_counts]).tolist()
    R = route.counts.numel()
    return Exchange(send_splits=both[:R], recv_splits=both[R:])


def dispatch(torch, dist, route, payloads, exchange=None):
    """Rows of each [T, ...] payload to the ranks in the route; returns the received rows
    (grouped by source rank, source token order within) and the exchange (splits)."""
    exchange = exchange or exchange_layout(torch, dist, route)
    received = []
    for payload in payloads:
        send = as_bytes(torch, payload.index_select(0, route.order))
        recv = torch.empty((sum(exchange.recv_splits), send.size(1)), dtype=torch.uint8, device=send.device)
        dist.all_to_all_single(recv, send, exchange.recv_splits, exchange.send_splits)
        received.append(recv.view(payload.dtype).view(-1, *payload.shape[1:]))
    return received, exchange


def send_back(torch, dist, exchange, y):
    """Rows of y (what this rank received, in that order) back to their home ranks, in the
    home rank's send order."""
    back = torch.empty((sum(exchange.send_splits), y.size(1) * y.element_size()), dtype=torch.uint8,
                       device=y.device)
    dist.all_to_all_single(back, as_bytes(torch, y), exchange.send_splits, exchange.recv_splits)
    return back.view(y.dtype)


def reduce_rows(torch, route, rows, num_tokens, row_weights=None):
    """Sum per token in fp32 of the returned rows (times row_weights per row when given); bf16 out."""
    rows = rows.float()
    if row_weights is not None:
        rows = rows * row_weights.unsqueeze(1)
    out = torch.zeros((num_tokens, rows.size(1)), dtype=torch.float32, device=rows.device)
    out.index_add_(0, route.order, rows)
    return out.to(torch.bfloat16)


def cast_fp8(torch, x):
    """BF16 rows -> (e4m3 rows, fp32 scales [T, hidden/128]) with amax/448 per 128 channels."""
    blocks = x.float().view(x.size(0), -1, 128)
    scales = blocks.abs().amax(dim=2).clamp(min=1e-4) / 448.0
    fp8 = (blocks / scales.unsqueeze(2)).to(torch.float8_e4m3fn).view(x.size(0), -1)
    return fp8, scales
