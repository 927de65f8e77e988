"""A resumable, rank-sharded training data loader.

Lightning saves the state of a training loader that has `state_dict` / `load_state_dict` and
restores it before iterating again; a plain `DataLoader` restarts its epoch from the beginning
(and with a new random order), so a resumed run would see different batches than an
uninterrupted one. `ResumableLoader` makes the order a pure function of (seed, epoch, rank) and
remembers how many batches of the current epoch were consumed, so resuming mid-epoch continues
with exactly the batch that would have come next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["EpochSampler", "ResumableLoader"]


def _epoch_seed(seed: int, epoch: int) -> int:
    """Distinct, reproducible generator seed per (seed, epoch)."""
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def _dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) outside distributed training."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSampler(DistributedSampler):
    """Indices in an order fixed by (seed, epoch), sharded across distributed ranks.

    Like `DistributedSampler` (whose interface it keeps, so Lightning does not replace it), the
    index list is padded by wrapping around so every rank gets the same number of samples
    (unequal counts would hang DDP collectives). Unlike it, the rank and world size are read when
    iterating, not when constructing, because Lightning starts the process group only inside
    `Trainer.fit`. `skip` samples are dropped from the start of the next iteration (set by
    `ResumableLoader` when resuming mid-epoch).
    """

    def __init__(self, dataset_size: int, *, shuffle: bool = True, seed: int = 0) -> None:
        # DistributedSampler.__init__ needs the process group; everything it sets is below.
        if dataset_size <= 0:
            raise ValueError(f"EpochSampler: dataset_size must be positive, got {dataset_size}")
        self.dataset_size = dataset_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = False
        self.epoch = 0
        self.skip = 0

    @property
    def rank(self) -> int:
        return _dist_rank_world()[0]

    @property
    def num_replicas(self) -> int:
        return _dist_rank_world()[1]

    @property
    def num_samples(self) -> int:
        """Samples per rank."""
        return math.ceil(self.dataset_size / self.num_replicas)

    @property
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rank, world = _dist_rank_world()
        if self.shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.dataset_size, generator=g).tolist()
        else:
            order = list(range(self.dataset_size))
        total = self.total_size
        order = (order * math.ceil(total / self.dataset_size))[:total]
        shard = order[rank::world]
        skip, self.skip = self.skip, 0
        return iter(shard[skip:])


class ResumableLoader(DataLoader):
    """`DataLoader` over a map-style dataset whose position Lightning saves in checkpoints.

    The order depends only on (`seed`, epoch, rank); the global RNG is not consumed, so the noise
    drawn by the loss is unaffected by data loading. Under DDP each rank reads its own shard (its
    sampler is a `DistributedSampler`, so Lightning keeps it).

    Args:
        dataset: map-style dataset (`__len__` and `__getitem__`).
        batch_size: samples per batch on each rank.
        shuffle: reshuffle every epoch (deterministically).
        seed: seed of the data order, independent of the global seed.
        drop_last: drop the last incomplete batch of each epoch.
        **kwargs: passed to `DataLoader` (num_workers, collate_fn, pin_memory, ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(dataset, Sized):
            raise ValueError("ResumableLoader needs a map-style dataset with __len__")
        for bad in ("sampler", "batch_sampler", "generator"):
            if bad in kwargs:
                raise ValueError(f"ResumableLoader sets `{bad}` itself; do not pass it")
        self.seed = seed
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=collate_fn,
            generator=torch.Generator(),
            **kwargs,
        )
        self._consumed = 0  # batches of the current epoch handed out so far
        self._pending: tuple[int, int] | None = None  # (epoch, batches) restored from a checkpoint

    def __iter__(self) -> Iterator[Any]:
        # A generator, so the work below runs at the first `next`: Lightning creates the iterator
        # before it calls `set_epoch`, and the epoch decides the order and the resume skip.
        sampler: EpochSampler = self.sampler  # type: ignore[assignment]
        self._consumed = 0
        if self._pending is not None:
            epoch, batches = self._pending
            self._pending = None
            if epoch == sampler.epoch:
                sampler.skip = batches * self.batch_size
                self._consumed = batches
        # Worker seeds are drawn from this generator: make them a function of the epoch too.
        self.generator.manual_seed(_epoch_seed(self.seed + 1, sampler.epoch))
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Position in the data stream: epoch and batches of it already consumed."""
        return {"epoch": self.sampler.epoch, "batches": self._consumed}  # type: ignore[attr-defined]

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume: the next pass over epoch `state_dict['epoch']` skips its consumed batches."""
        self._pending = (int(state_dict["epoch"]), int(state_dict["batches"]))
