"""Data that arrives batch by batch: ``gpudl.data.Dataset`` is Keras' PyDataset protocol.

Subclass it, give ``__len__`` (batches per epoch) and ``__getitem__(i)`` (batch ``i`` as
``(x, y)`` or ``(x, y, sample_weight)``, or ``x`` alone for predict), optionally
``on_epoch_end``; hand it to ``fit``, ``evaluate`` or ``predict`` in place of arrays::

    class Rows(gpudl.data.Dataset):
        def __init__(self, x, y, batch_size):
            super().__init__()
            self.x, self.y, self.batch_size = x, y, batch_size
        def __len__(self):
            return math.ceil(len(self.x) / self.batch_size)
        def __getitem__(self, i):
            s = slice(i * self.batch_size, (i + 1) * self.batch_size)
            return self.x[s], self.y[s]

With ``workers > 1`` the next batches are read ahead in that many threads (never processes:
``use_multiprocessing=True`` is refused), and handed over in order.
"""
from __future__ import annotations

import abc

__all__ = ["Dataset"]


class Dataset(abc.ABC):
    """Batches by index: ``len(ds)`` batches an epoch, ``ds[i]`` the i-th."""

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"Dataset expected workers >= 1, got {workers!r}")
        if use_multiprocessing:
            raise ValueError("Dataset: use_multiprocessing=True is not supported (batches are read "
                             "ahead in threads); pass workers=N instead")
        if isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int) or max_queue_size < 1:
            raise ValueError(f"Dataset expected max_queue_size >= 1, got {max_queue_size!r}")
        self.workers, self.use_multiprocessing, self.max_queue_size = workers, False, max_queue_size

    @abc.abstractmethod
    def __len__(self) -> int:
        """Batches per epoch."""

    @abc.abstractmethod
    def __getitem__(self, index):
        """Batch ``index``: ``(x, y)``, ``(x, y, sample_weight)`` or ``x``."""

    def on_epoch_end(self) -> None:
        """Called after each epoch (reshuffle here if the dataset shuffles itself)."""

    @property
    def num_batches(self) -> int:
        return len(self)
