"""Structured label maps for the patch-level CaGNet's fine-tuning (CaGNetv2, "From Pixel to
Patch").

CaGNet fine-tunes C on fakes generated from label maps whose pixels are drawn i.i.d.: no
fake pixel has a neighbour of a plausible class, so a classifier that reads neighbours
learns nothing about layouts from them. The patch-level CaGNet (CaGNetv2 model.py, step2
with ``patchsize == 3``) tiles the fake label map with p x p patches that have structure,
gives each patch one latent code (one noise vector repeated over the block), and scores C
only at each patch's centre pixel (losses.py ``ClsLoss`` with ``select=True``), the one
pixel whose p x p view lies inside its own patch.

The official patches come from a PixelCNN trained on real label maps and sampled with unseen
classes forced in (pixelcnn_sample_*.py). Here a patch is cut from a real label map of the
last training batch, at feature resolution, where the window holds no ignored pixel; each
seen class in it is swapped for an unseen class, drawn at random, with the probability that
the i.i.d. maps give unseen classes (`unseen_share`): the layout is real, the classes are
those C must learn. A listed deviation: no PixelCNN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = 255


def unseen_share(seen: list[int], unseen: list[int], weight: float) -> float:
    """The probability that an i.i.d. fake pixel is unseen when unseen classes are drawn with
    ``weight`` (``train.unseen_weight``) and seen ones with 1: a patch's seen classes are
    swapped for unseen ones with it, so both kinds of map ask for unseen classes alike."""
    return len(unseen) * weight / (len(seen) + len(unseen) * weight)


def grid(size: tuple[int, int, int], p: int) -> tuple[int, int, int]:
    """(patches in all, rows, columns) of p x p patches that tile a (B, H, W) map, the
    last row and column cut to size."""
    B, H, W = size
    gh, gw = math.ceil(H / p), math.ceil(W / p)
    return B * gh * gw, gh, gw


def patch_positions(like: Tensor, size: tuple[int, int, int], p: int) -> tuple[Tensor, ...]:
    """Where each patch of a tiled (B, H, W) map is cut from ``like`` (B', h, w): for each
    of the `grid` patches, a random window of ``like`` with no ignored pixel (any window
    when none is free of them), as index tensors (image (n, 1, 1), rows (n, p, 1),
    columns (n, 1, p))."""
    B, h, w = like.shape
    if h < p or w < p:
        raise ValueError(f"label maps of {h}x{w} pixels are smaller than model.patch_size {p}; "
                         "use a smaller patch size or larger feature maps")
    n = grid(size, p)[0]
    labelled = (like != IGNORE).float()[:, None]  # (B', 1, h, w)
    full = F.avg_pool2d(labelled, p, stride=1)[:, 0] > 1 - 1e-6  # (B', h-p+1, w-p+1)
    weights = full.flatten().float() if full.any() else torch.ones(full.numel(),
                                                                   device=like.device)
    at = torch.multinomial(weights, n, replacement=True)  # flat (image, row, column) windows
    wh, ww = full.shape[-2:]  # windows per column and per row
    b, i, j = at // (wh * ww), (at // ww) % wh, at % ww
    r = torch.arange(p, device=like.device)
    return b[:, None, None], (i[:, None] + r)[:, :, None], (j[:, None] + r)[:, None, :]


def tile(patches: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Patches (n, ..., p, p), n = B * ceil(H/p) * ceil(W/p) in row-major order, -> the map
    (B, ..., H, W) they tile (the last row and column of patches cut to size)."""
    B, H, W = size
    p = patches.shape[-1]
    _, gh, gw = grid(size, p)
    mid = patches.shape[1:-2]
    x = patches.reshape(B, gh, gw, *mid, p, p)
    k = len(mid)
    # (B, gh, gw, *mid, p, p) -> (B, *mid, gh, p, gw, p)
    order = (0, *range(3, 3 + k), 1, 3 + k, 2, 4 + k)
    return x.permute(order).reshape(B, *mid, gh * p, gw * p)[..., :H, :W]


def centres_only(labels: Tensor, p: int) -> Tensor:
    """``labels`` (B, H, W) of a map tiled with p x p patches, ignored except at each whole
    patch's centre pixel: the pixels C is scored on (CaGNetv2 losses.py ``ClsLoss``,
    ``select=True``: rows and columns (p - 1) / 2, + p, ...)."""
    out = torch.full_like(labels, IGNORE)
    c = (p - 1) // 2
    out[:, c::p, c::p] = labels[:, c::p, c::p]
    return out


def swap_classes(patches: Tensor, seen: Tensor, unseen: Tensor, share: float,
                 num_classes: int) -> Tensor:
    """Each seen class of each patch (n, p, p) -> a random unseen class with probability
    ``share``, the same swap for every pixel of that class in the patch (its shape is kept).
    Ids are in [0, ``num_classes``) or `IGNORE`, which stays."""
    n, K = patches.shape[0], num_classes
    table = torch.arange(K + 1, device=patches.device).repeat(n, 1)  # (n, K + 1), K: ignored
    swap = torch.rand(n, seen.numel(), device=patches.device) < share
    drawn = unseen[torch.randint(unseen.numel(), (n, seen.numel()), device=patches.device)]
    table[:, seen] = torch.where(swap, drawn, seen.expand(n, -1))
    ids = torch.where(patches == IGNORE, K, patches).long()
    out = table.gather(1, ids.view(n, -1)).view_as(patches)
    return torch.where(out == K, IGNORE, out)


def patch_label_maps(like: Tensor, size: tuple[int, int, int], p: int, seen: Tensor,
                     unseen: Tensor, share: float, num_classes: int,
                     codes: Tensor | None = None,
                     latent_dim: int | None = None) -> tuple[Tensor, Tensor | None]:
    """A structured fake label map (B, H, W) of ``size`` tiled with p x p patches of the real
    label maps ``like`` (B', h, w) (`patch_positions`, `swap_classes`), and the codes its
    pixels get:

    - ``codes`` (B', d, h, w) given (``train.fake_codes = "real"``): the real codes at the
      pixels each patch was cut from (0 where they are NaN, at ignored pixels);
    - else, with ``latent_dim``: one z ~ N(0, I) per patch, repeated over its pixels
      (CaGNetv2 model.py step2); else None (ZS3Net's generator draws its own noise).
    """
    if unseen.numel() == 0:
        raise ValueError("patch label maps need at least one unseen class to swap in")
    b, rows, cols = patch_positions(like, size, p)
    labels = tile(swap_classes(like[b, rows, cols], seen, unseen, share, num_classes), size)
    if codes is not None:
        cut = codes.permute(0, 2, 3, 1)[b, rows, cols]  # (n, p, p, d)
        z = tile(torch.nan_to_num(cut, nan=0.0).permute(0, 3, 1, 2), size)
    elif latent_dim is not None:
        z = torch.randn(b.shape[0], latent_dim, 1, 1, device=like.device).expand(-1, -1, p, p)
        z = tile(z, size)
    else:
        z = None
    return labels, z
