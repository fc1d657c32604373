"""Torchvision classifiers as the predictor ``f`` (``--architecture torchvision:NAME``).

Any network of the allowlist :data:`TORCHVISION_NETWORKS` is built with
``torchvision.models.get_model(NAME, weights=None, num_classes=C)`` (nothing is downloaded; trained weights
come from ``flint-train --predictor-weights``), its first convolution is replaced by one of the same shape
taking ``in_channels`` channels when the data has other than 3, and Φ and d are generated for it:

- **Taps**: hidden layers named as in ``predictor.named_modules()`` (defaults per network below, two late
  feature stages like the paper's ResNet taps ``layer3`` and ``layer4.0``). Each must run once per forward
  pass and return feature maps ``(B, c_t, h_t, w_t)``; one forward pass of the predictor on the meta
  device (no memory, no computation) checks this and reads the shapes when the model is built, so an
  unknown or unusable tap is a one-line :class:`~flint_analysis.errors.ArchitectureError` listing close names.
- **Φ** (the paper's ResNet recipe, supplement Fig. 10, generalised to T taps): per tap
  ReLU(Conv3×3(c_t, w)); each brought to the spatial size of the smallest tap (the one with the fewest
  positions) by adaptive average pooling (the paper's ResNet uses a stride-2 convolution for the same
  purpose; pooling works for any pair of sizes); concatenated → ReLU(Conv3×3(w·T, w)) → AdaptiveAvgPool(p)
  → FC(w·p², J) → ``attribute_activation``. ``w = phi_width``, ``p = phi_pool``.
- **d**: FC(J, m·s²) → m×s×s with ``s = ⌈S/4⌉`` → TrConv(m, m/2, 4, stride 2) → ReLU → TrConv(m/2, C, 4,
  stride 2) → (bilinear resize to S×S when 4s ≠ S) → Sigmoid. ``m = decoder_width``. The output is in
  (0, 1), the range of the data. The built-in decoders end in a ReLU instead; here that ReLU can start dead:
  with a small ``m`` and one output channel, every output pixel of a freshly built decoder was negative (the
  last bias dominates), so L_if gave d no gradient at all, ever. A sigmoid always passes a gradient.

Guided backpropagation: Captum's ``GuidedBackprop`` overrides the backward pass of ``nn.ReLU`` *modules*,
one hook per module. torchvision's ResNet blocks call one ``self.relu`` two (``BasicBlock``) or three
(``Bottleneck``) times and every listed network uses in-place activations. After building,
:func:`make_guided_backprop_safe` sets every ``inplace`` flag to ``False`` and replaces each ResNet block
by an equivalent block whose every ReLU call is its own module (``relu``, ``relu_2``, ``relu_3``; no
parameters, so state-dict keys and torchvision weight files are unchanged). The listed VGG, MobileNet,
EfficientNet and ConvNeXt models call each activation module once and use no functional ReLU; the build
checks that no ``nn.ReLU`` runs twice.

Which input attribution is the default: guided backpropagation for the ReLU networks (ResNets, VGG), as the
paper uses for its ResNet. For MobileNetV3 (ReLU and Hardswish), EfficientNet (SiLU) and ConvNeXt (GELU),
``guided-backprop`` would guide only the ``nn.ReLU`` modules and pass plain gradients through every other
activation, which is not Springenberg et al.'s method; their default is the gradient (``--attribution
guided-backprop`` remains available and means exactly that hybrid).

Checkpoints are untrusted: only names of the allowlist reach torchvision, and every keyword argument has a
type and range (:data:`TORCHVISION_RULES`).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from flint_analysis.errors import ArchitectureError
from flint_analysis.models.flint_model import FlintModel, activation_module
from flint_analysis.models.registry import ACTIVATIONS, Architecture, ChoiceRule, IntRule, NamesRule, Rule

PREFIX = "torchvision:"
"""Registry names of torchvision networks are ``PREFIX + NAME``."""


@dataclass(frozen=True)
class TorchvisionNetwork:
    """An allowlisted torchvision classifier.

    Attributes:
        name: the ``torchvision.models.get_model`` name.
        taps: default hidden layers Φ reads (``named_modules()`` names).
        default_attribution: the input-attribution method used by default (see the module docstring).
        activations: the non-linearities of the network, for ``--help`` and the README.
    """

    name: str
    taps: tuple[str, ...]
    default_attribution: str
    activations: str


TORCHVISION_NETWORKS = MappingProxyType({network.name: network for network in (
    TorchvisionNetwork("resnet18", ("layer3", "layer4.0"), "guided-backprop", "ReLU"),
    TorchvisionNetwork("resnet34", ("layer3", "layer4.0"), "guided-backprop", "ReLU"),
    TorchvisionNetwork("resnet50", ("layer3", "layer4.0"), "guided-backprop", "ReLU"),
    # features.20: the ReLU ending block 4 (512 maps, S/8); features.27: the ReLU ending block 5 (512 maps, S/16), before their pools
    TorchvisionNetwork("vgg11_bn", ("features.20", "features.27"), "guided-backprop", "ReLU"),
    # the last stride-16 block and the last inverted residual block (stride 32)
    TorchvisionNetwork("mobilenet_v3_small", ("features.8", "features.11"), "gradient", "ReLU, Hardswish"),
    # stage 6 (112 maps, stride 16) and stage 8 (320 maps, stride 32)
    TorchvisionNetwork("efficientnet_b0", ("features.5", "features.7"), "gradient", "SiLU"),
    # stage 3 (384 maps, stride 16) and stage 4 (768 maps, stride 32), as ResNet's layer3 / layer4
    TorchvisionNetwork("convnext_tiny", ("features.5", "features.7"), "gradient", "GELU"),
)})
"""The torchvision networks ``--architecture torchvision:NAME`` accepts (the only names passed to torchvision)."""

DEFAULT_PRESET = "paper-quickdraw"
"""The training preset of every torchvision network when none is named: the paper's ResNet hyper-parameters."""

