"""The command line: train / eval / predict / describe, and clear errors with exit code 2."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cagnet.checkpoint import load_checkpoint
from cagnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "data.num_train=32", "--set", "data.num_test=8", "--set", "train.batch_size=4",
         "--set", "train.log_every=2", "--set", "train.checkpoint_every=4",
         "--set", "train.switch_every=2", "--set", "loss.mmd_max_pixels=64",
         "--set", "model.toy_width=16", "--set", "model.context_hidden=16",
         "--set", "model.generator_hidden=[32]", "--set", "model.disc_hidden=32"]


def _cagnet(*args):
    return subprocess.run([sys.executable, "-m", "cagnet", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_run")
    code = main(["train", "--preset", "toy", "--method", "cagnet", "--iters", "4",
                 "--finetune-iters", "4", "--device", "cpu", "--no-progress", *SMALL,
                 "--out", str(out)])
    assert code == 0
    return out


def test_history_logs_the_contextual_module_instruments(run_dir):
    history = json.loads((run_dir / "history.json").read_text())
    real = [r for r in history if r["step"] == "real"]
    keys = {"cm_active_m1", "cm_active_fused", "cm_mu_spread", "cm_sigma_mean", "cm_kl",
            "cm_selector_spread", "cm_weight_norm", "cm_grad_norm"}
    assert real and all(keys <= set(r) for r in real)
    assert all(0.0 <= r["cm_active_fused"] <= 1.0 and r["cm_weight_norm"] > 0 for r in real)


def test_train_writes_checkpoint_metrics_and_logs(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("pixel_acc", "mean_acc", "miou", "miou_seen", "miou_unseen", "hiou"):
        assert 0.0 <= m[key] <= 1.0, key
        assert 0.0 <= m["calibrated"][key] <= 1.0, key
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert set(m["iou"]) == set(state["classes"]["names"])
    assert "calibration" in m["calibrated"]
    assert state["iteration"] == 8 and state["stage"] == "done"
    history = json.loads((run_dir / "history.json").read_text())
    assert {r["step"] for r in history} == {"real", "fake"}
    assert all(math.isfinite(r["total"]) for r in history)
    assert any((run_dir / "tb").iterdir())


def test_eval_applies_the_calibration(run_dir, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(run_dir / "checkpoint.pt"), "--device", "cpu",
                 "--calibration", "1000", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    plain = json.loads((run_dir / "metrics.json").read_text())
    assert m["miou"] == pytest.approx(plain["miou"])  # the same model scores the same
    # subtracting 1000 from every seen score: nothing is predicted seen any more
    assert m["calibrated"]["miou_seen"] == 0.0
    printed = capsys.readouterr().out
    assert "seen mIoU" in printed
    # the code-health report of CM, printed and written
    assert "code health" in printed and "mu spread" in printed
    assert 0.0 <= m["code_health"]["active_fused"] <= 1.0 and m["code_health"]["kl"] >= 0.0


def test_predict_writes_masks_and_overlays(run_dir, tmp_path):
    img = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8)).save(img)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoint.pt"), str(img),
                 "--device", "cpu", "--out", str(out)]) == 0
    for name in ("street_mask.png", "street_overlay.png"):
        with Image.open(out / name) as im:
            assert im.size == (56, 40) and im.mode == "RGB"


def test_describe_prints_the_paper_parameter_counts():
    r = _cagnet("describe", "--preset", "voc")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "backbone": 42_500_160, "aspp": 44_239_200, "context": 9_523_584,
        "generator": 4_720_088, "discriminator": 637_974, "total": 101_621_006}


def test_bad_preset_exits_2_with_a_message():
    r = _cagnet("train", "--preset", "imagenet", "--out", "x")
    assert r.returncode == 2
    assert "imagenet" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--unseen", "unicorn"], "unicorn"),
    (["--set", "train.learning_rate=1"], "learning_rate"),
    (["--set", "lr=1"], "SECTION.FIELD"),
])
def test_bad_options_exit_2_without_traceback(tmp_path, capsys, args, words):
    code = main(["train", "--preset", "toy", "--device", "cpu", *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err


def test_corrupt_checkpoint_exits_2(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint at all")
    r = _cagnet("eval", "--checkpoint", str(bad))
    assert r.returncode == 2
    assert "corrupt" in r.stderr and "Traceback" not in r.stderr


def test_resuming_with_another_preset_exits_2(run_dir, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run_dir, out)
    assert main(["train", "--preset", "voc", "--resume", "--device", "cpu",
                 "--out", str(out)]) == 2
    assert "preset" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(run_dir, tmp_path, capsys):
    import shutil

    out = tmp_path / "diverge"
    shutil.copytree(run_dir, out)
    # resume the finished 8-iteration run for 8 more with an absurd learning rate
    code = main(["train", "--preset", "toy", "--method", "cagnet", "--iters", "12",
                 "--finetune-iters", "4", "--device", "cpu", "--no-progress", "--resume", *SMALL,
                 "--set", "train.lr=1e30", "--set", "train.lr_d=1e30", "--set", "train.lr_g=1e30",
                 "--set", "train.log_every=1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "NaN" in err and "Traceback" not in err
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["iteration"] >= 8
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_data_check_reports_readiness(tmp_path, capsys):
    assert main(["data", "check", "--dataset", "toy", "--sample", "8"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["data", "check", "--dataset", "voc", "--root", str(tmp_path / "none")]) == 2
    out = capsys.readouterr().out
    assert "NOT READY" in out and "does not exist" in out
