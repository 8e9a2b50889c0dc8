"""The one training engine (``Trainer``) and what it is configured with."""
from .config import DataConfig, TrainConfig
from .engine import NonFiniteLossError, Trainer, TrainingInterrupted, evaluate
from .tasks import ClassificationTask

__all__ = ["ClassificationTask", "DataConfig", "NonFiniteLossError", "TrainConfig", "Trainer", "TrainingInterrupted", "evaluate"]
