"""The authors' FLINT networks, for checkpoints trained with their public code.

Written from a description of the authors' networks, not from their code. Each network
here computes exactly what the authors' network computes in eval mode; ``flint-analyze import-official``
converts their ``.pt`` files to checkpoints of these architectures (the key mapping is in
:mod:`flint_analysis.official_import`).

The authors' MNIST/FashionMNIST networks (``Net2_MNIST_old``, ``attr_MNIST``, ``explainer``, ``decode_MNIST``)
compute exactly what ``lenet`` with ``attribute_activation="leaky_relu"`` computes in eval mode (their h's input
``Dropout(0.01)`` acts in training only and has no weights; their Φ's ``conv2`` and ``bn1`` are never used):
their checkpoints are imported as ``lenet``, and this module holds the network that differs from ours.

``official-resnet18`` (QuickDraw; with ``in_channels=3, num_attributes=36, decoder="cifar10",
input_normalization="cifar10"`` the CIFAR-10 network; the authors' ``MyResNet(version='34', bn=False)``,
``attr_RN18_multi``, ``explainer``, ``decode2_MNIST`` / ``decode_CIFAR``), J = 24:

- ``f``: a ResNet-18 layout *without batch norm*: 3×3 stride-1 stem (no bias) → ReLU, four stages of two basic
  blocks (conv3×3 → ReLU → conv3×3, plus an identity or 1×1-conv shortcut, then ReLU; no biases), average
  pooling over the final 4×4 maps (``avg_pool2d(4)``, hence inputs of 28 to 32 pixels only), FC(512,512) →
  ReLU → FC(512,C). The authors reuse one ``nn.ReLU`` module twice per block and for the stem and the head;
  here each use is its own module (Captum's GuidedBackprop guides ``nn.ReLU`` modules, one call each), which
  changes no value and no state-dict key. Taps: ``layer3`` (256×7×7) and ``layer4.0`` (512×4×4), the 13th
  and 15th conv layers.
- ``Φ``: ReLU(Conv(256,64,3,**stride 2**)) on ``layer3`` and ReLU(Conv(512,64,3)) on ``layer4.0``, concatenated
  → ReLU(Conv(128,64,3)) → AdaptiveAvgPool(3) → FC(576,J) → ReLU. Its unused ``bn1`` is not built.
- ``h``: as above (Dropout(0.01) dropped, FC with bias).
- ``d``, ``decoder="quickdraw"``: FC(J,98) → 2×7×7 → TrConv(2,4) → ReLU → TrConv(4,8) → ReLU → FC(6272,784) → ReLU.
  ``decoder="cifar10"``: FC(J,640) → 10×8×8 → TrConv(10,24) → ReLU → TrConv(24,8) → ReLU → FC(8192,3072),
  **no output activation** (it reconstructs normalised images).
- ``input_normalization="cifar10"``: the authors fed CIFAR-10 as ``(x − mean)/std`` per channel (mean
  0.4914, 0.4822, 0.4465; std 0.247, 0.243, 0.261) with ``x`` in [0, 1]. Here that normalisation is ``f``'s
  first layer and ``d``'s output is mapped back (``d(Φ)·std + mean``), so the model takes and draws images
  in [0, 1] like every other model of the package: data, ``--image`` files, AM+PI bounds and figures need
  no per-channel handling. Logits and attributes equal the authors' on the normalised image.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import torch
from torch import Tensor, nn

from flint_analysis.errors import ArchitectureError
from flint_analysis.models.flint_model import FlintModel
from flint_analysis.models.registry import Architecture, ChoiceRule, IntRule, contract_rules
from flint_analysis.models.resnet import ResNet18Predictor, ResNetAttributes

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)
NORMALIZATIONS = MappingProxyType({"none": None, "cifar10": (CIFAR10_MEAN, CIFAR10_STD)})
"""``input_normalization`` name → per-channel ``(mean, std)`` the authors applied to their inputs in [0, 1]."""
DECODERS = ("quickdraw", "cifar10")
"""``official-resnet18``'s decoders: the authors' ``decode2_MNIST`` (QuickDraw) and ``decode_CIFAR``."""


def _channel_buffer(values: Sequence[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


class ChannelNormalize(nn.Module):
    """``(x − mean) / std`` per channel; constants, not weights (no state-dict entries)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", _channel_buffer(mean), persistent=False)
        self.register_buffer("std", _channel_buffer(std), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ChannelDenormalize(ChannelNormalize):
    """``x · std + mean`` per channel: a normalised image back in [0, 1]."""

    def forward(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


def _normalization(name: str, in_channels: int, inverse: bool) -> nn.Module:
    constants = NORMALIZATIONS.get(name)
    if constants is None:
        return nn.Identity()
    mean, std = constants
    if len(mean) != in_channels:
        raise ArchitectureError(f"input_normalization {name!r} is for {len(mean)}-channel inputs, got in_channels={in_channels}")
    return ChannelDenormalize(mean, std) if inverse else ChannelNormalize(mean, std)


def _check_size(name: str, input_size: int) -> None:
    if input_size % 4:
        raise ArchitectureError(f"{name} needs an input size divisible by 4, got {input_size}")


# ------------------------------------------------------------------------------------ QuickDraw / CIFAR-10
class OfficialResNetPredictor(ResNet18Predictor):
    """The authors' ``MyResNet`` (a ResNet-18 layout of ``BasicBlock3``): ``resnet18``'s predictor after the input
    normalisation; logits only; taps ``layer3``, ``layer4.0``.

    Its pool is the authors' ``avg_pool2d(4)``: the same mean as the global pool on the 4×4 ``layer4`` maps of
    28 to 32-pixel inputs, but summed in their order (the global pool's rounding differs by up to ~5e-7).
    """

    def __init__(self, in_channels: int, num_classes: int, input_normalization: str) -> None:
        super().__init__(in_channels, num_classes)
        self.pool = nn.AvgPool2d(4)
        self.normalize = _normalization(input_normalization, in_channels, inverse=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.normalize(x))


class OfficialResNetDecoder(nn.Module):
    """The authors' ``decode2_MNIST`` (``"quickdraw"``: output ReLU) or ``decode_CIFAR`` (``"cifar10"``: none).

    With an input normalisation the output is mapped back to [0, 1] space (``·std + mean``).
    """

    _CHANNELS = {"quickdraw": (2, 4, 8), "cifar10": (10, 24, 8)}

    def __init__(self, num_attributes: int, out_channels: int, input_size: int, kind: str, input_normalization: str) -> None:
        super().__init__()
        if kind not in self._CHANNELS:
            raise ArchitectureError(f"unknown official-resnet18 decoder {kind!r}; use one of {', '.join(DECODERS)}")
        first, second, third = self._CHANNELS[kind]
        quarter = input_size // 4
        self.fc1 = nn.Linear(num_attributes, first * quarter * quarter)
        self.unflatten = nn.Unflatten(1, (first, quarter, quarter))
        self.trconv1 = nn.ConvTranspose2d(first, second, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.relu1 = nn.ReLU()
        self.trconv2 = nn.ConvTranspose2d(second, third, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc2 = nn.Linear(third * input_size * input_size, out_channels * input_size * input_size)
        self.output_activation: nn.Module = nn.ReLU() if kind == "quickdraw" else nn.Identity()
        self.image = nn.Unflatten(1, (out_channels, input_size, input_size))
        self.denormalize = _normalization(input_normalization, out_channels, inverse=True)

    def forward(self, attributes: Tensor) -> Tensor:
        hidden = self.relu1(self.trconv1(self.unflatten(self.fc1(attributes))))
        hidden = self.relu2(self.trconv2(hidden))
        return self.denormalize(self.image(self.output_activation(self.fc2(self.flatten(hidden)))))


def official_resnet18(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    num_attributes: int = 24,
    attribute_activation: str = "relu",
    decoder: str = "quickdraw",
    input_normalization: str = "none",
) -> FlintModel:
    """The authors' QuickDraw FLINT networks (their ``MyResNet``, ``attr_RN18_multi``, ``decode2_MNIST``; J = 24), and with
    ``in_channels=3, num_attributes=36, decoder="cifar10", input_normalization="cifar10"`` their CIFAR-10 ones."""
    _check_size("official-resnet18", input_size)
    if -(-input_size // 8) != 4:
        raise ArchitectureError(
            f"official-resnet18 averages layer4's 4×4 maps (the authors' avg_pool2d(4)): it takes 28 to 32 pixels, got {input_size}"
        )
    return FlintModel(
        predictor=OfficialResNetPredictor(in_channels, num_classes, input_normalization),
        tap_names=OFFICIAL_RESNET18.taps,
        attributes=ResNetAttributes(num_attributes, attribute_activation),
        interpreter=nn.Linear(num_attributes, num_classes),
        decoder=OfficialResNetDecoder(num_attributes, in_channels, input_size, decoder, input_normalization),
    )


OFFICIAL_RESNET18 = Architecture(
    name="official-resnet18",
    builder=official_resnet18,
    taps=("layer3", "layer4.0"),
    default_attribution="guided-backprop",
    default_preset="authors-quickdraw",
    kwarg_rules={
        **contract_rules(input_size_high=32),
        "input_size": IntRule(28, 32, multiple_of=4),
        "decoder": ChoiceRule(DECODERS, "official-resnet18 decoder"),
        "input_normalization": ChoiceRule(tuple(NORMALIZATIONS), "input normalisation"),
    },
    tap_shapes=lambda size: ((256, size // 4, size // 4), (512, -(-size // 8), -(-size // 8))),
    summary="the authors' QuickDraw and CIFAR-10 ResNet-18 networks (their code, for imported checkpoints); "
    "Φ reads layer3 and layer4.0; J = 24 (CIFAR-10: 36)",
)
