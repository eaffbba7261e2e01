"""The Contextual Module CM: pixel-wise contextual latent codes and residual attention.

CM reads the backbone output E(x) and, for every pixel, aggregates context at three
scales (dilated convs), weights the scales with the Context Selector, and predicts a
Gaussian N(mu, sigma^2) over a latent code z. The code modulates the feature passed to
the classifier (residual attention) and is the context input of the generator G.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class ContextOutput(NamedTuple):
    """What CM returns; every map is (B, C, h, w) at the resolution of E(x)."""

    feature: Tensor  # (B, d, h, w) sigmoid(E(x) + E(x) * sigmoid(z)): the real feature fed to C
    z: Tensor  # (B, d, h, w) latent code: mu + eps * sigma in training, mu in eval
    mu: Tensor  # (B, d, h, w)
    logvar: Tensor  # (B, d, h, w) log sigma^2
    weights: Tensor  # (B, 3, h, w) Context Selector weights, one per context scale
    hidden: tuple[Tensor, ...] = ()  # the ReLU maps m1, m2, m3 (B, hidden, h, w), c (B, d, h, w)
    eps: Tensor | None = None  # (B, d, h, w) the N(0, I) draw of z = mu + eps * sigma (training)


class ContextSelector(nn.Module):
    """Per pixel, how much each context scale counts: w = sigmoid(conv3x3([m1, m2, m3])).

    ``official=True`` reproduces networks.py ``fc_1``: a ReLU before the sigmoid (so
    w lies in [0.5, 1)) and a layer that no optimiser group holds (trainer.py get_params
    matches no name of it), so it keeps its initial weights: here they take no gradient.
    """

    def __init__(self, in_channels: int, num_scales: int = 3, official: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_scales, 3, padding=1, bias=False)
        self.official = official
        if official:
            self.conv.requires_grad_(False)

    def forward(self, maps: Tensor) -> Tensor:
        # maps: (B, S * hidden, h, w) -> weights w: (B, S, h, w) in (0, 1)
        s = self.conv(maps)
        return torch.sigmoid(torch.relu(s) if self.official else s)


class ContextualModule(nn.Module):
    """CM: E(x) -> (feature, z, mu, log sigma^2, selector weights).

    With ``a = E(x)`` (raw ASPP output) and ``h = sigmoid(a)``:
    ``m1, m2, m3`` = three chained 3x3 conv + ReLU (dilations 1, 2, 5, no bias) on h;
    ``w = ContextSelector([m1, m2, m3])``; ``c = ReLU(conv1x1([w1 m1, w2 m2, w3 m3]))``;
    ``mu = conv3x3(c)``; ``log sigma^2 = conv3x3(c)`` (+ ReLU, as in the official code);
    ``z = mu + eps * exp(log sigma^2 / 2)`` in training, ``z = mu`` in eval;
    ``feature = sigmoid(a + a * sigmoid(z))`` (residual attention on E(x)).
    """

    def __init__(
        self,
        in_channels: int = 600,
        hidden: int = 256,
        dilations: tuple[int, ...] = (1, 2, 5),
        logvar_relu: bool = True,
        selector: str = "trained",
    ) -> None:
        super().__init__()
        widths = [in_channels] + [hidden] * len(dilations)
        self.dilated = nn.ModuleList(
            nn.Conv2d(cin, cout, 3, padding=r, dilation=r, bias=False)
            for cin, cout, r in zip(widths[:-1], widths[1:], dilations, strict=True)
        )
        cat = hidden * len(dilations)
        if selector not in ("trained", "official"):
            raise ValueError(f"unknown selector {selector!r}; choose 'trained' or 'official'")
        self.selector = ContextSelector(cat, len(dilations), official=selector == "official")
        self.fuse = nn.Conv2d(cat, in_channels, 1, bias=False)
        self.mu = nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        self.logvar = nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        self.logvar_relu = logvar_relu
        # an ablation switch, not a setting: True feeds z = 0 to the residual attention
        # (feature = sigmoid(1.5 E(x))) while mu, log sigma^2 and z are returned as usual
        self.zero_attention = False

    def forward(self, aspp_out: Tensor, eps: Tensor | None = None) -> ContextOutput:
        """``eps``: the N(0, I) draw to use for z in training (default: a fresh one)."""
        # aspp_out a: (B, d, h, w)
        m = torch.sigmoid(aspp_out)  # h
        maps = []
        for conv in self.dilated:
            m = torch.relu(conv(m))  # (B, hidden, h, w)
            maps.append(m)
        w = self.selector(torch.cat(maps, dim=1))  # (B, S, h, w)
        weighted = torch.cat([w[:, i : i + 1] * mi for i, mi in enumerate(maps)], dim=1)
        c = torch.relu(self.fuse(weighted))  # (B, d, h, w)
        mu = self.mu(c)
        logvar = self.logvar(c)
        if self.logvar_relu:
            logvar = torch.relu(logvar)
        if self.training:
            eps = torch.randn_like(mu) if eps is None else eps
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z, eps = mu, None
        gate = torch.sigmoid(torch.zeros_like(z) if self.zero_attention else z)
        feature = torch.sigmoid(aspp_out + aspp_out * gate)  # (B, d, h, w)
        return ContextOutput(feature, z, mu, logvar, w, (*maps, c), eps)
