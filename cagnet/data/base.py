"""What every dataset shares: the class split, where data lives, reading files safely.

A dataset item is ``(image, label)``: ``image`` a float tensor ``(3, H, W)`` normalised
with ``DataConfig.mean``/``std``, ``label`` a long tensor ``(H, W)`` of class ids with
``IGNORE = 255`` for pixels no loss or metric may look at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cagnet.config import DataConfig
from cagnet.errors import DataError

IGNORE = 255  # the ignore index of labels, losses and metrics


@dataclass
class ClassSplit:
    """Class names and which ids are seen, unseen and ignored.

    ``names[c]`` is the dataset's spelling of class ``c``. ``seen`` (S) and ``unseen`` (U)
    are the ids the classifier is scored on (``eval_classes`` = S + U, sorted). In training,
    the pixels of ``ignore_in_training`` (U, plus Pascal-VOC's background) become 255; in
    testing those of ``ignore_in_test`` (VOC's background in the CaGNet protocol) do.
    """

    dataset: str
    split: str
    names: list[str]
    unseen: list[int]
    seen: list[int]
    ignore_in_training: list[int]
    ignore_in_test: list[int] = field(default_factory=list)

    @property
    def eval_classes(self) -> list[int]:
        return sorted(self.seen + self.unseen)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def unseen_names(self) -> list[str]:
        return [self.names[c] for c in self.unseen]

    def seen_names(self) -> list[str]:
        return [self.names[c] for c in self.seen]

    def lut(self, train: bool) -> np.ndarray:
        """A 256-entry uint8 lookup table: class id -> id, or 255 where ignored."""
        table = np.arange(256, dtype=np.uint8)
        table[len(self.names):] = IGNORE
        table[self.ignore_in_training if train else self.ignore_in_test] = IGNORE
        return table


def data_home() -> Path:
    """``$CAGNET_DATA`` or ``~/.cache/cagnet/data``: where datasets are looked for and put."""
    return Path(os.environ.get("CAGNET_DATA", "~/.cache/cagnet/data")).expanduser()


def cache_home() -> Path:
    """``$CAGNET_CACHE`` or ``~/.cache/cagnet``: word vectors and embedding tables."""
    return Path(os.environ.get("CAGNET_CACHE", "~/.cache/cagnet")).expanduser()


def dataset_root(dcfg: DataConfig) -> Path:
    """``dcfg.root`` if given, else ``data_home() / dcfg.dataset``."""
    return Path(dcfg.root).expanduser() if dcfg.root else data_home() / dcfg.dataset


def image_to_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image as ``(H, W, 3)`` uint8 RGB.

    16-bit greyscale (``I;16``, e.g. a 16-bit PNG) and 32-bit integer images are rescaled from
    0-65535 to 0-255, float images from 0-1 (or 0-max), instead of being clipped to white.
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        top = 65535.0
        if im.mode == "F":
            top = max(float(a.max()), 1.0) if a.size else 1.0
        elif im.mode == "I" and a.size and a.max() > top:
            top = float(a.max())
        grey = np.floor(np.clip(a, 0, top) / top * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def too_large(path: Path, exc: Exception) -> str:
    """The message for an image over Pillow's decompression-bomb limit."""
    return (f"image {path} is too large to open safely: {str(exc).rstrip('.')} (Pillow's "
            "guard against decompression bombs); resize it")


def read_image(path: Path) -> np.ndarray:
    """An RGB image as a ``(H, W, 3)`` uint8 array; a DataError names an unreadable file."""
    try:
        with Image.open(path) as im:
            return image_to_rgb(im)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist; the dataset folder is incomplete "
                        "(run `python -m cagnet data check` on it)") from None
    except Image.DecompressionBombError as e:
        raise DataError(too_large(path, e)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"image {path} cannot be read ({e}); the file is corrupt or "
                        "truncated: extract it again from the dataset's archive") from None


def read_png_indices(path: Path) -> np.ndarray:
    """The raw pixel values of a single-channel (palette 'P' or grey 'L') PNG, ``(H, W)`` uint8."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DataError(
                    f"label {path} is a {im.mode} image, not a single-channel label map "
                    "(palette or greyscale PNG of class indices); use the dataset's "
                    "original annotation files")
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"label {path} does not exist; the dataset folder is incomplete "
                        "(run `python -m cagnet data check` on it)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"label {path} cannot be read ({e}); the file is corrupt or "
                        "truncated: extract it again from the dataset's archive") from None


def check_label_values(label: np.ndarray, num_values: int, path: Path, expected: str) -> None:
    """Raise a DataError naming ``path`` if ``label`` holds values outside ``[0, n) ∪ {255}``."""
    bad = (label >= num_values) & (label != IGNORE)
    if bad.any():
        values = sorted(int(v) for v in np.unique(label[bad]))[:10]
        raise DataError(f"label {path} has values {values} outside 0-{num_values - 1} and 255; "
                        f"expected {expected}. The file is not an annotation of this dataset "
                        "(or was converted wrongly): replace it with the original")


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a split list; a DataError if it is missing or empty."""
    if not path.is_file():
        raise DataError(f"split list {path} does not exist; the dataset folder is incomplete "
                        "(run `python -m cagnet data check` on it)")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split list {path} is empty; extract it again from the dataset's "
                        "archive")
    return ids
