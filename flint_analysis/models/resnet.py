"""ResNet18-based FLINT networks for QuickDraw (paper supplement Fig. 10).

As in the paper ("Adapted ResNet18 (no batch normalization layers)") and the authors' QuickDraw
networks (their ``MyResNet``):

- ``f``: a 3×3 stride-1 stem (64 maps, no bias) → ReLU, four stages of two basic blocks without batch
  norm (64, 128, 256, 512 maps; strides 1, 2, 2, 2), global average pooling, FC(512,512) → ReLU →
  FC(512,C). Φ reads the output of the 3rd stage (``layer3``, the 13th conv layer) and of the first
  block of the 4th stage (``layer4.0``, the 15th conv layer), as the paper's "Datasets and Networks"
  section states.
- ``Φ`` (two branches): ReLU(Conv(256,64,3,stride 2)) on ``layer3`` and ReLU(Conv(512,64,3)) on
  ``layer4.0``, concatenated → ReLU(Conv(128,64,3)) → AdaptiveAvgPool(3) → FC(576,J) → ReLU.
- ``d``: FC(J,98) → 2×7×7 → TrConv(2,4,3,2) → ReLU → TrConv(4,8,3,2) → ReLU → FC(8·28·28, 28·28) → ReLU.

Every ReLU is its own ``nn.ReLU`` module (the authors' code reused one module twice per block), so
Captum's GuidedBackprop guides all of them, including the stem and ``layer4`` that the authors'
hand-written hooks skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flint_analysis.errors import ArchitectureError
from flint_analysis.models.flint_model import FlintModel, activation_module
from flint_analysis.models.registry import Architecture, contract_rules


class BasicBlock(nn.Module):
    """Residual block without batch norm: ReLU(conv(ReLU(conv(x))) + shortcut(x))."""

    def __init__(self, in_maps: int, out_maps: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_maps, out_maps, kernel_size=3, stride=stride, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_maps, out_maps, kernel_size=3, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_maps != out_maps:
            self.shortcut = nn.Conv2d(in_maps, out_maps, kernel_size=1, stride=stride, bias=False)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu2(self.conv2(self.relu1(self.conv1(x))) + self.shortcut(x))


def _stage(in_maps: int, out_maps: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_maps, out_maps, stride), BasicBlock(out_maps, out_maps, 1))


class ResNet18Predictor(nn.Module):
    """The predictor ``f``: ``(B, in_channels, S, S)`` → logits ``(B, C)``; taps ``layer3``, ``layer4.0``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.stem_relu = nn.ReLU()
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.layer4 = _stage(256, 512, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(512, 512)
        self.fc1_relu = nn.ReLU()
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem_relu(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc2(self.fc1_relu(self.fc1(self.flatten(self.pool(x)))))


class ResNetAttributes(nn.Module):
    """Two-branch ``Φ``: taps ``(B, 256, s3, s3)`` and ``(B, 512, s4, s4)`` → attributes ``(B, J)``."""

    def __init__(self, num_attributes: int, activation: str) -> None:
        super().__init__()
        self.branch3 = nn.Conv2d(256, 64, kernel_size=3, stride=2, padding=1)
        self.branch3_relu = nn.ReLU()
        self.branch4 = nn.Conv2d(512, 64, kernel_size=3, stride=1, padding=1)
        self.branch4_relu = nn.ReLU()
        self.merge = nn.Conv2d(128, 64, kernel_size=3, padding=1)
        self.merge_relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64 * 3 * 3, num_attributes)
        self.output_activation = activation_module(activation)

    def forward(self, taps: Sequence[Tensor]) -> Tensor:
        stage3, stage4_block1 = taps
        merged = torch.cat(
            [self.branch3_relu(self.branch3(stage3)), self.branch4_relu(self.branch4(stage4_block1))], dim=1
        )
        hidden = self.pool(self.merge_relu(self.merge(merged)))
        return self.output_activation(self.fc(self.flatten(hidden)))


class ResNetDecoder(nn.Module):
    """``d``: attributes ``(B, J)`` → reconstruction ``(B, out_channels, S, S)``, non-negative."""

    def __init__(self, num_attributes: int, out_channels: int, input_size: int) -> None:
        super().__init__()
        quarter = input_size // 4
        self.layers = nn.Sequential(
            nn.Linear(num_attributes, 2 * quarter * quarter),
            nn.Unflatten(1, (2, quarter, quarter)),
            nn.ConvTranspose2d(2, 4, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(4, 8, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * input_size * input_size, out_channels * input_size * input_size),
            nn.ReLU(),
            nn.Unflatten(1, (out_channels, input_size, input_size)),
        )

    def forward(self, attributes: Tensor) -> Tensor:
        return self.layers(attributes)


def resnet18(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    num_attributes: int = 24,
    attribute_activation: str = "relu",
) -> FlintModel:
    """Build the ResNet18-based FLINT model (paper supplement Fig. 10; J = 24 as in the paper's QuickDraw runs)."""
    if input_size % 4:
        raise ArchitectureError(f"resnet18 needs an input size divisible by 4, got {input_size}")
    return FlintModel(
        predictor=ResNet18Predictor(in_channels, num_classes),
        tap_names=RESNET18.taps,
        attributes=ResNetAttributes(num_attributes, attribute_activation),
        interpreter=nn.Linear(num_attributes, num_classes),
        decoder=ResNetDecoder(num_attributes, in_channels, input_size),
    )


# resnet18's decoder ends in FC(8·S², C·S²), hence its smaller largest input size.
RESNET18 = Architecture(
    name="resnet18",
    builder=resnet18,
    taps=("layer3", "layer4.0"),
    default_attribution="guided-backprop",
    default_preset="paper-quickdraw",
    kwarg_rules=contract_rules(input_size_high=64),
    tap_shapes=lambda size: ((256, size // 4, size // 4), (512, -(-size // 8), -(-size // 8))),
    summary="ResNet-18 without batch norm (paper Fig. 10), for QuickDraw; Φ reads layer3 and layer4.0; J = 24",
)
