"""Pascal-VOC + SBD, Pascal-Context and COCO-Stuff loaders on tiny fabricated datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_data import (
    CONTEXT_TRAIN,
    SBD_TRAIN,
    VOC_TRAIN,
    VOC_VAL,
    label_map,
    make_cocostuff,
    make_context,
    make_voc,
    write_grey_png,
    write_palette_png,
)
from PIL import Image

from cagnet.config import DataConfig
from cagnet.data import build_dataset, class_names, class_split
from cagnet.data.splits import SPLITS
from cagnet.data.voc import voc_palette
from cagnet.errors import ConfigError, DataError

VOC = class_names("voc")


def voc_cfg(root, **kw) -> DataConfig:
    kw.setdefault("crop", 32)
    return DataConfig(dataset="voc", root=str(root), **kw)


@pytest.fixture
def voc_root(tmp_path):
    return make_voc(tmp_path / "voc")


def test_voc_splits_and_names():
    s = class_split(DataConfig(dataset="voc"))
    assert [VOC[c] for c in s.unseen] == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]
    assert 0 not in s.seen and len(s.seen) == 15 and s.eval_classes == list(range(1, 21))
    assert s.ignore_in_training == sorted(s.unseen + [0]) and s.ignore_in_test == [0]
    zs3 = class_split(DataConfig(dataset="voc", split="zs3-4"))
    assert sorted(VOC[c] for c in zs3.unseen) == ["aeroplane", "cow", "motorbike", "sofa"]
    for n in (2, 4, 6, 8, 10):
        assert len(SPLITS["voc"][f"zs3-{n}"]) == n
    named = class_split(DataConfig(dataset="voc", unseen=("potted plant", "TV monitor")))
    assert [VOC[c] for c in named.unseen] == ["pottedplant", "tvmonitor"]
    with pytest.raises(ConfigError, match="cannot be unseen"):
        class_split(DataConfig(dataset="voc", unseen=("background",)))
    with pytest.raises(ConfigError, match="zs3-2"):
        class_split(DataConfig(dataset="voc", split="default"))


def test_voc_train_aug_is_voc_and_sbd_minus_val(voc_root):
    ds = build_dataset(voc_cfg(voc_root), "train")
    ids = sorted(s.image.stem for s in ds.samples)
    assert ids == sorted((set(VOC_TRAIN) | {"2008_000001", "2008_000002"}) - set(VOC_VAL))
    labels = {s.image.stem: s.label for s in ds.samples}
    assert labels["2007_000001"].suffix == ".png"  # VOC's own label wins over SBD's
    assert labels["2008_000001"].suffix == ".mat"
    assert len(build_dataset(voc_cfg(voc_root), "test")) == len(VOC_VAL)


def test_voc_training_labels_ignore_background_and_unseen(voc_root):
    ds = build_dataset(voc_cfg(voc_root, flip=False, scale_range=(1.0, 1.0), crop=48), "train")
    raw = label_map(VOC_TRAIN["2007_000001"], ring=True)  # person 15, sheep 17 (unseen)
    i = [s.image.stem for s in ds.samples].index("2007_000001")
    torch.manual_seed(0)
    image, label = ds[i]
    assert image.shape == (3, 48, 48) and label.shape == (48, 48) and label.dtype == torch.int64
    lab = label.numpy()
    assert set(np.unique(lab)) == {15, 255}  # background, sheep and boundaries ignored
    assert (lab == 15).sum() == (raw == 15).sum()  # the crop holds the whole padded image
    assert (lab != 255).sum() == (raw == 15).sum()


def test_voc_sbd_mat_labels_decode(voc_root):
    ds = build_dataset(voc_cfg(voc_root), "train")
    i = [s.image.stem for s in ds.samples].index("2008_000001")
    _, label = ds.load(i)
    np.testing.assert_array_equal(label, label_map(SBD_TRAIN["2008_000001"]))


def test_voc_test_items_are_full_size_and_keep_unseen(voc_root):
    ds = build_dataset(voc_cfg(voc_root), "test")
    image, label = ds[0]  # person 15, sofa 18 (unseen)
    assert image.shape == (3, 30, 40) and label.shape == (30, 40)
    raw = label_map(VOC_VAL["2007_000100"], ring=True)
    np.testing.assert_array_equal(label.numpy(), np.where(raw == 0, 255, raw))
    mean = torch.tensor(ds.dcfg.mean).view(3, 1, 1)
    std = torch.tensor(ds.dcfg.std).view(3, 1, 1)
    pixels = np.asarray(Image.open(ds.samples[0].image).convert("RGB"))
    expected = torch.tensor(pixels).permute(2, 0, 1).float() / 255
    assert torch.allclose(image * std + mean, expected, atol=1e-5)


def test_voc_augmentation_shapes_and_padding(voc_root):
    torch.manual_seed(1)
    ds = build_dataset(voc_cfg(voc_root, crop=64, scale_range=(0.5, 1.5)), "train")
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 64, 64) and label.shape == (64, 64)
        assert (label == 255).sum() >= 64 * 64 - 60 * 45  # padding (image <= 60x45) ignored
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    images, labels = next(iter(loader))
    assert images.shape == (2, 3, 64, 64) and labels.shape == (2, 64, 64)


def test_voc_rgb_rendered_label_is_mapped_through_the_palette(voc_root):
    ds = build_dataset(voc_cfg(voc_root), "test")
    path = ds.samples[0].label
    raw = label_map(VOC_VAL["2007_000100"], ring=True)
    Image.fromarray(voc_palette()[raw]).save(path)  # an RGB PNG of the same map
    np.testing.assert_array_equal(ds.load(0)[1], raw)


def test_without_sbd_training_falls_back_to_voc_train_with_a_warning(tmp_path):
    root = make_voc(tmp_path / "voc", sbd=False)
    with pytest.warns(UserWarning, match="1,464 VOC train images"):
        ds = build_dataset(voc_cfg(root), "train")
    assert sorted(s.image.stem for s in ds.samples) == sorted(VOC_TRAIN)


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"no Pascal-VOC 2012 under .*fetch\(\"voc\""):
        build_dataset(voc_cfg(tmp_path / "nothing"), "train")


def test_partial_folder_names_a_missing_file(voc_root):
    (voc_root / "VOCdevkit/VOC2012/JPEGImages/2007_000101.jpg").unlink()
    with pytest.raises(DataError, match="1 file.*2007_000101.jpg"):
        build_dataset(voc_cfg(voc_root), "test")


def test_label_values_outside_the_classes_name_the_file(voc_root):
    ds = build_dataset(voc_cfg(voc_root), "test")
    bad = label_map([15, 30])
    write_palette_png(ds.samples[1].label, bad)
    with pytest.raises(DataError, match=r"2007_000101.png has values \[30\]"):
        ds[1]


def test_corrupt_image_names_the_file(voc_root):
    ds = build_dataset(voc_cfg(voc_root), "test")
    ds.samples[0].image.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match=r"2007_000100.jpg cannot be read.*corrupt"):
        ds[0]


def test_image_label_size_mismatch_names_both(voc_root):
    ds = build_dataset(voc_cfg(voc_root), "test")
    write_palette_png(ds.samples[0].label, label_map([15], h=20, w=20))
    with pytest.raises(DataError, match="must match"):
        ds[0]


def test_empty_split_list(voc_root):
    (voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(DataError, match="val.txt is empty"):
        build_dataset(voc_cfg(voc_root), "test")


def test_context_33_classes_and_unlabelled(tmp_path):
    root = make_context(tmp_path / "ctx")
    names = class_names("context")
    assert len(names) == 33 and names[21] == "grass" and names[32] == "ceiling"
    dcfg = DataConfig(dataset="context", root=str(root), crop=40, flip=False,
                      scale_range=(1.0, 1.0))
    split = class_split(dcfg)
    assert sorted(names[c] for c in split.unseen) == ["cat", "cow", "motorbike", "sofa"]
    assert split.ignore_in_test == []
    train = build_dataset(dcfg, "train")
    assert len(train) == len(CONTEXT_TRAIN) and len(build_dataset(dcfg, "test")) == 1
    _, raw = train.load(0)  # file values: grass 22 -> 21, cat 8 -> 7, 0 -> 255
    assert set(np.unique(raw)) == {7, 21, 255}
    _, label = train[0]
    assert set(np.unique(label.numpy())) == {21, 255}  # cat is unseen
    write_grey_png(train.samples[1].label, label_map([40], fill=0))
    with pytest.raises(DataError, match=r"values \[40\] outside 0-33"):
        train[1]


def test_cocostuff_182_classes(tmp_path):
    root = make_cocostuff(tmp_path / "coco")
    names = class_names("cocostuff")
    assert len(names) == 182 and names[171] == "wall-concrete" and names[0] == "person"
    dcfg = DataConfig(dataset="cocostuff", root=str(root), crop=40, flip=False,
                      scale_range=(1.0, 1.0))
    split = class_split(dcfg)
    assert len(split.unseen) == 15 and 171 in split.unseen and 123 in split.unseen
    train = build_dataset(dcfg, "train")
    assert [s.image.name for s in train.samples] == ["000000000009.jpg", "000000000025.jpg"]
    _, label = build_dataset(dcfg, "test")[0]
    assert set(np.unique(label.numpy())) == {0, 20, 123, 255}
    _, label = train[1]
    assert set(np.unique(label.numpy())) == {255}  # grass and wall-concrete are unseen
    write_grey_png(train.samples[0].label, label_map([200], fill=0))
    with pytest.raises(DataError, match=r"values \[200\]"):
        train[0]
    with pytest.raises(DataError, match="lacks"):
        build_dataset(DataConfig(dataset="cocostuff", root=str(tmp_path / "none")), "test")


def test_label_png_that_is_not_single_channel(tmp_path):
    root = make_cocostuff(tmp_path / "coco")
    ds = build_dataset(DataConfig(dataset="cocostuff", root=str(root)), "test")
    Image.new("RGBA", (40, 30)).save(ds.samples[0].label)
    with pytest.raises(DataError, match="RGBA image, not a single-channel"):
        ds[0]


def test_unknown_dataset_and_split():
    with pytest.raises(ConfigError, match="voc, context, cocostuff, toy"):
        class_split(DataConfig(dataset="ade20k"))
    with pytest.raises(ConfigError, match="train or test"):
        build_dataset(DataConfig(dataset="toy", split="default"), "val")
