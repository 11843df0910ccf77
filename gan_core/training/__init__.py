"""Training: the loop, its callbacks, losses and checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .trainer import Rollback, Snapshot, Trainer, TrainingCallbacks, TrainingDiverged, TrainResult, resolve_device

__all__ = [
    "CheckpointError",
    "Rollback",
    "Snapshot",
    "TrainResult",
    "Trainer",
    "TrainingCallbacks",
    "TrainingDiverged",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
