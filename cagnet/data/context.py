"""Pascal-Context, the 33-class version CaGNet uses (train 4,998 / val 5,105 images).

The 33 classes (`cagnet.data.splits.CONTEXT_CLASSES`) are the 20 VOC objects and sky,
grass, ground, road, building, tree, water, mountain, wall, floor, track, keyboard,
ceiling — the list of CaGNet's ``dataset/context/labels.txt`` and of ``33_labels.txt``
from the Pascal-Context site. Label maps come from ``33_context_labels.tar.gz`` of that
site: one PNG per image, value 0 = unlabelled (-> 255), v in 1..33 = class v - 1.

Layout under the dataset root (what `cagnet.data.download.fetch("context")` produces)::

    ROOT/VOCdevkit/VOC2010/            (or ROOT/VOC2010/, ROOT/VOCdevkit/VOC2012/, ROOT)
        JPEGImages/<id>.jpg
        ImageSets/Main/train.txt, val.txt
    ROOT/33_context_labels/<id>.png    (a nested 33_context_labels/ folder is found too)

``ROOT/train.txt`` and ``ROOT/val.txt``, if present, replace the VOC2010 lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cagnet.config import DataConfig
from cagnet.data.base import (
    IGNORE,
    ClassSplit,
    check_label_values,
    dataset_root,
    read_lines,
    read_png_indices,
)
from cagnet.data.files import FileSegmentation, Sample, first_dir, require_files
from cagnet.errors import DataError

NUM_CLASSES = 33
EXPECTED = {"train": 4_998, "test": 5_105}
HOW = ('get Pascal-Context with `cagnet.data.download.fetch("context", ROOT)` '
       "(VOCtrainval_03-May-2010.tar and 33_context_labels.tar.gz, extracted into ROOT)")
_LUT = np.full(256, IGNORE, dtype=np.uint8)  # file value -> class id
_LUT[1:NUM_CLASSES + 1] = np.arange(NUM_CLASSES)


def decode_context_label(path: Path) -> np.ndarray:
    """A ``33_context_labels`` PNG -> ``(H, W)`` uint8 class ids 0..32, 255 unlabelled."""
    raw = read_png_indices(path)
    check_label_values(raw, NUM_CLASSES + 1, path,
                       "Pascal-Context 33-class values 0 (unlabelled) and 1-33")
    return _LUT[raw]


def find_context(root: Path) -> tuple[Path, Path]:
    """``(voc_dir, labels_dir)`` under ``root``; a DataError names what is missing."""
    voc = first_dir([root / "VOCdevkit" / "VOC2010", root / "VOC2010",
                     root / "VOCdevkit" / "VOC2012", root / "VOC2012", root], "JPEGImages")
    labels = root / "33_context_labels"
    if (labels / "33_context_labels").is_dir():
        labels = labels / "33_context_labels"
    missing = []
    if voc is None:
        missing.append("VOCdevkit/VOC2010/JPEGImages (the VOC2010 images)")
    if not labels.is_dir():
        missing.append("33_context_labels/ (the 33-class label PNGs)")
    if missing:
        raise DataError(f"Pascal-Context under {root} lacks {' and '.join(missing)}; {HOW}")
    assert voc is not None
    return voc, labels


def context_samples(root: Path, split: str) -> list[Sample]:
    """The (image, label) files of split "train" or "test" (= val)."""
    voc, labels = find_context(root)
    name = "train.txt" if split == "train" else "val.txt"
    lst = root / name if (root / name).is_file() else voc / "ImageSets" / "Main" / name
    return [Sample(voc / "JPEGImages" / f"{i}.jpg", labels / f"{i}.png") for i in read_lines(lst)]


def build_context(dcfg: DataConfig, split: str, classes: ClassSplit) -> FileSegmentation:
    """The Pascal-Context dataset of ``split`` ("train" | "test" = val)."""
    root = dataset_root(dcfg)
    samples = context_samples(root, split)
    what = f"Pascal-Context {'train' if split == 'train' else 'val'}"
    require_files(samples, what, HOW)
    return FileSegmentation(samples, classes, dcfg, split == "train", decode_context_label, what)
