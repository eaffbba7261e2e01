"""Segmentation metrics from a confusion matrix accumulated over the whole test set.

Rows of the matrix are ground truth, columns predictions. From it: pixel accuracy, mean
class accuracy, IoU per class, mIoU over the evaluated classes, seen / unseen mIoU and
their harmonic mean hIoU = 2 S U / (S + U).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from cagnet.errors import DataError


class ConfusionMatrix:
    """A (K, K) int64 confusion matrix, accumulated on the device with ``torch.bincount``."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        device: torch.device | str | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add predicted ids (B, H, W) and ground truth (B, H, W); ``ignore_index`` is skipped."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in "
                f"shape; upsample the logits to the label size before the argmax"
            )
        K = self.num_classes
        valid = target != self.ignore_index
        t = target[valid].to(self.matrix.device, torch.int64)
        p = pred[valid].to(self.matrix.device, torch.int64)
        if t.numel() and (t.min() < 0 or t.max() >= K or p.min() < 0 or p.max() >= K):
            raise DataError(
                f"class ids must lie in [0, {K}) or equal ignore_index={self.ignore_index}; "
                f"got target range [{int(t.min())}, {int(t.max())}] and prediction range "
                f"[{int(p.min())}, {int(p.max())}]"
            )
        self.matrix += torch.bincount(t * K + p, minlength=K * K).view(K, K)

    def reset(self) -> None:
        self.matrix.zero_()

    def all_reduce(self) -> None:
        """Sum the matrices of all processes (no-op outside ``torch.distributed``)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def scores(matrix: Tensor, seen: list[int], unseen: list[int]) -> dict:
    """Scores of a (K, K) confusion matrix (rows = ground truth) over the classes seen + unseen.

    ``iou[c] = TP / (TP + FP + FN)``, nan for a class absent from both ground truth and
    prediction; such classes are left out of every mean (and classes absent from the
    ground truth out of ``mean_acc``). ``pixel_acc`` counts all pixels of the matrix.
    ``hiou = 2 S U / (S + U)`` with S, U the seen and unseen mIoU (0 if S + U == 0).
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got {tuple(matrix.shape)}")
    K = matrix.shape[0]
    evaluated = sorted(set(seen) | set(unseen))
    if not evaluated or evaluated[0] < 0 or evaluated[-1] >= K:
        raise ValueError(f"seen + unseen must be non-empty class ids in [0, {K}); got {evaluated}")
    m = matrix.double().cpu()
    tp = m.diag()
    gt = m.sum(1)  # pixels of each class in the ground truth
    union = gt + m.sum(0) - tp
    iou = [float(tp[c] / union[c]) if union[c] > 0 else float("nan") for c in range(K)]
    acc = [float(tp[c] / gt[c]) if gt[c] > 0 else float("nan") for c in range(K)]
    total = float(m.sum())
    s = _nanmean([iou[c] for c in seen])
    u = _nanmean([iou[c] for c in unseen])
    return {
        "pixel_acc": float(tp.sum()) / total if total > 0 else float("nan"),
        "mean_acc": _nanmean([acc[c] for c in evaluated]),
        "miou": _nanmean([iou[c] for c in evaluated]),
        "miou_seen": s,
        "miou_unseen": u,
        "hiou": 0.0 if s + u == 0 else 2 * s * u / (s + u),
        "iou": iou,
    }


def run_summary(cfg, classes) -> dict:
    """What a result file needs to explain itself: preset, method, seed, package version and
    the seen and unseen class names (``classes``: a `ClassSplit` or a checkpoint's dict)."""
    import cagnet

    get = classes.get if isinstance(classes, dict) else lambda k: getattr(classes, k)
    names = list(get("names"))
    return {"preset": cfg.name, "method": cfg.method, "seed": cfg.train.seed,
            "cagnet_version": cagnet.__version__,
            "seen_classes": [names[c] for c in get("seen")],
            "unseen_classes": [names[c] for c in get("unseen")]}
