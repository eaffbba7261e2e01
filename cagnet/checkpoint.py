"""Checkpoints that load with ``torch.load(weights_only=True)`` and resume bit-identically.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts (no pickled
classes): the configuration as `Config.to_dict`, the model's ``state_dict``, every optimiser's
``state_dict``, the iteration, the stage and the state of every random number generator
(torch CPU and CUDA, numpy, Python). It is written to a temporary file in the same folder and
moved over the old one with ``os.replace``, so a run killed while saving never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cagnet.config import Config
from cagnet.errors import CagnetError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "config", "model", "iteration", "stage", "classes")


class CheckpointError(CagnetError):
    """A checkpoint that is missing, corrupt, or made for a different run."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; only tensors and plain data are unpickled.

    Raises `CheckpointError` with the reason when the file is missing, is not a checkpoint,
    is truncated or corrupt, or lacks the keys a cagnet checkpoint has.
    """
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoint.pt"
        hint = (f"pass the file in it: {inside}" if inside.is_file()
                else "it holds no checkpoint.pt; pass the .pt file a `cagnet train --out DIR` "
                "run wrote (DIR/checkpoint.pt)")
        raise CheckpointError(f"checkpoint {path} is a folder, not a file; {hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .pt file a "
                              "`cagnet train --out DIR` run wrote (DIR/checkpoint.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(_unreadable(path, exc)) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a cagnet checkpoint (missing {', '.join(missing)})")
    if state["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {state['format']}, this version "
                              f"of cagnet reads format {FORMAT_VERSION}")
    return state


def read_weights_file(path: str | os.PathLike, what: str) -> Any:
    """The tensors of a foreign weights file (``what`` names it in messages: "weights file",
    "official model"), read with weights-only unpickling; one-line errors when the file is
    missing or unreadable."""
    from cagnet.errors import ConfigError, DataError

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one line
        raise DataError(f"cannot read {what} {path} as a PyTorch file "
                        f"({type(e).__name__})") from None


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to load it
    unsafely (``weights_only=False`` runs whatever code the file holds)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"checkpoint {path} holds Python objects, not only tensors and plain data (it "
                f"refers to {found.group(1)}); cagnet refuses to load it, since unpickling such "
                "a file can run code: use a checkpoint written by `cagnet train`")
    first = text.split(". ")[0].splitlines()[0].strip() if text.strip() else ""
    detail = (type(exc).__name__ if not first or "weights_only" in text.split("\n")[0]
              else f"{type(exc).__name__}: {first}")
    return (f"cannot read checkpoint {path}: it is corrupt, truncated or not a cagnet "
            f"checkpoint ({detail}); retrain or resume from an intact copy")


def checkpoint_config(state: dict) -> Config:
    """The `Config` a checkpoint was trained with."""
    try:
        return Config.from_dict(state["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint holds an unreadable configuration ({exc})") from None


def check_same_run(state: dict, cfg: Config, path: str | os.PathLike) -> None:
    """Refuse to resume ``state`` under a ``cfg`` that describes another model or dataset.

    The preset, method, model and data settings must match; the schedule (``train``) may
    differ, e.g. to extend a finished run with more iterations.
    """
    saved = checkpoint_config(state)
    for what, a, b in (
        ("preset", saved.name, cfg.name),
        ("method", saved.method, cfg.method),
        ("model settings", saved.model, cfg.model),
        ("data settings (dataset, split, unseen classes)", saved.data, cfg.data),
        # the code's class probe exists only with loss.w_code_adv > 0
        ("loss.w_code_adv (on or off)", saved.loss.w_code_adv > 0, cfg.loss.w_code_adv > 0),
    ):
        if a != b:
            shown = (a, b) if isinstance(a, str) else ("(as saved)", "(as asked)")
            raise CheckpointError(
                f"checkpoint {path} was made with different {what}: {shown[0]} vs {shown[1]}; "
                "pass the options of the saved run, or another --out folder to start afresh"
            )


def rng_state() -> dict[str, Any]:
    """The state of every generator training draws from: torch, CUDA, numpy, Python."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by `rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def load_model(path: str | os.PathLike, device: str | None = None) -> tuple[Any, Config, dict]:
    """Rebuild a trained model from a checkpoint, in eval mode.

    Returns ``(model, config, classes)``; ``classes`` has ``names``, ``seen`` and ``unseen``.
    ``device`` None picks CUDA when available.
    """
    from cagnet.models import CaGNet

    state = load_checkpoint(path)
    cfg = checkpoint_config(state)
    classes = state["classes"]
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = classes["names"]
    # the weights come from the checkpoint: no download, no weights file
    bare = cfg.replace(model=dataclasses.replace(cfg.model, pretrained=False, weights=None))
    model = CaGNet(bare, len(names), torch.zeros(len(names), cfg.model.embed_dim))
    mismatch = state_mismatch(model.state_dict(), state["model"])
    if mismatch:
        raise CheckpointError(f"checkpoint {path} does not fit its own configuration: "
                              f"{mismatch}; it was changed after saving or written by another "
                              "version of cagnet: retrain, or use an intact copy")
    model.load_state_dict(state["model"])
    return model.to(dev).eval(), cfg, classes


def state_mismatch(expected: dict, saved: Any, shown: int = 3) -> str:
    """What keeps ``saved`` from loading into a model whose state dict is ``expected``:
    missing and unexpected tensor names and shape mismatches ("" when it fits)."""
    if not isinstance(saved, dict):
        return f"its model weights are a {type(saved).__name__}, not a dict of tensors"

    def listed(names: list[str]) -> str:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more

    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    shapes = [f"{k} {tuple(getattr(saved[k], 'shape', ()))} instead of {tuple(v.shape)}"
              for k, v in expected.items() if k in saved
              and tuple(getattr(saved[k], "shape", ())) != tuple(v.shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing ({listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s) ({listed(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape ({listed(shapes)})")
    return "; ".join(parts)
