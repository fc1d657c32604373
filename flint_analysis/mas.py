"""Maximum activating samples (MAS) of selected class-attribute pairs.

Paper, "Interpretation Phase": "For each such selected pair we analyze the attribute's maximum
activating samples (MAS) from the class". For a pair ``(c, j)`` these are the ``n`` samples of class ``c``
with the largest ``φ_j`` in a pool; for a pair relevant through negative values (``direction = −1``, see
:mod:`flint_analysis.relevance`) the ``n`` with the most negative ``φ_j``, i.e. the largest contribution
``direction · φ_j``.

Which samples count as "of class c" is an option. The default is g's prediction, the same grouping that
defines ``r_{j,c}``: the pair was selected because φ_j drives g's decision for class c, and the MAS then
show what φ_j responds to in exactly the samples g assigns to c (this also works without labels). The
authors' code grouped by true label (``class_by="label"``). The default pool is ``S_rnd``, the random
subset the relevances were computed on (as in the authors' code); ``"train"`` searches the whole
training split at the cost of one forward pass over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flint_analysis.errors import InputError
from flint_analysis.inference import ForwardPass
from flint_analysis.relevance import ClassAttributePair

CLASS_BY = ("prediction", "label")


@dataclass(frozen=True)
class MaxActivatingSamples:
    """The MAS of one pair.

    Attributes:
        pair: the class-attribute pair.
        indices: ``(k,)`` dataset indices, ``k ≤ n`` (fewer when the class has fewer samples in the pool).
        activations: ``(k,)`` their ``φ_j`` (``direction · φ_j`` decreasing).
        labels: ``(k,)`` their true labels.
        predictions: ``(k,)`` g's predictions for them.
    """

    pair: ClassAttributePair
    indices: Tensor
    activations: Tensor
    labels: Tensor
    predictions: Tensor


def max_activating_samples(
    pool: ForwardPass, pairs: list[ClassAttributePair], n: int = 3, class_by: str = "prediction"
) -> list[MaxActivatingSamples]:
    """The ``n`` samples of each pair's class with the largest ``direction · φ_j``.

    Args:
        pool: forward pass over the candidate samples.
        pairs: selected pairs.
        n: samples per pair (paper: 3).
        class_by: ``"prediction"`` (g's class) or ``"label"`` (true class).
    """
    if class_by not in CLASS_BY:
        raise InputError(f"class_by must be one of {', '.join(CLASS_BY)}, got {class_by!r}")
    if n < 1:
        raise InputError(f"the number of MAS must be at least 1, got {n}")
    classes = pool.g_predictions if class_by == "prediction" else pool.labels
    predictions = pool.g_predictions
    result = []
    for pair in pairs:
        members = torch.nonzero(classes == pair.class_index).flatten()
        values = pool.attributes[members, pair.attribute]
        order = torch.argsort(pair.direction * values, descending=True, stable=True)[:n]
        rows = members[order]
        result.append(
            MaxActivatingSamples(pair, pool.indices[rows], values[order], pool.labels[rows], predictions[rows])
        )
    return result
