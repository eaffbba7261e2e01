"""Datasets read from image and label files (Pascal-VOC, Pascal-Context, COCO-Stuff)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cagnet.config import DataConfig
from cagnet.data.base import ClassSplit, read_image
from cagnet.data.transforms import test_transform, train_transform
from cagnet.errors import DataError


@dataclass(frozen=True)
class Sample:
    """One image file and the file holding its label."""

    image: Path
    label: Path


def require_files(samples: Sequence[Sample], what: str, how: str) -> None:
    """Raise a DataError if any image or label file of ``samples`` is missing."""
    missing = [p for s in samples for p in (s.image, s.label) if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise DataError(f"{len(missing)} file(s) of the {what} split are missing (e.g. {shown}); "
                        f"{how}")


def first_dir(candidates: Sequence[Path], inside: str) -> Path | None:
    """The first of ``candidates`` that has a sub-folder (or file) ``inside``."""
    for c in candidates:
        if (c / inside).exists():
            return c
    return None


class FileSegmentation(Dataset):
    """A segmentation dataset read from files: ``decode(label_path) -> (H, W)`` uint8 class ids.

    ``train=True``: random scale, pad + random crop to ``dcfg.crop``, flip, and the
    ``ignore_in_training`` pixels set to 255. ``train=False``: full resolution, no crop,
    ``ignore_in_test`` pixels set to 255.
    """

    def __init__(self, samples: Sequence[Sample], classes: ClassSplit, dcfg: DataConfig,
                 train: bool, decode: Callable[[Path], np.ndarray], what: str) -> None:
        if not samples:
            raise DataError(f"the {what} split has no images; check the split lists and "
                            "folders (run `python -m cagnet data check` on the dataset)")
        self.samples = list(samples)
        self.classes = classes
        self.dcfg = dcfg
        self.train = train
        self.decode = decode
        self.what = what
        self._lut = torch.from_numpy(classes.lut(train))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``(H, W, 3)`` uint8 image and ``(H, W)`` uint8 class ids (255 = void)."""
        s = self.samples[index]
        image = read_image(s.image)
        label = self.decode(s.label)
        if label.shape != image.shape[:2]:
            raise DataError(f"label {s.label} is {label.shape[1]}x{label.shape[0]} but image "
                            f"{s.image} is {image.shape[1]}x{image.shape[0]}; they must match: "
                            "replace the mismatched file with the original")
        return image, label

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.load(index)
        img = torch.tensor(image).permute(2, 0, 1)  # (3, H, W) uint8, a copy PIL cannot touch
        lab = self._lut[torch.tensor(label).long()]  # (H, W) uint8
        if self.train:
            return train_transform(img, lab, self.dcfg)
        return test_transform(img, lab, self.dcfg)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.what}, {len(self)} images, "
                f"{'train' if self.train else 'test'}, unseen={self.classes.unseen_names()})")
