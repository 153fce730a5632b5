"""Length-bucketed batches that keep padding low and work under DDP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

__all__ = ["BucketBatchSampler"]


class BucketBatchSampler(BatchSampler):
    """Batches of similar length: the indices of ``sampler`` are cut into windows of
    ``batch_size * bucket_batches``, each window is sorted by ``lengths`` and cut into batches,
    and the batches are shuffled.

    DDP: follows PyTorch's ``BatchSampler`` API, so Lightning swaps ``sampler`` for a
    ``DistributedSampler`` (``Trainer(use_distributed_sampler=True)``, the default) and calls
    its ``set_epoch``; outside Lightning pass ``sampler=DistributedSampler(dataset, ...)``
    yourself. Every rank then holds the same number of indices, so every rank yields
    ``ceil(n / batch_size)`` batches (``floor`` with ``drop_last``): no rank waits for another.
    ``DistributedSampler`` repeats up to ``world_size - 1`` items so that ``n`` divides evenly.
    """

    def __init__(
        self,
        sampler: Sampler[int] | Sequence[int],
        batch_size: int,
        drop_last: bool = False,
        *,
        lengths: Sequence[int],
        bucket_batches: int = 32,
        shuffle_batches: bool = True,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if bucket_batches < 1:
            raise ValueError(f"bucket_batches must be >= 1, got {bucket_batches}")
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.bucket_batches = bucket_batches
        self.shuffle_batches = shuffle_batches
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the batch order for ``epoch`` (and the inner sampler's, when it has ``set_epoch``)."""
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        indices = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long)
        window = self.batch_size * self.bucket_batches
        batches: list[list[int]] = []
        for start in range(0, len(indices), window):
            chunk = indices[start : start + window]
            # stable sort: equal lengths keep the sampler's (shuffled) order
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches.extend(
                chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)
            )
        # Windows cut batches independently; regroup the short ones so the count matches len(self).
        full = [batch for batch in batches if len(batch) == self.batch_size]
        rest = [index for batch in batches if len(batch) < self.batch_size for index in batch]
        full.extend(rest[i : i + self.batch_size] for i in range(0, len(rest), self.batch_size))
        if self.drop_last and full and len(full[-1]) < self.batch_size:
            full.pop()
        if self.shuffle_batches:
            # DistributedSampler keeps the epoch Lightning gives it; otherwise count passes here.
            epoch = getattr(self.sampler, "epoch", self.epoch)
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(full), generator=generator).tolist()
            full = [full[i] for i in order]
        if not hasattr(self.sampler, "epoch"):
            self.epoch += 1
        yield from full

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
