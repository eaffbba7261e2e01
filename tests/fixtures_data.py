"""Builders of tiny datasets in the exact on-disk formats of the real ones.

Each label map is a background (or first class) field with one rectangle per listed
class; VOC maps also get a 255 boundary ring around each rectangle, as VOC's do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from cagnet.data.voc import voc_palette

H, W = 30, 40  # image height, width


def label_map(classes: list[int], fill: int = 0, ring: bool = False, h: int = H,
              w: int = W) -> np.ndarray:
    """``(h, w)`` uint8: ``fill`` everywhere, then one 6x8 rectangle per class of ``classes``."""
    lab = np.full((h, w), fill, dtype=np.uint8)
    for k, c in enumerate(classes):
        y, x = 3 + 9 * (k // 3), 3 + 12 * (k % 3)
        if ring:
            lab[y - 1:y + 7, x - 1:x + 9] = 255
        lab[y:y + 6, x:x + 8] = c
    return lab


def write_jpeg(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=90)


def write_palette_png(path: Path, label: np.ndarray) -> None:
    """A VOC-style palette ('P' mode) PNG of class indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label, mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    im.save(path)


def write_grey_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label, mode="L").save(path)


def write_sbd_mat(path: Path, label: np.ndarray) -> None:
    """An SBD ``cls/<id>.mat``: struct GTcls with Segmentation, Boundaries, CategoriesPresent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    present = np.array([c for c in np.unique(label) if c not in (0, 255)], dtype=np.uint8)
    boundaries = np.empty((20, 1), dtype=object)
    for i in range(20):
        boundaries[i, 0] = np.zeros(label.shape, dtype=np.uint8)
    savemat(str(path), {"GTcls": {"Segmentation": label, "Boundaries": boundaries,
                                  "CategoriesPresent": present}})


# ids -> the classes drawn in their label maps (VOC ids: 8 cat, 12 dog, 15 person, 17 sheep,
# 18 sofa, 20 tvmonitor, 10 cow)
VOC_TRAIN = {"2007_000001": [15, 17], "2007_000002": [12]}
VOC_VAL = {"2007_000100": [15, 18], "2007_000101": [8, 20]}
SBD_TRAIN = {"2008_000001": [10, 15], "2007_000001": [15, 17]}  # the second is VOC train too
SBD_VAL = {"2008_000002": [17], "2007_000100": [15, 18]}  # the second is VOC val: left out


def make_voc(root: Path, sbd: bool = True) -> Path:
    """Pascal-VOC 2012 + SBD under ``root`` (VOCdevkit/VOC2012, benchmark_RELEASE/dataset)."""
    voc = root / "VOCdevkit" / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", VOC_TRAIN), ("val", VOC_VAL)):
        (sets / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
        for n, (i, classes) in enumerate(ids.items()):
            write_jpeg(voc / "JPEGImages" / f"{i}.jpg", seed=n)
            write_palette_png(voc / "SegmentationClass" / f"{i}.png",
                              label_map(classes, ring=True))
    if sbd:
        ds = root / "benchmark_RELEASE" / "dataset"
        ds.mkdir(parents=True, exist_ok=True)
        for name, ids in (("train", SBD_TRAIN), ("val", SBD_VAL)):
            (ds / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
            for n, (i, classes) in enumerate(ids.items()):
                write_sbd_mat(ds / "cls" / f"{i}.mat", label_map(classes))
                if not (voc / "JPEGImages" / f"{i}.jpg").exists():
                    write_jpeg(voc / "JPEGImages" / f"{i}.jpg", seed=10 + n)
    return root


# Pascal-Context file values: v = class id + 1 (8 = cat, 22 = grass, 21 = sky, 10 = cow)
CONTEXT_TRAIN = {"2008_000010": [22, 8], "2008_000011": [21, 10]}
CONTEXT_VAL = {"2008_000020": [8, 22]}


def make_context(root: Path) -> Path:
    """Pascal-Context (33 classes): VOC2010 images and lists + 33_context_labels PNGs."""
    voc = root / "VOCdevkit" / "VOC2010"
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", CONTEXT_TRAIN), ("val", CONTEXT_VAL)):
        (main / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
        for n, (i, values) in enumerate(ids.items()):
            write_jpeg(voc / "JPEGImages" / f"{i}.jpg", seed=n)
            write_grey_png(root / "33_context_labels" / f"{i}.png", label_map(values, fill=0))
    return root


# COCO-Stuff file values = class ids (0 person, 20 cow, 123 grass, 171 wall-concrete)
COCO_TRAIN = {"000000000009": [0, 20], "000000000025": [171]}
COCO_VAL = {"000000000139": [20, 0]}


def make_cocostuff(root: Path) -> Path:
    """COCO-Stuff 164k: images/{train,val}2017/*.jpg, annotations/{train,val}2017/*.png."""
    for folder, ids in (("train2017", COCO_TRAIN), ("val2017", COCO_VAL)):
        for n, (i, classes) in enumerate(ids.items()):
            write_jpeg(root / "images" / folder / f"{i}.jpg", seed=n)
            lab = label_map(classes, fill=123)
            lab[0, :5] = 255  # unlabelled pixels
            write_grey_png(root / "annotations" / folder / f"{i}.png", lab)
    return root


def word_vector_table(words: list[str], dim: int, seed: int) -> np.ndarray:
    """Reproducible ``(len(words), dim)`` float32 vectors."""
    return np.random.default_rng(seed).standard_normal((len(words), dim)).astype(np.float32)


def write_word_vectors(path: Path, words: list[str], vectors: np.ndarray,
                       kind: str = "text") -> Path:
    """Save vectors with gensim as word2vec ``text`` / ``binary`` or gensim ``kv``."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(words, vectors)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "kv":
        kv.save(str(path))
    else:
        kv.save_word2vec_format(str(path), binary=kind == "binary")
    return path
