"""The ``cagnet`` command: train, eval, predict, describe, data check.

Examples::

    cagnet train --preset toy --method cagnet --out runs/toy
    torchrun --nproc_per_node=4 -m cagnet train --preset voc --out runs/voc
    cagnet eval --checkpoint runs/toy/checkpoint.pt --calibration 2
    cagnet predict --checkpoint runs/toy/checkpoint.pt street.png --out preds/
    cagnet describe --preset voc
    cagnet data check --dataset voc --root ~/data/voc

Bad input (an unknown preset, method or class, a corrupt checkpoint or one from another
run, a diverging loss) ends with a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from cagnet.config import METHODS, PRESETS, Config, get_preset
from cagnet.errors import CagnetError, ConfigError

EXIT_BAD_INPUT = 2


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, object]]:
    """``["train.lr=1e-3", "model.multiscale=[1.0]"]`` -> ``{"train": {"lr": 0.001}, ...}``.

    Values are read as JSON when they parse (numbers, true/false/null, lists -> tuples),
    as strings otherwise.
    """
    sections: dict[str, dict[str, object]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in ("model", "data", "loss", "train"):
            raise ConfigError(f"--set expects SECTION.FIELD=VALUE with SECTION one of model, "
                              f"data, loss, train; got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        sections.setdefault(section, {})[name] = tuple(value) if isinstance(value, list) else value
    return sections


def build_config(args: argparse.Namespace) -> Config:
    """The preset named on the command line with its options applied."""
    from cagnet.train import config_with

    cfg = get_preset(args.preset).replace(method=args.method)
    sections = parse_overrides(args.set or [])
    data = sections.setdefault("data", {})
    train = sections.setdefault("train", {})
    if args.split is not None:
        data["split"] = args.split
    if args.unseen is not None:
        data["unseen"] = tuple(n.strip() for n in args.unseen.split(",") if n.strip())
    if args.root is not None:
        data["root"] = args.root
    for name in ("seed", "iters", "finetune_iters"):
        if getattr(args, name) is not None:
            train[name] = getattr(args, name)
    return config_with(cfg, **sections)


def cmd_train(args: argparse.Namespace) -> int:
    from cagnet import distributed
    from cagnet.train import fit, resolve_device

    cfg = build_config(args)
    out = Path(args.out)
    main_process = distributed.init_distributed(resolve_device(args.device).type).is_main
    if args.resume and not (out / "checkpoint.pt").exists() and main_process:
        print(f"no checkpoint in {out} yet; starting from scratch", file=sys.stderr)
    try:
        result = fit(cfg, out, device=args.device, resume=args.resume,
                     progress=not args.no_progress)
    finally:
        distributed.cleanup()
    if result.metrics is not None and main_process:
        m, c = result.metrics, result.metrics["calibrated"]
        print(f"seen mIoU {m['miou_seen']:.4f}  unseen mIoU {m['miou_unseen']:.4f}  "
              f"hIoU {m['hiou']:.4f}  (calibration {c['calibration']:g}: seen "
              f"{c['miou_seen']:.4f} unseen {c['miou_unseen']:.4f} hIoU {c['hiou']:.4f})")
        print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cagnet.checkpoint import load_model
    from cagnet.data import build_dataset
    from cagnet.evaluate import evaluate_calibrations, write_metrics

    model, cfg, classes = load_model(args.checkpoint, args.device)
    if args.root is not None:
        cfg = cfg.replace(data=dataclasses.replace(cfg.data, root=args.root))
    dataset = build_dataset(cfg.data, "test")
    batch = cfg.train.batch_size if cfg.data.dataset == "toy" else 1
    gamma = cfg.train.calibration if args.calibration is None else args.calibration
    uncal, cal = evaluate_calibrations(model, dataset, classes, (0.0, gamma),
                                       next(model.parameters()).device, batch)
    metrics = {"preset": cfg.name, "method": cfg.method, **uncal, "calibrated": cal}
    if args.out:
        write_metrics(metrics, args.out)
    for name, m in (("plain", uncal), (f"calibration {gamma:g}", cal)):
        print(f"{name}: seen mIoU {m['miou_seen']:.4f}  unseen mIoU {m['miou_unseen']:.4f}  "
              f"hIoU {m['hiou']:.4f}  mIoU {m['miou']:.4f}  pixel acc {m['pixel_acc']:.4f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from cagnet import viz
    from cagnet.checkpoint import load_model

    model, cfg, classes = load_model(args.checkpoint, args.device)
    device = next(model.parameters()).device
    colors = viz.palette(len(classes["names"]))
    seen = torch.tensor(classes["seen"], device=device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mean = torch.tensor(cfg.data.mean).view(3, 1, 1)
    std = torch.tensor(cfg.data.std).view(3, 1, 1)
    model.eval()
    for path in map(Path, args.images):
        try:
            rgb = np.array(Image.open(path).convert("RGB"))  # (H, W, 3) uint8, writable
        except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
            raise CagnetError(f"cannot read image {path}: {exc}") from None
        x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - mean) / std
        with torch.no_grad():
            logits = model.predict(x[None].to(device))[0].float()  # (K, H, W)
        if args.calibration:
            logits[seen] -= args.calibration
        pred = logits.argmax(0).cpu().numpy()
        Image.fromarray(viz.colorize(pred, colors)).save(out / f"{path.stem}_mask.png")
        Image.fromarray(viz.overlay(rgb, pred, colors)).save(out / f"{path.stem}_overlay.png")
        found = [classes["names"][k] for k in np.unique(pred)]
        print(f"{path}: {', '.join(found)} -> {out / (path.stem + '_mask.png')}, "
              f"{out / (path.stem + '_overlay.png')}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from cagnet.models import count_parameters

    cfg = get_preset(args.preset).replace(method=args.method)
    print(json.dumps(count_parameters(cfg)))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from cagnet.data import check_dataset, format_report

    report = check_dataset(args.dataset, args.root, sample=args.sample)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cagnet", description="CaGNet: zero-shot semantic segmentation by "
        "context-aware feature generation (ACM MM 2020).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (both stages) and evaluate it")
    p.add_argument("--preset", choices=list(PRESETS), default="toy")
    p.add_argument("--method", choices=list(METHODS), default="cagnet")
    p.add_argument("--unseen", help="comma-separated unseen class names (overrides --split)")
    p.add_argument("--split", help="named unseen split, e.g. cagnet, zs3-2 ... zs3-10")
    p.add_argument("--root", help="dataset folder (default: $CAGNET_DATA or the user cache)")
    p.add_argument("--seed", type=int)
    p.add_argument("--iters", type=int, help="training-stage iterations")
    p.add_argument("--finetune-iters", type=int, help="fine-tuning-stage iterations")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. train.lr=1e-3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="folder for checkpoint, metrics, logs")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="score a checkpoint on its test set")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--calibration", type=float,
                   help="constant subtracted from seen-class scores (default: the config's)")
    p.add_argument("--root", help="dataset folder")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--out", help="write the metrics JSON here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="segment images: colour masks and overlays (PNG)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--calibration", type=float, default=0.0)
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("describe", help="parameter counts of a preset's networks (JSON)")
    p.add_argument("--preset", choices=list(PRESETS), default="voc")
    p.add_argument("--method", choices=list(METHODS), default="cagnet")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    c = data_sub.add_parser("check", help="verify a dataset folder (files, sizes, labels)")
    c.add_argument("--dataset", choices=["toy", "voc", "context", "cocostuff"], required=True)
    c.add_argument("--root", help="dataset folder (default: $CAGNET_DATA/DATASET)")
    c.add_argument("--sample", type=int, default=200, help="label maps to read and check")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cagnet`` and ``python -m cagnet``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CagnetError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("CAGNET_DEBUG"):
            raise
        print(f"cagnet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
