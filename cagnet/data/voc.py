"""Pascal-VOC 2012 with the SBD augmentation (train_aug 10,582 / val 1,449).

Layout under the dataset root (what `cagnet.data.download.fetch("voc")` produces)::

    ROOT/VOCdevkit/VOC2012/            (or ROOT/VOC2012/, or ROOT itself)
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png     palette PNGs: 0..20 classes, 255 object boundaries
        ImageSets/Segmentation/train.txt, val.txt
        SegmentationClassAug/<id>.png  (optional, DeepLab's converted SBD labels)
    ROOT/benchmark_RELEASE/dataset/    (SBD; or ROOT/SBD/dataset/, ROOT/SBD/)
        cls/<id>.mat                   GTcls.Segmentation: (H, W) uint8 0..20
        train.txt, val.txt

train_aug = (VOC train ∪ SBD train ∪ SBD val) − VOC val. A training image takes VOC's
PNG label when there is one, else SegmentationClassAug's, else SBD's ``.mat``. Without
SBD (and SegmentationClassAug) training falls back to VOC train (1,464) with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from cagnet.config import DataConfig
from cagnet.data.base import (
    ClassSplit,
    check_label_values,
    dataset_root,
    read_lines,
    read_png_indices,
)
from cagnet.data.files import FileSegmentation, Sample, first_dir, require_files
from cagnet.errors import DataError

NUM_CLASSES = 21
EXPECTED = {"train": 10_582, "test": 1_449}
HOW = ('get Pascal-VOC 2012 and SBD with `cagnet.data.download.fetch("voc", ROOT)` '
       "(VOCtrainval_11-May-2012.tar and benchmark.tgz, extracted into ROOT)")
_EXPECT = "Pascal-VOC class indices 0-20 and 255"


def voc_palette() -> np.ndarray:
    """The Pascal-VOC colour map, ``(256, 3)`` uint8 (class 0 black, 1 dark red, ...)."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for k in range(256):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[k] = (r, g, b)
    return pal


def _rgb_to_index(rgb: np.ndarray, path: Path) -> np.ndarray:
    """An RGB-rendered VOC label -> class indices through the VOC colour map."""
    pal = voc_palette().astype(np.int64)
    codes = {int(r) << 16 | int(g) << 8 | int(b): k for k, (r, g, b) in enumerate(pal[:21])}
    codes[255 << 16 | 255 << 8 | 255] = 255  # some tools render the void class white
    codes[224 << 16 | 224 << 8 | 192] = 255  # the palette's void colour
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    values, inverse = np.unique(flat, return_inverse=True)
    unknown = [v for v in values.tolist() if v not in codes]
    if unknown:
        shown = [((v >> 16) & 255, (v >> 8) & 255, v & 255) for v in unknown[:5]]
        raise DataError(f"label {path} has colours {shown} that are not Pascal-VOC class "
                        "colours; use the original SegmentationClass PNGs")
    return np.array([codes[v] for v in values.tolist()], dtype=np.uint8)[inverse].reshape(
        flat.shape)


