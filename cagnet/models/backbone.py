"""The feature extractor E: a trunk followed by an ASPP head, run at several input scales.

``DeepLabV2`` is the paper's E: ResNet-101 (output stride 8, frozen BatchNorm) and four
summed 3x3 ASPP convs (dilations 6/12/18/24) from 2048 channels to d = 600, the width of
the class embeddings. ``ToyBackbone`` has the same interface and runs on a CPU in
milliseconds for the 64x64 toy world.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import ResNet101_Weights, resnet101

from cagnet.config import ModelConfig
from cagnet.errors import ConfigError, DataError


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling as in DeepLabv2: parallel dilated 3x3 convs, summed.

    Each branch is ``Conv2d(in, out, 3, padding=r, dilation=r, bias=True)``; the output is the
    raw sum (no activation), E(x) in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: tuple[int, ...] = (6, 12, 18, 24),
        init_std: float | None = 0.01,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=r, dilation=r, bias=True)
            for r in dilations
        )
        if init_std is not None:  # DeepLabv2 initialises the head with N(0, 0.01), bias 0
            for conv in self.branches:
                nn.init.normal_(conv.weight, mean=0.0, std=init_std)
                nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C_in, h, w) -> (B, C_out, h, w)
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


def max_over_scales(outputs: list[Tensor]) -> Tensor:
    """Pixel-wise max of per-scale maps after bilinear resizing to the first (x1) map's size."""
    size = outputs[0].shape[-2:]
    resized = [outputs[0]] + [
        F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outputs[1:]
    ]
    return torch.stack(resized).amax(dim=0)  # (B, C, h, w)


