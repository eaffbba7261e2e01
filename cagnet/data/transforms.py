"""Training augmentation and test-time preprocessing, on tensors (one code path for all data).

Training (the official recipe): random scale ``s ~ U(scale_range)`` (bilinear image,
nearest label), pad to ``crop`` (image with the mean colour, label with 255), random
``crop x crop`` window, horizontal flip with probability 1/2, normalisation. Randomness
comes from torch's global generator, which `DataLoader` seeds per worker.
Testing: normalisation only, full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cagnet.config import DataConfig
from cagnet.data.base import IGNORE


def normalise(image: Tensor, dcfg: DataConfig) -> Tensor:
    """uint8 ``(3, H, W)`` -> float ``(x / 255 - mean) / std``."""
    mean = torch.tensor(dcfg.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(dcfg.std, dtype=torch.float32).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


def random_scale(image: Tensor, label: Tensor, low: float, high: float) -> tuple[Tensor, Tensor]:
    """Rescale uint8 ``image (3, H, W)`` and ``label (H, W)`` by one factor s ~ U(low, high)."""
    if low == high == 1.0:
        return image, label
    s = low + (high - low) * float(torch.rand(()))
    h, w = label.shape
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if size == (h, w):
        return image, label
    img = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)
    lab = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")
    return img[0].round().clamp(0, 255).to(torch.uint8), lab[0, 0].to(torch.uint8)


def pad_and_crop(image: Tensor, label: Tensor, crop: int) -> tuple[Tensor, Tensor]:
    """Pad float ``image (3, H, W)`` with 0, ``label`` with 255, up to ``crop``; crop at random."""
    h, w = label.shape
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if ph or pw:
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # centred, as the official code
        image = F.pad(image, pad, value=0.0)  # 0 after normalisation = the mean colour
        label = F.pad(label, pad, value=IGNORE)
        h, w = label.shape
    top = int(torch.randint(0, h - crop + 1, ()))
    left = int(torch.randint(0, w - crop + 1, ()))
    return (image[:, top:top + crop, left:left + crop],
            label[top:top + crop, left:left + crop])


def train_transform(image: Tensor, label: Tensor, dcfg: DataConfig) -> tuple[Tensor, Tensor]:
    """uint8 ``image (3, H, W)``, uint8 ``label (H, W)`` -> float ``(3, c, c)``, long ``(c, c)``.

    ``c = dcfg.crop``; ``label`` already has its ignored classes set to 255.
    """
    image, label = random_scale(image, label, *dcfg.scale_range)
    img = normalise(image, dcfg)
    img, label = pad_and_crop(img, label, dcfg.crop)
    if dcfg.flip and bool(torch.rand(()) < 0.5):
        img, label = img.flip(-1), label.flip(-1)
    return img.contiguous(), label.long().contiguous()


def test_transform(image: Tensor, label: Tensor, dcfg: DataConfig) -> tuple[Tensor, Tensor]:
    """uint8 ``image (3, H, W)`` -> normalised float; ``label (H, W)`` -> long. No resizing."""
    return normalise(image, dcfg), label.long()
