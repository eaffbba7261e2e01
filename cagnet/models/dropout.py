"""Dropout for the pixel-wise heads of G and D/C, with a cheaper mask on the CPU."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Dropout(nn.Dropout):
    """`torch.nn.Dropout` (inverted: kept units scaled by 1 / (1 - p)).

    On the CPU the mask is drawn as ``uniform(0, 1) >= p``, the same Bernoulli(1 - p)
    distribution as ``nn.Dropout``'s, but about 1.7x faster there than ``bernoulli_``
    (which took a fifth of a toy training step). Elsewhere ``nn.Dropout`` runs as is.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.device.type != "cpu" or not 0.0 < self.p < 1.0:
            return super().forward(x)
        keep = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))  # 0 or 1 / (1 - p)
        return x.mul_(keep) if self.inplace else x * keep