def _rescale(x: Tensor, s: float) -> Tensor:
    # (B, 3, H, W) -> (B, 3, int(H s), int(W s)), bilinear
    if s == 1.0:
        return x
    size = (max(1, int(x.shape[-2] * s)), max(1, int(x.shape[-1] * s)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SegmentationBackbone(nn.Module):
    """Shared behaviour of E: ``trunk`` -> ``aspp``, multi-scale inputs and optimiser groups.

    Subclasses set ``trunk`` (an ``nn.Module``), ``aspp`` (an `ASPP`), ``scales``,
    ``out_channels`` (d) and ``output_stride``.
    """

    trunk: nn.Module
    aspp: ASPP
    scales: tuple[float, ...]
    out_channels: int
    output_stride: int

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 3, H, W) -> E(x): (B, d, H/os, W/os), raw ASPP output (before any sigmoid)
        return self.aspp(self.trunk(x))

    def scale_pyramid(self, x: Tensor) -> list[Tensor]:
        """E applied to the input resized (bilinear) by each of ``scales``; one map per scale."""
        return [self(_rescale(x, s)) for s in self.scales]  # (B, d, ~H*s/os, ~W*s/os) each

    def forward_multiscale(self, x: Tensor) -> list[Tensor]:
        """``[E(x1), E(x0.75), E(x0.5), ..., max]``; just ``[E(x1)]`` with a single scale."""
        outputs = self.scale_pyramid(x)
        if len(outputs) == 1:
            return outputs
        return outputs + [max_over_scales(outputs)]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split for the learning-rate multipliers (x1, x10, x20)."""
        return {
            "trunk": [p for p in self.trunk.parameters() if p.requires_grad],
            "aspp_weight": [b.weight for b in self.aspp.branches],
            "aspp_bias": [b.bias for b in self.aspp.branches],
        }


class DeepLabV2(SegmentationBackbone):
    """DeepLabv2-ResNet-101: dilated ResNet-101 (os 8) with frozen BatchNorm and a summed ASPP.

    The trunk is torchvision's ``resnet101`` with ``replace_stride_with_dilation=[False, True,
    True]`` (layer3 dilation 2, layer4 dilation 4) minus ``avgpool``/``fc``: 42,500,160
    parameters, BatchNorm affine parameters included. BatchNorm stays in eval mode and its
    parameters take no gradient, whatever ``train()`` is called with.
    """

    def __init__(
        self,
        embed_dim: int = 600,
        pretrained: bool = False,
        dilations: tuple[int, ...] = (6, 12, 18, 24),
        scales: tuple[float, ...] = (1.0, 0.75, 0.5),
    ) -> None:
        super().__init__()
        resnet = _resnet101(pretrained)
        self.trunk = nn.Sequential(
            resnet.conv1,
            resnet.bn1,
            resnet.relu,
            resnet.maxpool,  # (B, 64, H/4, W/4)
            resnet.layer1,  # (B, 256, H/4, W/4)
            resnet.layer2,  # (B, 512, H/8, W/8)
            resnet.layer3,  # (B, 1024, H/8, W/8), dilation 2
            resnet.layer4,  # (B, 2048, H/8, W/8), dilation 4
        )
        for m in self.trunk.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.requires_grad_(False)
        self.aspp = ASPP(2048, embed_dim, dilations)
        self.scales = tuple(scales)
        self.out_channels = embed_dim
        self.output_stride = 8
        self.train()

    def train(self, mode: bool = True) -> DeepLabV2:
        super().train(mode)
        for m in self.trunk.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()  # frozen BatchNorm: running statistics, always
        return self


def _resnet101(pretrained: bool) -> nn.Module:
    """torchvision's dilated ResNet-101, with ImageNet weights when ``pretrained`` (not on the
    meta device, which holds shapes only)."""
    on_meta = torch.get_default_device().type == "meta"
    weights = ResNet101_Weights.IMAGENET1K_V1 if pretrained and not on_meta else None
    try:
        return resnet101(weights=weights, replace_stride_with_dilation=[False, True, True])
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        raise DataError(
            f"could not download the ImageNet weights of ResNet-101 ({type(e).__name__}: {e}); "
            "connect to the internet once (torchvision caches them under $TORCH_HOME), pass "
            "--weights FILE to start from a weights file, or --from-scratch "
            "(model.pretrained=false) to train without them") from None


# torchvision ResNet names -> positions in `DeepLabV2.trunk`
_RESNET_TO_TRUNK = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6",
                    "layer4": "7"}


def load_trunk_weights(trunk: nn.Module, path: str) -> None:
    """Load a weights file into the ResNet-101 trunk, tensor by name and shape.

    Accepts a torchvision-style ResNet-101 state dict (``conv1.weight``, ``layer1.0...``;
    ``fc.*`` is skipped), a state dict of this trunk (``0.weight`` ...) or one prefixed by
    ``trunk.`` / ``backbone.trunk.`` (a `cagnet` checkpoint's ``model``). Refuses a file
    from which no tensor fits, and names what mismatches.
    """
    from cagnet.checkpoint import read_weights_file

    state = read_weights_file(path, "weights file")
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = trunk.state_dict()
    mapped: dict[str, Any] = {}
    for k, v in state.items():
        for prefix in ("backbone.trunk.", "trunk.", "module."):
            k = k.removeprefix(prefix)
        head, _, rest = k.partition(".")
        k = f"{_RESNET_TO_TRUNK.get(head, head)}.{rest}" if rest else k
        if k in own:
            mapped[k] = v
    bad = [k for k, v in mapped.items() if tuple(v.shape) != tuple(own[k].shape)]
    if not mapped or bad:
        detail = f"shape mismatch in {', '.join(bad[:3])}" if bad else "no tensor name matches"
        raise ConfigError(f"weights file {path} does not fit the ResNet-101 trunk: {detail}")
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(f"weights file {path} lacks {len(missing)} trunk tensors "
                          f"(e.g. {', '.join(missing[:3])})")
    trunk.load_state_dict(mapped, strict=False)


class ToyTrunk(nn.Module):
    """Two-resolution conv-BN-ReLU trunk of `ToyBackbone`.

    A fine path down to output stride ``stride`` keeps object boundaries; a coarse path at
    twice that stride (dilated 3x3 blocks, dilations 1, 2, 4) sees ~70 px, a whole toy
    object and its surroundings; the coarse map is upsampled and added to the fine one.
    ``refine`` 3x3 blocks at the fine stride then mix the two, so that each pixel's feature
    combines its own edges with the object around it (a decoder, as in DeepLabv3+).
    """

    def __init__(self, width: int = 64, stride: int = 2, refine: int = 0) -> None:
        super().__init__()
        if stride < 1 or stride > 8 or stride & (stride - 1):
            raise ConfigError(f"toy_stride must be 1, 2, 4 or 8, got {stride}")
        if refine < 0:
            raise ConfigError(f"toy_refine counts 3x3 blocks and must be >= 0, got {refine}")
        downs = int(math.log2(stride))
        strides = [2 if i < downs else 1 for i in range(max(2, downs))]
        chans = [3, width // 2] + [width] * (len(strides) - 1)
        self.fine = nn.Sequential(
            *[
                layer
                for cin, cout, s in zip(chans[:-1], chans[1:], strides, strict=True)
                for layer in _conv_bn_relu(cin, cout, stride=s)
            ]
        )
        self.coarse = nn.Sequential(
            *_conv_bn_relu(width, width, stride=2),
            *[layer for r in (1, 2, 4) for layer in _conv_bn_relu(width, width, dilation=r)],
        )
        self.refine = nn.Sequential(
            *[layer for _ in range(refine) for layer in _conv_bn_relu(width, width)]
        )

    def forward(self, x: Tensor) -> Tensor:
        fine = self.fine(x)  # (B, width, H/stride, W/stride)
        coarse = self.coarse(fine)  # (B, width, H/(2 stride), W/(2 stride))
        merged = fine + F.interpolate(
            coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.refine(merged)

    def receptive_fields(self) -> list[tuple[str, int, int]]:
        """`receptive_fields` of the two paths: the coarse path continues the fine one; the
        ``refine`` blocks read the merged map, the coarse path's field at the fine jump."""
        fine = receptive_fields(self.fine, prefix="fine.")
        coarse = receptive_fields(self.coarse, *fine[-1][1:], prefix="coarse.")
        return fine + coarse + receptive_fields(self.refine, coarse[-1][1], fine[-1][2],
                                                prefix="refine.")


class ToyBackbone(SegmentationBackbone):
    """A small CNN for 64x64 toy images with the same interface as `DeepLabV2`.

    `ToyTrunk` (``width`` channels at output stride ``stride``) followed by a summed ASPP
    head with small dilations from ``width`` to ``embed_dim`` channels. BatchNorm trains
    normally here: the toy backbone starts from scratch.
    """

    def __init__(
        self,
        embed_dim: int = 64,
        width: int = 64,
        stride: int = 2,
        dilations: tuple[int, ...] = (1, 2),
        scales: tuple[float, ...] = (1.0,),
        refine: int = 0,
        feature_norm: bool = False,
    ) -> None:
        super().__init__()
        self.trunk = ToyTrunk(width, stride, refine)
        self.aspp = ASPP(width, embed_dim, dilations, init_std=None)
        # model.feature_norm: BatchNorm on E's output, before CM and the feature's sigmoid
        self.norm: nn.Module = nn.BatchNorm2d(embed_dim) if feature_norm else nn.Identity()
        self.scales = tuple(scales)
        self.out_channels = embed_dim
        self.output_stride = stride

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 3, H, W) -> (B, d, H/os, W/os), normalised with ``feature_norm``
        return self.norm(super().forward(x))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """As `SegmentationBackbone`'s; ``feature_norm``'s BatchNorm learns with the trunk (x1)."""
        groups = super().param_groups()
        groups["trunk"] += list(self.norm.parameters())
        return groups


