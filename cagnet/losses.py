"""Losses of CaGNet: segmentation CE, KL on the latent code, GAN losses, content (MMD or L2).

Label maps are (B, H, W) long tensors with ``ignore_index`` (255) on pixels that carry no
supervision; features are (B, d, h, w). Every loss here is a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cagnet.errors import ConfigError

DEFAULT_SIGMAS: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0, 60.0)
GAN_KINDS = ("l1", "bce", "lsgan")
CONTENT_KINDS = ("mmd", "l2")


def resize_labels(labels: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of a label map (B, H, W) -> (B, h, w); ids are kept exactly."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(labels.shape[-2:]) == size:
        return labels
    out = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return out[:, 0].to(labels.dtype)


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    # x: (B, C, h, w), mask: (B, h, w) bool or None -> mean over channels and masked pixels
    if mask is None:
        return x.mean()
    if mask.shape != x.shape[:1] + x.shape[2:]:
        raise ValueError(
            f"mask {tuple(mask.shape)} does not fit maps {tuple(x.shape)}; expected "
            f"(B, h, w) at the maps' size (resize labels with resize_labels first)"
        )
    m = mask[:, None].to(x.dtype)
    return (x * m).sum() / (m.sum() * x.shape[1]).clamp_min(1)


def segmentation_ce(logits: Tensor, target: Tensor, ignore_index: int = 255,
                    upsample: bool = False) -> Tensor:
    """Pixel-wise cross-entropy of logits (B, K, h, w) against labels (B, H, W).

    When the sizes differ, the labels are nearest-resized to the logits' size, or, with
    ``upsample``, the logits are bilinearly upsampled to the labels' size (as at test time,
    so boundaries are learnt below the feature stride). Mean over the pixels that are not
    ``ignore_index``; 0 (with a graph) when every pixel is ignored.
    """
    if upsample and logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                               align_corners=False)
    target = resize_labels(target, tuple(logits.shape[-2:]))
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp_min(1)


def kl_divergence(mu: Tensor, logvar: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)), element-wise 0.5 (mu^2 + sigma^2 - 1 - log sigma^2).

    The reduction is a mean over all elements (B, d, h, w), or over the channels of the
    pixels where ``mask`` (B, h, w) is True.
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)  # (B, d, h, w)
    return _masked_mean(kl, mask)


def gan_loss(logit: Tensor, real: bool, kind: str = "l1", mask: Tensor | None = None) -> Tensor:
    """Adversarial loss of D's logits (B, 1, h, w) against the target 1 (real) or 0 (fake).

    ``"l1"``: |sigmoid(logit) - target| (the official choice); ``"bce"``: binary
    cross-entropy on sigmoid(logit); ``"lsgan"``: (logit - target)^2 on the raw score.
    Mean over pixels (those where ``mask`` (B, h, w) is True, if given).
    """
    target = 1.0 if real else 0.0
    if kind == "l1":
        per_pixel = (torch.sigmoid(logit) - target).abs()
    elif kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(
            logit, torch.full_like(logit, target), reduction="none"
        )
    elif kind == "lsgan":
        per_pixel = (logit - target).pow(2)
    else:
        raise ConfigError(f"unknown GAN loss {kind!r}; choose one of {GAN_KINDS}")
    return _masked_mean(per_pixel, mask)


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    # a: (..., n, d), b: (..., m, d) -> squared Euclidean distances (..., n, m)
    d2 = a.pow(2).sum(-1)[..., :, None] + b.pow(2).sum(-1)[..., None, :] - 2 * a @ b.mT
    return d2.clamp_min(0)


class _RBFQuadraticForm(torch.autograd.Function):
    """q_c = a_c' K_c b_c with the multi-kernel RBF K = sum_s exp(-D / (2 s)), D: (C, n, m).

    One pass per bandwidth builds K and dK/dD together in preallocated buffers (the
    autograd graph of the plain sum would hold one (C, n, m) map per bandwidth and
    several temporaries). The weights a (C, n), b (C, m) take no gradient.
    """

    @staticmethod
    def forward(ctx, d2: Tensor, a: Tensor, b: Tensor, sigmas: tuple[float, ...]) -> Tensor:
        k, dk, e = torch.zeros_like(d2), torch.zeros_like(d2), torch.empty_like(d2)
        for s in sigmas:
            torch.mul(d2, -0.5 / s, out=e).exp_()  # exp(-D / (2 s))
            k.add_(e)
            dk.add_(e, alpha=-0.5 / s)
        ctx.save_for_backward(dk, a, b)
        return (a[:, None, :] @ k @ b[:, :, None])[:, 0, 0]  # (C,)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        dk, a, b = ctx.saved_tensors
        outer = (grad[:, None] * a)[:, :, None] * b[:, None, :]  # (C, n, m)
        return outer.mul_(dk), None, None, None


def _mmd2(x: Tensor, y: Tensor, wx: Tensor, wy: Tensor, sigmas: tuple[float, ...]) -> Tensor:
    """Weighted MMD^2 for C sets at once: x (C, n, d), y (C, m, d), weights (C, n) / (C, m).

    Each weight row sums to 1 (zeros mark padding): MMD^2 = wx'Kxx wx + wy'Kyy wy - 2 wx'Kxy wy.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)  # distances need >= float32
    with torch.autocast(x.device.type, enabled=False):
        x, y, wx, wy = x.to(dtype), y.to(dtype), wx.to(dtype), wy.to(dtype)
        quad = _RBFQuadraticForm.apply
        return (
            quad(_sq_dists(x, x), wx, wx, sigmas)
            + quad(_sq_dists(y, y), wy, wy, sigmas)
            - 2 * quad(_sq_dists(x, y), wx, wy, sigmas)
        )  # (C,)


