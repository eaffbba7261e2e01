"""Does a trained toy model's contextual code carry context? One JSON line per checkpoint.

    python benchmarks/context_report.py runs/toy-cagnet/checkpoint.pt [more.pt ...]

For each checkpoint: CM's instruments on the test images (`cagnet.diagnostics`), a linear
probe on mu that predicts the stuff a thing lies on (trained on training images, scored on
test images, with chance), how much closer G(w, own mu) lands to the real feature than
G(w, another image's mu), whether G still draws the class it is asked for when given a
pixel's own code (`class_fidelity`), whether G's fakes for a thing class land nearest to the
real features of the context they were generated in (`context_modes`, `mode_match`; seen and
unseen thing classes apart), seen / unseen mIoU on the pixels of each context, and how much
of each unseen thing is found on and off its shape's favourite stuff (`prior_shortcut`).
Methods without CM report no code instruments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cagnet.checkpoint import load_model  # noqa: E402
from cagnet.context_eval import (  # noqa: E402
    attention_ablation,
    class_fidelity,
    context_modes,
    context_probe,
    generator_gain,
    mode_match,
    per_context_scores,
    prior_shortcut,
    thing_codes,
)
from cagnet.data import build_dataset  # noqa: E402
from cagnet.data.toy import STUFF  # noqa: E402
from cagnet.diagnostics import dataset_health  # noqa: E402


def batches(dataset, n: int, size: int = 16):
    n = min(n, len(dataset))
    for i in range(0, n, size):
        items = [dataset[j] for j in range(i, min(i + size, n))]
        yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def report(path: str, images: int) -> dict:
    model, cfg, classes = load_model(path, "cpu")
    if cfg.data.dataset != "toy":
        raise SystemExit(f"{path}: the context report needs the toy world (stuff classes known)")
    test = build_dataset(cfg.data, "test")
    train = build_dataset(cfg.data, "train")
    stuff = list(range(len(STUFF)))
    out = {"checkpoint": path, "method": cfg.method, "seed": cfg.train.seed,
           "split": cfg.data.split,
           "per_context": per_context_scores(model, batches(test, images), classes, stuff,
                                             STUFF)}
    out["shortcut"] = prior_shortcut(model, batches(test, images), test.objects,
                                     classes["unseen"])
    if model.generator is not None:
        out["fidelity"] = class_fidelity(model, batches(test, images))
        things = list(range(len(STUFF), model.num_classes))
        modes = context_modes(model, batches(test, images), stuff, things)
        out["modes"] = {}
        for part in ("seen", "unseen"):
            keep = [i for i, c in enumerate(things) if c in set(classes[part])]
            out["modes"][part] = mode_match({k: v[keep] for k, v in modes.items()})
    if model.context is not None:
        out["health"] = dataset_health(model, batches(test, images), torch.device("cpu"))
        tr = thing_codes(model, batches(train, images), stuff)
        te = thing_codes(model, batches(test, images), stuff)
        out["probe"] = context_probe(tr, te, len(stuff))
        out["generator"] = generator_gain(model, batches(test, images))
        out["ablation"] = attention_ablation(model, list(batches(test, images)), classes)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--images", type=int, default=400, help="test (and probe training) images")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    for path in args.checkpoints:
        print(json.dumps(report(path, args.images)), flush=True)


if __name__ == "__main__":
    main()
