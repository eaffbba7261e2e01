"""What the official CaGNet release fixes: its commit, class lists and classifier order.

The official code (``bcmi/CaGNet-Zero-Shot-Semantic-Segmentation``, pinned at
`OFFICIAL_COMMIT`) numbers the classes of a dataset by ``dataset/<folder>/labels_refined.txt``
(`OFFICIAL_LABELS`): the rows of its word-vector pickles follow that list. Its classifier
(``dis.cls``, ``out_dim_cls`` outputs) orders classes as ``split/seen_cls.npy`` then
``split/novel_cls.npy`` (tools.py ``get_split``: ``visible_classes_test``), plus one last
output that the configs call ``bg`` and no label ever targets (`OFFICIAL_ORDER`).

`official_ids` maps this package's class names onto official label ids by spelling
(``pottedplant`` = ``potted_plant``; ``tvmonitor`` = ``tv``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cagnet.data.splits import COCOSTUFF_CLASSES, VOC_CLASSES
from cagnet.errors import DataError

OFFICIAL_REPO = "bcmi/CaGNet-Zero-Shot-Semantic-Segmentation"
OFFICIAL_COMMIT = "249305ba28fef1db9057d0471507200b55069af8"
# this package's dataset name -> the official dataset/<folder>
OFFICIAL_FOLDERS = {"voc": "voc12", "context": "context", "cocostuff": "cocostuff"}

_VOC_OBJECTS = tuple(n for n in VOC_CLASSES[1:16]) + (
    "potted_plant", "sheep", "sofa", "train", "tv")
OFFICIAL_LABELS: dict[str, tuple[str, ...]] = {
    # dataset/voc12/labels_refined.txt
    "voc": ("background",) + _VOC_OBJECTS,
    # dataset/context/labels_refined.txt
    "context": ("unlabel",) + _VOC_OBJECTS + (
        "sky", "grass", "ground", "road", "building", "tree", "water", "mountain", "wall",
        "floor", "track", "keyboard", "ceiling"),
    # dataset/cocostuff/labels_refined.txt: the COCO-Stuff names and order of this package
    "cocostuff": COCOSTUFF_CLASSES,
}
# SHA-256 of each labels_refined.txt ("<id>\t<name>" lines, no final newline): the lists
# above reproduce these files byte for byte
OFFICIAL_LABELS_SHA256 = {
    "voc": "c9364e42ce6b779089266769fc7195e7036b935b804f7cdb9f6e00d571f10cad",
    "context": "bcf45e875fa2e4644e337c13c7413623eed7eb20b275beb17ee18e655c72bcfd",
    "cocostuff": "f9b10863fe477f8ff759883b39cdc2132fb6ca8a097bbca943a6b19ba488f3e8",
}

# dataset/cocostuff/split/novel_cls.npy; its seen_cls.npy lists the other ids in order,
# except these twelve, which come last
_COCO_NOVEL = (20, 24, 32, 33, 40, 56, 86, 99, 105, 123, 144, 147, 148, 168, 171)
_COCO_SEEN_LAST = (3, 21, 38, 45, 51, 61, 75, 81, 93, 129, 136, 139)
_COCO_SEEN = tuple(i for i in range(182) if i not in _COCO_NOVEL + _COCO_SEEN_LAST)
# official label ids in classifier order: split/seen_cls.npy + split/novel_cls.npy
OFFICIAL_ORDER: dict[str, tuple[int, ...]] = {
    "voc": tuple(range(1, 16)) + (16, 17, 18, 19, 20),
    "context": (1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25,
                26, 27, 28, 29, 30, 31, 32, 33) + (10, 14, 18, 8),
    "cocostuff": _COCO_SEEN + _COCO_SEEN_LAST + _COCO_NOVEL,
}
# how many of OFFICIAL_ORDER are novel (the last ones)
OFFICIAL_NUM_NOVEL = {"voc": 5, "context": 4, "cocostuff": 15}
_ALIASES = {"tvmonitor": "tv"}


def _key(name: str) -> str:
    k = re.sub(r"[\s_\-/]+", "", name.lower())
    return _ALIASES.get(k, k)


def official_ids(dataset: str, names: Sequence[str]) -> list[int]:
    """Official label ids (rows of ``labels_refined.txt``) of class ``names`` of ``dataset``.

    A DataError names the first class without an official counterpart.
    """
    if dataset not in OFFICIAL_LABELS:
        raise DataError(f"the official release has no {dataset!r} classes; it covers "
                        f"{', '.join(OFFICIAL_LABELS)}")
    lookup = {_key(n): i for i, n in enumerate(OFFICIAL_LABELS[dataset])}
    ids = []
    for name in names:
        if _key(name) not in lookup:
            raise DataError(f"class {name!r} is not an official {dataset} class (e.g. "
                            f"{', '.join(OFFICIAL_LABELS[dataset][1:6])}, ...); use "
                            "data.embeddings='gensim' for other class names")
        ids.append(lookup[_key(name)])
    return ids
