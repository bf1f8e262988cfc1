"""A deterministic stream of batches: the order is a pure function of (seed, epoch).

Every batch holds images of one aspect bucket. Batch number g of the whole run is
batch g % per_epoch of epoch g // per_epoch, so "the position in the data" is one integer and
resuming needs no iterator state. With several processes, process r takes batches r, r+W, r+2W...
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from functools import lru_cache

from ldm_cli.training.data import Item


class BatchPlan:
    def __init__(self, items: list[Item], batch_size: int, seed: int):
        self.batch_size = batch_size
        self.seed = seed
        self.by_bucket: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            self.by_bucket[item.bucket].extend([index] * item.repeats)
        self.per_epoch = sum(math.ceil(len(v) / batch_size) for v in self.by_bucket.values())

    @lru_cache(maxsize=2)
    def epoch(self, epoch: int) -> tuple[tuple[int, ...], ...]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        batches = []
        for bucket in sorted(self.by_bucket):
            indices = list(self.by_bucket[bucket])
            rng.shuffle(indices)
            batches += [tuple(indices[i : i + self.batch_size]) for i in range(0, len(indices), self.batch_size)]
        rng.shuffle(batches)
        return tuple(batches)

    def batch(self, number: int) -> tuple[int, tuple[int, ...]]:
        """(epoch, item indices) of the run's batch `number`."""
        epoch, offset = divmod(number, self.per_epoch)
        return epoch, self.epoch(epoch)[offset]
