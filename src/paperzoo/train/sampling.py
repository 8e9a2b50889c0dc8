"""The order of training samples, fixed by (seed, epoch) so that a resumed run sees exactly what an uninterrupted
one would: a seeded permutation per epoch, each process's slice of every global batch, and per-sample augmentation
randomness seeded by (seed, epoch, index)."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from .distributed import DistInfo


class SeededSamples(Dataset):
    """Wraps a dataset so that sample ``(epoch, i)`` draws its augmentation randomness from a seed fixed
    by (seed, epoch, i): identical whichever worker loads it and whether or not the run was resumed."""

    def __init__(self, dataset: Dataset, seed: int, augment: Sequence[Callable[[Any], Any]] = ()) -> None:
        self.dataset = dataset
        self.seed = seed
        self.augment = list(augment)  # per-sample transforms of callbacks (RandAugment), seeded the same way

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        random_inside = getattr(self.dataset, "transform", None) is not None or getattr(self.dataset, "transforms", None) is not None
        if not random_inside and not self.augment:
            return self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            sample = self.dataset[index]
            for augment in self.augment:
                sample = augment(sample)
            return sample


class EpochBatches(Sampler):
    """This process's slice of each global batch of a (seed, epoch)-seeded permutation, from batch ``start``."""

    def __init__(self, n: int, global_batch: int, seed: int, epoch: int, start: int, info: DistInfo, shuffle: bool = True) -> None:
        self.n, self.global_batch, self.seed, self.epoch, self.start, self.info = n, global_batch, seed, epoch, start, info
        self.shuffle = shuffle
        self.local = global_batch // info.world

    def __len__(self) -> int:
        return max(0, self.n // self.global_batch - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch)).tolist()
        else:
            order = list(range(self.n))
        for b in range(self.start, self.n // self.global_batch):
            chunk = order[b * self.global_batch:(b + 1) * self.global_batch]
            mine = chunk[self.info.rank * self.local:(self.info.rank + 1) * self.local]
            yield [(self.epoch, i) for i in mine]
