"""Released official CaGNet models as checkpoints of this package (``cagnet convert-official``).

The official ``trainer.save`` writes ``{'iteration', 'state_dict': OurModel.state_dict()}``;
a bare state dict (and a ``module.`` prefix of ``DataParallel``) is read too. Every tensor
is placed by name and shape (``L`` = 2..5, ``N`` = 1, 2, ...; ``i`` = 0..4, ``j`` = 0..3)::

    official (model.py OurModel, networks.py, resnet.py, blocks.py)   this package (CaGNet)
    back.scale.layer1.conv1.conv.weight                 backbone.trunk.0.weight         (*)
    back.scale.layer1.conv1.bn.{weight,bias,running_*}  backbone.trunk.1.*              (*)
    back.scale.layerL.blockN.reduce.{conv,bn}.*         backbone.trunk.{L+2}.{N-1}.{conv1,bn1}.*
    back.scale.layerL.blockN.conv3x3.{conv,bn}.*        backbone.trunk.{L+2}.{N-1}.{conv2,bn2}.*
    back.scale.layerL.blockN.increase.{conv,bn}.*       backbone.trunk.{L+2}.{N-1}.{conv3,bn3}.*
    back.scale.layerL.block1.proj.{conv,bn}.*           backbone.trunk.{L+2}.0.downsample.{0,1}.*
    back.scale.aspp.stages.c{j}.{weight,bias}           backbone.aspp.branches.{j}.*
    back.scale.contextual{1,2,3}.conv.weight            context.dilated.{0,1,2}.weight
    back.scale.fc_1.conv.weight                         context.selector.conv.weight
    back.scale.contextualpool.conv.weight               context.fuse.weight
    back.scale.contextuallocalmu.conv.weight            context.mu.weight
    back.scale.contextuallocalsigma.conv.weight         context.logvar.weight
    gen.mlp.{i}.conv.{weight,bias}                      generator.mlp.{3 i}.*
    gen.mlp.5.{weight,bias}                             generator.mlp.15.*
    dis.fc.conv.{weight,bias}                           discriminator.shared.0.*
    dis.pred.{weight,bias}                              discriminator.gan_head.*
    dis.cls.{weight,bias}                               discriminator.cls_head.*        (**)
    Em_all.weight                                       class_embeddings                (**)
    Em_vis.weight                                       (not used: Em_all's seen rows, padded)

(*) The official trunk reads BGR images in 0-255 minus the mean of configs/*.yaml
``IMAGE.MEAN`` (cv2, libs/datasets); this package feeds RGB ``(x / 255 - mean) / std``.
The first conv takes the difference: its input channels are reversed and scaled by
``255 std``, and what is left of the means (``255 mean - IMAGE.MEAN``, under one grey
level) moves into BN1's running mean; exact but at the image border.

(**) The official classifier orders classes as seen_cls.npy + novel_cls.npy and adds one
output no label targets (``bg`` in the configs): its rows are taken in this package's class
order (`cagnet.official.OFFICIAL_ORDER`); VOC's background, which has no official class,
takes that extra row, which Pascal-Context and COCO-Stuff drop. ``Em_all`` (the normalised
official embeddings of those classes) gives ``class_embeddings``; VOC's background row is 0.

The converted checkpoint sets ``model.selector = "official"`` (networks.py ``fc_1``: conv,
ReLU, sigmoid) and holds the preset's own split, which must be the official one.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from cagnet.config import Config, get_preset
from cagnet.errors import ConfigError, DataError
from cagnet.official import (
    OFFICIAL_LABELS,
    OFFICIAL_NUM_NOVEL,
    OFFICIAL_ORDER,
    official_ids,
)

# configs/{voc12,context,cocostuff}.yaml IMAGE.MEAN R, G, B (subtracted from BGR 0-255)
OFFICIAL_MEAN_RGB = (122.675, 116.669, 104.008)
SKIP = ""  # official keys with no tensor of their own here
_BOTTLENECK = {"reduce": ("conv1", "bn1"), "conv3x3": ("conv2", "bn2"),
               "increase": ("conv3", "bn3"), "proj": ("downsample.0", "downsample.1")}
_MODULES = {
    "back.scale.contextual1.conv": "context.dilated.0",
    "back.scale.contextual2.conv": "context.dilated.1",
    "back.scale.contextual3.conv": "context.dilated.2",
    "back.scale.fc_1.conv": "context.selector.conv",
    "back.scale.contextualpool.conv": "context.fuse",
    "back.scale.contextuallocalmu.conv": "context.mu",
    "back.scale.contextuallocalsigma.conv": "context.logvar",
    "dis.fc.conv": "discriminator.shared.0",
    "dis.pred": "discriminator.gan_head",
    "dis.cls": "discriminator.cls_head",
    "Em_all": SKIP,
    "Em_vis": SKIP,
}
_STEM = re.compile(r"back\.scale\.layer1\.conv1\.(conv|bn)\.(\w+)")
_BLOCK = re.compile(r"back\.scale\.layer([2-5])\.block(\d+)\.(reduce|conv3x3|increase|proj)"
                    r"\.(conv|bn)\.(\w+)")
_ASPP = re.compile(r"back\.scale\.aspp\.stages\.c(\d+)\.(weight|bias)")
_GEN = re.compile(r"gen\.mlp\.(\d+)(?:\.conv)?\.(weight|bias)")


def our_key(key: str) -> str | None:
    """This package's name for official key ``key``; `SKIP` for Em_*, None if unknown."""
    if m := _STEM.fullmatch(key):
        return f"backbone.trunk.{0 if m[1] == 'conv' else 1}.{m[2]}"
    if m := _BLOCK.fullmatch(key):
        part = _BOTTLENECK[m[3]][0 if m[4] == "conv" else 1]
        return f"backbone.trunk.{int(m[1]) + 2}.{int(m[2]) - 1}.{part}.{m[5]}"
    if m := _ASPP.fullmatch(key):
        return f"backbone.aspp.branches.{m[1]}.{m[2]}"
    if m := _GEN.fullmatch(key):  # a hidden layer's Conv2dBlock i, or the last conv
        return f"generator.mlp.{3 * int(m[1])}.{m[2]}"
    module, _, name = key.rpartition(".")
    if module in _MODULES:
        return _MODULES[module] and f"{_MODULES[module]}.{name}"
    return None


