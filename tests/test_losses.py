"""Losses: hand-computed values, MMD properties, and the batched content MMD vs a naive loop."""

import itertools
import math

import pytest
import torch

from cagnet.errors import ConfigError
from cagnet.losses import (
    content_loss,
    gan_loss,
    kl_divergence,
    mmd,
    resize_labels,
    segmentation_ce,
)


def test_kl_zero_only_at_standard_normal():
    zeros = torch.zeros(2, 4, 3, 3)
    assert kl_divergence(zeros, zeros).item() == 0.0
    assert kl_divergence(torch.ones_like(zeros), zeros).item() == pytest.approx(0.5)
    # 0.5 (e - 1 - 1) for log sigma^2 = 1
    assert kl_divergence(zeros, torch.ones_like(zeros)).item() == pytest.approx(0.5 * (math.e - 2))
    assert kl_divergence(zeros, -torch.ones_like(zeros)).item() > 0


def test_kl_mask_leaves_pixels_out():
    mu = torch.zeros(1, 2, 2, 2)
    mu[..., 0, 0] = 10.0  # only at the masked-out pixel
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = False
    assert kl_divergence(mu, torch.zeros_like(mu), mask).item() == 0.0
    assert kl_divergence(mu, torch.zeros_like(mu)).item() > 0


@pytest.mark.parametrize(
    "kind, logit, real, expected",
    [
        ("l1", 0.0, True, 0.5),
        ("l1", 0.0, False, 0.5),
        ("l1", math.log(3), True, 0.25),  # sigmoid(ln 3) = 0.75
        ("l1", math.log(3), False, 0.75),
        ("bce", 0.0, True, math.log(2)),
        ("bce", math.log(3), True, -math.log(0.75)),
        ("bce", math.log(3), False, -math.log(0.25)),
        ("lsgan", 2.0, True, 1.0),
        ("lsgan", 2.0, False, 4.0),
    ],
)
def test_gan_loss_values(kind, logit, real, expected):
    x = torch.full((2, 1, 3, 3), logit)
    assert gan_loss(x, real, kind).item() == pytest.approx(expected, rel=1e-5)


def test_gan_loss_mask_and_unknown_kind():
    logit = torch.zeros(1, 1, 1, 2)
    logit[..., 1] = 100.0  # sigmoid = 1 there
    mask = torch.tensor([[[True, False]]])
    assert gan_loss(logit, True, "l1", mask).item() == pytest.approx(0.5)
    assert gan_loss(logit, True, "l1").item() == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="unknown GAN loss"):
        gan_loss(logit, True, "wgan")


def test_resize_labels_nearest():
    labels = torch.arange(16).view(1, 4, 4)
    labels[0, 2, 2] = 255
    assert resize_labels(labels, 2).tolist() == [[[0, 2], [8, 255]]]
    assert resize_labels(labels, (4, 4)) is labels
    assert resize_labels(labels, 8).shape == (1, 8, 8)


