"""`fit` on the toy world: every method runs, a killed run resumes bit-identically, NaN stops."""

import json
import math

import pytest
import torch
from small import assert_resumes_bit_identical, small_toy

from cagnet.checkpoint import load_checkpoint
from cagnet.train import TrainingDiverged, fit


def _toy(method, **train):
    schedule = dict(iters=4, finetune_iters=6, switch_every=2, batch_size=4, log_every=1,
                    checkpoint_every=3)
    schedule.update(train)
    return small_toy(method, train=schedule, data=dict(num_train=24, num_test=8),
                     loss=dict(mmd_max_pixels=64))


@pytest.mark.parametrize("method", ["cagnet", "zs3net", "seen-only"])
def test_each_method_trains_with_finite_losses_and_writes_metrics(method, tmp_path):
    result = fit(_toy(method), tmp_path, device="cpu", progress=False)
    assert result.history and all(math.isfinite(v) for r in result.history
                                  for k, v in r.items() if isinstance(v, float))
    kinds = {r["step"] for r in result.history}
    assert kinds == ({"real"} if method == "seen-only" else {"real", "fake"})
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["method"] == method
    for key in ("pixel_acc", "mean_acc", "miou", "miou_seen", "miou_unseen", "hiou"):
        assert 0.0 <= m[key] <= 1.0
    assert m["iteration"] == (4 if method == "seen-only" else 10)


def test_a_killed_and_resumed_run_ends_bit_identical(tmp_path):
    cfg = _toy("cagnet")
    straight = fit(cfg, tmp_path / "a", device="cpu", progress=False, evaluate=False)
    # killed two iterations after the checkpoint at 6, inside a fine-tuning block
    saved = assert_resumes_bit_identical(straight, cfg, tmp_path / "b", crash_after=8)
    assert saved["iteration"] == 6 and saved["kept"] is not None


def test_absurd_learning_rate_stops_with_the_last_good_checkpoint(tmp_path):
    cfg = _toy("zs3net", lr=1e30, lr_d=1e30, lr_g=1e30, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match="NaN") as err:
        fit(cfg, tmp_path, device="cpu", progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert f"iteration {state['iteration']}" in str(err.value)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()