def _root(mmd2: Tensor) -> Tensor:
    # MMD = sqrt(MMD^2); the clamp keeps the gradient finite where MMD^2 <= 0
    return mmd2.clamp_min(1e-12).sqrt()


def mmd(x: Tensor, y: Tensor, sigmas: tuple[float, ...] = DEFAULT_SIGMAS) -> Tensor:
    """Maximum mean discrepancy between samples x (N, d) and y (M, d), multi-kernel RBF.

    Returns MMD = sqrt(max(MMD^2, 0)) with the biased estimator MMD^2 = mean k(x, x') +
    mean k(y, y') - 2 mean k(x, y) and k(a, b) = sum_sigma exp(-||a - b||^2 / (2 sigma)):
    each sigma enters as in the official code, where it plays the role of a variance. (The
    official estimator equals half this MMD^2 when N = M.)
    """
    wx = x.new_full((1, x.shape[0]), 1.0 / x.shape[0])
    wy = y.new_full((1, y.shape[0]), 1.0 / y.shape[0])
    return _root(_mmd2(x[None], y[None], wx, wy, tuple(sigmas)))[0]


def _group_by_class(
    fake: Tensor, real: Tensor, labels: Tensor, max_pixels: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Pack pixel features by class: (N, d), (N, d), (N,) -> (C, n, d), (C, n, d), weights (C, n).

    ``n`` is the largest class's pixel count, capped at ``max_pixels`` (a random subset of
    each larger class is kept); padding slots get weight 0.
    """
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    C, N = classes.numel(), labels.numel()
    n = int(counts.max()) if max_pixels is None else min(int(counts.max()), max_pixels)
    # pixels ordered by class; within a class in random order when some will be dropped
    perm = torch.arange(N, device=labels.device)
    if n < int(counts.max()):
        perm = torch.randperm(N, device=labels.device)
    idx = perm[torch.argsort(inverse[perm], stable=True)]  # (N,)
    cls = inverse[idx]  # (N,) sorted class slot of each pixel
    starts = torch.cumsum(counts, 0) - counts  # (C,)
    rank = torch.arange(N, device=labels.device) - starts[cls]  # position within its class
    keep = rank < n
    idx, cls, rank = idx[keep], cls[keep], rank[keep]
    d = fake.shape[1]
    packed_fake = fake.new_zeros(C, n, d).index_put((cls, rank), fake[idx])
    packed_real = real.new_zeros(C, n, d).index_put((cls, rank), real[idx])
    w = fake.new_zeros(C, n).index_put((cls, rank), fake.new_ones(idx.numel()))
    return packed_fake, packed_real, w / w.sum(1, keepdim=True)


# losses.py MMDLoss weighs the kernel sums with (s - 1 / (M + N)) (s - 1 / (M + N))^T, which
# for M = N fake and real pixels is half the textbook MMD^2; its square root is 1 / sqrt(2) of
# the textbook MMD. The content loss carries that factor, so w_content = 50 means what
# lambda_G_Content = 50 means there.
OFFICIAL_MMD_SCALE = 2.0**-0.5


def content_loss(
    fake: Tensor,
    real: Tensor,
    labels: Tensor,
    kind: str = "mmd",
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS,
    ignore_index: int = 255,
    max_pixels: int | None = 1024,
) -> Tensor:
    """How far G's features (B, d, h, w) are from the real ones at the same labelled pixels.

    ``real`` is a target: it is detached. ``labels`` (B, H, W) are nearest-resized to the
    feature size; pixels with ``ignore_index`` are left out.

    ``"mmd"`` (official): for every class present, the `mmd` between its real and fake
    pixel features, averaged over classes and scaled by ``OFFICIAL_MMD_SCALE``; all classes
    in one batched computation, each
    class capped at ``max_pixels`` randomly chosen pixels (None: no cap; the cost grows as
    the square of a class's pixel count). ``"l2"`` (the paper's text): mean squared error
    over channels and labelled pixels.
    """
    real = real.detach()
    labels = resize_labels(labels, tuple(fake.shape[-2:]))
    valid = labels != ignore_index  # (B, h, w)
    if kind == "l2":
        return _masked_mean((fake - real).pow(2), valid)
    if kind != "mmd":
        raise ConfigError(f"unknown content loss {kind!r}; choose one of {CONTENT_KINDS}")
    fake_px = fake.permute(0, 2, 3, 1)[valid]  # (N, d)
    if fake_px.shape[0] == 0:
        return fake.sum() * 0.0
    real_px = real.permute(0, 2, 3, 1)[valid]  # (N, d)
    f, r, w = _group_by_class(fake_px, real_px, labels[valid], max_pixels)
    return _root(_mmd2(f, r, w, w, tuple(sigmas))).mean() * OFFICIAL_MMD_SCALE
