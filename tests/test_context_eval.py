"""Context measurements: the context map, the probe, the generator's gain; the lit toy world."""

import dataclasses

import numpy as np
import pytest
import torch
from small import small_toy

from cagnet.config import get_preset
from cagnet.context_eval import (
    context_map,
    context_probe,
    generator_gain,
    per_context_scores,
    prior_shortcut,
)
from cagnet.data import render_toy
from cagnet.data.splits import class_split
from cagnet.metrics import ConfusionMatrix, scores
from cagnet.models import CaGNet


def test_context_map_gives_stuff_its_own_class_and_things_their_surroundings():
    y = torch.full((1, 9, 9), 1)  # sand everywhere ...
    y[0, :, 6:] = 2  # ... water on the right
    y[0, 3:6, 1:4] = 7  # a thing on sand
    y[0, 0, 0] = 255
    ctx = context_map(y, [0, 1, 2, 3], radius=2)
    assert ctx[0, 0, 0] == -1  # ignored
    assert ctx[0, 8, 8] == 2 and ctx[0, 8, 0] == 1  # stuff: its own class
    assert (ctx[0, 3:6, 1:4] == 1).all()  # the thing lies on sand


def test_probe_separates_separable_codes_and_reports_chance():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    x = torch.randn(400, 8, generator=g) * 0.1
    x[torch.arange(400), y] += 1.0  # context written in one coordinate each
    r = context_probe((x[:200], y[:200]), (x[200:], y[200:]), 4)
    assert r["probe_acc"] > 0.95 and 0.2 < r["chance"] < 0.4
    noise = context_probe((torch.randn(200, 8, generator=g), y[:200]),
                          (torch.randn(200, 8, generator=g), y[200:]), 4)
    assert noise["probe_acc"] < 0.45


def _model():
    cfg = small_toy()
    torch.manual_seed(0)
    return CaGNet(cfg, 20, torch.nn.functional.normalize(torch.randn(20, 64), dim=1)), cfg


def test_generator_gain_is_zero_when_every_image_has_the_same_code():
    model, _ = _model()
    x = torch.rand(1, 3, 32, 32).repeat(3, 1, 1, 1)  # three copies: mu is the same in each
    y = torch.randint(0, 20, (3, 32, 32))
    r = generator_gain(model, [(x, y)])
    assert r["dist_own"] > 0 and r["gain"] == pytest.approx(0.0, abs=1e-6)


def test_per_context_scores_cover_every_context():
    model, cfg = _model()
    classes = class_split(cfg.data)
    raw = render_toy(4, 64, seed=0, split="test")
    x = torch.from_numpy(raw.images).float() / 255
    y = torch.from_numpy(raw.labels).long()
    out = per_context_scores(model, [(x, y)], classes, [0, 1, 2, 3],
                             ("grass", "sand", "water", "snow"))
    assert set(out) == {"grass", "sand", "water", "snow"}
    assert all(0 <= v["miou_seen"] <= 1 for v in out.values() if v["miou_seen"] == v["miou_seen"])


def test_lighting_changes_things_by_their_stuff_and_nothing_else():
    plain = render_toy(64, 64, seed=0, lighting=0.0)
    lit = render_toy(64, 64, seed=0, lighting=1.0)
    assert np.array_equal(plain.labels, lit.labels)
    stuff = plain.labels < 4
    assert np.array_equal(plain.images.transpose(0, 2, 3, 1)[stuff],
                          lit.images.transpose(0, 2, 3, 1)[stuff])
    # a thing's mean colour now depends on the stuff under it: on water (2) darker than snow (3)
    img, lab, obj = lit.images.astype(float), lit.labels, lit.objects

    def brightness(home):
        vals = [img[i][:, lab[i] == c].mean() for i in range(64) for (_, _, h, c) in obj[i]
                if c >= 4 and h == home and (lab[i] == c).sum() > 20]
        return np.mean(vals)

    assert brightness(2) + 40 < brightness(3)
    with pytest.raises(ValueError, match="lighting"):
        render_toy(1, lighting=1.5)


