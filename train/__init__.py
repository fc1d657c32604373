"""Training of FLINT models (Algorithm 1 of the paper); writes flint-analysis checkpoints."""

from train.config import PRESETS, LossWeights, TrainingConfig, preset_for_dataset
from train.losses import LossTerms, flint_loss, real_entropy
from train.trainer import train

__all__ = ["PRESETS", "LossTerms", "LossWeights", "TrainingConfig", "flint_loss", "preset_for_dataset", "real_entropy", "train"]