def read_sbd_mat(path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/<id>.mat`` file as ``(H, W)`` uint8."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        seg = mat["GTcls"].Segmentation
    except FileNotFoundError:
        raise DataError(f"label {path} does not exist; the SBD folder is incomplete ({HOW})"
                        ) from None
    except (KeyError, AttributeError):
        raise DataError(f"label {path} has no GTcls.Segmentation; it is not an SBD cls/ file "
                        f"({HOW})") from None
    except (ValueError, OSError, TypeError) as e:
        raise DataError(f"label {path} cannot be read ({e}); the file is corrupt: extract "
                        "benchmark.tgz again") from None
    seg = np.asarray(seg)
    if seg.ndim != 2:
        raise DataError(f"label {path}: GTcls.Segmentation has shape {seg.shape}, expected "
                        "(H, W); the file is not an SBD class segmentation")
    return seg.astype(np.uint8) if seg.max(initial=0) <= 255 else seg


def decode_voc_label(path: Path) -> np.ndarray:
    """A VOC label file (palette PNG, RGB PNG, or SBD .mat) -> ``(H, W)`` uint8 class ids."""
    if path.suffix == ".mat":
        label = read_sbd_mat(path)
    else:
        from PIL import Image

        try:
            with Image.open(path) as im:
                rgb = np.asarray(im) if im.mode == "RGB" else None
        except FileNotFoundError:
            raise DataError(f"label {path} does not exist; the dataset folder is incomplete "
                            f"({HOW})") from None
        except OSError as e:
            raise DataError(f"label {path} cannot be read ({e}); the file is corrupt: extract "
                            "it again from VOCtrainval_11-May-2012.tar") from None
        label = _rgb_to_index(rgb, path) if rgb is not None else read_png_indices(path)
    check_label_values(label, NUM_CLASSES, path, _EXPECT)
    return label


def find_voc(root: Path) -> tuple[Path, Path | None, Path | None]:
    """``(voc_dir, sbd_dir | None, aug_dir | None)`` under ``root``; DataError if VOC is absent."""
    voc = first_dir([root / "VOCdevkit" / "VOC2012", root / "VOC2012", root], "JPEGImages")
    if voc is None:
        raise DataError(f"no Pascal-VOC 2012 under {root} (looked for VOCdevkit/VOC2012/"
                        f"JPEGImages, VOC2012/JPEGImages, JPEGImages); {HOW}")
    sbd = first_dir([root / "benchmark_RELEASE" / "dataset", root / "SBD" / "dataset",
                     root / "SBD", root / "sbd" / "dataset", root / "sbd"], "cls")
    aug = first_dir([voc, root], "SegmentationClassAug")
    return voc, sbd, (aug / "SegmentationClassAug" if aug is not None else None)


def voc_samples(root: Path, split: str) -> list[Sample]:
    """The (image, label) files of split "train" (train_aug) or "test" (val)."""
    voc, sbd, aug = find_voc(root)
    seg_sets = voc / "ImageSets" / "Segmentation"
    val = read_lines(seg_sets / "val.txt")
    if split == "test":
        return [Sample(voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClass" / f"{i}.png")
                for i in val]
    ids = set(read_lines(seg_sets / "train.txt"))
    if sbd is not None:
        for name in ("train.txt", "val.txt"):
            ids |= set(read_lines(sbd / name))
    elif aug is not None:
        ids |= {p.stem for p in aug.glob("*.png")}
    else:
        warnings.warn(f"no SBD (benchmark_RELEASE/dataset/cls) or SegmentationClassAug under "
                      f"{root}: training on the 1,464 VOC train images instead of train_aug's "
                      f"10,582. {HOW}", stacklevel=3)
    ids -= set(val)
    samples = []
    for i in sorted(ids):
        image = voc / "JPEGImages" / f"{i}.jpg"
        if not image.is_file() and sbd is not None and (sbd / "img" / f"{i}.jpg").is_file():
            image = sbd / "img" / f"{i}.jpg"
        label = voc / "SegmentationClass" / f"{i}.png"
        if not label.is_file() and aug is not None and (aug / f"{i}.png").is_file():
            label = aug / f"{i}.png"
        elif not label.is_file() and sbd is not None:
            label = sbd / "cls" / f"{i}.mat"
        samples.append(Sample(image, label))
    return samples


def build_voc(dcfg: DataConfig, split: str, classes: ClassSplit) -> FileSegmentation:
    """The VOC dataset of ``split`` ("train" = train_aug, "test" = val)."""
    root = dataset_root(dcfg)
    samples = voc_samples(root, split)
    what = f"Pascal-VOC {'train_aug' if split == 'train' else 'val'}"
    require_files(samples, what, HOW)
    return FileSegmentation(samples, classes, dcfg, split == "train", decode_voc_label, what)
