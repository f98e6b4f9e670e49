"""An epoch's order and its batches at the paper's scale, the fast twin of data.budget_batches (tests/
test_machinery_index.py holds them equal): an order of 0.8B sentence pairs is computed slice by slice (Shuffle),
its batches found as they are asked for (Ragged), so that neither is ever held whole. A leaf.
"""
import numpy as np
import torch

SHUFFLE_ABOVE = 1 << 27  # examples: an epoch's order above this many is computed slice by slice (Shuffle)


def epoch_order(n, seed, epoch):
    """The random order of n examples in one epoch, fixed by (seed, epoch): up to SHUFFLE_ABOVE (2**27) examples
    torch.randperm, held as np.int32 (512 MB at most); beyond, a Shuffle, so that no process holds the order of a
    40B-token epoch (0.8B sentence pairs: 3.2 GB, and two minutes to draw)."""
    key = seed * 1_000_003 + epoch
    if n > SHUFFLE_ABOVE:
        return Shuffle(n, key)
    return torch.randperm(n, generator=torch.Generator().manual_seed(key), dtype=torch.int32).numpy()


class Shuffle:
    """A random permutation of range(n) that is computed, not stored: order[a:b] for any slice. A
    Feistel network (4 rounds, keyed by `key`) is a bijection of the 2**(2h) >= n integers below it;
    a value that lands at n or beyond is sent through again until it falls below n ("cycle walking"),
    which keeps it a bijection of range(n). Memory and time are the slice's."""

    ROUNDS = 4

    def __init__(self, n, key):
        self.n, self.half = n, max(1, ((n - 1).bit_length() + 1) // 2)
        self.keys = np.random.default_rng(key).integers(0, 2 ** 63, self.ROUNDS, dtype=np.uint64)

    def __len__(self):
        return self.n

    def __getitem__(self, part):
        if not isinstance(part, slice):
            raise TypeError("a Shuffle is read in slices: order[a:b]")
        x = self._encrypt(np.arange(*part.indices(self.n), dtype=np.uint64))
        out = np.flatnonzero(x >= self.n)
        while out.size:
            x[out] = self._encrypt(x[out])
            out = out[x[out] >= self.n]
        return x.astype(np.int64)

    def _encrypt(self, x):
        half, mask = np.uint64(self.half), np.uint64((1 << self.half) - 1)
        left, right = x >> half, x & mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << half) | right


def _mix(z):
    """splitmix64's finalizer: every bit of the output depends on every bit of z (uint64 arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Ragged:
    """The batches of data.budget_batches (the plain loop), found as they are asked for: batch i is
    order[bounds[i]:bounds[i+1]]. A batch takes examples until the next would take it over `budget`, counting
    `lengths` (None: one per example). The order is scanned a chunk at a time, only as far as asked: a run starts
    at no cost whatever the epoch's size. A resumed run passes its next batch (`first`) and where it begins in the
    order (`offset`). An incomplete last batch is dropped. len(), [i], [a:b], iteration; get(i) is None past the end.
    """

    def __init__(self, order, lengths, budget, first=0, offset=0, chunk=1 << 22):
        self.order, self.lengths, self.budget, self.chunk = order, lengths, budget, chunk
        self.first, self.bounds, self.done = first, [offset], False  # bounds[k]: where batch first + k begins
        self.get(first)

    def get(self, i):
        while not self.done and i + 1 - self.first >= len(self.bounds):
            self._scan()
        k = i - self.first
        if k < 0:
            raise IndexError(f"batch {i} comes before batch {self.first}, where this run resumed")
        return self.order[self.bounds[k]:self.bounds[k + 1]] if k + 1 < len(self.bounds) else None

    def start(self, i):
        """Where batch i begins in the order (the end of the epoch's last batch for i == len(self))."""
        while not self.done and i - self.first >= len(self.bounds):
            self._scan()
        return self.bounds[i - self.first]

    def __len__(self):
        while not self.done:
            self._scan()
        return self.first + len(self.bounds) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        batch = self.get(i if i >= 0 else len(self) + i)
        if batch is None or i < -len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        return batch

    def __iter__(self):
        return (self[i] for i in range(self.first, len(self)))

    def _scan(self):
        """Add the batches that end in the next chunk of the order (a longer chunk if none does)."""
        start, n = self.bounds[-1], len(self.order)
        part = slice(start, min(start + self.chunk, n))
        weights = np.ones(part.stop - part.start, np.int64) if self.lengths is None else self.lengths[self.order[part]]
        total = np.cumsum(weights, dtype=np.int64)
        whole, at, used = part.stop == n, 0, 0  # whole: the chunk reaches the end of the epoch
        while at < len(total):
            end = max(int(np.searchsorted(total, used + self.budget, side="right")), at + 1)
            if end >= len(total) and (not whole or total[-1] - used < self.budget):
                break  # the batch goes on in the next chunk, or is the epoch's incomplete tail
            self.bounds.append(start + end)
            at, used = end, int(total[end - 1])
        self.done = whole
        self.chunk = self.chunk if at else 2 * self.chunk  # a batch longer than a chunk: a longer chunk

