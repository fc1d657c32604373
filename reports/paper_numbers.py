"""The paper's published numbers that the reproduction reports compare with: one table, one place.

Accuracy and fidelity in %, on the test split. Sources: Tables 1–2 (MNIST, QuickDraw), Table 4 (effect
of J on MNIST: L_if and L_of are training losses), Tables 6–7 (FashionMNIST, supplement).
"""

from __future__ import annotations

from types import MappingProxyType

PAPER = MappingProxyType({
    "mnist": MappingProxyType({"base_f": 99.0, "flint_f": 99.1, "flint_g": 98.4, "fidelity": 98.8, "source": "Tables 1–2"}),
    "quickdraw": MappingProxyType({"base_f": 85.2, "flint_f": 85.4, "flint_g": 85.3, "fidelity": 90.8, "source": "Tables 1–2"}),
    "fashion-mnist": MappingProxyType({"base_f": 90.3, "flint_f": 90.6, "flint_g": 87.5, "fidelity": 91.5, "source": "Tables 6–7"}),
})

# J -> (L_if train, L_of train, fidelity test %), MNIST with LeNet (Table 4).
PAPER_TABLE4_MNIST = MappingProxyType({4: (0.058, 0.57, 87.4), 8: (0.053, 0.23, 97.5), 25: (0.029, 0.16, 98.8)})
