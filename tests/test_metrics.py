"""Confusion matrix and scores, checked against values worked out by hand."""

import math

import pytest
import torch

from cagnet.errors import DataError
from cagnet.metrics import ConfusionMatrix, scores

# rows = ground truth, columns = prediction; class 2 only predicted, class 3 absent
MATRIX = torch.tensor(
    [
        [5, 1, 1, 0],
        [2, 3, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
)


def test_scores_by_hand():
    s = scores(MATRIX, seen=[0, 1], unseen=[2, 3])
    # TP = 5, 3, 0, 0 of 12 pixels
    assert s["pixel_acc"] == pytest.approx(8 / 12)
    # union = GT + pred - TP: 7+7-5 = 9, 5+4-3 = 6, 0+1-0 = 1, 0 (absent)
    assert s["iou"][:3] == pytest.approx([5 / 9, 3 / 6, 0.0])
    assert math.isnan(s["iou"][3])
    # class accuracy only where the class is in the ground truth: 5/7, 3/5
    assert s["mean_acc"] == pytest.approx((5 / 7 + 3 / 5) / 2)
    assert s["miou"] == pytest.approx((5 / 9 + 1 / 2 + 0) / 3)
    assert s["miou_seen"] == pytest.approx((5 / 9 + 1 / 2) / 2)
    assert s["miou_unseen"] == pytest.approx(0.0)  # class 3 left out, class 2 scores 0
    assert s["hiou"] == 0.0


def test_harmonic_iou_by_hand():
    s = scores(MATRIX, seen=[0, 2], unseen=[1])
    S, U = (5 / 9 + 0) / 2, 1 / 2
    assert s["miou_seen"] == pytest.approx(S)
    assert s["miou_unseen"] == pytest.approx(U)
    assert s["hiou"] == pytest.approx(5 / 14)  # 2 S U / (S + U) with S = 5/18, U = 1/2


def test_perfect_prediction():
    s = scores(torch.diag(torch.tensor([4, 0, 6])), seen=[0], unseen=[1, 2])
    assert s["pixel_acc"] == 1.0 and s["miou"] == 1.0 and s["hiou"] == 1.0
    assert math.isnan(s["iou"][1])


def test_confusion_matrix_update_by_hand():
    cm = ConfusionMatrix(3, ignore_index=255)
    target = torch.tensor([[[0, 0, 1], [2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1], [0, 2, 2]]])
    cm.update(pred, target)
    cm.update(pred, target)
    expected = 2 * torch.tensor([[1, 1, 0], [0, 1, 1], [1, 0, 0]])
    assert torch.equal(cm.matrix, expected)
    assert cm.matrix.dtype == torch.int64
    cm.reset()
    assert cm.matrix.sum() == 0


def test_confusion_matrix_rejects_bad_input():
    cm = ConfusionMatrix(3)
    with pytest.raises(DataError, match="class ids"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="seen"):
        scores(MATRIX, seen=[], unseen=[])


class _FixedLogits(torch.nn.Module):
    """predict(images) -> the logits stored in the image tensor itself (B, K, H, W)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def predict(self, images):
        return images


def test_confusion_matrices_one_pass_many_calibrations():
    from cagnet.evaluate import confusion_matrices

    # 3 classes (0, 1 seen; 2 unseen); pixel logits: seen class 0 wins by 0.5 over unseen 2
    logits = torch.tensor([[[[2.0]], [[0.0]], [[1.5]]], [[[0.0]], [[3.0]], [[1.0]]]])
    labels = torch.tensor([[[2]], [[1]]])
    data = list(zip(logits, labels, strict=True))
    model = _FixedLogits().train()
    plain, shifted, large = confusion_matrices(model, data, 3, seen=[0, 1],
                                               calibrations=(0.0, 1.0, 5.0), batch_size=2)
    assert model.training  # mode restored
    assert plain.matrix.tolist() == [[0, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert shifted.matrix.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]  # 2.0-1 < 1.5
    assert large.matrix.tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 1]]  # 3-5 < 1