def test_paint_shift_shows_each_paint_as_another_by_its_stuff_and_keeps_the_labels():
    from cagnet.data.toy import _THING_RGB, PAINT_SHIFT

    plain = render_toy(128, 64, seed=0, lighting=0.0)
    shifted = render_toy(128, 64, seed=0, lighting=0.0, paint_shift=True)
    assert np.array_equal(plain.labels, shifted.labels)
    assert np.array_equal(plain.objects, shifted.objects)
    img, lab = shifted.images.astype(float), shifted.labels
    hits = {h: [] for h in range(4)}
    for i in range(128):
        for _, colour, home, cls in plain.objects[i]:
            if cls < 4 or (lab[i] == cls).sum() < 40:
                continue
            mean = img[i][:, lab[i] == cls].mean(1)  # (3,) mean RGB of the thing
            nearest = np.abs(_THING_RGB - mean).sum(1).argmin()
            hits[home].append(nearest == (colour + PAINT_SHIFT[home]) % 4)
    # every stuff's light shows the paint it names, and only grass shows true colours
    assert all(len(v) > 10 and np.mean(v) > 0.9 for v in hits.values())
    assert sorted(PAINT_SHIFT) == [0, 1, 2, 3] and PAINT_SHIFT[0] == 0


def test_paint_shift_world_has_its_own_runs_and_leaves_earlier_runs_in_place():
    from cagnet.book import run_dir

    base = get_preset("toy")
    shifted = base.replace(data=dataclasses.replace(base.data, toy_paint_shift=True))
    assert run_dir(shifted) != run_dir(base)
    off = base.replace(data=dataclasses.replace(base.data, toy_paint_shift=False))
    assert run_dir(off) == run_dir(base)


class _CodeCarriesClass(torch.nn.Module):
    """A stand-in whose 'code' is the one-hot true class and whose G, given a code, draws
    the class in the code (a code that has learnt the class); from N(0, I) it draws the
    asked class. C reads a feature's largest channel."""

    def __init__(self, k):
        super().__init__()
        self.num_classes, self.w = k, torch.nn.Parameter(torch.zeros(1))
        self.__dict__["context"] = self.forward  # CM, not registered as a submodule

    def backbone(self, x):
        return x  # images are one-hot class maps (B, K, h, w) already

    def forward(self, a):
        return type("Out", (), {"feature": a, "mu": a})()

    def generate(self, labels, latent=None):
        if latent is None:
            return torch.nn.functional.one_hot(labels.clamp_max(self.num_classes - 1),
                                               self.num_classes).permute(0, 3, 1, 2).float()
        return latent

    def classify(self, f):
        return f


def test_class_fidelity_tells_a_code_that_carries_the_class():
    from cagnet.context_eval import class_fidelity
    k = 5
    y = torch.randint(0, k, (2, 6, 6), generator=torch.Generator().manual_seed(0))
    y[:, 0] = 255
    images = torch.nn.functional.one_hot(y.clamp_max(k - 1), k).permute(0, 3, 1, 2).float()
    r = class_fidelity(_CodeCarriesClass(k), [(images, y)])
    assert r == {"asked": 0.0, "own": 1.0, "asked_prior": 1.0}


def test_zero_attention_feeds_a_code_of_zero_to_the_attention_only():
    from cagnet.models.context import ContextualModule
    torch.manual_seed(0)
    cm = ContextualModule(8, 16).eval()
    a = torch.randn(2, 8, 5, 5)
    on = cm(a)
    cm.zero_attention = True
    off = cm(a)
    assert torch.allclose(off.feature, torch.sigmoid(1.5 * a))
    assert not torch.allclose(on.feature, off.feature)
    assert torch.equal(on.mu, off.mu)


