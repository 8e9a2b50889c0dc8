"""The one training engine (``Trainer``), its callbacks (the training techniques) and what it is configured with."""
from ..tasks import ClassificationTask
from .config import DataConfig, TrainConfig
from .engine import NonFiniteLossError, Trainer, TrainingInterrupted, evaluate

__all__ = ["ClassificationTask", "DataConfig", "NonFiniteLossError", "TrainConfig", "Trainer", "TrainingInterrupted", "evaluate"]