def official_state_dict(obj: object, what: str = "the file") -> dict[str, Tensor]:
    """The tensors of an official save: ``obj['state_dict']`` or ``obj`` itself, without a
    ``module.`` prefix."""
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise ConfigError(f"{what} holds no state dict (expected the official trainer's "
                          "{'iteration', 'state_dict'} or a bare state dict)")
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def class_rows(dataset: str, names: Sequence[str]) -> list[int]:
    """Row of the official classifier for each class of ``names`` (the extra row for VOC's
    background)."""
    order = OFFICIAL_ORDER[dataset]
    rows = []
    for name, label in zip(names, official_ids(dataset, names), strict=True):
        if label in order:
            rows.append(order.index(label))
        elif dataset == "voc" and label == 0:
            rows.append(len(order))
        else:
            raise DataError(f"class {name!r} has no output in the official {dataset} classifier")
    return rows


def fold_input_normalisation(conv1: Tensor, running_mean: Tensor, mean: Sequence[float],
                             std: Sequence[float]) -> tuple[Tensor, Tensor]:
    """An official first conv (64, 3, 7, 7) on BGR 0-255 minus `OFFICIAL_MEAN_RGB` and its BN
    running mean (64,) -> the pair for RGB ``(x / 255 - mean) / std`` input (see module doc)."""
    rgb = conv1.flip(1)  # input channels B, G, R -> R, G, B
    scale = 255 * torch.tensor(std, dtype=conv1.dtype).view(1, 3, 1, 1)
    offset = 255 * torch.tensor(mean, dtype=conv1.dtype) - torch.tensor(OFFICIAL_MEAN_RGB,
                                                                        dtype=conv1.dtype)
    shift = rgb.sum(dim=(2, 3)) @ offset  # (64,): what the offset adds before BN1
    return rgb * scale, running_mean - shift.to(running_mean.dtype)


def _adapt(key: str, value: Tensor, dataset: str, names: Sequence[str]) -> Tensor:
    """Classifier rows in this package's class order; other tensors unchanged."""
    if not key.startswith("discriminator.cls_head."):
        return value
    expected = len(OFFICIAL_ORDER[dataset]) + 1
    if value.shape[0] != expected:
        raise ConfigError(f"dis.cls has {value.shape[0]} outputs, the official {dataset} "
                          f"classifier {expected}: the file is not an official {dataset} model")
    return value[class_rows(dataset, names)]