def test_attention_ablation_scores_both_ways_and_restores_the_module():
    from cagnet.context_eval import attention_ablation
    model, cfg = _model()
    with torch.no_grad():
        model.context.mu.weight.mul_(50.0)  # a code far from 0, so the ablation shows
    classes = class_split(cfg.data)
    raw = render_toy(4, 64, seed=0, split="test")
    x = torch.from_numpy(raw.images).float() / 255
    y = torch.from_numpy(raw.labels).long()
    out = attention_ablation(model, iter([(x, y)]), classes)  # a one-pass iterator is fine
    assert set(out) == {"as_trained", "zero_z"}
    assert model.context.zero_attention is False
    model.eval()
    for name, pred in (("as_trained", model.predict(x)), ("zero_z", _with_zero(model, x))):
        m = ConfusionMatrix(20)
        m.update(pred.argmax(1), y)
        s = scores(m.matrix, list(classes.seen), list(classes.unseen))
        assert out[name] == {k: s[k] for k in ("miou_seen", "miou_unseen", "hiou")}
    assert not torch.equal(model.predict(x), _with_zero(model, x))


def _with_zero(model, x):
    model.context.zero_attention = True
    try:
        return model.predict(x)
    finally:
        model.context.zero_attention = False


class _CentredCodeCarriesClass(_CodeCarriesClass):
    """The same stand-in, with its codes centred per class as CaGNet's model.code_centring."""

    code_centring = True

    def generate(self, labels, latent=None):
        from cagnet.models.cagnet import centre_codes
        if latent is not None:
            latent = centre_codes(latent, labels, self.num_classes)
        return super().generate(labels, latent)


def _one_hot_batch(k=5, seed=0):
    y = torch.randint(0, k, (2, 6, 6), generator=torch.Generator().manual_seed(seed))
    y[:, 0] = 255
    images = torch.nn.functional.one_hot(y.clamp_max(k - 1), k).permute(0, 3, 1, 2).float()
    return images, y


def test_centring_takes_a_class_code_out_of_the_gain_and_the_fidelity():
    from cagnet.context_eval import class_fidelity
    images, y = _one_hot_batch()
    plain = generator_gain(_CodeCarriesClass(5), [(images, y)])
    centred = generator_gain(_CentredCodeCarriesClass(5), [(images, y)])
    assert plain["gain"] == pytest.approx(1.0)  # own code = the feature; another image's not
    assert centred["gain"] == pytest.approx(0.0, abs=1e-6)  # a class code centres to 0
    assert class_fidelity(_CodeCarriesClass(5), [(images, y)])["own"] == 1.0
    assert class_fidelity(_CentredCodeCarriesClass(5), [(images, y)])["own"] < 0.5


def test_mode_match_tells_context_modes_apart_and_states_chance():
    from cagnet.context_eval import mode_match
    real = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # 1 class, 3 context modes
    count = torch.tensor([[50.0, 50.0, 50.0]])
    good = mode_match({"real": real, "fake": real + 0.1, "count": count})
    blind = mode_match({"real": real, "fake": real[:, :1].expand(1, 3, 2), "count": count})
    assert good == {"matched": 1.0, "chance": pytest.approx(1 / 3), "cells": 3}
    assert blind["matched"] == pytest.approx(1 / 3)  # the same fake for every context
    few = mode_match({"real": real, "fake": real, "count": torch.tensor([[50.0, 5.0, 5.0]])})
    assert few["cells"] == 0  # one context with enough pixels: nothing to tell apart


def test_context_modes_average_real_and_fake_features_per_class_and_context():
    from cagnet.context_eval import context_modes, mode_match
    y = torch.zeros(1, 16, 16, dtype=torch.long)
    y[:, :, 8:] = 1  # stuff 0 on the left, stuff 1 on the right
    y[:, 2:5, 2:5] = 2
    y[:, 10:13, 10:13] = 2  # a thing of class 2 on each
    images = torch.nn.functional.one_hot(y, 5).permute(0, 3, 1, 2).float()
    images[:, 4] = (torch.arange(16) >= 8).float()  # a channel that differs by context
    modes = context_modes(_CodeCarriesClass(5), [(images, y)], stuff=[0, 1], class_ids=[2])
    assert modes["count"].tolist() == [[9.0, 9.0]]
    assert torch.equal(modes["real"], modes["fake"])  # this stand-in's G returns its code
    assert modes["real"][0, 1, 4] == 1 and modes["real"][0, 0, 4] == 0
    assert mode_match(modes, min_pixels=5)["matched"] == 1.0


