"""Test-set evaluation: one confusion matrix over the whole test set, then the scores.

Calibration (SPNet, Xian et al. 2019): a classifier trained mostly on seen classes is biased
towards them, so at test time a constant ``gamma`` is subtracted from every seen class's
logit before the argmax. ``gamma = 0`` is the plain prediction. One pass over the test set
serves several ``gamma`` at once (`evaluate_calibrations`).

Two protocols score a test image:

- ``"full"``: the image at its own size; the logits are upsampled (bilinear) to it and every
  labelled pixel of the original label map counts.
- ``"official"``: as the official test loop (train.py and model.py ``test``): the image is
  warped, aspect not kept, to ``test_size`` x ``test_size`` (bilinear; the official test
  loader's ``base_size=513`` with ``WARP_IMAGE: True``), the label map likewise (nearest),
  and the prediction is scored at the feature map's resolution against the label map
  resized (nearest, tools.py ``resize_target``) to it. Normalisation is this package's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from cagnet import distributed
from cagnet.diagnostics import eval_mode
from cagnet.errors import ConfigError
from cagnet.metrics import ConfusionMatrix, scores

PROTOCOLS = ("full", "official")
# train.py builds the official test set with base_size=513 and WARP_IMAGE True (every
# configs/*.yaml); its IMAGE.SIZE.TEST 512 is a crop size, unused at test (scale None)
OFFICIAL_TEST_SIZE = 513


def official_test_size(dataset: str, image_size: int = 64) -> int:
    """The side the official protocol warps test images to: `OFFICIAL_TEST_SIZE` for the
    paper's datasets; the toy world's own ``image_size`` (it has no official setting)."""
    return image_size if dataset == "toy" else OFFICIAL_TEST_SIZE


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest resize of label maps (B, H, W) -> (B, *size), as ``cv2.INTER_NEAREST``."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def scored_pair(model: nn.Module, images: Tensor, labels: Tensor, protocol: str = "full",
                test_size: int = OFFICIAL_TEST_SIZE) -> tuple[Tensor, Tensor]:
    """``(logits, labels)`` one protocol compares (see the module doc).

    images (B, 3, H, W), labels (B, H, W) -> "full": logits (B, K, H, W) and the labels as
    given; "official": logits (B, K, h, w) at the feature resolution of a
    (test_size, test_size) input and the labels resized (nearest) to (test_size, test_size),
    then to (h, w).
    """
    if protocol == "full":
        return model.predict(images).float(), labels
    if protocol != "official":
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    square = (test_size, test_size)
    if tuple(images.shape[-2:]) != square:
        images = F.interpolate(images, size=square, mode="bilinear", align_corners=False)
    logits = model.predict(images, upsample=False).float()  # (B, K, h, w)
    return logits, resize_labels(resize_labels(labels, square), tuple(logits.shape[-2:]))


@torch.no_grad()
def confusion_matrices(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    seen: Sequence[int],
    calibrations: Sequence[float] = (0.0,),
    device: str | torch.device | None = None,
    batch_size: int = 1,
    protocol: str = "full",
    test_size: int = OFFICIAL_TEST_SIZE,
) -> list[ConfusionMatrix]:
    """One confusion matrix of ``model`` on ``dataset`` per calibration ``gamma``, in one pass.

    ``gamma`` is subtracted from the logits of the ``seen`` classes before the argmax.
    ``protocol`` "full" or "official" (`scored_pair`, ``test_size``) sets what is compared. Under
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
    with eval_mode(model):
        for images, labels in loader:
            logits, labels = scored_pair(model, images.to(device), labels.to(device), protocol,
                                         test_size)  # (B, K, h, w), (B, h, w)
            for gamma, cm in zip(calibrations, matrices, strict=True):
                shifted = logits
                if gamma:
                    shifted = logits.clone()
                    shifted[:, seen_idx] -= gamma
                cm.update(shifted.argmax(1), labels)
    return matrices


def evaluate_calibrations(
    model: nn.Module,
    dataset: Dataset,
    classes: Any,
    calibrations: Sequence[float],
    device: str | torch.device | None = None,
    batch_size: int = 1,
    protocol: str = "full",
    test_size: int = OFFICIAL_TEST_SIZE,
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
                                  batch_size, protocol, test_size)
    results = []
    for gamma, cm in zip(calibrations, matrices, strict=True):
        cm.all_reduce()
        s = scores(cm.matrix, seen, unseen)
        iou = {n: (None if math.isnan(v) else v) for n, v in zip(names, s["iou"], strict=True)}
        results.append({**s, "iou": iou, "calibration": float(gamma), "protocol": protocol})
    return results


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    classes: Any,
    calibration: float = 0.0,
    device: str | torch.device | None = None,
    batch_size: int = 1,
    protocol: str = "full",
    test_size: int = OFFICIAL_TEST_SIZE,
) -> dict:
    """Test scores: ``pixel_acc``, ``mean_acc``, ``miou``, ``miou_seen``, ``miou_unseen``,
    ``hiou`` (fractions in [0, 1]), ``iou`` (class name -> IoU, None for a class absent from
    ground truth and prediction), the ``calibration`` and the ``protocol`` used.

    ``calibration`` is subtracted from the seen classes' logits before the argmax (SPNet).
    ``protocol``: "full" (full resolution) or "official" (warped to ``test_size``, scored at
    feature resolution; see the module doc). ``batch_size`` > 1 needs images of one size.
    """
    return evaluate_calibrations(model, dataset, classes, (calibration,), device, batch_size,
                                 protocol, test_size)[0]


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
