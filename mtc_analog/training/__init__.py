"""Training, evaluation, comparison and checkpoints of spiking regressors."""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .evaluate import SplitEvaluation, evaluate_checkpoint, evaluate_split, stream
from .train import TrainConfig, train

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint", "SplitEvaluation",
           "evaluate_checkpoint", "evaluate_split", "stream", "TrainConfig", "train"]
