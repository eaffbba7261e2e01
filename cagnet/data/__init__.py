"""Datasets: the toy world and the paper's Pascal-VOC, Pascal-Context and COCO-Stuff.

``build_dataset(dcfg, "train" | "test")`` returns a torch Dataset of
``(image (3, H, W) float normalised, label (H, W) long, 255 = ignore)`` with an attribute
``classes`` (a `ClassSplit`); ``class_split(dcfg)`` gives the classes without any data.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from cagnet.config import DataConfig
from cagnet.data.base import IGNORE, ClassSplit, cache_home, data_home, dataset_root
from cagnet.data.check import check_dataset, format_report
from cagnet.data.splits import CLASSES, SPLITS, class_ids, class_names, class_split
from cagnet.data.toy import ToyWorld, render_toy, toy_word_vectors, toy_world_figure
from cagnet.errors import ConfigError

DATASETS = tuple(CLASSES)


def build_dataset(dcfg: DataConfig, split: str) -> Dataset:
    """The dataset of ``dcfg`` for ``split``: "train" (augmented, unseen -> 255) or "test"."""
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose train or test")
    if dcfg.dataset == "toy":
        return ToyWorld(dcfg, split)
    classes = class_split(dcfg)  # validates the dataset name and the unseen classes
    if dcfg.dataset == "voc":
        from cagnet.data.voc import build_voc

        return build_voc(dcfg, split, classes)
    if dcfg.dataset == "context":
        from cagnet.data.context import build_context

        return build_context(dcfg, split, classes)
    from cagnet.data.cocostuff import build_cocostuff

    return build_cocostuff(dcfg, split, classes)


__all__ = [
    "CLASSES", "DATASETS", "IGNORE", "SPLITS", "ClassSplit", "ToyWorld", "build_dataset",
    "cache_home", "check_dataset", "class_ids", "class_names", "class_split", "data_home",
    "dataset_root", "format_report", "render_toy", "toy_word_vectors", "toy_world_figure",
]
