"""Pictures: class colours, coloured masks and overlays, loss curves and per-class IoU bars.

Used by ``cagnet predict`` (PNG files) and by the notebooks (matplotlib figures). Everything
takes numpy arrays or CPU tensors; matplotlib is imported only by the plotting functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

IGNORE_COLOR = (0, 0, 0)  # label 255 (unlabelled / ignored) is drawn black
SEEN_COLOR = "#4C72B0"
UNSEEN_COLOR = "#DD8452"


def palette(num_classes: int) -> np.ndarray:
    """The Pascal-VOC colour map: ``(num_classes, 3)`` uint8, class 0 black, class 1 dark red...

    Bits of the class id are spread over the high bits of R, G and B, so neighbouring ids get
    clearly different colours for any number of classes.
    """
    colors = np.zeros((num_classes, 3), dtype=np.uint8)
    for k in range(num_classes):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors[k] = (r, g, b)
    return colors


def class_palette(names: Sequence[str]) -> np.ndarray:
    """Display colours ``(K, 3)`` uint8 for these class names: the toy world's own colours
    (stuff in its natural colour, each thing in its colour, darker by shape) for the toy
    classes, the Pascal-VOC colour map otherwise. Neither uses black, the colour of ignored
    pixels, except VOC's background."""
    from cagnet.data.toy import TOY_CLASSES, toy_class_colours

    if tuple(names) == TOY_CLASSES:
        return (toy_class_colours() * 255 + 0.5).astype(np.uint8)
    return palette(len(names))


def label_legend(target, names: Sequence[str], colors: np.ndarray,
                 unseen: Sequence[int] = (), **kwargs):
    """A legend of the class colours (unseen starred) and of ignored pixels on a matplotlib
    Axes or Figure; keyword arguments go to ``legend``."""
    from matplotlib.patches import Patch

    handles = legend_handles(names, colors, unseen)
    handles.append(Patch(facecolor=np.asarray(IGNORE_COLOR) / 255.0, label="ignored (255)"))
    options = {"fontsize": 7, "loc": "center left", "bbox_to_anchor": (1.01, 0.5),
               "frameon": False, **kwargs}
    return target.legend(handles=handles, **options)


def pca_2d(features: torch.Tensor) -> Callable[[torch.Tensor], np.ndarray]:
    """A projection onto the first two principal components of ``features`` (N, d).

    Returns ``project``: any (M, d) features -> (M, 2) numpy coordinates in that basis, so
    real and generated features can be drawn in the same plane.
    """
    mean = features.mean(0)
    _, _, v = torch.linalg.svd(features - mean, full_matrices=False)  # v: (d, d), rows = axes

    def project(f: torch.Tensor) -> np.ndarray:
        return ((f - mean) @ v[:2].T).numpy()

    return project


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def colorize(mask: np.ndarray | torch.Tensor, colors: np.ndarray | None = None,
             ignore_index: int = 255) -> np.ndarray:
    """A label map ``(H, W)`` of class ids as an RGB image ``(H, W, 3)`` uint8."""
    mask = _numpy(mask).astype(np.int64)
    if colors is None:
        colors = palette(max(int(mask[mask != ignore_index].max(initial=0)) + 1, 1))
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    out[:] = IGNORE_COLOR
    valid = mask != ignore_index
    out[valid] = colors[mask[valid]]
    return out


