"""Test-set evaluation: one confusion matrix over the whole test set, then the scores.

Calibration (SPNet, Xian et al. 2019): a classifier trained mostly on seen classes is biased
towards them, so at test time a constant ``gamma`` is subtracted from every seen class's
logit before the argmax. ``gamma = 0`` is the plain prediction. One pass over the test set
serves several ``gamma`` at once (`evaluate_calibrations`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from cagnet import distributed
from cagnet.metrics import ConfusionMatrix, scores


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def _restore(model: nn.Module, modes: list[bool]) -> None:
    for m, mode in zip(model.modules(), modes, strict=True):
        m.training = mode


@torch.no_grad()
def confusion_matrices(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    seen: Sequence[int],
    calibrations: Sequence[float] = (0.0,),
    device: str | torch.device | None = None,
    batch_size: int = 1,
) -> list[ConfusionMatrix]:
    """One confusion matrix of ``model`` on ``dataset`` per calibration ``gamma``, in one pass.

    ``gamma`` is subtracted from the logits of the ``seen`` classes before the argmax. Under
    ``torchrun`` each process scores its share of the images; the matrices are not summed
    here (`ConfusionMatrix.all_reduce`). The model's train/eval modes are restored.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    info = distributed.current()
    if info.enabled:
        dataset = Subset(dataset, range(info.rank, len(dataset), info.world_size))  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        generator=torch.Generator())  # leaves the global RNG untouched
    matrices = [ConfusionMatrix(num_classes, device=device) for _ in calibrations]
    seen_idx = torch.tensor(list(seen), device=device)
    modes = _modes(model)
    model.eval()
    try:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = model.predict(images).float()  # (B, K, H, W)
            for gamma, cm in zip(calibrations, matrices, strict=True):
                shifted = logits
                if gamma:
                    shifted = logits.clone()
                    shifted[:, seen_idx] -= gamma
                cm.update(shifted.argmax(1), labels)
    finally:
        _restore(model, modes)
    return matrices


def evaluate_calibrations(
    model: nn.Module,
    dataset: Dataset,
    classes: Any,
    calibrations: Sequence[float],
    device: str | torch.device | None = None,
    batch_size: int = 1,
) -> list[dict]:
    """Scores of ``model`` on ``dataset`` for each calibration ``gamma`` in ``calibrations``.

    ``classes`` has ``names``, ``seen`` and ``unseen`` (a `cagnet.data.ClassSplit` or the
    ``classes`` dict of a checkpoint). Under ``torchrun`` every process scores its share of
    the images and the confusion matrices are summed. Returns one dict per ``gamma``, see
    `evaluate`.
    """
    get = classes.get if isinstance(classes, dict) else lambda k: getattr(classes, k)
    names, seen, unseen = list(get("names")), list(get("seen")), list(get("unseen"))
    matrices = confusion_matrices(model, dataset, len(names), seen, calibrations, device,
                                  batch_size)
    results = []
    for gamma, cm in zip(calibrations, matrices, strict=True):
        cm.all_reduce()
        s = scores(cm.matrix, seen, unseen)
        iou = {n: (None if math.isnan(v) else v) for n, v in zip(names, s["iou"], strict=True)}
        results.append({**s, "iou": iou, "calibration": float(gamma)})
    return results


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    classes: Any,
    calibration: float = 0.0,
    device: str | torch.device | None = None,
    batch_size: int = 1,
) -> dict:
    """Test scores: ``pixel_acc``, ``mean_acc``, ``miou``, ``miou_seen``, ``miou_unseen``,
    ``hiou`` (fractions in [0, 1]), ``iou`` (class name -> IoU, None for a class absent from
    ground truth and prediction) and the ``calibration`` used.

    ``calibration`` is subtracted from the seen classes' logits before the argmax (SPNet).
    ``batch_size`` > 1 needs images of one size (the toy world).
    """
    return evaluate_calibrations(model, dataset, classes, (calibration,), device, batch_size)[0]


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_metrics(metrics: dict, path: str | Path) -> Path:
    """Write a metrics dict as JSON (NaN, e.g. a class absent from the test set, as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n")
    return path
