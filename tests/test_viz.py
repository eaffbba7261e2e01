"""Colours, masks, overlays and plots."""

import matplotlib
import numpy as np
import pytest
import torch

from cagnet import viz

matplotlib.use("Agg")


def test_palette_is_the_pascal_voc_colour_map():
    p = viz.palette(21)
    assert p.shape == (21, 3) and p.dtype == np.uint8
    assert p[0].tolist() == [0, 0, 0]
    assert p[1].tolist() == [128, 0, 0]  # aeroplane
    assert p[15].tolist() == [192, 128, 128]  # person
    assert len({tuple(c) for c in viz.palette(256)}) == 256  # all distinct


def test_colorize_and_overlay():
    mask = torch.tensor([[0, 1], [255, 2]])
    rgb = viz.colorize(mask, viz.palette(3))
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 1].tolist() == [128, 0, 0]
    assert rgb[1, 0].tolist() == list(viz.IGNORE_COLOR)
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    out = viz.overlay(image, mask, viz.palette(3), alpha=0.5)
    assert out[1, 0].tolist() == [100, 100, 100]  # ignored pixel keeps the image
    assert out[0, 1].tolist() == [114, 50, 50]  # halfway between (100,100,100) and (128,0,0)


def test_denormalize_inverts_the_input_normalisation():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3)).astype(np.uint8)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]
         ) / torch.tensor(std)[:, None, None]
    np.testing.assert_array_equal(viz.denormalize(x, mean, std), rgb)


def test_plots_draw_what_they_are_given():
    history = [{"iteration": i, "stage": "train" if i < 4 else "finetune", "step": "real",
                "total": 1.0 / i, "d_gan": 0.5} for i in range(1, 7)]
    history.append({"iteration": 6, "stage": "finetune", "step": "fake", "total": 0.3})
    ax = viz.plot_losses(history, keys=["total"])
    assert len(ax.lines) == 3  # real, fake and the fine-tuning marker
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0 / i for i in range(1, 7)])

    metrics = {"iou": {"sky": 0.9, "cat": 0.2, "dog": None}, "miou_seen": 0.9,
               "miou_unseen": 0.2}
    ax = viz.plot_iou(metrics, unseen_names=["cat"])
    heights = [b.get_height() for b in ax.patches]
    assert heights == pytest.approx([0.9, 0.2])  # the absent class is left out

    ax = viz.plot_results([{"method": "cagnet", "miou_seen": 0.8, "miou_unseen": 0.5,
                            "hiou": 0.6}])
    assert sorted(b.get_height() for b in ax.patches) == pytest.approx([0.5, 0.6, 0.8])

    fig = viz.show_predictions([np.zeros((4, 4, 3), np.uint8)], [np.zeros((4, 4), int)],
                               [np.ones((4, 4), int)], ["sky", "cat"], unseen=[1])
    assert len(fig.axes) == 3


def test_pca_2d_finds_the_directions_of_largest_spread():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(200, 1, generator=g)
    axis1, axis2 = torch.tensor([[1.0, 1.0, 0.0]]) / 2**0.5, torch.tensor([[0.0, 0.0, 1.0]])
    features = 5.0 * t * axis1 + 0.5 * torch.randn(200, 1, generator=g) * axis2 + 3.0
    xy = viz.pca_2d(features)(features)
    assert xy.shape == (200, 2)
    assert abs(np.corrcoef(xy[:, 0], t[:, 0].numpy())[0, 1]) > 0.999
    assert xy[:, 0].std() > 5 * xy[:, 1].std() > 0
    assert abs(xy.mean(0)).max() < 1e-4  # centred on the features' mean
