"""The patch-level CaGNet: structured fake label maps and a classifier that reads neighbours."""

from __future__ import annotations

import copy

import pytest
import torch

from cagnet.config import get_preset
from cagnet.errors import ConfigError
from cagnet.models.discriminator import Discriminator
from cagnet.patches import IGNORE, centres_only, patch_label_maps, swap_classes, tile
from cagnet.train import config_with
from cagnet.validation import validate_config

SEEN = torch.tensor([0, 1, 2, 3, 4, 5])
UNSEEN = torch.tensor([6, 7])


def real_maps(seed: int = 0) -> torch.Tensor:
    """(3, 9, 10) label maps of seen classes in blobs, a few pixels ignored."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 6, (3, 3, 4), generator=g)
    maps = coarse.repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :9, :10].clone()
    maps[0, :2, :2] = IGNORE
    return maps


def coordinate_codes(like: torch.Tensor) -> torch.Tensor:
    """Codes (B, 3, h, w) that name their own pixel: (image, row, column)."""
    B, h, w = like.shape
    b, i, j = torch.meshgrid(torch.arange(B), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([b, i, j], 1).float()


def test_tile_puts_patches_in_row_major_order_and_cuts_the_edges():
    p, size = 2, (1, 3, 5)  # a 2 x 3 grid of 2 x 2 patches, cut to 3 x 5
    patches = torch.arange(6).view(6, 1, 1).expand(6, p, p)
    out = tile(patches, size)
    assert out.shape == (1, 3, 5)
    assert out[0].tolist() == [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]]
    feats = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 4, p, p)  # (n, d, p, p)
    assert tile(feats, size).shape == (1, 4, 3, 5)
    assert torch.equal(tile(feats, size)[0, 2], out[0].float())


def test_real_codes_come_from_where_each_patch_was_cut():
    torch.manual_seed(0)
    like = real_maps()
    codes = coordinate_codes(like)
    codes[0, :, :2, :2] = torch.nan  # ignored pixels carry no code
    size = (4, 12, 12)
    labels, z = patch_label_maps(like, size, 3, SEEN, UNSEEN, 0.0, 8, codes=codes)
    assert labels.shape == size and z.shape == (4, 3, 12, 12)
    for b in range(4):
        for bi in range(4):
            for bj in range(4):
                block = (b, slice(3 * bi, 3 * bi + 3), slice(3 * bj, 3 * bj + 3))
                src = z[block[0], :, block[1], block[2]]  # (3, 3, 3)
                img, r0, c0 = (int(v) for v in src[:, 0, 0])
                assert (src[0] == img).all()  # one image per patch, a contiguous 3 x 3 crop
                assert torch.equal(src[1], r0 + torch.arange(3.0)[:, None].expand(3, 3))
                assert torch.equal(src[2], c0 + torch.arange(3.0)[None, :].expand(3, 3))
                assert torch.equal(labels[block], like[img, r0:r0 + 3, c0:c0 + 3])
    assert not (labels == IGNORE).any()  # windows with an ignored pixel are never cut


def test_prior_codes_are_one_draw_per_patch():
    torch.manual_seed(1)
    _, z = patch_label_maps(real_maps(), (2, 9, 9), 3, SEEN, UNSEEN, 0.5, 8, latent_dim=5)
    blocks = z.view(2, 5, 3, 3, 3, 3).permute(0, 2, 4, 1, 3, 5).reshape(18, 5, 9)
    assert torch.equal(blocks, blocks[:, :, :1].expand_as(blocks))  # constant within a patch
    assert torch.unique(blocks[:, 0, 0]).numel() == 18  # a new draw for every patch
    labels, z = patch_label_maps(real_maps(), (2, 9, 9), 3, SEEN, UNSEEN, 0.5, 8)
    assert z is None  # ZS3Net's generator draws its own noise


def test_swaps_keep_each_patch_s_shapes_and_reach_the_unseen_share():
    torch.manual_seed(2)
    n = 4000
    patches = torch.randint(0, 6, (n, 3, 3))
    patches[:, 0, 0] = IGNORE
    out = swap_classes(patches, SEEN, UNSEEN, 0.3, 8)
    assert (out[:, 0, 0] == IGNORE).all()
    assert set(out[:, 1:].unique().tolist()) <= set(range(8))
    for k in range(50):  # pixels of one class in a patch stay one class: a function of it
        pairs = set(zip(patches[k].flatten().tolist(), out[k].flatten().tolist(), strict=True))
        assert len({a for a, _ in pairs}) == len(pairs)
    changed = out != patches
    assert torch.isin(out[changed], UNSEEN).all()  # a seen class only ever becomes unseen
    swapped = changed[:, 1:].float().mean().item()
    assert abs(swapped - 0.3) < 0.02
    assert torch.equal(swap_classes(patches, SEEN, UNSEEN, 0.0, 8), patches)
    assert set(swap_classes(patches, SEEN, UNSEEN, 1.0, 8).unique().tolist()) == {6, 7, IGNORE}


def test_patches_larger_than_the_maps_are_refused():
    with pytest.raises(ValueError, match="smaller than model.patch_size 5"):
        patch_label_maps(torch.zeros(1, 4, 4, dtype=torch.long), (1, 4, 4), 5, SEEN, UNSEEN,
                         0.5, 8)


def test_the_patch_classifier_reads_neighbours_and_the_pixel_one_does_not():
    torch.manual_seed(3)
    f = torch.rand(1, 8, 5, 5, requires_grad=True)
    for k, reaches in ((1, False), (3, True)):
        C = Discriminator(8, 16, 4, dropout=0.0, cls_kernel=k)
        C.classify(f)[0, :, 2, 2].sum().backward()
        assert bool(f.grad[0, :, 2, 3].abs().sum() > 0) is reaches
        assert f.grad[0, :, 2, 4].abs().sum() == 0  # one pixel away at most
        f.grad = None


def test_patch_size_must_be_odd():
    cfg = config_with(get_preset("toy"), model={"patch_size": 2})
    with pytest.raises(ConfigError, match="model.patch_size"):
        validate_config(cfg)


@pytest.mark.parametrize("method,fake_codes", [("cagnet", "prior"), ("cagnet", "real"),
                                               ("zs3net", "prior")])
def test_a_patch_fine_tuning_step_trains_c_on_the_centres_of_patches_of_kept_layouts(
        method, fake_codes):
    from small import small_toy, small_trainer

    from cagnet.losses import segmentation_ce

    cfg = small_toy(method, model={"patch_size": 3, "disc_dropout": 0.0},
                    train={"fake_codes": fake_codes})
    tr = small_trainer(cfg, 8, SEEN.tolist(), UNSEEN.tolist())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 36, 40, generator=g)
    y = real_maps(1).repeat_interleave(4, 1).repeat_interleave(4, 2)  # (3, 36, 40) blobs
    tr.set_stage("finetune")
    tr.train_step(x, y[:2], cfg.train.iters)
    kept = tr.kept[0]  # (2, 9, 10) at the features' resolution
    fakes = []
    generate = tr.model.generate
    tr.model.generate = lambda labels, latent=None, detach=True: fakes.append(
        (labels, latent, generate(labels, latent, detach))) or fakes[-1][2]
    before = tr.model.discriminator.cls_head[0].weight.detach().clone()
    C0 = copy.deepcopy(tr.model.discriminator)  # C before the step, for the expected CE
    parts = tr.finetune_step(cfg.train.iters + cfg.train.switch_every)
    assert not torch.equal(before, tr.model.discriminator.cls_head[0].weight)
    labels, latent, fake = fakes[0]
    assert labels.shape == kept.shape
    assert (latent is None) == (method == "zs3net")
    windows = {tuple(kept[b, i:i + 3, j:j + 3].flatten().tolist())
               for b in range(2) for i in range(7) for j in range(8)}
    for bi in range(3):  # every whole patch is a window of the kept maps, up to the swap
        for bj in range(3):
            patch = labels[0, 3 * bi:3 * bi + 3, 3 * bj:3 * bj + 3].flatten().tolist()
            assert any(all(a == c or a in UNSEEN.tolist() for a, c in zip(patch, w, strict=True))
                       for w in windows)
    with torch.no_grad():
        expected = segmentation_ce(C0.classify(fake), centres_only(labels, 3))
    assert parts[5] == pytest.approx(float(expected), rel=1e-5)


def test_the_unseen_share_is_the_iid_maps_share_of_unseen_pixels():
    from small import small_toy, small_trainer

    from cagnet.patches import unseen_share

    assert unseen_share([0, 1], [2], 2.0) == 0.5
    tr = small_trainer(small_toy(), 6, [0, 1, 2, 3], [4, 5])
    draws = tr.losses.random_labels(64, (32, 32))
    share = float(torch.isin(draws, torch.tensor([4, 5])).float().mean())
    assert abs(share - tr.losses.unseen_share) < 0.01


def test_swapped_patches_keep_their_codes_and_uneven_maps_are_cut_to_size():
    torch.manual_seed(4)
    like = real_maps()
    like[0, :2, :2] = 0
    codes = coordinate_codes(like)
    labels, z = patch_label_maps(like, (2, 10, 11), 3, SEEN, UNSEEN, 0.6, 8, codes=codes)
    assert labels.shape == (2, 10, 11) and z.shape == (2, 3, 10, 11)
    b, i, j = z.round().long().unbind(1)  # each pixel's source in `like`
    source = like[b, i, j]
    assert torch.isin(labels[labels != source], UNSEEN).all()  # changed only by a swap
    assert (labels != source).any() and (labels == source).any()


def test_only_the_centres_of_whole_patches_are_scored():
    labels = torch.arange(8 * 7).view(1, 8, 7)
    out = centres_only(labels, 3)
    kept = (out != IGNORE).nonzero()[:, 1:].tolist()
    assert kept == [[1, 1], [1, 4], [4, 1], [4, 4], [7, 1], [7, 4]]
    assert all(out[0, r, c] == labels[0, r, c] for r, c in kept)
    assert torch.equal(centres_only(labels, 1), labels)


def test_without_patch_fakes_the_patch_classifier_is_fine_tuned_on_iid_maps():
    from small import small_toy, small_trainer

    from cagnet.losses import segmentation_ce

    cfg = small_toy(model={"patch_size": 3, "disc_dropout": 0.0}, train={"patch_fakes": False})
    tr = small_trainer(cfg, 8, SEEN.tolist(), UNSEEN.tolist())
    x = torch.randn(2, 3, 36, 40, generator=torch.Generator().manual_seed(1))
    y = real_maps(1).repeat_interleave(4, 1).repeat_interleave(4, 2)[:2]
    tr.set_stage("finetune")
    tr.train_step(x, y, cfg.train.iters)
    seen = []
    generate = tr.model.generate
    tr.model.generate = lambda labels, latent=None, detach=True: seen.append(
        (labels, generate(labels, latent, detach))) or seen[-1][1]
    C0 = copy.deepcopy(tr.model.discriminator)
    parts = tr.finetune_step(cfg.train.iters + cfg.train.switch_every)
    labels, fake = seen[0]
    with torch.no_grad():  # every pixel scored
        assert parts[5] == pytest.approx(float(segmentation_ce(C0.classify(fake), labels)), 1e-5)
    same = (labels[:, :, 1:] == labels[:, :, :-1]).float().mean()
    assert same < 0.3  # i.i.d. classes: neighbours rarely agree
