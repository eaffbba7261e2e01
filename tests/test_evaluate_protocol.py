"""The two evaluation protocols: full resolution, and the official one (warp, feature grid)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from small import small_toy as shared_small_toy

from cagnet.checkpoint import save_checkpoint
from cagnet.cli import main
from cagnet.data import ToyWorld, class_split
from cagnet.errors import ConfigError
from cagnet.evaluate import (
    OFFICIAL_TEST_SIZE,
    confusion_matrices,
    evaluate,
    official_test_size,
    resize_labels,
)
from cagnet.models import CaGNet

K = 4
STRIDE = 4


class GridReader(torch.nn.Module):
    """A model of output stride 4 whose class at feature cell (i, j) is the value of image
    channel 0 at pixel (4 i, 4 j): it sees exactly the labels a nearest resize keeps."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.inputs: list[tuple[int, ...]] = []

    def predict(self, x, upsample=True):
        self.inputs.append(tuple(x.shape))
        cls = x[:, 0, ::STRIDE, ::STRIDE].round().long().clamp(0, K - 1)
        logits = F.one_hot(cls, K).permute(0, 3, 1, 2).float()  # (B, K, h, w)
        if not upsample:
            return logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def pixel_noise(n: int, h: int, w: int, seed: int = 0) -> list:
    """Images whose channel 0 is a per-pixel random label map (10% ignored), and the labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, K, (n, h, w), generator=g)
    labels[torch.rand(n, h, w, generator=g) < 0.1] = 255
    images = torch.zeros(n, 3, h, w)
    images[:, 0] = torch.where(labels == 255, 0, labels).float()
    return list(zip(images, labels, strict=True))


def test_official_scores_at_feature_resolution_full_at_image_resolution():
    data = pixel_noise(2, 64, 64)
    labels = torch.stack([lab for _, lab in data])
    model = GridReader()
    official, = confusion_matrices(model, data, K, seen=[0, 1], batch_size=2,
                                   protocol="official", test_size=64)
    full, = confusion_matrices(model, data, K, seen=[0, 1], batch_size=2, protocol="full")
    on_grid = labels[:, ::STRIDE, ::STRIDE]
    assert official.matrix.sum() == (on_grid != 255).sum()  # 2 x 16 x 16 cells, less ignored
    assert torch.equal(official.matrix, torch.diag(official.matrix.diag()))  # all correct
    assert full.matrix.sum() == (labels != 255).sum()  # every labelled pixel
    assert full.matrix.diag().sum() < 0.5 * full.matrix.sum()  # per-pixel noise: upsampled
    m = evaluate(model, data, {"names": list("abcd"), "seen": [0, 1], "unseen": [2, 3]},
                 batch_size=2, protocol="official", test_size=64)
    assert m["pixel_acc"] == 1.0 and m["miou"] == 1.0 and m["protocol"] == "official"


def test_official_warps_images_and_resizes_labels_twice_nearest():
    data = pixel_noise(1, 40, 56, seed=1)
    label = data[0][1].numpy()
    model = GridReader()
    cm, = confusion_matrices(model, data, K, seen=[0, 1], protocol="official", test_size=32)
    assert model.inputs == [(1, 3, 32, 32)]  # warped, aspect not kept
    # cv2.INTER_NEAREST: source index floor(dst * src / dst_size); 40x56 -> 32x32 -> 8x8
    rows, cols = (np.arange(32) * 40) // 32, (np.arange(32) * 56) // 32
    at_32 = label[rows][:, cols]
    at_8 = at_32[::4, ::4]
    assert int(cm.matrix.sum()) == int((at_8 != 255).sum())
    assert torch.equal(resize_labels(torch.from_numpy(label)[None], (32, 32))[0],
                       torch.from_numpy(at_32))


def test_test_sizes_and_unknown_protocol():
    assert OFFICIAL_TEST_SIZE == 513  # train.py: the test loader's base_size, warped
    assert official_test_size("voc") == 513 and official_test_size("toy", 64) == 64
    with pytest.raises(ConfigError, match="unknown protocol"):
        confusion_matrices(GridReader(), pixel_noise(1, 8, 8), K, seen=[0], protocol="crop")


def small_toy():
    return shared_small_toy(model=dict(generator_dropout=(0.1,)), data=dict(num_test=4))


def test_a_tiny_cagnet_on_the_toy_world_under_both_protocols():
    torch.manual_seed(0)
    cfg = small_toy()
    classes = class_split(cfg.data)
    model = CaGNet(cfg, len(classes.names), torch.randn(len(classes.names), 64)).eval()
    x = torch.randn(2, 3, 64, 64)
    assert model.predict(x).shape == (2, 20, 64, 64)
    assert model.predict(x, upsample=False).shape == (2, 20, 16, 16)  # toy stride 4
    data = ToyWorld(cfg.data, "test")
    for protocol in ("full", "official"):
        m = evaluate(model, data, classes, batch_size=4, protocol=protocol, test_size=64)
        assert m["protocol"] == protocol and 0.0 <= m["pixel_acc"] <= 1.0
        assert set(m["iou"]) == set(classes.names)


def test_cli_eval_both_reports_and_writes_each_protocol(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = small_toy()
    classes = class_split(cfg.data)
    model = CaGNet(cfg, len(classes.names), torch.randn(len(classes.names), 64))
    ckpt = save_checkpoint(tmp_path / "c.pt", {
        "config": cfg.to_dict(), "model": model.state_dict(), "iteration": 0, "stage": "done",
        "classes": {"names": classes.names, "seen": classes.seen, "unseen": classes.unseen}})
    out = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--device", "cpu", "--protocol", "both",
                 "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["protocol"] == "full" and m["official"]["protocol"] == "official"
    assert "miou" in m["official"] and "calibrated" in m["official"]
    printed = capsys.readouterr().out
    assert "full protocol, plain" in printed and "official protocol, plain" in printed