def _embeddings(state: Mapping[str, Tensor], cfg: Config, names: Sequence[str]) -> Tensor:
    """(K, d) class embeddings from ``Em_all`` (official order), 0 for VOC's background."""
    dataset, d = cfg.data.dataset, cfg.model.embed_dim
    if "Em_all.weight" not in state:
        from cagnet.embeddings import official_embeddings

        return torch.from_numpy(official_embeddings(names, dataset))
    table, order = state["Em_all.weight"].float(), OFFICIAL_ORDER[dataset]
    if tuple(table.shape) != (len(order), d):
        raise ConfigError(f"Em_all.weight has shape {tuple(table.shape)}, expected "
                          f"({len(order)}, {d}) for {dataset}")
    out = torch.zeros(len(names), d)
    for k, label in enumerate(official_ids(dataset, names)):
        if label in order:
            out[k] = table[order.index(label)]
    return out


def _refuse(unmatched: list[str], mismatched: list[str], missing: list[str]) -> None:
    parts = [f"{len(v)} {what} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
             for what, v in (("official keys with no place here", unmatched),
                             ("shape mismatches", mismatched),
                             ("tensors of this model the file lacks", missing)) if v]
    if parts:
        raise ConfigError("the file does not fit this model: " + "; ".join(parts))


def convert_state_dict(state: Mapping[str, Tensor], cfg: Config,
                       names: Sequence[str]) -> dict[str, Tensor]:
    """Official tensors -> the ``state_dict`` of ``CaGNet(cfg, len(names), ...)``.

    Refuses (ConfigError naming the first keys and the counts) any official key without a
    place here, any shape mismatch, and any tensor of this model the file lacks (BatchNorm's
    ``num_batches_tracked`` excepted).
    """
    from cagnet.models import CaGNet

    bare = cfg.replace(model=dataclasses.replace(cfg.model, pretrained=False, weights=None))
    with torch.device("meta"):
        own = CaGNet(bare, len(names), torch.zeros(len(names), cfg.model.embed_dim)).state_dict()
    out: dict[str, Tensor] = {}
    unmatched, mismatched = [], []
    for key, value in state.items():
        ours = our_key(key)
        if ours == SKIP:
            continue
        if ours is None or ours not in own:
            unmatched.append(key)
            continue
        value = _adapt(ours, value, cfg.data.dataset, names)
        if value.shape != own[ours].shape:
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[ours].shape)}")
            continue
        out[ours] = value.detach().clone()
    missing = [k for k in own if k not in out and k != "class_embeddings"
               and not k.endswith("num_batches_tracked")]
    _refuse(unmatched, mismatched, missing)
    out["backbone.trunk.0.weight"], out["backbone.trunk.1.running_mean"] = \
        fold_input_normalisation(out["backbone.trunk.0.weight"],
                                 out["backbone.trunk.1.running_mean"], cfg.data.mean,
                                 cfg.data.std)
    out["class_embeddings"] = _embeddings(state, cfg, names)
    return out


def converted_config(preset: str) -> Config:
    """The preset's config for an official model: official Context Selector, no downloads."""
    cfg = get_preset(preset)
    if cfg.data.dataset not in OFFICIAL_ORDER or cfg.model.backbone != "deeplabv2":
        raise ConfigError(f"preset {preset!r} has no official model; choose voc, context or "
                          "cocostuff")
    return cfg.replace(method="cagnet", model=dataclasses.replace(
        cfg.model, selector="official", pretrained=False, weights=None))


def _check_split(cfg: Config) -> dict:
    """The preset's class split as checkpoint data; refused unless it is the official one."""
    from cagnet.data import class_split

    classes = class_split(cfg.data)
    dataset = cfg.data.dataset
    novel = OFFICIAL_ORDER[dataset][-OFFICIAL_NUM_NOVEL[dataset]:]
    if sorted(official_ids(dataset, classes.unseen_names())) != sorted(novel):
        official = [OFFICIAL_LABELS[dataset][i] for i in novel]
        raise ConfigError(f"the official {dataset} model is trained with unseen classes "
                          f"{official}; the preset's split differs")
    return {"names": list(classes.names), "seen": list(classes.seen),
            "unseen": list(classes.unseen)}


def convert_official(path: str | os.PathLike, preset: str, out: str | os.PathLike) -> Path:
    """Convert the official model file ``path`` for ``preset`` into checkpoint ``out``."""
    from cagnet.checkpoint import read_weights_file, save_checkpoint

    path = Path(path)
    obj = read_weights_file(path, "official model")
    cfg = converted_config(preset)
    classes = _check_split(cfg)
    state = convert_state_dict(official_state_dict(obj, str(path)), cfg, classes["names"])
    iteration = obj.get("iteration", 0) if isinstance(obj, Mapping) else 0
    return save_checkpoint(out, {
        "config": cfg.to_dict(), "model": state, "iteration": int(iteration), "stage": "done",
        "classes": classes, "source": f"official model {path.name}",
    })
