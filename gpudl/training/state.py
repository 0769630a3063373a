"""Where training stands, as one object: what a checkpoint saves and an exact resume restores."""
from __future__ import annotations

import numpy as np

from .. import random as grandom

__all__ = ["TrainingState"]


def _jsonable(state):
    """numpy's generator state holds Python ints already; copy it into plain dicts."""
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, np.integer):
        return int(state)
    return state


class TrainingState:
    """The training position and the random stream that goes with it.

    ``epoch``: completed epochs. ``batch``: batches done in the epoch under way (0 at an epoch
    boundary). ``epoch_rng_state``: gpudl's generator state when that epoch began (its shuffle
    is drawn from there, so a mid-epoch resume regenerates the same order). ``resumed_from``
    and ``checkpoint``: the file a model was loaded from and the checkpoint record in it (a
    ModelCheckpoint writing to the same path keeps comparing against its saved best).
    ``pending_rng_state``: the generator state a loaded model's next ``fit`` continues from.
    ``world_size`` and ``global_batch_size``: the ranks of the fit and its (global) batch
    size, saved beside the position (``batch`` counts global batches): a data-parallel run
    resumes on any number of ranks, with the same batch size mid-epoch.
    """

    def __init__(self):
        self.epoch = 0
        self.batch = 0
        self.epoch_rng_state = None
        self.pending_rng_state = None
        self.resumed_from = None
        self.checkpoint = None
        self.saved_rng_state = None  # the generator state a loaded file was saved with
        # the world a fit runs in (ranks, global batch size) and what a loaded file recorded
        self.world_size = 1
        self.global_batch_size = None
        self.saved_world_size = None
        self.saved_global_batch_size = None

    def begin_epoch(self, epoch: int, rng_state) -> None:
        self.epoch, self.batch, self.epoch_rng_state = epoch, 0, rng_state

    def end_epoch(self, epoch: int) -> None:
        self.epoch, self.batch = epoch + 1, 0

    def state_dict(self) -> dict:
        """JSON-serialisable: the position, the generator's state now, and the epoch's start."""
        d = {"epoch": int(self.epoch), "batch": int(self.batch), "rng_state": _jsonable(grandom.get_state()),
             "world_size": int(self.world_size)}
        if self.global_batch_size is not None:
            d["global_batch_size"] = int(self.global_batch_size)  # what ``batch`` counts in
        if self.batch:
            d["epoch_rng_state"] = _jsonable(self.epoch_rng_state)
        return d

    def load_state_dict(self, d: dict, path=None, checkpoint=None) -> None:
        """Take a saved position; the next ``fit`` resumes from it exactly."""
        if not isinstance(d, dict):
            raise ValueError(f"training state: expected a dict, got {type(d).__name__}")
        self.epoch = int(d.get("epoch", 0))
        self.batch = int(d.get("batch", 0))
        self.epoch_rng_state = d.get("epoch_rng_state") if self.batch else None
        # mid-epoch: the epoch's shuffle is regenerated from epoch_rng_state, then the stream
        # jumps to rng_state; at a boundary the next epoch simply continues the saved stream
        self.pending_rng_state = None if self.batch else d.get("rng_state")
        self.saved_rng_state = d.get("rng_state")
        self.saved_world_size = d.get("world_size")
        self.saved_global_batch_size = d.get("global_batch_size")
        self.resumed_from = None if path is None else str(path)
        self.checkpoint = checkpoint
