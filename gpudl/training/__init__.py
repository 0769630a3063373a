"""The trainer apart from the model (Keras' trainers/): data adapters and the epoch iterator,
the compiled loss and metrics, the train/test/predict steps, the progress bar as a callback,
and the training position as one object."""
from .epoch_iterator import EpochIterator
from .progbar import ProgbarLogger
from .state import TrainingState
from .trainer import Trainer

__all__ = ["Trainer", "TrainingState", "EpochIterator", "ProgbarLogger"]
