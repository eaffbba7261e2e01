"""The feature generator G: word embedding (+ latent code) -> fake pixel feature.

Everything is pixel-wise (1x1 convs), so a generated map has the layout of its label map.
CaGNet's G reads the contextual latent code z from CM; ZS3Net's reads random noise.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from cagnet.models.dropout import Dropout


class Generator(nn.Module):
    """G(w, z): concat(embedding map w, latent map z) -> 1x1 conv MLP -> sigmoid feature.

    Widths ``embed_dim + latent_dim -> hidden... -> out_dim`` (official: 1200 -> 1024 -> 960 ->
    864 -> 784 -> 720 -> 600), LeakyReLU(0.2) and dropout after each hidden layer (one rate
    per layer, official 0.1, 0.1, 0.3, 0.5, 0.5; a single rate applies to all), sigmoid
    output so fake features live in (0, 1) like the real ones.
    """

    def __init__(
        self,
        embed_dim: int = 600,
        latent_dim: int = 600,
        hidden: tuple[int, ...] = (1024, 960, 864, 784, 720),
        out_dim: int = 600,
        dropout: float | tuple[float, ...] = (0.1, 0.1, 0.3, 0.5, 0.5),
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        widths = [embed_dim + latent_dim, *hidden]
        rates = (dropout,) if isinstance(dropout, (int, float)) else tuple(dropout)
        rates = rates * len(hidden) if len(rates) == 1 else rates
        if len(rates) != len(hidden):
            raise ValueError(f"{len(rates)} dropout rates for {len(hidden)} hidden layers; "
                             "give one rate per layer of generator_hidden")
        layers: list[nn.Module] = []
        for (cin, cout), p in zip(itertools.pairwise(widths), rates, strict=True):
            layers += [
                nn.Conv2d(cin, cout, 1),
                nn.LeakyReLU(0.2, inplace=True),
                Dropout(p),
            ]
        layers.append(nn.Conv2d(widths[-1], out_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, embedding_map: Tensor, latent: Tensor) -> Tensor:
        # embedding_map w: (B, d_w, h, w), latent z: (B, d_z, h, w) -> fake feature (B, d, h, w)
        return torch.sigmoid(self.mlp(torch.cat([embedding_map, latent], dim=1)))


class ZS3Generator(Generator):
    """ZS3Net's generator: the same MLP on concat(embedding map, noise ~ N(0, I)), no context."""

    def forward(self, embedding_map: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            B, _, h, w = embedding_map.shape
            noise = torch.randn(
                B, self.latent_dim, h, w, device=embedding_map.device, dtype=embedding_map.dtype
            )
        return super().forward(embedding_map, noise)
