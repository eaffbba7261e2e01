"""The toy world: determinism, the class split, unseen handling, context prior, transforms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.ndimage import maximum_filter, minimum_filter
from torch.utils.data import DataLoader

from cagnet.config import DataConfig, get_preset
from cagnet.data import build_dataset, class_split, render_toy
from cagnet.data.toy import (
    COLOURS,
    FAVOURITE_STUFF,
    SHAPES,
    STUFF,
    TOY_CLASSES,
    TOY_SPLITS,
    thing_class,
    toy_world_figure,
)
from cagnet.errors import ConfigError


def toy(**changes) -> DataConfig:
    return dataclasses.replace(get_preset("toy").data, **changes)


@pytest.fixture(scope="module")
def world():
    return render_toy(1000, 64, seed=0, split="train")


def test_same_seed_same_arrays_other_seed_other_arrays():
    a, b = render_toy(70, seed=3), render_toy(70, seed=3)
    c = render_toy(70, seed=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.objects, b.objects)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.labels, c.labels)


def test_an_image_does_not_depend_on_the_count_and_splits_differ():
    small, large = render_toy(10, seed=1), render_toy(130, seed=1)
    assert np.array_equal(small.images, large.images[:10])
    assert np.array_equal(small.labels, large.labels[:10])
    test = render_toy(10, seed=1, split="test")
    assert not np.array_equal(small.labels, test.labels)


def test_shapes_dtypes_and_a_larger_image_size():
    r = render_toy(5, image_size=96, seed=0)
    assert r.images.shape == (5, 3, 96, 96) and r.images.dtype == np.uint8
    assert r.labels.shape == (5, 96, 96) and r.labels.dtype == np.uint8
    assert r.labels.max() < len(TOY_CLASSES)  # every pixel has a class
    with pytest.raises(ValueError, match="at least 16"):
        render_toy(1, image_size=8)


def test_class_list_and_every_split_keeps_each_word_seen():
    assert len(TOY_CLASSES) == 20 and TOY_CLASSES[:4] == STUFF
    assert TOY_CLASSES[thing_class(COLOURS.index("blue"), SHAPES.index("cross"))] == "blue cross"
    for name in TOY_SPLITS:
        split = class_split(toy(split=name))
        seen_words = {w for c in split.seen for w in split.names[c].split()}
        assert set(COLOURS) <= seen_words and set(SHAPES) <= seen_words, name
        assert set(split.seen).isdisjoint(split.unseen)
        assert sorted(split.seen + split.unseen) == list(range(20))


def test_default_split_is_a_latin_square():
    split = class_split(toy())
    colours = [split.names[c].split()[0] for c in split.unseen]
    shapes = [split.names[c].split()[1] for c in split.unseen]
    assert sorted(colours) == sorted(COLOURS) and sorted(shapes) == sorted(SHAPES)
    assert split.ignore_in_training == split.unseen and split.ignore_in_test == []


def test_bad_unseen_names_list_the_valid_ones_and_variants_are_accepted():
    with pytest.raises(ConfigError, match="valid names: grass, sand"):
        class_split(toy(unseen=("purple circle",)))
    with pytest.raises(ConfigError, match="default, alt, two"):
        class_split(toy(split="nope"))
    split = class_split(toy(unseen=("Red_Cross", "SNOW")))
    assert [split.names[c] for c in split.unseen] == ["snow", "red cross"]


def test_unseen_classes_are_in_training_images_but_ignored_in_training_labels():
    dcfg = toy(num_train=64, num_test=64, flip=False)
    train, test = build_dataset(dcfg, "train"), build_dataset(dcfg, "test")
    unseen = train.classes.unseen
    raw = train.labels.numpy()
    assert np.isin(raw, unseen).any()  # the images show unseen objects
    for i in range(len(train)):
        _, label = train[i]
        expected = np.where(np.isin(raw[i], unseen), 255, raw[i])
        assert np.array_equal(label.numpy(), expected)
        _, label_test = test[i]
        assert np.array_equal(label_test.numpy(), test.labels[i].numpy())  # all classes kept
    assert np.isin(test.labels.numpy(), unseen).any()


def test_items_are_normalised_images_and_long_labels():
    dcfg = toy(num_train=8, num_test=8)
    ds = build_dataset(dcfg, "test")
    image, label = ds[3]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert label.shape == (64, 64) and label.dtype == torch.int64
    mean = torch.tensor(dcfg.mean).view(3, 1, 1)
    std = torch.tensor(dcfg.std).view(3, 1, 1)
    assert torch.allclose(image * std + mean, ds.images[3].float() / 255, atol=1e-5)
    images, labels = next(iter(DataLoader(build_dataset(dcfg, "train"), batch_size=4)))
    assert images.shape == (4, 3, 64, 64) and labels.shape == (4, 64, 64)


def test_training_flip_changes_some_items_and_keeps_image_and_label_aligned():
    dcfg = toy(num_train=32, num_test=8)
    ds = build_dataset(dcfg, "train")
    torch.manual_seed(0)
    flipped = 0
    for i in range(len(ds)):
        image, label = ds[i]
        raw = ds._lut[ds.labels[i].long()]
        if torch.equal(label, raw.flip(-1)) and not torch.equal(label, raw):
            flipped += 1
            expected = (ds.images[i].flip(-1).float() / 255 - 0.5) / 0.25
            assert torch.allclose(image, expected, atol=1e-5)
        else:
            assert torch.equal(label, raw)
    assert 0 < flipped < len(ds)


def test_scale_and_crop_options_give_crop_sized_items_padded_with_ignore():
    torch.manual_seed(0)
    ds = build_dataset(toy(num_train=4, crop=48, scale_range=(0.5, 1.5)), "train")
    for i in range(4):
        image, label = ds[i]
        assert image.shape == (3, 48, 48) and label.shape == (48, 48)
    image, label = build_dataset(toy(num_train=2, crop=80), "train")[0]
    assert image.shape == (3, 80, 80)
    assert (label == 255).sum() == 80 * 80 - 64 * 64  # the padding is ignored


def test_the_co_occurrence_prior_is_measurable(world):
    objects = world.objects.reshape(-1, 4)
    objects = objects[objects[:, 0] >= 0]
    favourite = np.array([STUFF.index(FAVOURITE_STUFF[s]) for s in SHAPES])
    on_favourite = (objects[:, 2] == favourite[objects[:, 0]]).mean()
    assert 0.65 < on_favourite < 0.75
    # from the label maps alone: a shape makes its favourite stuff more likely in the image
    present = np.zeros((len(world.labels), 20), dtype=bool)
    for i, lab in enumerate(world.labels):
        present[i, np.unique(lab)] = True
    for s in range(4):
        has_shape = present[:, [thing_class(c, s) for c in range(4)]].any(1)
        f = favourite[s]
        others = [x for x in range(4) if x != f]
        assert present[has_shape, f].mean() > 1.5 * present[has_shape][:, others].mean()


def test_the_prior_is_a_setting_and_a_quarter_means_no_co_occurrence():
    favourite = np.array([STUFF.index(FAVOURITE_STUFF[s]) for s in SHAPES])
    for prior, low, high in ((0.25, 0.21, 0.29), (0.9, 0.86, 0.94)):
        objects = render_toy(600, 64, seed=0, prior=prior).objects.reshape(-1, 4)
        objects = objects[objects[:, 0] >= 0]
        assert low < (objects[:, 2] == favourite[objects[:, 0]]).mean() < high
    with pytest.raises(ValueError, match="prior"):
        render_toy(1, prior=1.5)
    # the world's prior is part of a run's identity
    from cagnet.book import run_dir

    base = get_preset("toy")
    flat = base.replace(data=dataclasses.replace(base.data, toy_prior=0.25))
    assert run_dir(flat) != run_dir(base)


def test_objects_are_small_and_mostly_near_boundaries(world):
    lab = world.labels
    things = lab >= len(STUFF)
    visible = sum(len(np.unique(x[x >= len(STUFF)])) for x in lab)
    assert 150 < things.sum() / visible < 500  # pixels per visible object (16-28 px across)
    edge = maximum_filter(lab, size=(1, 5, 5)) != minimum_filter(lab, size=(1, 5, 5))
    assert (edge & things).sum() / things.sum() > 0.4
    counts = (world.objects[..., 0] >= 0).sum(1)
    assert counts.min() == 1 and counts.max() == 4
    assert set(np.unique(world.objects[..., 3])) - {-1} == set(range(4, 20))


def test_colour_is_not_a_pixel_lookup(world):
    # the same class takes many colours (jitter, shading, noise), so a colour table fails
    red_circle = thing_class(COLOURS.index("red"), SHAPES.index("circle"))
    pixels = world.images.transpose(0, 2, 3, 1)[world.labels == red_circle].astype(float)
    assert pixels.std(0).min() > 8


def test_figure_has_three_rows_and_a_legend():
    import matplotlib

    matplotlib.use("Agg")
    fig = toy_world_figure(count=3)
    assert len(fig.axes) == 9
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "red cross *" in texts and "grass" in texts and "ignored (255)" in texts
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_figure_draws_the_world_of_its_config():
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    base = get_preset("toy").data
    shown = {}
    for light in (0.0, 1.0):
        fig = toy_world_figure(dataclasses.replace(base, toy_lighting=light), count=2)
        shown[light] = fig.axes[0].images[0].get_array()
        plt.close(fig)
    lit = render_toy(2, base.image_size, base.data_seed, "train", lighting=1.0)
    assert np.array_equal(shown[1.0], lit.images[0].transpose(1, 2, 0))
    assert not np.array_equal(shown[0.0], shown[1.0])
