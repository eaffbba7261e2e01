"""Structured label maps for the patch-level CaGNet's fine-tuning (CaGNetv2, "From Pixel to
Patch").

CaGNet fine-tunes C on fakes generated from label maps whose pixels are drawn i.i.d.: no
fake pixel has a neighbour of a plausible class, so a classifier that reads neighbours
learns nothing about layouts from them. The patch-level CaGNet tiles the fake label map with
p x p patches that have structure, and gives each patch one latent code (CaGNetv2 model.py,
step2 with ``patchsize == 3``: blocks of a generated-patch bank, one noise vector repeated
over each block).

The official patches come from a PixelCNN trained on real label maps and sampled with unseen
classes forced in (pixelcnn_sample_*.py). Here a patch is cut from a real label map of the
last training batch, at feature resolution, and each seen class in it is swapped for an
unseen class, drawn at random, with the probability that the i.i.d. maps give unseen classes
(``train.unseen_weight``): the layout is real, the classes are those C must learn. Ignored
pixels stay ignored. A listed deviation: no PixelCNN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

IGNORE = 255


def unseen_share(seen: list[int], unseen: list[int], weight: float) -> float:
    """The probability that an i.i.d. fake pixel is unseen when unseen classes are drawn with
    ``weight`` (``train.unseen_weight``) and seen ones with 1: a patch's seen classes are
    swapped for unseen ones with it, so both kinds of map hold unseen classes alike."""
    return len(unseen) * weight / (len(seen) + len(unseen) * weight)


def patch_positions(like: Tensor, size: tuple[int, int], p: int) -> tuple[Tensor, ...]:
    """Where each patch of a tiled (B, H, W) map is cut from ``like`` (B', h, w): for the
    B * ceil(H/p) * ceil(W/p) patches, a random image and a random top-left corner, as
    index tensors (image (n, 1, 1), rows (n, p, 1), columns (n, 1, p))."""
    B, h, w = like.shape
    if h < p or w < p:
        raise ValueError(f"label maps of {h}x{w} pixels are smaller than model.patch_size {p}; "
                         "use a smaller patch size or larger feature maps")
    n = size[0] * math.ceil(size[1] / p) * math.ceil(size[2] / p)
    dev = like.device
    b = torch.randint(B, (n,), device=dev)
    i = torch.randint(h - p + 1, (n,), device=dev)
    j = torch.randint(w - p + 1, (n,), device=dev)
    r = torch.arange(p, device=dev)
    return b[:, None, None], (i[:, None] + r)[:, :, None], (j[:, None] + r)[:, None, :]


def tile(patches: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Patches (n, ..., p, p), n = B * ceil(H/p) * ceil(W/p) in row-major order, -> the map
    (B, ..., H, W) they tile (the last row and column of patches cut to size)."""
    B, H, W = size
    p = patches.shape[-1]
    gh, gw = math.ceil(H / p), math.ceil(W / p)
    mid = patches.shape[1:-2]
    x = patches.reshape(B, gh, gw, *mid, p, p)
    k = len(mid)
    # (B, gh, gw, *mid, p, p) -> (B, *mid, gh, p, gw, p)
    order = (0, *range(3, 3 + k), 1, 3 + k, 2, 4 + k)
    return x.permute(order).reshape(B, *mid, gh * p, gw * p)[..., :H, :W]


def swap_classes(patches: Tensor, seen: Tensor, unseen: Tensor, share: float) -> Tensor:
    """Each seen class of each patch (n, p, p) -> a random unseen class with probability
    ``share``, the same swap for every pixel of that class in the patch (its shape is kept)."""
    n = patches.shape[0]
    K = int(max(seen.max(), unseen.max())) + 1
    table = torch.arange(K + 1, device=patches.device).repeat(n, 1)  # (n, K + 1), K: ignored
    swap = torch.rand(n, seen.numel(), device=patches.device) < share
    drawn = unseen[torch.randint(unseen.numel(), (n, seen.numel()), device=patches.device)]
    table[:, seen] = torch.where(swap, drawn, seen.expand(n, -1))
    ids = torch.where(patches == IGNORE, K, patches).long()
    out = table.gather(1, ids.view(n, -1)).view_as(patches)
    return torch.where(out == K, IGNORE, out)


def patch_label_maps(like: Tensor, size: tuple[int, int, int], p: int, seen: Tensor,
                     unseen: Tensor, share: float, codes: Tensor | None = None,
                     latent_dim: int | None = None) -> tuple[Tensor, Tensor | None]:
    """A structured fake label map (B, H, W) of ``size`` tiled with p x p patches of the real
    label maps ``like`` (B', h, w) (`swap_classes`), and the codes its pixels get:

    - ``codes`` (B', d, h, w) given (``train.fake_codes = "real"``): the real codes at the
      pixels each patch was cut from (0 where they are NaN, at ignored pixels);
    - else, with ``latent_dim``: one z ~ N(0, I) per patch, repeated over its pixels
      (CaGNetv2 model.py step2); else None (ZS3Net's generator draws its own noise).
    """
    b, rows, cols = patch_positions(like, size, p)
    labels = tile(swap_classes(like[b, rows, cols], seen, unseen, share), size)
    if codes is not None:
        cut = codes.permute(0, 2, 3, 1)[b, rows, cols]  # (n, p, p, d)
        z = tile(torch.nan_to_num(cut, nan=0.0).permute(0, 3, 1, 2), size)
    elif latent_dim is not None:
        n = b.shape[0]
        z = torch.randn(n, latent_dim, 1, 1, device=like.device).expand(-1, -1, p, p)
        z = tile(z, size)
    else:
        z = None
    return labels, z