TORCHVISION_RULES: MappingProxyType[str, Rule] = MappingProxyType({
    "num_classes": IntRule(2, 10_000),
    "in_channels": IntRule(1, 16),
    "input_size": IntRule(8, 512),
    "num_attributes": IntRule(1, 1024),
    "attribute_activation": ChoiceRule(ACTIVATIONS, "attribute activation"),
    "taps": NamesRule(1, 8),
    "phi_width": IntRule(1, 512),
    "phi_pool": IntRule(1, 8),
    "decoder_width": IntRule(1, 256),
})
"""Type and range of every keyword argument of a torchvision architecture. Inputs of 8 to 512 pixels: how small
an input a network takes depends on it (the ResNets run on 8×8, VGG needs 32×32, ConvNeXt 32×32) and the probe
forward pass refuses a size it cannot run in one line."""


# ----------------------------------------------------------------------------------- guided backprop
class SplitReLUBasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` with one ReLU module per call: ``relu_2(bn2(conv2(relu(bn1(conv1(x))))) + shortcut)``.

    Takes the block's modules (same names, so the same state-dict keys); computes exactly what the block does.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = block.conv1, block.bn1, nn.ReLU()
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.downsample = block.downsample
        self.relu_2 = nn.ReLU()
        self.stride = block.stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu_2(out + identity)


class SplitReLUBottleneck(nn.Module):
    """torchvision's ``Bottleneck`` with one ReLU module per call (``relu``, ``relu_2``, ``relu_3``); same keys, same values."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = block.conv1, block.bn1, nn.ReLU()
        self.conv2, self.bn2, self.relu_2 = block.conv2, block.bn2, nn.ReLU()
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.downsample = block.downsample
        self.relu_3 = nn.ReLU()
        self.stride = block.stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu_2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu_3(out + identity)


def _replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def make_guided_backprop_safe(predictor: nn.Module) -> nn.Module:
    """Make every ReLU of a torchvision predictor a module called once, and no activation in-place.

    In place: every module's ``inplace`` flag becomes ``False`` (same values; Captum's backward hooks
    cannot follow an in-place ReLU), and each torchvision ResNet ``BasicBlock`` / ``Bottleneck`` is replaced
    by :class:`SplitReLUBasicBlock` / :class:`SplitReLUBottleneck`. Returns ``predictor``.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    for module in predictor.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    split = {BasicBlock: SplitReLUBasicBlock, Bottleneck: SplitReLUBottleneck}
    for name, module in list(predictor.named_modules()):
        if type(module) in split:
            _replace_module(predictor, name, split[type(module)](module))
    return predictor


def _adapt_input_channels(predictor: nn.Module, in_channels: int) -> None:
    """Replace the first convolution (3 input channels) by one of the same shape taking ``in_channels``."""
    name, conv = next((n, m) for n, m in predictor.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    replacement = nn.Conv2d(in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                            padding=conv.padding, dilation=conv.dilation, groups=1, bias=conv.bias is not None,
                            padding_mode=conv.padding_mode)
    _replace_module(predictor, name, replacement)


def torchvision_predictor(network: str, num_classes: int, in_channels: int) -> nn.Module:
    """The allowlisted torchvision classifier ``network`` (random weights), for ``in_channels``-channel inputs and
    ``num_classes`` classes, made safe for guided backpropagation (:func:`make_guided_backprop_safe`)."""
    if network not in TORCHVISION_NETWORKS:
        raise ArchitectureError(f"unknown torchvision network {network!r}; use one of {', '.join(TORCHVISION_NETWORKS)}")
    from torchvision import models

    predictor = models.get_model(network, weights=None, num_classes=num_classes)
    _adapt_input_channels(predictor, in_channels)
    return make_guided_backprop_safe(predictor)


def _close_names(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    if not close:
        close = [n for n in names if "." not in n][:8]
        return "its top-level modules are " + ", ".join(close)
    return "close names: " + ", ".join(close)


def probe_taps(network: str, taps: Sequence[str], in_channels: int, input_size: int, num_classes: int = 2) -> list[tuple[int, int, int]]:
    """The ``(channels, height, width)`` each tap outputs, read from one forward pass on the meta device.

    Raises:
        ArchitectureError: one line for an unknown tap (with close names), a tap that does not run exactly
            once or does not return ``(B, C, H, W)`` feature maps, an input the network cannot take, or a
            ``nn.ReLU`` module called twice (guided backpropagation would be wrong).
    """
    label = PREFIX + network
    with torch.device("meta"):
        predictor = torchvision_predictor(network, num_classes=num_classes, in_channels=in_channels)
    modules = dict(predictor.named_modules())
    names = [n for n in modules if n]
    for tap in taps:
        if tap not in modules or not tap:
            raise ArchitectureError(f"{label} has no module {tap!r} to tap; {_close_names(tap, names)}")
    calls: dict[str, list[Any]] = {tap: [] for tap in taps}
    relu_calls: dict[int, int] = {}

    def record(tap: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            calls[tap].append(output.shape if isinstance(output, Tensor) else type(output).__name__)

        return hook

    def count(module: nn.Module, inputs: object, output: object) -> None:
        relu_calls[id(module)] = relu_calls.get(id(module), 0) + 1

    handles = [modules[tap].register_forward_hook(record(tap)) for tap in taps]
    handles += [m.register_forward_hook(count) for m in predictor.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            predictor.eval()(torch.zeros(1, in_channels, input_size, input_size, device="meta"))
    except RuntimeError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ArchitectureError(
            f"{label} cannot run on {in_channels}×{input_size}×{input_size} inputs ({reason}); give it larger images"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    shapes = []
    for tap in taps:
        seen = calls[tap]
        if len(seen) != 1:
            raise ArchitectureError(
                f"tap {tap!r} of {label} runs {len(seen)} times per forward pass; name a module that runs once (e.g. its block)"
            )
        shape = seen[0]
        if not isinstance(shape, torch.Size) or len(shape) != 4:
            got = f"shape {tuple(shape)}" if isinstance(shape, torch.Size) else f"a {shape}"
            raise ArchitectureError(
                f"tap {tap!r} of {label} returns {got}, not feature maps (B, C, H, W); tap a convolutional stage"
            )
        shapes.append((int(shape[1]), int(shape[2]), int(shape[3])))
    if any(n > 1 for n in relu_calls.values()):
        raise ArchitectureError(f"{label} calls one nn.ReLU module more than once; guided backpropagation would be wrong")
    return shapes


# ------------------------------------------------------------------------------------------- Φ and d
class TapAttributes(nn.Module):
    """``Φ`` for T taps ``(B, c_t, h_t, w_t)`` → attributes ``(B, J)`` (see the module docstring)."""

    def __init__(self, tap_shapes: Sequence[tuple[int, int, int]], width: int, pool: int, num_attributes: int,
                 activation: str) -> None:
        super().__init__()
        _, height, width_px = min(tap_shapes, key=lambda shape: shape[1] * shape[2])
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((height, width_px)))
            for channels, _, _ in tap_shapes
        )
        self.merge = nn.Conv2d(width * len(tap_shapes), width, kernel_size=3, padding=1)
        self.merge_relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width * pool * pool, num_attributes)
        self.output_activation = activation_module(activation)

    def forward(self, taps: Sequence[Tensor]) -> Tensor:
        merged = torch.cat([branch(tap) for branch, tap in zip(self.branches, taps)], dim=1)
        hidden = self.pool(self.merge_relu(self.merge(merged)))
        return self.output_activation(self.fc(self.flatten(hidden)))


class UpsamplingDecoder(nn.Module):
    """``d``: attributes ``(B, J)`` → reconstruction ``(B, out_channels, S, S)`` in (0, 1)."""

    def __init__(self, num_attributes: int, out_channels: int, input_size: int, width: int) -> None:
        super().__init__()
        side = math.ceil(input_size / 4)
        middle = max(width // 2, 1)
        self.fc = nn.Linear(num_attributes, width * side * side)
        self.unflatten = nn.Unflatten(1, (width, side, side))
        self.up1 = nn.ConvTranspose2d(width, middle, kernel_size=4, stride=2, padding=1)
        self.up1_relu = nn.ReLU()
        self.up2 = nn.ConvTranspose2d(middle, out_channels, kernel_size=4, stride=2, padding=1)
        self.resize: nn.Module = nn.Identity() if 4 * side == input_size else nn.Upsample(
            size=(input_size, input_size), mode="bilinear", align_corners=False)
        self.output_activation = nn.Sigmoid()

    def forward(self, attributes: Tensor) -> Tensor:
        hidden = self.up1_relu(self.up1(self.unflatten(self.fc(attributes))))
        return self.output_activation(self.resize(self.up2(hidden)))


# ------------------------------------------------------------------------------------------- builder
def torchvision_flint(
    network: str,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    input_size: int = 224,
    num_attributes: int = 24,
    attribute_activation: str = "relu",
    taps: Sequence[str] = (),
    phi_width: int = 64,
    phi_pool: int = 3,
    decoder_width: int = 32,
) -> FlintModel:
    """A FLINT model whose ``f`` is the torchvision classifier ``network`` (see the module docstring).

    ``taps`` default to the network's (:data:`TORCHVISION_NETWORKS`); J = 24 and Φ's ReLU output are the
    paper's ResNet settings.
    """
    if network not in TORCHVISION_NETWORKS:
        raise ArchitectureError(f"unknown torchvision network {network!r}; use one of {', '.join(TORCHVISION_NETWORKS)}")
    taps = tuple(taps) or TORCHVISION_NETWORKS[network].taps
    shapes = probe_taps(network, taps, in_channels, input_size, num_classes)
    return FlintModel(
        predictor=torchvision_predictor(network, num_classes, in_channels),
        tap_names=taps,
        attributes=TapAttributes(shapes, phi_width, phi_pool, num_attributes, attribute_activation),
        interpreter=nn.Linear(num_attributes, num_classes),
        decoder=UpsamplingDecoder(num_attributes, in_channels, input_size, decoder_width),
    )


def _record(network: TorchvisionNetwork) -> Architecture:
    builder = functools.partial(torchvision_flint, network.name, taps=network.taps)
    return Architecture(
        name=PREFIX + network.name,
        builder=builder,
        taps=network.taps,
        default_attribution=network.default_attribution,
        default_preset=DEFAULT_PRESET,
        kwarg_rules=TORCHVISION_RULES,
        tap_shapes=lambda size, n=network: tuple(probe_taps(n.name, n.taps, 3, size)),
        summary=f"torchvision's {network.name} ({network.activations}); Φ reads {', '.join(network.taps)} by default; J = 24",
    )


TORCHVISION_ARCHITECTURES = MappingProxyType({PREFIX + name: _record(network) for name, network in TORCHVISION_NETWORKS.items()})
"""``torchvision:NAME`` → :class:`Architecture` record, one per allowlisted network."""
