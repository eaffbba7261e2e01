"""The toy world: a synthetic segmentation dataset in which zero-shot transfer is real.

Each image (64x64 by default) is one or two *stuff* fields (grass, sand, water, snow: a
colour and a texture, two of them split by a wavy horizon) with one to four *things* on
top: a coloured shape, named by two real words (``"red circle"``). There are
4 stuff + 4 colours x 4 shapes = 20 classes:

====  ==========================================================================
ids   classes
====  ==========================================================================
0-3   grass, sand, water, snow
4-19  red/green/blue/yellow x circle/square/triangle/cross (id = 4 + 4 colour + shape)
====  ==========================================================================

The default unseen classes form a Latin square, *red cross, green triangle, blue square,
yellow circle*: every colour and every shape is unseen exactly once and seen three times,
so an unseen class shares both its words (and its look) with seen classes. Other named
splits: ``alt`` (*red circle, green square, blue cross, yellow triangle*) and ``two``
(*red cross, blue square*).

Context matters: each shape has a favourite stuff (circle-water, square-sand,
triangle-snow, cross-grass); an object on a stuff field is its favourite shape with
probability 0.7 (0.1 for each other shape), so P(favourite stuff | shape) = 0.7 too.
Objects are 16-28 px across (at 64 px; they scale with the image), may overlap, and are
slightly rotated; colours are jittered per object, stuff per image, brightness per
image, and Gaussian noise is added per pixel.

Generation is vectorised numpy, in fixed chunks of 64 images each drawn from its own
``SeedSequence([data_seed, stream, chunk])``: image ``i`` of a split depends only on
(seed, split, i, image size), not on how many images are asked for. A `ToyWorld`
dataset renders its whole split into memory when it is built (uint8: 2,000 images of
64x64 take 33 MB and well under a second), which is faster for training than rendering
per item.

The class embeddings come from two small word-vector tables, ``toy-a`` and ``toy-b``
(32-d each), written in word2vec text format and read back with gensim exactly like
real word vectors (see `toy_word_vectors`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cagnet.config import DataConfig
from cagnet.data.base import cache_home
from cagnet.data.transforms import test_transform, train_transform

if TYPE_CHECKING:
    from gensim.models import KeyedVectors
    from matplotlib.figure import Figure

STUFF = ("grass", "sand", "water", "snow")
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle", "cross")
TOY_CLASSES = STUFF + tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
FAVOURITE_STUFF = {"circle": "water", "square": "sand", "triangle": "snow", "cross": "grass"}
PRIOR = 0.7  # P(shape = the stuff's favourite | the stuff under the object's centre); default
TOY_SPLITS = {
    "default": ("red cross", "green triangle", "blue square", "yellow circle"),
    "alt": ("red circle", "green square", "blue cross", "yellow triangle"),
    "two": ("red cross", "blue square"),
}
MAX_OBJECTS = 4
SIZE_RANGE = (16.0, 28.0)  # object extent in pixels at 64 px (scaled with the image)
MAX_ROTATION = np.pi / 8  # objects are rotated by up to this angle either way
CHUNK = 64  # images per random stream; fixed so that image i never depends on the count
STREAMS = {"train": 0, "test": 1}


def world_constants(dcfg: DataConfig | None = None) -> dict:
    """The constants that shape the toy world of ``dcfg``; a run trained on another world
    is stale."""
    prior = PRIOR if dcfg is None else dcfg.toy_prior
    constants = {"prior": prior, "max_objects": MAX_OBJECTS, "size_range": list(SIZE_RANGE),
                 "max_rotation": float(MAX_ROTATION), "splits": TOY_SPLITS,
                 "lighting": _LIGHT_GAIN.tolist() + _LIGHT_OFFSET.tolist()}
    if dcfg is not None and dcfg.toy_paint_shift:
        constants["paint_shift"] = PAINT_SHIFT.tolist()
    return constants


# RGB base colours (0-255); things are saturated, stuff is muted and textured.
_THING_RGB = np.array([[215, 45, 40], [45, 185, 65], [45, 75, 225], [235, 205, 35]],
                      dtype=np.float32)
_STUFF_RGB = np.array([[85, 140, 60], [205, 180, 130], [55, 110, 165], [225, 230, 240]],
                      dtype=np.float32)
_TEXTURE_AMP = np.array([0.20, 0.10, 0.16, 0.05], dtype=np.float32)
# Light from the stuff a thing lies on (grass, sand, water, snow): rgb * gain + offset, blended
# in with strength `DataConfig.toy_lighting`. In green shade on grass, warm on sand, dark and
# blue under water, pale on snow: one class looks different in each context.
_LIGHT_GAIN = np.array([[0.70, 0.85, 0.60], [1.05, 0.95, 0.75], [0.45, 0.55, 0.80],
                        [0.55, 0.55, 0.55]], dtype=np.float32)
_LIGHT_OFFSET = np.array([[0, 25, 0], [30, 20, 0], [0, 15, 60], [110, 115, 120]],
                         dtype=np.float32)
# With `DataConfig.toy_paint_shift`, a paint under the light of stuff s shows the colour of
# paint (c + PAINT_SHIFT[s]) % 4: true colours on grass, each paint one step on on sand, two
# under water, three on snow. Within one context the four paints still differ; across
# contexts every colour is every paint, so the colour word needs the context.
PAINT_SHIFT = np.array([0, 1, 2, 3])
# the shape (index) that prefers each stuff (index): grass->cross, sand->square, ...
FAVOURITE_SHAPE = np.array([SHAPES.index(next(s for s, f in FAVOURITE_STUFF.items() if f == st))
                             for st in STUFF])


def thing_class(colour: int, shape: int) -> int:
    """Class id of the thing with colour index ``colour`` and shape index ``shape``."""
    return len(STUFF) + len(SHAPES) * colour + shape


@dataclass
class ToyImages:
    """Rendered toy images: ``images (N, 3, H, W)`` uint8, ``labels (N, H, W)`` uint8 class ids
    (every pixel labelled), ``objects (N, 4, 4)`` int16 rows (shape, colour, stuff under the
    centre, class id) per object slot, -1 for an empty slot (a hidden object keeps its row)."""

    images: np.ndarray
    labels: np.ndarray
    objects: np.ndarray


def _render_chunk(rng: np.random.Generator, n: int, size: int,
                  lighting: float = 0.0, paint_shift: bool = False,
                  prior: float = PRIOR) -> ToyImages:
    S, m, k = size, MAX_OBJECTS, size / 64.0
    f32 = np.float32
    grid = np.arange(S, dtype=f32) + 0.5
    yy, xx = grid[:, None], grid[None, :]  # (S, 1), (1, S)

    # stuff: one field, or two split by a tilted wavy horizon
    two = rng.random(n) < 0.6
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    h0 = rng.uniform(0.3, 0.7, n) * S
    tilt = rng.uniform(-0.25, 0.25, n)
    amp = rng.uniform(0.0, 3.0, n) * k
    freq = rng.uniform(0.05, 0.2, n) / k
    phase = rng.uniform(0, 2 * np.pi, n)
    horizon = (h0[:, None] + tilt[:, None] * (grid[None] - S / 2)
               + amp[:, None] * np.sin(freq[:, None] * grid[None] + phase[:, None]))  # (n, S)
    lower = (yy[None] > horizon[:, None, :].astype(f32)) & two[:, None, None]  # (n, S, S)
    stuff = np.where(lower, b.astype(np.uint8)[:, None, None],
                     a.astype(np.uint8)[:, None, None])  # (n, S, S) class ids

    # things: shape chosen given the stuff under the centre (the co-occurrence prior)
    count = rng.integers(1, m + 1, n)
    valid = np.arange(m)[None] < count[:, None]  # (n, m)
    cx = rng.uniform(0.1, 0.9, (n, m)) * S
    cy = rng.uniform(0.1, 0.9, (n, m)) * S
    home = stuff[np.arange(n)[:, None], cy.astype(int), cx.astype(int)]  # (n, m)
    favourite = FAVOURITE_SHAPE[home]
    shape = np.where(rng.random((n, m)) < prior, favourite,
                     (favourite + 1 + rng.integers(0, 3, (n, m))) % 4)
    colour = rng.integers(0, 4, (n, m))
    cls = thing_class(colour, shape)
    radius = (rng.uniform(*SIZE_RANGE, (n, m)) * k / 2).astype(f32)[..., None, None]
    theta = rng.uniform(-MAX_ROTATION, MAX_ROTATION, (n, m))
    cos = np.cos(theta).astype(f32)[..., None, None]
    sin = np.sin(theta).astype(f32)[..., None, None]
    # each object is drawn in its own P x P patch around its centre (P holds the largest)
    P = 2 * int(np.ceil(1.3 * SIZE_RANGE[1] / 2 * k)) + 3
    px = np.floor(cx).astype(int)[..., None] + np.arange(P) - P // 2  # (n, m, P) columns
    py = np.floor(cy).astype(int)[..., None] + np.arange(P) - P // 2  # (n, m, P) rows
    dx = (px + 0.5 - cx[..., None]).astype(f32)[:, :, None, :]  # (n, m, 1, P)
    dy = (py + 0.5 - cy[..., None]).astype(f32)[:, :, :, None]  # (n, m, P, 1)
    u = cos * dx + sin * dy  # (n, m, P, P), object frame
    v = cos * dy - sin * dx
    au, av = np.abs(u), np.abs(v)
    rt = 1.3 * radius  # triangle circumradius; apex up (v < 0)
    arm = 0.38 * radius
    masks = np.where(
        (shape == 0)[..., None, None], u * u + v * v <= radius * radius,
        np.where((shape == 1)[..., None, None], np.maximum(au, av) <= 0.8 * radius,
                 np.where((shape == 2)[..., None, None],
                          (v <= rt / 2) & (0.866 * au - 0.5 * v <= rt / 2),
                          ((au <= arm) & (av <= radius)) | ((av <= arm) & (au <= radius)))))
    masks &= (((py >= 0) & (py < S))[..., :, None] & ((px >= 0) & (px < S))[..., None, :]
              & valid[..., None, None])

    # stuff appearance: base colour (jittered per image and field) x (1 + amp * texture)
    X, Y = xx / k, yy / k  # coordinates in 64-px units
    scale = rng.uniform(0.8, 1.25, n).astype(f32)[:, None, None]
    ph1 = rng.uniform(0, 2 * np.pi, n).astype(f32)[:, None, None]
    ph2 = rng.uniform(0, 2 * np.pi, n).astype(f32)[:, None, None]
    t_grass = np.sin(2 * np.pi * X / (4.5 * scale) + 1.5 * np.sin(2 * np.pi * Y / 16 + ph1))
    t_sand = rng.random((n, S, S), dtype=f32) * 2 - 1  # speckle
    t_water = np.sin(2 * np.pi * Y / (7 * scale) + 1.2 * np.sin(2 * np.pi * X / 20 + ph2))
    t_snow = np.sin(X / 9 + ph1) * np.sin(Y / 11 + ph2)
    texture = np.where(stuff == 0, t_grass, np.where(stuff == 1, t_sand,
                                                     np.where(stuff == 2, t_water, t_snow)))
    field_rgb = _STUFF_RGB[np.stack([a, b], 1)] + rng.normal(0, 8, (n, 2, 3)).astype(f32)
    img = np.where(lower[:, None], field_rgb[:, 1, :, None, None],
                   field_rgb[:, 0, :, None, None])  # (n, 3, S, S)
    img *= (1 + _TEXTURE_AMP[stuff] * texture)[:, None]
    label = stuff

    # paint the things in slot order (later ones on top), shaded from top to bottom
    shown = (colour + PAINT_SHIFT[home]) % 4 if paint_shift else colour
    thing_rgb = _THING_RGB[shown] + rng.normal(0, 12, (n, m, 3)).astype(f32)
    lit = thing_rgb * _LIGHT_GAIN[home] + _LIGHT_OFFSET[home]  # (n, m, 3) lit by its stuff
    thing_rgb = (1 - lighting) * thing_rgb + lighting * lit
    for j in range(m):
        bi, i, l = np.nonzero(masks[:, j])  # image, patch row, patch column
        ys, xs = py[bi, j, i], px[bi, j, l]
        label[bi, ys, xs] = cls[bi, j]
        shade = 1.08 - 0.16 * np.clip(v[bi, j, i, l] / radius[bi, j, 0, 0], -1, 1)
        img[bi, :, ys, xs] = thing_rgb[bi, j] * shade[:, None]

    # global brightness and per-pixel luminance noise
    img *= rng.uniform(0.85, 1.15, n).astype(f32)[:, None, None, None]
    img += (rng.random((n, 1, S, S), dtype=f32) - 0.5) * 20.0  # uniform, std 5.8
    objects = np.stack([shape, colour, home, cls], axis=-1).astype(np.int16)
    objects[~valid] = -1
    return ToyImages(np.clip(img, 0, 255).astype(np.uint8), label, objects)


def render_toy(count: int, image_size: int = 64, seed: int = 0, split: str = "train",
               lighting: float = 0.0, paint_shift: bool = False,
               prior: float = PRIOR) -> ToyImages:
    """The first ``count`` images of the toy ``split`` ("train" | "test") for ``seed``;
    ``lighting`` in [0, 1]: how strongly a thing takes the light of the stuff it lies on;
    ``paint_shift``: each stuff's light shows a paint as another paint (`PAINT_SHIFT`);
    ``prior``: P(an object's shape is the favourite of the stuff under it), in [0, 1]."""
    if split not in STREAMS:
        raise ValueError(f"unknown toy split {split!r}; choose train or test")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= lighting <= 1.0:
        raise ValueError(f"lighting must lie in [0, 1], got {lighting}")
    if not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must lie in [0, 1], got {prior}")
    parts = []
    for chunk in range(-(-count // CHUNK)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, STREAMS[split], chunk]))
        parts.append(_render_chunk(rng, CHUNK, image_size, lighting, paint_shift, prior))
    if not parts:
        S = image_size
        return ToyImages(np.zeros((0, 3, S, S), np.uint8), np.zeros((0, S, S), np.uint8),
                         np.zeros((0, MAX_OBJECTS, 4), np.int16))
    return ToyImages(*(np.concatenate([getattr(p, f) for p in parts])[:count]
                       for f in ("images", "labels", "objects")))


class ToyWorld(Dataset):
    """The toy dataset of ``dcfg`` (``num_train`` or ``num_test`` images of ``image_size``).

    Items are ``(image (3, H, W) float normalised, label (H, W) long)``. "train": unseen pixels
    are 255 (the images that show them are kept), then `train_transform` (flip; scale and
    crop if ``dcfg`` asks for them — the toy preset does not). "test": every class kept.
    ``images``/``labels``/``objects`` hold the raw rendering (see `ToyImages`).
    """

    def __init__(self, dcfg: DataConfig, split: str = "train") -> None:
        from cagnet.data.splits import class_split

        if split not in STREAMS:
            raise ValueError(f"unknown split {split!r}; choose train or test")
        self.dcfg = dcfg
        self.split = split
        self.train = split == "train"
        self.classes = class_split(dcfg)
        n = dcfg.num_train if self.train else dcfg.num_test
        if n <= 0:
            raise ValueError(f"the toy {split} split needs at least one image; "
                             f"num_{split} = {n}")
        raw = render_toy(n, dcfg.image_size, dcfg.data_seed, split, dcfg.toy_lighting,
                         dcfg.toy_paint_shift, dcfg.toy_prior)
        self.objects = raw.objects
        self.images = torch.from_numpy(raw.images)  # (N, 3, H, W) uint8
        self.labels = torch.from_numpy(raw.labels)  # (N, H, W) uint8, all classes
        self._lut = torch.from_numpy(self.classes.lut(self.train))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        label = self._lut[self.labels[index].long()]
        if self.train:
            return train_transform(image, label, self.dcfg)
        return test_transform(image, label, self.dcfg)

    def __repr__(self) -> str:
        return (f"ToyWorld({self.split}, {len(self)} images of {self.dcfg.image_size}px, "
                f"seed={self.dcfg.data_seed}, unseen={self.classes.unseen_names()})")


# --------------------------------------------------------------------------- word vectors

TOY_SOURCES = ("toy-a", "toy-b")
TOY_VECTOR_DIM = 32
TOY_VECTOR_SEED = 2020
TOY_VECTOR_VERSION = 1  # part of the file name: bump when the construction changes
_LATENT = 16

# words beyond the class words, so the tables are small vocabularies, not a class list
_EXTRA = {
    "colour": {"orange": ("red", "yellow"), "purple": ("red", "blue"), "white": (),
               "black": (), "grey": ("white", "black")},
    "shape": {"ring": ("circle",), "diamond": ("square",), "star": ("cross", "triangle"),
              "box": ("square",), "plus": ("cross",)},
    "stuff": {"mud": ("sand", "water"), "ice": ("snow", "water"), "sky": ("blue",),
              "rock": (), "dirt": ("sand",), "lake": ("water",)},
}
# stuff words lean towards the colour they look like, as real word vectors do
_LOOKS_LIKE = {"grass": "green", "sand": "yellow", "water": "blue", "snow": "white"}


def toy_vocabulary() -> list[str]:
    """Every word of the toy word vectors (the class words first)."""
    words = list(STUFF) + list(COLOURS) + list(SHAPES)
    for group in _EXTRA.values():
        words += list(group)
    return words


def _toy_latent(seed: int) -> dict[str, np.ndarray]:
    """An underlying meaning vector per word: group direction + own direction + relations."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))

    def unit() -> np.ndarray:
        v = rng.standard_normal(_LATENT)
        return v / np.linalg.norm(v)

    group = {g: unit() for g in ("colour", "shape", "stuff")}
    own = {w: unit() for w in toy_vocabulary()}
    members = {"colour": COLOURS, "shape": SHAPES, "stuff": STUFF}
    z = {}
    for g, words in members.items():
        for w in words:
            z[w] = group[g] + 0.9 * own[w]
    for g, extra in _EXTRA.items():
        for w, related in extra.items():
            z[w] = group[g] + 0.9 * own[w] + sum((0.6 * own[r] for r in related),
                                                 np.zeros(_LATENT))
    for w, c in _LOOKS_LIKE.items():
        z[w] = z[w] + 0.4 * own[c]
    return z


def _toy_table(source: str, seed: int) -> tuple[list[str], np.ndarray]:
    """Words and ``(V, 32)`` vectors of one toy source: a random projection of the meaning
    vectors plus noise, different for each source."""
    z = _toy_latent(seed)
    words = toy_vocabulary()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1 + TOY_SOURCES.index(source)]))
    proj = rng.standard_normal((TOY_VECTOR_DIM, _LATENT)) / np.sqrt(_LATENT)
    vectors = np.stack([proj @ z[w] for w in words])
    vectors += 0.15 * rng.standard_normal(vectors.shape)
    return words, vectors.astype(np.float32)


def toy_vector_file(source: str, cache_dir: str | Path | None = None,
                    seed: int = TOY_VECTOR_SEED) -> Path:
    """Path of the word2vec-format text file of toy ``source``, written if absent."""
    from gensim.models import KeyedVectors

    if source not in TOY_SOURCES:
        raise ValueError(f"unknown toy word-vector source {source!r}; choose {TOY_SOURCES}")
    folder = Path(cache_dir) if cache_dir is not None else cache_home()
    path = folder / "embeddings" / f"{source}-s{seed}-v{TOY_VECTOR_VERSION}.txt"
    if not path.exists():
        words, vectors = _toy_table(source, seed)
        kv = KeyedVectors(vector_size=TOY_VECTOR_DIM)
        kv.add_vectors(words, vectors)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        kv.save_word2vec_format(tmp, binary=False)
        os.replace(tmp, path)  # atomic: parallel test workers may race here
    return path


def toy_word_vectors(dcfg: DataConfig | None = None, cache_dir: str | Path | None = None,
                     seed: int = TOY_VECTOR_SEED) -> dict[str, KeyedVectors]:
    """The toy word vectors, ``{"toy-a": KeyedVectors, "toy-b": KeyedVectors}`` (32-d each).

    Each word has a meaning vector (colours near colours, shapes near shapes, stuff near
    stuff, "grass" a little near "green", "orange" between "red" and "yellow"...); each
    source is its own random projection of those to 32-d plus noise, so the two sources
    agree on meaning but not on coordinates, like fastText and word2vec. The tables are
    written in word2vec text format under ``cache_dir`` (default `cache_home`) and read
    back with gensim. ``dcfg`` restricts the result to the toy sources it names.
    """
    from gensim.models import KeyedVectors

    sources = TOY_SOURCES if dcfg is None else tuple(
        s for s in dcfg.embedding_sources if s in TOY_SOURCES)
    return {s: KeyedVectors.load_word2vec_format(str(toy_vector_file(s, cache_dir, seed)),
                                                 binary=False)
            for s in sources}


# --------------------------------------------------------------------------- figure

def toy_class_colours() -> np.ndarray:
    """``(20, 3)`` float RGB display colours of the toy classes: stuff in pale natural colours,
    each thing in its own colour, lighter to darker by shape (circle, square, triangle, cross)."""
    stuff = np.array([[0.60, 0.80, 0.50], [0.93, 0.85, 0.65], [0.60, 0.75, 0.92],
                      [0.86, 0.86, 0.90]])
    hues = np.array([[0.90, 0.15, 0.12], [0.15, 0.70, 0.25], [0.15, 0.30, 0.90],
                     [0.95, 0.80, 0.10]])
    depth = np.array([1.0, 0.78, 0.58, 0.40])
    things = (hues[:, None] * depth[None, :, None]).reshape(-1, 3)
    return np.concatenate([stuff, things])


def colour_mask(label: np.ndarray) -> np.ndarray:
    """Toy ``(H, W)`` class ids (255 = ignore) -> ``(H, W, 3)`` float RGB; ignored pixels black."""
    table = np.zeros((256, 3))
    table[:len(TOY_CLASSES)] = toy_class_colours()
    return table[np.asarray(label, dtype=np.int64)]


def toy_world_figure(dcfg: DataConfig | None = None, count: int = 6) -> Figure:
    """Toy training images, their full label maps and the training labels (unseen -> ignored),
    with a legend; unseen classes are starred. Returns a matplotlib Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from cagnet.config import get_preset
    from cagnet.data.splits import class_split

    dcfg = dcfg if dcfg is not None else get_preset("toy").data
    classes = class_split(dcfg)
    raw = render_toy(count, dcfg.image_size, dcfg.data_seed, "train", dcfg.toy_lighting,
                     dcfg.toy_paint_shift, dcfg.toy_prior)
    lut = classes.lut(train=True)
    width = 1.6 * count + 2.0
    fig, axes = plt.subplots(3, count, figsize=(width, 5.2), squeeze=False)
    rows = [("image", raw.images.transpose(0, 2, 3, 1)),
            ("label (all classes)", [colour_mask(x) for x in raw.labels]),
            ("training label", [colour_mask(lut[x]) for x in raw.labels])]
    for r, (title, pictures) in enumerate(rows):
        for c in range(count):
            ax = axes[r, c]
            ax.imshow(pictures[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=9)
    colours = toy_class_colours()
    handles = [Patch(color=colours[i], label=name + (" *" if i in classes.unseen else ""))
               for i, name in enumerate(classes.names)]
    handles.append(Patch(facecolor="black", label="ignored (255)"))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False,
               title="* unseen", title_fontsize=8)
    light = f", toy_lighting={dcfg.toy_lighting:g}" if dcfg.toy_lighting else ""
    fig.suptitle(f"The toy world (seed {dcfg.data_seed}, split '{classes.split}'{light})")
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / width, 1))
    return fig


__all__ = [
    "COLOURS", "FAVOURITE_STUFF", "PRIOR", "SHAPES", "STUFF", "TOY_CLASSES",
    "TOY_SOURCES", "TOY_SPLITS", "ToyImages", "ToyWorld", "colour_mask",
    "render_toy", "thing_class", "toy_class_colours", "toy_vector_file", "toy_vocabulary",
    "toy_word_vectors", "toy_world_figure",
]