def denormalize(image: np.ndarray | torch.Tensor, mean: Sequence[float],
                std: Sequence[float]) -> np.ndarray:
    """Undo the input normalisation: ``(3, H, W)`` float -> ``(H, W, 3)`` uint8 RGB."""
    x = _numpy(image).astype(np.float32).transpose(1, 2, 0)
    x = x * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)
    return (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray | torch.Tensor, colors: np.ndarray | None = None,
            alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """Blend the coloured ``mask`` over an RGB ``image`` (H, W, 3) uint8; ignored pixels stay."""
    mask = _numpy(mask)
    colored = colorize(mask, colors, ignore_index).astype(np.float32)
    out = image.astype(np.float32)
    valid = (mask != ignore_index)[..., None]
    out = np.where(valid, (1 - alpha) * out + alpha * colored, out)
    return (out + 0.5).astype(np.uint8)


def legend_handles(names: Sequence[str], colors: np.ndarray | None = None,
                   unseen: Sequence[int] = ()) -> list:
    """Matplotlib legend patches, one per class; unseen classes are marked with a star."""
    from matplotlib.patches import Patch

    colors = class_palette(names) if colors is None else colors
    return [Patch(color=colors[k] / 255.0, label=f"{name}{' *' if k in unseen else ''}")
            for k, name in enumerate(names)]


def show_predictions(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                     predictions: Sequence[np.ndarray], names: Sequence[str],
                     unseen: Sequence[int] = ()) -> Figure:
    """A grid: one row per image with the image, its ground truth and the prediction."""
    import matplotlib.pyplot as plt

    colors = class_palette(names)
    fig, axes = plt.subplots(len(images), 3, figsize=(7.5, 2.5 * len(images)), squeeze=False)
    for row, (img, lab, pred) in enumerate(zip(images, labels, predictions, strict=True)):
        for ax, pic, title in zip(axes[row], (img, colorize(lab, colors), colorize(pred, colors)),
                                  ("image", "ground truth", "prediction"), strict=True):
            ax.imshow(pic, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
    label_legend(fig, names, colors, unseen, loc="center right", bbox_to_anchor=None,
                 fontsize=8)
    fig.subplots_adjust(right=0.78)
    return fig


def plot_losses(history: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None,
                ax: Axes | None = None) -> Axes:
    """Loss curves from a training history (the records `cagnet.train.fit` logs).

    Each record has ``iteration``, ``step`` (``"real"`` or ``"fake"``) and loss values; one
    line per (step, loss) pair, ``keys`` restricting the losses shown.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 4))[1]
    skip = {"iteration", "stage", "step", "lr", "time_s"}
    keys = keys or sorted({k for r in history for k in r if k not in skip})
    for step in [s for s in ("real", "fake") if any(r["step"] == s for r in history)]:
        rows = [r for r in history if r["step"] == step]
        for key in keys:
            pts = [(r["iteration"], r[key]) for r in rows if key in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=f"{key} ({step} step)" if step != "real" else key)
    finetune_start = [r["iteration"] for r in history if r.get("stage") == "finetune"]
    if finetune_start:
        ax.axvline(min(finetune_start), color="grey", linestyle=":", label="fine-tuning starts")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_iou(metrics: Mapping, unseen_names: Sequence[str], ax: Axes | None = None) -> Axes:
    """Per-class IoU bars from a metrics dict (``metrics["iou"]``: name -> IoU or None).

    Unseen classes are coloured differently; dashed lines mark seen and unseen mIoU.
    """
    import matplotlib.pyplot as plt

    names = [n for n, v in metrics["iou"].items() if v is not None]
    values = [metrics["iou"][n] for n in names]
    ax = ax or plt.subplots(figsize=(max(5.0, 0.45 * len(names)), 3.5))[1]
    colors = [UNSEEN_COLOR if n in unseen_names else SEEN_COLOR for n in names]
    ax.bar(range(len(names)), values, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.axhline(metrics["miou_seen"], color=SEEN_COLOR, linestyle="--",
               label=f"seen mIoU {metrics['miou_seen']:.2f}")
    ax.axhline(metrics["miou_unseen"], color=UNSEEN_COLOR, linestyle="--",
               label=f"unseen mIoU {metrics['miou_unseen']:.2f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.legend(fontsize=8)
    return ax


def plot_results(rows: Sequence[Mapping], ax: Axes | None = None) -> Axes:
    """Seen / unseen mIoU and hIoU per method, grouped bars (rows: ``method`` + metric keys)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    keys = ("miou_seen", "miou_unseen", "hiou")
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        ax.bar([i + j * width for i in range(len(rows))], [r[key] for r in rows], width,
               label=key.replace("miou_", "mIoU ").replace("hiou", "hIoU"))
    ax.set_xticks([i + width for i in range(len(rows))], [r["method"] for r in rows])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return ax


# the boxes of `overview_figure`: key -> (x, y, label); arrows between keys
_OVERVIEW_BOXES = {
    "x": (0.5, 3.0, "image x"),
    "E": (2.2, 3.0, "E\nDeepLabv2\n(ResNet-101 + ASPP)"),
    "CM": (4.3, 3.0, "CM\n3 dilated convs\n+ context selector"),
    "z": (6.3, 3.0, "latent code\nz = μ + ε·σ\n(KL to N(0, I))"),
    "attention": (4.3, 1.4, "residual attention\nσ(a + a·σ(z))"),
    "f": (6.3, 1.4, "real feature f"),
    "w": (6.3, 4.6, "class embedding w\n(fastText ⊕ word2vec)"),
    "G": (8.3, 3.8, "G(w, z)\ngenerator"),
    "fake": (10.1, 3.8, r"fake feature $\tilde f$"),
    "D": (10.1, 2.2, "D: real or fake?\nC: which class?"),
}
_OVERVIEW_ARROWS = (("x", "E"), ("E", "CM"), ("CM", "z"), ("E", "attention"),
                    ("z", "attention"), ("attention", "f"), ("z", "G"), ("w", "G"),
                    ("G", "fake"), ("fake", "D"), ("f", "D"))
OVERVIEW_PARTS = tuple(_OVERVIEW_BOXES)


def overview_figure(highlight: Sequence[str] = (), title: str | None = None) -> Figure:
    """CaGNet as one picture: E -> CM -> z -> residual attention -> f, and (w, z) -> G -> f̃,
    both judged by D and classified by C. ``highlight`` names the boxes a chapter adds
    (keys of ``OVERVIEW_PARTS``); the others are drawn grey."""
    import matplotlib.pyplot as plt

    unknown = sorted(set(highlight) - set(_OVERVIEW_BOXES))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {', '.join(OVERVIEW_PARTS)}")
    fig, ax = plt.subplots(figsize=(11, 4.2))
    boxes = {}
    for key, (x, y, label) in _OVERVIEW_BOXES.items():
        on = key in highlight or not highlight
        boxes[key] = ax.text(x, y, label, ha="center", va="center", fontsize=8.5, zorder=3,
                color="black" if on else "0.55",
                bbox={"boxstyle": "round,pad=0.4", "linewidth": 1.6 if key in highlight else 0.8,
                      "facecolor": UNSEEN_COLOR if key in highlight else "white",
                      "edgecolor": "black" if on else "0.7"})
    for a, b in _OVERVIEW_ARROWS:  # from box edge to box edge
        ta, tb = boxes[a], boxes[b]
        ax.annotate("", xy=(0.5, 0.5), xycoords=tb, xytext=(0.5, 0.5), textcoords=ta,
                    arrowprops={"arrowstyle": "-|>", "color": "0.35", "linewidth": 1.0,
                                "patchA": ta.get_bbox_patch(), "patchB": tb.get_bbox_patch(),
                                "shrinkA": 2, "shrinkB": 2})
    ax.set(xlim=(-0.3, 11.2), ylim=(0.6, 5.3))
    ax.set_axis_off()
    ax.set_title(title or ("CaGNet: segmentation {E, CM, C} and feature generation "
                           "{CM, G, D, C}" + (f" (this chapter: {', '.join(highlight)})"
                                              if highlight else "")), fontsize=10)
    fig.tight_layout()
    return fig
