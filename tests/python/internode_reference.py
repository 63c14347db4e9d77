"""What only emulated nodes (the internode path) add to the high-throughput scenario of
intranode_scenario.py, from the torch reference: the layout's per-node counts and the
internode tensors of deep_ep's 10-tuple handle (slot 4 forwarded_prefix, 8 rdma_send_pos,
9 forward_rows; see moe_ep/handle.py)."""
import torch

from intranode_scenario import assert_bitwise, worst_tokens


def positions(mask):
    """Each token's position among the tokens of its column (token order), -1 where not sent."""
    return torch.where(mask, mask.to(torch.int32).cumsum(dim=0) - 1, torch.full(mask.shape, -1)).to(torch.int32)


def node_mask(is_token_in_rank, ranks_per_node):
    """[num_tokens, num_nodes]: is the token sent to any rank of that node."""
    num_tokens, num_ranks = is_token_in_rank.shape
    return is_token_in_rank.view(num_tokens, num_ranks // ranks_per_node, ranks_per_node).any(dim=2)


def relayed_rows(layouts, prefix, rank, ranks_per_node):
    """The tokens `rank` relays to its node: from the rank of its local index on each node
    (node order), those sent to its node (token order); per token its row at each rank of
    the node, -1 where not sent. Returns (count per source node, [relayed, ranks_per_node])."""
    node, local = divmod(rank, ranks_per_node)
    ranks = slice(node * ranks_per_node, (node + 1) * ranks_per_node)
    counts, rows = [], []
    for source in range(local, len(layouts), ranks_per_node):
        sent = layouts[source][2][:, ranks]
        start = prefix[source - 1, ranks] if source > 0 else torch.zeros(ranks_per_node, dtype=torch.int32)
        relayed = sent.any(dim=1)
        counts.append(int(relayed.sum()))
        rows.append(torch.where(sent, positions(sent) + start, torch.full(sent.shape, -1))[relayed])
    return torch.tensor(counts), torch.cat(rows).to(torch.int32)


def check_internode(case, rank, out, layouts, received, ranks_per_node):
    mask = node_mask(layouts[rank][2], ranks_per_node)
    assert_bitwise("num_tokens_per_rdma_rank", out["num_tokens_per_rdma_rank"], mask.sum(dim=0).to(torch.int32))
    handle = out["handle"]
    assert handle[3] is None and handle[6] is None
    assert_bitwise("handle[8] rdma_send_pos", handle[8], positions(mask))
    counts, rows = relayed_rows(layouts, received[rank]["prefix"], rank, ranks_per_node)
    assert_bitwise("handle[4] forwarded_prefix", handle[4], counts.cumsum(dim=0).to(torch.int32))
    num_forward_rows = worst_tokens(case, len(layouts)) * ranks_per_node if case.worst else rows.size(0)
    assert tuple(handle[9].shape) == (num_forward_rows, ranks_per_node), f"handle[9] {tuple(handle[9].shape)}"
    assert handle[1].tolist()[4] == num_forward_rows  # meta's num_forward_rows (cached dispatch, combine)
    assert_bitwise("handle[9] forward_rows", handle[9][:rows.size(0)], rows)