def receptive_fields(net: nn.Module, rf: int = 1, jump: int = 1,
                     prefix: str = "") -> list[tuple[str, int, int]]:
    """``(layer name, receptive field in px, jump)`` after every conv / max-pool of ``net``.

    Walks the layers in registration order (a chain, as in a ResNet trunk): a ``k x k``
    layer with dilation ``r`` adds ``(k - 1) r J`` pixels, where the jump ``J`` is the
    product of the strides before it. ResNet's 1x1 ``downsample`` shortcuts are skipped.
    ``rf`` and ``jump`` are those of the input (1 and 1 for an image). A module that is
    not a chain (`ToyTrunk`) walks its own paths in its ``receptive_fields`` method.
    """
    if callable(own := getattr(net, "receptive_fields", None)):
        return own()
    rows = []
    for name, m in net.named_modules():
        if "downsample" in name or not isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            continue
        k, s, d = (getattr(m, a) for a in ("kernel_size", "stride", "dilation"))
        k, s, d = (int(v[0] if isinstance(v, tuple) else v) for v in (k, s, d))
        rf += (k - 1) * d * jump
        jump *= s
        rows.append((prefix + name, rf, jump))
    return rows


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def build_backbone(mcfg: ModelConfig) -> SegmentationBackbone:
    """E for a `ModelConfig`: ``"deeplabv2"`` (ResNet-101) or ``"toy"`` (small CNN)."""
    if mcfg.backbone == "deeplabv2":
        if mcfg.feature_norm:
            raise ConfigError("model.feature_norm is for the toy backbone; set it false for "
                              "deeplabv2")
        net = DeepLabV2(mcfg.embed_dim, mcfg.pretrained and not mcfg.weights,
                        mcfg.aspp_dilations, mcfg.multiscale)
        if mcfg.weights:
            load_trunk_weights(net.trunk, mcfg.weights)
        return net
    if mcfg.backbone == "toy":
        return ToyBackbone(mcfg.embed_dim, mcfg.toy_width, mcfg.toy_stride, scales=mcfg.multiscale,
                           refine=mcfg.toy_refine, feature_norm=mcfg.feature_norm)
    raise ConfigError(f"unknown backbone {mcfg.backbone!r}; choose 'deeplabv2' or 'toy'")
