"""Class lists of every dataset and the named seen/unseen splits.

Class ids are label values after decoding: ``names[c]`` is class ``c``.

- ``voc``: Pascal-VOC 2012, 21 classes, 0 = background (ignored in training and, in the
  CaGNet protocol, in testing: S and U are the 20 object classes).
- ``context``: Pascal-Context, the 33-class subset of CaGNet's release
  (``33_context_labels``; file value v in 1..33 is class v - 1, 0 = unlabelled -> 255).
- ``cocostuff``: COCO-Stuff 164k, 182 classes (``stuffthingmaps``: 0..181, 255 unlabelled),
  including the 11 thing ids COCO never annotates (absent classes are left out of the means).
- ``toy``: the synthetic world of `cagnet.data.toy`.

Splits: ``cagnet`` (the paper's, per dataset), ZS3Net's ``zs3-2`` ... ``zs3-10`` on VOC
(cumulative: cow, motorbike; + aeroplane, sofa; + cat, tvmonitor; + train, bottle;
+ chair, pottedplant) and the toy world's ``default``, ``alt`` and ``two``.
``DataConfig.unseen`` (class names) overrides the named split.
"""

from __future__ import annotations

import re

from cagnet.config import DataConfig
from cagnet.data.base import ClassSplit
from cagnet.data.toy import TOY_CLASSES, TOY_SPLITS
from cagnet.errors import ConfigError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

# CaGNet's Pascal-Context list (dataset/context/labels.txt of the official code, the order
# of 33_labels.txt of the Pascal-Context release): the 20 VOC objects, then 13 stuff classes.
CONTEXT_CLASSES = VOC_CLASSES[1:] + (
    "sky", "grass", "ground", "road", "building", "tree", "water", "mountain", "wall",
    "floor", "track", "keyboard", "ceiling",
)

# COCO-Stuff labels.txt (ids 1..182) in stuffthingmaps order (file value = id - 1).
COCOSTUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "mirror", "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush", "banner", "blanket", "branch", "bridge",
    "building-other", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other",
    "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain",
    "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other",
    "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light",
    "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)

CLASSES = {"voc": VOC_CLASSES, "context": CONTEXT_CLASSES, "cocostuff": COCOSTUFF_CLASSES,
           "toy": TOY_CLASSES}
BACKGROUND = {"voc": (0,)}  # ignored in training and testing

_ZS3 = ("cow", "motorbike", "aeroplane", "sofa", "cat", "tvmonitor", "train", "bottle",
        "chair", "pottedplant")
SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "voc": {
        "cagnet": ("pottedplant", "sheep", "sofa", "train", "tvmonitor"),
        **{f"zs3-{n}": _ZS3[:n] for n in (2, 4, 6, 8, 10)},
    },
    "context": {"cagnet": ("cow", "motorbike", "sofa", "cat")},
    "cocostuff": {"cagnet": (
        "cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors",
        "cardboard", "clouds", "grass", "playingfield", "river", "road", "tree",
        "wall-concrete")},
    "toy": dict(TOY_SPLITS),
}


def _key(name: str) -> str:
    """Spelling-insensitive key: 'Potted plant', 'potted_plant', 'pottedplant' -> 'pottedplant'."""
    return re.sub(r"[\s_\-/]+", "", name.lower())


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of ``dataset`` (index = class id)."""
    try:
        return CLASSES[dataset]
    except KeyError:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of "
                          f"{', '.join(CLASSES)}") from None


def class_ids(dataset: str, names: tuple[str, ...] | list[str]) -> list[int]:
    """Ids of class ``names`` of ``dataset``; spelling variants ('tv monitor') are accepted."""
    all_names = class_names(dataset)
    lookup = {_key(n): i for i, n in enumerate(all_names)}
    if dataset == "voc":
        lookup.update({"airplane": 1, "tv": 20, "motorcycle": 14})
    ids, unknown = [], []
    for n in names:
        i = lookup.get(_key(n))
        if i is None:
            unknown.append(n)
        else:
            ids.append(i)
    if unknown:
        raise ConfigError(f"unknown {dataset} class name(s) {unknown}; valid names: "
                          f"{', '.join(all_names)}")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"unseen classes {list(names)} name a class twice")
    return ids


def class_split(dcfg: DataConfig) -> ClassSplit:
    """The `ClassSplit` of ``dcfg``: ``dcfg.unseen`` if given, else the named ``dcfg.split``."""
    names = class_names(dcfg.dataset)
    background = list(BACKGROUND.get(dcfg.dataset, ()))
    if dcfg.unseen is not None:
        split_name = "custom"
        unseen = class_ids(dcfg.dataset, tuple(dcfg.unseen))
    else:
        splits = SPLITS[dcfg.dataset]
        if dcfg.split not in splits:
            raise ConfigError(f"unknown split {dcfg.split!r} for {dcfg.dataset}; choose one of "
                              f"{', '.join(splits)} (or set data.unseen to class names)")
        split_name = dcfg.split
        unseen = class_ids(dcfg.dataset, splits[dcfg.split])
    if set(unseen) & set(background):
        raise ConfigError(f"{names[background[0]]!r} cannot be unseen: it is ignored in "
                          f"{dcfg.dataset}")
    unseen = sorted(unseen)
    seen = [c for c in range(len(names)) if c not in unseen and c not in background]
    if not seen:
        raise ConfigError(f"every {dcfg.dataset} class is unseen; leave some seen classes")
    return ClassSplit(dataset=dcfg.dataset, split=split_name, names=list(names), unseen=unseen,
                      seen=seen, ignore_in_training=sorted(unseen + background),
                      ignore_in_test=background)
