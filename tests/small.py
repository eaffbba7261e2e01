"""Small toy configurations, trainers and checks shared by the tests (seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cagnet.checkpoint import load_checkpoint
from cagnet.config import Config, get_preset
from cagnet.train import Trainer, TrainResult, config_with, fit

# narrow heads and trunk: the same code path as the toy preset, a fraction of its cost
SMALL_MODEL = dict(toy_width=16, context_hidden=16, generator_hidden=(32,), disc_hidden=32)


def small_toy(method: str = "cagnet", **sections: dict) -> Config:
    """The toy preset with `SMALL_MODEL` and the given section changes (`config_with`)."""
    sections["model"] = SMALL_MODEL | sections.get("model", {})
    return config_with(get_preset("toy").replace(method=method), **sections)


def small_trainer(cfg: Config, num_classes: int, seen: list[int], unseen: list[int]) -> Trainer:
    """A CPU `Trainer` for ``cfg`` with seeded random unit class embeddings."""
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(num_classes, cfg.model.embed_dim), dim=1)
    return Trainer(cfg, num_classes, seen, unseen, emb, "cpu")


class Crash(Exception):
    pass


def assert_resumes_bit_identical(straight: TrainResult, cfg: Config, folder: Path,
                                 crash_after: int) -> dict:
    """Kill a run of ``cfg`` in ``folder`` once iteration ``crash_after`` is logged, resume
    it, and check it ends with ``straight``'s weights and history; returns the checkpoint
    the killed run left."""
    def crash(record):
        if record["iteration"] == crash_after:
            raise Crash

    with pytest.raises(Crash):
        fit(cfg, folder, device="cpu", progress=False, evaluate=False, on_log=crash)
    saved = load_checkpoint(folder / "checkpoint.pt")
    resumed = fit(cfg, folder, device="cpu", progress=False, evaluate=False, resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert straight.history == resumed.history
    return saved
