import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from hierspeech2.data.samplers import BucketBatchSampler


class Items(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def _lengths(n: int) -> list[int]:
    return torch.randint(32, 600, (n,), generator=torch.Generator().manual_seed(n)).tolist()


def _rank_batches(n, batch_size, world, epoch=0, drop_last=False):
    lengths = _lengths(n)
    out = []
    for rank in range(world):
        sampler = DistributedSampler(Items(n), num_replicas=world, rank=rank, shuffle=True, seed=3)
        batches = BucketBatchSampler(sampler, batch_size, drop_last, lengths=lengths, bucket_batches=4)
        batches.set_epoch(epoch)
        out.append(list(batches))
        assert len(out[-1]) == len(batches)
    return out, lengths


def test_two_ranks_cover_every_item_exactly_once():
    per_rank, _ = _rank_batches(n=100, batch_size=8, world=2)
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert sorted(seen) == list(range(100))
    assert [len(b) for b in per_rank] == [7, 7]  # ceil(50 / 8) on both ranks: no rank waits


def test_uneven_dataset_keeps_equal_batch_counts():
    per_rank, _ = _rank_batches(n=101, batch_size=8, world=2)
    assert len(per_rank[0]) == len(per_rank[1]) == 7
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert set(seen) == set(range(101)) and len(seen) == 102  # DistributedSampler repeats one item
    dropped, _ = _rank_batches(n=101, batch_size=8, world=2, drop_last=True)
    assert [len(b) for b in dropped] == [6, 6] and all(len(batch) == 8 for b in dropped for batch in b)


def test_batches_group_similar_lengths_and_reshuffle_per_epoch():
    n, batch_size = 512, 16
    lengths = torch.tensor(_lengths(n))
    bucketed = list(BucketBatchSampler(RandomSampler(range(n)), batch_size, lengths=lengths.tolist()))
    random_batches = torch.randperm(n, generator=torch.Generator().manual_seed(0)).split(batch_size)

    def padding(batches) -> int:
        picked = [lengths[torch.as_tensor(b)] for b in batches]
        return sum(int(p.max() * len(p) - p.sum()) for p in picked)

    assert padding(bucketed) < 0.1 * padding(random_batches)
    epoch0, _ = _rank_batches(n=64, batch_size=8, world=2, epoch=0)
    epoch1, _ = _rank_batches(n=64, batch_size=8, world=2, epoch=1)
    assert epoch0 != epoch1
    assert epoch0 == _rank_batches(n=64, batch_size=8, world=2, epoch=0)[0]  # deterministic per epoch


def test_lightning_injects_its_distributed_sampler():
    """Lightning re-creates a BatchSampler subclass with a DistributedSampler (use_distributed_sampler)."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader

    dataset = Items(10)
    with _replace_dunder_methods(BatchSampler):  # what Lightning does around the *_dataloader hooks
        loader = DataLoader(
            dataset, batch_sampler=BucketBatchSampler(SequentialSampler(dataset), 2, lengths=list(range(10)))
        )
    per_rank = []
    for rank in range(2):
        distributed = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)
        updated = _update_dataloader(loader, distributed)
        assert isinstance(updated.batch_sampler, BucketBatchSampler)
        assert (
            updated.batch_sampler.sampler is distributed
            and updated.batch_sampler.lengths.tolist() == list(range(10))
        )
        per_rank.append(sorted(i for batch in updated for i in batch.tolist()))
    assert per_rank == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler(range(3), 0, lengths=[1, 2, 3])
