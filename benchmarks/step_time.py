"""Time one training step and one fine-tuning step on random data; print one JSON line.

    python benchmarks/step_time.py --preset voc --method cagnet --device cuda --batch 8 --crop 368
    python benchmarks/step_time.py --preset toy --device cpu --batch 4 --iters 3 --warmup 1
    python benchmarks/step_time.py --preset toy --device cpu --set model.feature_norm=false

Random images and labels (seen classes, a band of ignored pixels) and random unit class
embeddings: nothing is downloaded. Each step is timed between device synchronisations, the
median is reported; peak memory is measured after the warm-up (GPU only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cagnet.config import METHODS, PRESETS, get_preset  # noqa: E402
from cagnet.data import class_split  # noqa: E402
from cagnet.errors import ConfigError  # noqa: E402
from cagnet.train import Trainer, config_with, resolve_device  # noqa: E402
from cagnet.validation import parse_set, validate_config  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step, n: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(n):
        _sync(device)
        t = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - t) * 1000)
    return times


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=list(PRESETS), default="voc")
    p.add_argument("--method", choices=list(METHODS), default="cagnet")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=None, help="default: the preset's batch size")
    p.add_argument("--crop", type=int, default=None, help="default: the preset's crop")
    p.add_argument("--iters", type=int, default=20, help="timed steps of each kind")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the step")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a preset field, as `cagnet train --set` (repeatable)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        sections, origins = parse_set(args.set)
        cfg = validate_config(config_with(get_preset(args.preset).replace(method=args.method),
                                          **sections), origins)
    except ConfigError as e:
        p.error(str(e))
    train = dataclasses.replace(
        cfg.train, batch_size=args.batch or cfg.train.batch_size, compile=args.compile,
        amp=args.amp or cfg.train.amp)
    cfg = cfg.replace(train=train, data=dataclasses.replace(cfg.data,
                                                            crop=args.crop or cfg.data.crop))
    device = resolve_device(args.device)
    torch.manual_seed(0)
    classes = class_split(cfg.data)
    K, d = len(classes.names), cfg.model.embed_dim
    emb = torch.nn.functional.normalize(torch.randn(K, d), dim=1)
    trainer = Trainer(cfg, K, list(classes.seen), list(classes.unseen), emb, device)

    B, S = cfg.train.batch_size, cfg.data.crop
    images = torch.randn(B, 3, S, S, device=device)
    seen = torch.tensor(classes.seen, device=device)
    labels = seen[torch.randint(len(classes.seen), (B, S, S), device=device)]
    labels[:, : S // 8] = 255  # some ignored pixels, as unseen and unlabelled ones are

    step = 0

    def train_step() -> None:
        nonlocal step
        trainer.train_step(images, labels, step)
        step += 1

    _time(train_step, args.warmup, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_ms = statistics.median(_time(train_step, args.iters, device))
    finetune_ms = None
    if trainer.model.generator is not None:
        trainer.set_stage("finetune")
        trainer.train_step(images, labels, step)  # keeps the real features fine-tuning reuses
        _time(trainer.finetune_step, args.warmup, device)
        finetune_ms = statistics.median(_time(trainer.finetune_step, args.iters, device))
    cuda = device.type == "cuda"
    result = {
        "preset": cfg.name, "method": cfg.method, "device": device.type, "batch": B, "crop": S,
        "train_step_ms": round(train_ms, 2),
        "finetune_step_ms": None if finetune_ms is None else round(finetune_ms, 2),
        "images_per_s": round(B / train_ms * 1000, 2),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if cuda else None,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off",
        "compile": cfg.train.compile,
        "set": args.set,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
