"""Checkpoints: plain data only (weights_only=True), atomic writes, clear errors, RNG states."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from cagnet.checkpoint import (
    CheckpointError,
    check_same_run,
    checkpoint_config,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cagnet.config import get_preset


def _state(cfg=None):
    cfg = cfg or get_preset("toy")
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"config": cfg.to_dict(), "model": model.state_dict(),
            "optimizers": {"adam": opt.state_dict()}, "iteration": 7, "stage": "train",
            "classes": {"names": ["a", "b"], "seen": [0], "unseen": [1]},
            "rng": rng_state(), "history": [{"iteration": 7, "total": 1.5}]}


def test_round_trip_loads_with_weights_only(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / "ck.pt", state)
    raw = torch.load(path, weights_only=True)  # the safe unpickler accepts every entry
    assert raw["iteration"] == 7
    loaded = load_checkpoint(path)
    for k, v in state["model"].items():
        assert torch.equal(loaded["model"][k], v)
    assert loaded["optimizers"]["adam"]["state"][0]["exp_avg"].shape == (2, 3)
    assert checkpoint_config(loaded) == get_preset("toy")
    assert loaded["history"] == state["history"]


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _state())
    state = _state()
    state["iteration"] = 8
    save_checkpoint(path, state)
    assert load_checkpoint(path)["iteration"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_corrupt_missing_and_foreign_files_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "good.pt", _state())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a cagnet checkpoint"):
        load_checkpoint(foreign)


def test_resuming_under_another_preset_or_method_is_refused(tmp_path):
    state = load_checkpoint(save_checkpoint(tmp_path / "ck.pt", _state()))
    check_same_run(state, get_preset("toy"), "ck.pt")  # the same run: fine
    longer = get_preset("toy")
    longer = longer.replace(train=type(longer.train)(iters=99))
    check_same_run(state, longer, "ck.pt")  # a longer schedule may continue a run
    with pytest.raises(CheckpointError, match="preset"):
        check_same_run(state, get_preset("voc"), "ck.pt")
    with pytest.raises(CheckpointError, match="method"):
        check_same_run(state, get_preset("toy").replace(method="zs3net"), "ck.pt")
    adv = get_preset("toy")
    adv = adv.replace(loss=type(adv.loss)(w_code_adv=1.0))  # adds the code's class probe
    with pytest.raises(CheckpointError, match="w_code_adv"):
        check_same_run(state, adv, "ck.pt")
    centred = get_preset("toy")
    centred = centred.replace(model=dataclasses.replace(centred.model, code_centring=True))
    with pytest.raises(CheckpointError, match="model settings"):
        check_same_run(state, centred, "ck.pt")


def test_rng_state_restores_every_generator(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    saved = load_checkpoint(save_checkpoint(tmp_path / "ck.pt", _state()))["rng"]
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(saved)
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]
