"""bpe.py's merge loop in near-linear time, for long pre-tokens (a word of a million letters, a blob of text
with no spaces). The spec is bpe.Tokenizer.apply_merges: merge the leftmost lowest-ranked pair, repeat.
That loop rescans every pair for each merge, O(n^2): a word of 20,000 letters takes 1-3 s, 80,000 over 20 s.

This is GPT-2's own loop (merge every occurrence of the lowest-ranked pair, repeat) with an index, so that
nothing is rescanned: `where` maps each rank to the positions of its pair, the parts form a doubly linked
list (`left`, `right`), and the ranks present wait in a small heap. A merge made at rank r makes a token
that was learned at rank r, so every pair it forms ranks after r: the ranks can be taken in increasing
order, each one's positions left to right (in "aaa" the left pair merges first, as in the plain loop),
which is the plain loop's order of merges, hence the same ids. A merge changes only the two pairs around
it; a position whose pair has changed since it was indexed is skipped (lazy deletion).

Cost: 0.5-0.9 us per character from 1K to 1M characters (bench.py bpe); tests/test_bpe_long.py holds the two
loops equal. A heap of (rank, position) entries (llama.cpp) needs no rank order but is 2-3x slower in Python.
"""
from heapq import heapify, heappop, heappush


def apply_merges(ids, ranks, merges):
    """The token ids after BPE on `ids`: ranks maps a pair of ids to its rank (lower merges first), merges
    maps it to the merged id. A new list; `ids` is left as it was. None if a merge forms a pair ranked no
    later than itself (a merges table not learned in rank order, which no trained one is): the caller's
    plain loop then decides."""
    n = len(ids)
    ids = list(ids)
    left, right = list(range(-1, n - 1)), list(range(1, n + 1))  # the live neighbours; -1 and n: none
    rank_at = [ranks.get(pair) for pair in zip(ids, ids[1:])] + [None]  # the rank of (part i, its right)
    where = {}  # rank -> the positions of its pair
    for i, r in enumerate(rank_at):
        if r is not None:
            where.setdefault(r, []).append(i)
    todo = list(where)
    heapify(todo)
    while todo:
        r = heappop(todo)
        for i in sorted(where.pop(r)):
            if rank_at[i] != r:  # stale: this part or its right neighbour has changed since
                continue
            j = right[i]  # part i absorbs its right neighbour j, which leaves the list
            ids[i], ids[j], rank_at[i], rank_at[j] = merges[ids[i], ids[j]], None, None, None
            k = right[i] = right[j]
            if k < n:
                left[k] = i
            for p, q in ((left[i], i), (i, k)):  # the two pairs around the new part
                if p < 0 or q == n:
                    continue
                rank_at[p] = new = ranks.get((ids[p], ids[q]))
                if new is None:
                    continue
                if new <= r:
                    return None
                if new not in where:
                    heappush(todo, new)
                where.setdefault(new, []).append(p)
    return [t for t in ids if t is not None]