def test_pixel_regions_tell_interiors_edges_and_stuff_near_and_far():
    from cagnet.context_eval import pixel_regions

    y = torch.zeros(1, 9, 12, dtype=torch.long)  # stuff 0 everywhere
    y[0, 1:6, 1:6] = 5  # a 5 x 5 thing
    y[0, 8, 11] = 255
    r = pixel_regions(y, [0, 1])[0]
    assert r[3, 3] == 0 and (r[2:5, 2:5] == 0).all()  # interior: 3 x 3 all the thing
    assert r[1, 1] == 1 and r[5, 3] == 1  # its border
    assert r[0, 0] == 2 and r[7, 7] == 2  # stuff within 2 cells of the thing
    assert r[0, 9] == 3 and r[8, 10] == 3  # open stuff
    assert r[8, 11] == -1


def test_selector_by_region_averages_the_weights_of_each_region():
    from cagnet.context_eval import REGIONS, selector_by_region

    torch.manual_seed(0)
    model, _ = _model()
    x = torch.randn(2, 3, 64, 64)  # 16 x 16 feature cells
    y = torch.zeros(2, 64, 64, dtype=torch.long)
    y[:, 4:24, 4:24] = 5
    out = selector_by_region(model, [(x, y)], [0, 1, 2, 3])
    assert out["mean"].shape == (len(REGIONS), 3) and out["std"].shape == (len(REGIONS), 3)
    assert (out["count"] > 0).all()
    with torch.no_grad():
        w = model.context(model.backbone(x)).weights
    assert torch.allclose((out["mean"] * out["count"][:, None]).sum(0) / out["count"].sum(),
                          w.mean((0, 2, 3)), atol=1e-5)


class _Fixed:
    """A stand-in that predicts given label maps, one batch per call."""

    def __init__(self, preds):
        self.preds = iter(preds)

    def eval(self):
        return self

    def predict(self, images):
        return torch.nn.functional.one_hot(next(self.preds), 20).permute(0, 3, 1, 2).float()


def test_prior_shortcut_splits_unseen_things_by_their_favourite_stuff():
    from cagnet.data.toy import FAVOURITE_SHAPE, thing_class

    raw = render_toy(48, 64, seed=0, split="test")
    unseen = [7, 9, 14, 19]  # the default split
    x = torch.zeros(48, 3, 64, 64)
    y = torch.from_numpy(raw.labels).long()
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 48, 16)]
    oracle = prior_shortcut(_Fixed([b for _, b in batches]), batches, raw.objects, unseen)
    assert oracle["on_favourite"] == 1 and oracle["elsewhere"] == 1
    assert oracle["to_favourite_shape"] == 0
    assert oracle["pixels_on"] > 0 and oracle["pixels_elsewhere"] > 0
    # a model that reads the colour and takes the shape from the stuff under the thing
    guess = y.clone()
    for i in range(48):
        for _, colour, home, cls in raw.objects[i].tolist():
            if cls in unseen:
                guess[i][y[i] == cls] = thing_class(colour, int(FAVOURITE_SHAPE[home]))
    prior = prior_shortcut(_Fixed(guess.split(16)), batches, raw.objects, unseen)
    assert prior["on_favourite"] == 1 and prior["elsewhere"] == 0
    assert prior["to_favourite_shape"] == 1
    stuff = prior_shortcut(_Fixed([torch.zeros_like(b) for _, b in batches]), batches,
                           raw.objects, unseen)
    assert stuff["on_favourite"] == stuff["elsewhere"] == stuff["to_favourite_shape"] == 0