def test_segmentation_ce():
    # uniform logits: CE = ln K wherever the label is not ignored
    target = torch.tensor([[[0, 3], [255, 1]]])
    assert segmentation_ce(torch.zeros(1, 4, 2, 2), target).item() == pytest.approx(math.log(4))
    # labels at 4x4 are nearest-resized to the 2x2 logits: confident, right logits -> ~0
    coarse = torch.tensor([[[0, 1], [2, 1]]])
    logits = 20 * torch.nn.functional.one_hot(coarse, 3).permute(0, 3, 1, 2).float()
    fine = coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert segmentation_ce(logits, fine).item() < 1e-6
    assert segmentation_ce(logits, (fine + 1) % 3).item() > 10
    # every pixel ignored: 0 with a graph, not nan
    logits.requires_grad_(True)
    loss = segmentation_ce(logits, torch.full((1, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_mmd_by_hand():
    x, y = torch.zeros(1, 1), torch.ones(1, 1)
    # k(x,x) = k(y,y) = 1, k(x,y) = exp(-1/2) for sigma = 1
    assert mmd(x, y, (1.0,)).item() == pytest.approx(math.sqrt(2 - 2 * math.exp(-0.5)))


def test_mmd_zero_for_same_sample_and_monotone_in_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 16, generator=g)
    assert mmd(x, x).item() < 1e-4
    values = [mmd(x, x + s).item() for s in (0.0, 0.1, 0.3, 0.6, 1.0, 2.0)]
    assert all(a < b for a, b in itertools.pairwise(values)), values
    # different samples of one distribution are much closer than a shifted one
    y = torch.rand(200, 16, generator=g)
    assert mmd(x, y).item() < mmd(x, y + 0.6).item() / 3


def test_mmd_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, generator=g, dtype=torch.double, requires_grad=True)
    y = torch.rand(5, 3, generator=g, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda a: mmd(a, y, (0.5, 2.0)), (x,))


def _naive_content_mmd(fake, real, labels, sigmas, ignore_index=255):
    """Reference: an explicit loop over classes, kernels built with torch.cdist."""
    losses = []
    f = fake.permute(0, 2, 3, 1).reshape(-1, fake.shape[1])
    r = real.permute(0, 2, 3, 1).reshape(-1, real.shape[1])
    lab = labels.reshape(-1)
    for c in lab.unique().tolist():
        if c == ignore_index:
            continue
        fc, rc = f[lab == c], r[lab == c]

        def k(a, b):
            d2 = torch.cdist(a, b).pow(2)
            return sum(torch.exp(-d2 / (2 * s)) for s in sigmas).mean()

        mmd2 = k(fc, fc) + k(rc, rc) - 2 * k(fc, rc)
        losses.append(torch.sqrt(torch.clamp(mmd2, min=1e-12)))
    return torch.stack(losses).mean()


def test_content_mmd_matches_naive_loop():
    g = torch.Generator().manual_seed(2)
    fake = torch.rand(2, 8, 6, 6, generator=g, dtype=torch.double)
    real = torch.rand(2, 8, 6, 6, generator=g, dtype=torch.double) + 0.2
    labels = torch.randint(0, 4, (2, 6, 6), generator=g)
    labels[labels == 3] = 255
    labels[0, 0, 0] = 5  # a class with a single pixel
    sigmas = (0.5, 2.0, 10.0)
    got = content_loss(fake, real, labels, "mmd", sigmas, max_pixels=None)
    ref = _naive_content_mmd(fake, real, labels, sigmas) * 2**-0.5  # the official scale
    assert got.item() == pytest.approx(ref.item(), rel=1e-9)
    # a cap above every class's pixel count changes nothing
    assert content_loss(fake, real, labels, "mmd", sigmas, max_pixels=72).item() == pytest.approx(
        ref.item(), rel=1e-9
    )


def test_content_mmd_capped_and_detached():
    torch.manual_seed(3)
    fake = torch.rand(2, 8, 6, 6, requires_grad=True)
    real = torch.rand(2, 8, 6, 6, requires_grad=True)
    labels = torch.randint(0, 3, (2, 6, 6))
    loss = content_loss(fake, real, labels, max_pixels=4)
    loss.backward()
    assert torch.isfinite(loss) and fake.grad.abs().sum() > 0
    assert real.grad is None  # the real feature is a target
    # same features at the same pixels: ~0
    same = content_loss(real.detach(), real.detach(), labels)
    assert same.item() < 1e-4


def test_content_l2_and_ignored_pixels():
    real = torch.zeros(1, 3, 2, 2)
    fake = torch.ones(1, 3, 2, 2)
    fake[..., 1, 1] = 50.0  # at an ignored pixel
    labels = torch.tensor([[[0, 1], [1, 255]]])
    assert content_loss(fake, real, labels, "l2").item() == pytest.approx(1.0)
    all_ignored = torch.full((1, 2, 2), 255)
    assert content_loss(fake, real, all_ignored, "mmd").item() == 0.0
    with pytest.raises(ConfigError, match="unknown content loss"):
        content_loss(fake, real, labels, "l1")


def test_official_mmd_weighting_is_half_the_textbook_mmd2():
    # losses.py MMDLoss: sum over (s - 1/(M+N)) (s - 1/(M+N))^T * K, s the one-hot group
    # weights 1/M (fake) and 1/N (real); for M = N its square root is mmd / sqrt(2)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(7, 5, generator=g, dtype=torch.double)
    y = torch.rand(7, 5, generator=g, dtype=torch.double) + 0.3
    sigmas = (2.0, 5.0)
    z = torch.cat([x, y])
    s = torch.zeros(14, 2, dtype=torch.double)
    s[:7, 0], s[7:, 1] = 1 / 7, 1 / 7
    s -= 1 / 14
    d2 = torch.cdist(z, z).pow(2)
    official = sum((s @ s.T * torch.exp(-d2 / (2 * bw))).sum() for bw in sigmas).sqrt()
    assert official.item() == pytest.approx(mmd(x, y, sigmas).item() * 2**-0.5, rel=1e-9)
