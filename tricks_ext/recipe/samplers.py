"""Samplers for imbalanced classes, vectorized over a label tensor: :class:`Oversampler`
(imbalanced-learn's ``RandomOverSampler`` as a sampler: every original index plus resampled ones)
and :class:`BalancedSampler` (a fixed number of draws per epoch, equal per class). Both are
deterministic from ``(seed, epoch)`` and shard over DDP ranks as ``DistributedSampler`` does."""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import Sampler

from tricks_ext._checks import check_count
from tricks_ext.recipe.imbalance import check_labels

__all__ = ["Oversampler", "BalancedSampler"]


class _EpochSampler(Sampler[int]):
    """An epoch's index list from ``_epoch(generator)``, shuffled, padded or cut to a multiple
    of ``num_replicas`` and strided by rank (``DistributedSampler``'s rule: padding repeats the
    first indices of the shuffled list)."""

    def __init__(self, name: str, labels: Any, num_classes: Optional[int], seed: int, shuffle: bool,
                 num_replicas: Optional[int], rank: Optional[int], drop_last: bool) -> None:
        self.labels, self.num_classes, self.counts = check_labels(name, labels, num_classes)
        self.seed = check_count(name, "seed", seed, 0)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if num_replicas is None or rank is None:
            dist = torch.distributed
            live = dist.is_available() and dist.is_initialized()
            num_replicas = (dist.get_world_size() if live else 1) if num_replicas is None else num_replicas
            rank = (dist.get_rank() if live else 0) if rank is None else rank
        self.num_replicas = check_count(name, "num_replicas", num_replicas, 1)
        self.rank = check_count(name, "rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"{name}: rank {self.rank} is out of range for num_replicas={self.num_replicas}")
        self.epoch = 0
        # the class blocks of the labels: labels[by_class[starts[c]:starts[c] + counts[c]]] == c
        self.by_class = torch.argsort(self.labels, stable=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose draws ``__iter__`` gives (as ``DistributedSampler.set_epoch``)."""
        self.epoch = check_count(type(self).__name__, "epoch", epoch, 0)

    def _total(self) -> int:
        raise NotImplementedError

    def _epoch(self, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        total = self._total()
        return total // self.num_replicas if self.drop_last else -(-total // self.num_replicas)

    def indices(self) -> Tensor:
        """This rank's indices of the current epoch, int64."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = self._epoch(generator)
        if self.shuffle:
            order = order[torch.randperm(order.numel(), generator=generator)]
        size = len(self) * self.num_replicas
        if size > order.numel():
            order = torch.cat([order, order[:size - order.numel()]])
        return order[self.rank:size:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


class Oversampler(_EpochSampler):
    """Every index of ``labels`` once, plus indices drawn with replacement from each class until
    it has as many as the largest one: imbalanced-learn ``RandomOverSampler``'s result
    (``sampling_strategy="auto"``) as a sampler, so an epoch holds C * max_c n_c indices.

    ``labels``: the dataset's int labels (a tensor, array or list; read once, kept on the CPU),
    ``num_classes``: the class count (default max + 1; every class must have a label). Each
    epoch's draws and order come from ``seed + epoch`` (:meth:`set_epoch`) on a CPU generator,
    the same on any machine. ``shuffle=False`` gives the originals in order, then the draws class
    by class. ``num_replicas``/``rank`` (default: the process group's) split the epoch as
    ``DistributedSampler``: disjoint strides of one list, padded by its first indices to a
    multiple of the ranks (or cut, ``drop_last``)."""

    def __init__(self, labels: Any, num_classes: Optional[int] = None, *, seed: int = 0, shuffle: bool = True,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None, drop_last: bool = False) -> None:
        super().__init__("Oversampler", labels, num_classes, seed, shuffle, num_replicas, rank, drop_last)
        self.extra = self.counts.max() - self.counts

    def _total(self) -> int:
        return self.labels.numel() + int(self.extra.sum())

    def _epoch(self, generator: torch.Generator) -> Tensor:
        cls = torch.repeat_interleave(torch.arange(self.num_classes), self.extra)
        # floor(u * n) for u in [0, 1): uniform over the class's n samples (float64: exact for n < 2^52)
        draws = (torch.rand(cls.numel(), generator=generator, dtype=torch.float64) * self.counts[cls]).long()
        draws = torch.minimum(draws, self.counts[cls] - 1)
        return torch.cat([torch.arange(self.labels.numel()), self.by_class[self.starts[cls] + draws]])


class BalancedSampler(_EpochSampler):
    """``num_samples`` indices per epoch (default: as many as labels), the same number from
    every class (the remainder of ``num_samples / C`` to classes drawn at random): a class with
    fewer samples than its share repeats them, a larger one gives a different subset each epoch.
    Within a class the draws go through a random permutation of its samples, so no sample comes
    twice before every sample of its class came once. Seeding, ``shuffle`` and sharding as
    :class:`Oversampler`."""

    def __init__(self, labels: Any, num_samples: Optional[int] = None, num_classes: Optional[int] = None, *,
                 seed: int = 0, shuffle: bool = True, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 drop_last: bool = False) -> None:
        super().__init__("BalancedSampler", labels, num_classes, seed, shuffle, num_replicas, rank, drop_last)
        self.num_samples = self.labels.numel() if num_samples is None else \
            check_count("BalancedSampler", "num_samples", num_samples, 1)

    def _total(self) -> int:
        return self.num_samples

    def _epoch(self, generator: torch.Generator) -> Tensor:
        classes = self.num_classes
        quota = torch.full((classes,), self.num_samples // classes, dtype=torch.int64)
        quota[torch.randperm(classes, generator=generator)[:self.num_samples % classes]] += 1
        # a random order inside each class block: shuffle, then a stable sort by class
        perm = torch.randperm(self.labels.numel(), generator=generator)
        order = perm[torch.argsort(self.labels[perm], stable=True)]
        cls = torch.repeat_interleave(torch.arange(classes), quota)
        within = torch.arange(cls.numel()) - torch.repeat_interleave(torch.cumsum(quota, 0) - quota, quota)
        return order[self.starts[cls] + within % self.counts[cls]]
