"""flint-analysis: train FLINT models and interpret trained FLINT checkpoints.

FLINT (Parekh, Mozharovskyi, d'Alché-Buc, "A Framework to Learn with Interpretation") learns a predictor
``f`` jointly with an interpreter ``g = h ∘ Φ`` whose ``J`` attributes read hidden layers of ``f``.
Each step of the paper's interpretation phase lives in a module named after it.
"""

from flint_analysis.checkpoint import Checkpoint, load_checkpoint
from flint_analysis.datasets import DatasetBundle, DatasetSpec, load_dataset
from flint_analysis.errors import (
    ArchitectureError,
    CheckpointError,
    DatasetError,
    FlintError,
    InputError,
    OutputError,
)
from flint_analysis.models import ARCHITECTURES, AttributeHead, FlintModel, FlintOutput, build_model

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "ArchitectureError",
    "AttributeHead",
    "Checkpoint",
    "CheckpointError",
    "DatasetBundle",
    "DatasetError",
    "DatasetSpec",
    "FlintError",
    "FlintModel",
    "FlintOutput",
    "InputError",
    "OutputError",
    "build_model",
    "load_checkpoint",
    "load_dataset",
]
