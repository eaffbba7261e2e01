"""COCO-Stuff 164k: 182 classes, train2017 (118k) / val2017 (5k).

Label maps are the ``stuffthingmaps_trainval2017`` PNGs: one grey value per pixel,
0..181 = COCO-Stuff id - 1 (`cagnet.data.splits.COCOSTUFF_CLASSES`), 255 = unlabelled.

Layout under the dataset root (what `cagnet.data.download.fetch("cocostuff")` produces)::

    ROOT/images/train2017/<id>.jpg, ROOT/images/val2017/<id>.jpg
    ROOT/annotations/train2017/<id>.png, ROOT/annotations/val2017/<id>.png

The image list of a split is the sorted list of its annotation PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cagnet.config import DataConfig
from cagnet.data.base import (
    ClassSplit,
    check_label_values,
    dataset_root,
    read_png_indices,
)
from cagnet.data.files import FileSegmentation, Sample, require_files
from cagnet.errors import DataError

NUM_CLASSES = 182
EXPECTED = {"train": 118_287, "test": 5_000}
FOLDERS = {"train": "train2017", "test": "val2017"}
HOW = ('get COCO-Stuff with `cagnet.data.download.fetch("cocostuff", ROOT)` (train2017.zip '
       "and val2017.zip into ROOT/images, stuffthingmaps_trainval2017.zip into "
       "ROOT/annotations)")


def decode_cocostuff_label(path: Path) -> np.ndarray:
    """A stuffthingmaps PNG -> ``(H, W)`` uint8 class ids 0..181, 255 unlabelled."""
    label = read_png_indices(path)
    check_label_values(label, NUM_CLASSES, path, "COCO-Stuff values 0-181 and 255")
    return label


def cocostuff_samples(root: Path, split: str) -> list[Sample]:
    """The (image, label) files of split "train" (train2017) or "test" (val2017)."""
    folder = FOLDERS[split]
    images, labels = root / "images" / folder, root / "annotations" / folder
    missing = [str(p) for p in (images, labels) if not p.is_dir()]
    if missing:
        raise DataError(f"COCO-Stuff under {root} lacks {' and '.join(missing)}; {HOW}")
    return [Sample(images / f"{p.stem}.jpg", p) for p in sorted(labels.glob("*.png"))]


def build_cocostuff(dcfg: DataConfig, split: str, classes: ClassSplit) -> FileSegmentation:
    """The COCO-Stuff dataset of ``split`` ("train" | "test" = val2017)."""
    root = dataset_root(dcfg)
    samples = cocostuff_samples(root, split)
    what = f"COCO-Stuff {FOLDERS[split]}"
    require_files(samples, what, HOW)
    return FileSegmentation(samples, classes, dcfg, split == "train", decode_cocostuff_label,
                            what)
