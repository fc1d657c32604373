"""Training of FLINT models (Algorithm 1 of the paper); writes flint-analysis checkpoints."""

from flint_analysis.training.config import PRESETS, LossWeights, TrainingConfig, preset_for_dataset
from flint_analysis.training.losses import LossTerms, flint_loss, real_entropy
from flint_analysis.training.trainer import train

__all__ = ["PRESETS", "LossTerms", "LossWeights", "TrainingConfig", "flint_loss", "preset_for_dataset", "real_entropy", "train"]
