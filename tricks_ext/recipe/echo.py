"""Data echoing (Choi et al. 2019, "Faster Neural Network Training with Data Echoing"): each
batch of a slow input pipeline is used ``factor`` times."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from torch import Tensor

from tricks_ext._checks import check_count

__all__ = ["Echo"]


def _copy(batch: Any) -> Any:
    """A copy of every tensor in a batch (tensors, and tuples, lists and dicts of them)."""
    if isinstance(batch, Tensor):
        return batch.clone()
    if isinstance(batch, dict):
        return type(batch)((k, _copy(v)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(_copy(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_copy(v) for v in batch)
    return batch


class Echo:
    """Yield each batch of ``loader`` ``factor`` times in a row (batch echoing).

    The echoes before the last are copies of the batch's tensors, the last one is the batch
    itself: an in-place augmentation (``Mixup(inplace=True)``, in-place cutout) applied to one
    echo does not reach the next, and each echo draws its own randomness, since our augmentations
    draw from the torch generator and the dropout Philox offset at each call (seed the run once;
    the echoes differ, the run repeats). ``len()`` is ``factor * len(loader)``; ``set_epoch``
    reaches the loader's sampler (or batch sampler's sampler) when it has one; other attributes
    are the loader's (``echo.dataset``)."""

    def __init__(self, loader: Iterable, factor: int) -> None:
        self.loader = loader
        self.factor = check_count("Echo", "factor", factor, 1)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            for _ in range(self.factor - 1):
                yield _copy(batch)
            yield batch

    def __len__(self) -> int:
        return self.factor * len(self.loader)  # TypeError, as len() of the loader, when it has none

    def set_epoch(self, epoch: int) -> None:
        """Pass ``epoch`` to the loader's sampler, batch sampler's sampler, or the loader itself."""
        for owner in (self.loader, getattr(self.loader, "sampler", None),
                      getattr(getattr(self.loader, "batch_sampler", None), "sampler", None)):
            if owner is not None and callable(getattr(owner, "set_epoch", None)):
                owner.set_epoch(epoch)
                return

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


