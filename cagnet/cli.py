"""The ``cagnet`` command: train, eval, predict, describe, data check, convert-official.

Examples::

    cagnet train --preset toy --method cagnet --out runs/toy
    torchrun --nproc_per_node=4 -m cagnet train --preset voc --out runs/voc
    cagnet eval --checkpoint runs/toy/checkpoint.pt --calibration 2
    cagnet predict --checkpoint runs/toy/checkpoint.pt street.png --out preds/
    cagnet describe --preset voc
    cagnet data check --dataset voc --root ~/data/voc
    cagnet convert-official voc12_ourbest.pth --preset voc --out voc_official.pt
    cagnet eval --checkpoint voc_official.pt --protocol both

Bad input (an unknown preset, method or class, a ``--set`` value of the wrong type or out
of range, a corrupt checkpoint or one from another run, a diverging loss) ends with a
one-line message on stderr and exit code 2, checked before any work where it can be. No
output is replaced by surprise: ``train --out`` refuses a folder that is not empty (use
``--resume`` to continue the run in it, or ``--overwrite``), and ``eval --out`` and
``predict`` refuse to replace earlier outputs without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import typing
from pathlib import Path

from cagnet.config import METHODS, PRESETS, Config, get_preset
from cagnet.errors import CagnetError, ConfigError

EXIT_BAD_INPUT = 2


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, object]]:
    """``["train.lr=1e-3", "model.multiscale=[1.0]"]`` -> ``{"train": {"lr": 0.001}, ...}``.

    Each value is read as its field's type (`cagnet.validation.parse_value`): numbers,
    true/false, null for optional fields, lists as JSON (``[1, 0.75]``) or comma-separated.
    """
    from cagnet.validation import parse_set

    return parse_set(pairs)[0]


def build_config(args: argparse.Namespace) -> Config:
    """The preset named on the command line with its options applied."""
    from cagnet.train import config_with
    from cagnet.validation import check_schedule, parse_set, validate_config

    cfg = get_preset(args.preset).replace(method=args.method)
    sections, origins = parse_set(args.set or [])
    data = sections.setdefault("data", {})
    train = sections.setdefault("train", {})
    model = sections.setdefault("model", {})
    if args.split is not None:
        data["split"] = args.split
        origins["data.split"] = "--split"
    if args.unseen is not None:
        data["unseen"] = tuple(n.strip() for n in args.unseen.split(",") if n.strip())
        if not data["unseen"]:
            raise ConfigError(f"--unseen {args.unseen!r} names no class; a zero-shot run needs "
                              "unseen classes: give comma-separated class names, or leave "
                              "--unseen out to use --split")
        origins["data.unseen"] = "--unseen"
    if args.root is not None:
        if cfg.data.dataset == "toy":
            raise ConfigError(f"--root {args.root}: the toy preset reads no dataset folder (its "
                              "world is generated); leave --root out")
        data["root"] = args.root
        origins["data.root"] = "--root"
    for name in ("seed", "iters", "finetune_iters"):
        if getattr(args, name) is not None:
            train[name] = getattr(args, name)
            origins[f"train.{name}"] = f"--{name.replace('_', '-')} {getattr(args, name)}"
    if getattr(args, "from_scratch", False):
        model["pretrained"] = False
        origins["model.pretrained"] = "--from-scratch"
    if getattr(args, "self_train", False):
        train["self_train"] = True
        origins["train.self_train"] = "--self-train"
    if getattr(args, "weights", None) is not None:
        model["weights"] = args.weights
        origins["model.weights"] = f"--weights {args.weights}"
    cfg = validate_config(config_with(cfg, **sections), origins)
    if args.command == "train":
        check_schedule(cfg, origins)
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from cagnet import distributed
    from cagnet.train import fit, resolve_device
    from cagnet.validation import check_run_folder, clear_run_files, parse_words

    cfg = build_config(args)
    substitutes = parse_words(args.word or [], cfg.data.dataset)
    if substitutes and getattr(cfg.data, "embeddings", "gensim") != "gensim":
        raise ConfigError("--word applies to embeddings built from word vectors; add "
                          "--set data.embeddings=gensim")
    out = check_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)
    device = resolve_device(args.device)
    main_process = distributed.init_distributed(device.type).is_main
    if args.resume and not (out / "checkpoint.pt").exists() and main_process:
        print(f"no checkpoint in {out} yet; starting from scratch", file=sys.stderr)
    before = set(out.iterdir()) if out.is_dir() else None
    made = next((p for p in reversed((out, *out.parents)) if not p.exists()), None)
    if args.overwrite and before is not None and main_process:
        clear_run_files(out)
        before = set(out.iterdir())
    try:
        result = fit(cfg, out, device=args.device, resume=args.resume,
                     progress=not args.no_progress, substitutes=substitutes)
    except BaseException:
        if main_process:
            _remove_unfinished(out, before, made)
        raise
    finally:
        distributed.cleanup()
    if result.metrics is not None and main_process:
        m, c = result.metrics, result.metrics["calibrated"]
        print(f"seen mIoU {m['miou_seen']:.4f}  unseen mIoU {m['miou_unseen']:.4f}  "
              f"hIoU {m['hiou']:.4f}  (calibration {c['calibration']:g}: seen "
              f"{c['miou_seen']:.4f} unseen {c['miou_unseen']:.4f} hIoU {c['hiou']:.4f})")
        written = [p for p in (out / "checkpoint.pt", out / "metrics.json") if p.is_file()]
        if written:
            print(f"wrote {' and '.join(map(str, written))}")
    return 0


def _remove_unfinished(out: Path, before: set[Path] | None, made: Path | None) -> None:
    """After a failed start: remove what the run made (``made``: the first folder it created,
    or the new entries of ``out``) if it saved no checkpoint."""
    import shutil

    if (out / "checkpoint.pt").exists() or not out.is_dir():
        return
    if before is None:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        return
    for p in set(out.iterdir()) - before:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def cmd_eval(args: argparse.Namespace) -> int:
    from cagnet.checkpoint import load_model
    from cagnet.data import build_dataset
    from cagnet.evaluate import evaluate_calibrations, official_test_size, write_metrics
    from cagnet.metrics import run_summary
    from cagnet.validation import check_output_file

    out = check_output_file(args.out, "--out", args.overwrite) if args.out else None
    model, cfg, classes = load_model(args.checkpoint, args.device)
    if args.root is not None:
        cfg = cfg.replace(data=dataclasses.replace(cfg.data, root=args.root))
    dataset = build_dataset(cfg.data, "test")
    batch = cfg.train.batch_size if cfg.data.dataset == "toy" else 1
    gamma = cfg.train.calibration if args.calibration is None else args.calibration
    protocols = ("full", "official") if args.protocol == "both" else (args.protocol,)
    size = official_test_size(cfg.data.dataset, cfg.data.image_size)
    metrics: dict = run_summary(cfg, classes)
    for protocol in protocols:  # the first at the top level, "both" adds metrics["official"]
        uncal, cal = evaluate_calibrations(model, dataset, classes, (0.0, gamma),
                                           next(model.parameters()).device, batch, protocol,
                                           size)
        scored = {**uncal, "calibrated": cal}
        if protocol == protocols[0]:
            metrics.update(scored)
        else:
            metrics[protocol] = scored
        for name, m in (("plain", uncal), (f"calibration {gamma:g}", cal)):
            print(f"{protocol} protocol, {name}: seen mIoU {m['miou_seen']:.4f}  unseen mIoU "
                  f"{m['miou_unseen']:.4f}  hIoU {m['hiou']:.4f}  mIoU {m['miou']:.4f}  "
                  f"pixel acc {m['pixel_acc']:.4f}")
    if model.context is not None:
        from cagnet.diagnostics import format_health, health_of

        metrics["code_health"] = health_of(model, dataset, batch, images=64)
        print(f"code health (first {min(64, len(dataset))} test images): "
              f"{format_health(metrics['code_health'])}")
    if out is not None:
        write_metrics(metrics, out)
        print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from cagnet import viz
    from cagnet.checkpoint import load_model
    from cagnet.validation import check_output_folder

    out = check_output_folder(args.out)
    images = _readable_images(args.images)
    names = output_stems(images)
    outputs = [(out / f"{n}_mask.png", out / f"{n}_overlay.png") for n in names]
    if not args.overwrite:
        taken = [p for pair in outputs for p in pair if p.exists()]
        if taken:
            raise ConfigError(f"--out {out} already holds {taken[0].name}"
                              f"{f' and {len(taken) - 1} more outputs' if len(taken) > 1 else ''}"
                              "; pass --overwrite to replace them, or another --out folder")
    model, cfg, classes = load_model(args.checkpoint, args.device)
    device = next(model.parameters()).device
    colors = viz.class_palette(classes["names"])
    seen = torch.tensor(classes["seen"], device=device)
    out.mkdir(parents=True, exist_ok=True)
    mean = torch.tensor(cfg.data.mean).view(3, 1, 1)
    std = torch.tensor(cfg.data.std).view(3, 1, 1)
    model.eval()
    for path, (mask_path, overlay_path) in zip(images, outputs, strict=True):
        rgb = np.array(_read_rgb(path))  # (H, W, 3) uint8, writable
        x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - mean) / std
        with torch.no_grad():
            logits = model.predict(x[None].to(device))[0].float()  # (K, H, W)
        if args.calibration:
            logits[seen] -= args.calibration
        pred = logits.argmax(0).cpu().numpy()
        Image.fromarray(viz.colorize(pred, colors)).save(mask_path)
        Image.fromarray(viz.overlay(rgb, pred, colors)).save(overlay_path)
        found = [classes["names"][k] for k in np.unique(pred)]
        print(f"{path}: {', '.join(found)} -> {mask_path}, {overlay_path}")
    return 0


def _read_rgb(path: Path):
    """``(H, W, 3)`` uint8 RGB of an image file (16-bit images rescaled); one-line errors."""
    from PIL import Image, UnidentifiedImageError

    from cagnet.data.base import image_to_rgb, too_large
    from cagnet.errors import DataError

    try:
        with Image.open(path) as im:
            return image_to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise DataError(too_large(path, exc)) from None
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {str(exc).splitlines()[0] if str(exc) else ''}"
                        " (not an image, or a corrupt or truncated one)") from None


def _readable_images(paths: list[str]) -> list[Path]:
    """The image files named on the command line, each checked before any work (a missing,
    corrupt or oversized one is refused by name); the same file named twice counts once."""
    from PIL import Image, UnidentifiedImageError

    from cagnet.data.base import too_large
    from cagnet.errors import DataError

    out: list[Path] = []
    resolved: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            raise DataError(f"image {p} is a folder; pass image files (e.g. {p / '*.png'})")
        if not p.is_file():
            raise DataError(f"image {p} does not exist")
        if p.resolve() in resolved:
            continue
        try:
            with Image.open(p) as im:
                im.verify()
        except Image.DecompressionBombError as exc:
            raise DataError(too_large(p, exc)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read image {p}: {str(exc).splitlines()[0] if str(exc) else ''}"
                            " (not an image, or a corrupt or truncated one)") from None
        resolved.add(p.resolve())
        out.append(p)
    return out


def output_stems(paths: list[Path]) -> list[str]:
    """Distinct output names for input images: the file stem, with as many parent folders
    (``a_x``, ``b_x`` for ``a/x.png``, ``b/x.png``) or the extension (``x_png``, ``x_jpg``) as
    it takes to tell apart files that share a stem."""
    def label(p: Path, depth: int, ext: bool) -> str:
        folders = p.resolve().parent.parts[1:]
        parts = list(folders[len(folders) - depth:]) if depth else []
        return "_".join([*parts, p.stem + (f"_{p.suffix.lstrip('.')}" if ext else "")])

    names = [p.stem for p in paths]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(p.stem, []).append(i)
    deepest = max((len(p.resolve().parts) for p in paths), default=0)
    for idx in (g for g in groups.values() if len(g) > 1):
        options = ([label(paths[i], depth, ext) for i in idx]
                   for ext in (False, True) for depth in range(deepest))
        labels = next((o for o in options if len(set(o)) == len(o)), None)
        for k, i in enumerate(idx):
            names[i] = labels[k] if labels else f"{names[i]}_{k + 1}"
    taken: set[str] = set()
    for i, n in enumerate(names):  # a label that met another file's stem
        k, unique = 1, n
        while unique in taken:
            k += 1
            unique = f"{n}_{k}"
        names[i] = unique
        taken.add(unique)
    return names


def cmd_describe(args: argparse.Namespace) -> int:
    from cagnet.models import count_parameters

    cfg = get_preset(args.preset).replace(method=args.method)
    print(json.dumps(count_parameters(cfg)))
    return 0


def cmd_convert_official(args: argparse.Namespace) -> int:
    from cagnet.convert import convert_official

    path = convert_official(args.file, args.preset, args.out)
    print(f"wrote {path} (official model {args.file}, preset {args.preset}); score it with "
          f"`cagnet eval --checkpoint {path} --protocol both`")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from cagnet.data import check_dataset, format_report

    if args.dataset == "toy" and args.root is not None:
        raise ConfigError(f"--root {args.root}: the toy dataset is generated, not read from a "
                          "folder; leave --root out")
    report = check_dataset(args.dataset, args.root, sample=args.sample)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if report["ok"]:
        return 0
    print(f"cagnet data check: error: {args.dataset} at {report['root']} is not ready "
          f"({len(report['missing'])} missing, {len(report['problems'])} bad file(s); see "
          "the report above)", file=sys.stderr)
    return EXIT_BAD_INPUT


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``cagnet train: error: argument --iters: ...``), exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _finite(text: str) -> float:
    """An argparse type: a finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    p.add_argument("--self-train", action="store_true",
                   help="then self-train on pseudo-labelled unseen pixels and fine-tune again "
                   "(train.self_train; ZS3Net's +ST)")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in OUT (by default a folder that holds files is refused)")
    p.add_argument("--from-scratch", action="store_true",
                   help="no ImageNet weights for the ResNet-101 trunk (model.pretrained=false)")
    p.add_argument("--weights", metavar="FILE",
                   help="start the ResNet-101 trunk from this weights file (model.weights)")
    p.add_argument("--word", action="append", metavar="NAME=WORDS",
                   help="embed a class (or a word of its name) by other words when the word "
                   "vectors lack it, e.g. --word \"tv monitor=television\" (repeatable)")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. train.lr=1e-3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="folder for checkpoint, metrics, logs")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="score a checkpoint on its test set")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--calibration", type=_finite,
                   help="constant subtracted from seen-class scores (default: the config's)")
    p.add_argument("--root", help="dataset folder")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--protocol", choices=["full", "official", "both"], default="full",
                   help="full: full resolution, logits upsampled; official: images warped to "
                   "513x513, scored at feature resolution (the official test); both: each")
    p.add_argument("--out", help="write the metrics JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="segment images: colour masks and overlays (PNG)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--calibration", type=_finite, default=0.0)
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--out", required=True, help="folder for NAME_mask.png and NAME_overlay.png")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("describe", help="parameter counts of a preset's networks (JSON)")
    p.add_argument("--preset", choices=list(PRESETS), default="voc")
    p.add_argument("--method", choices=list(METHODS), default="cagnet")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("convert-official",
                       help="turn a released official model (.pth) into a cagnet checkpoint")
    p.add_argument("file", metavar="FILE.pth", help="e.g. voc12_ourbest.pth")
    p.add_argument("--preset", choices=["voc", "context", "cocostuff"], required=True)
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.set_defaults(func=cmd_convert_official)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    c = data_sub.add_parser("check", help="verify a dataset folder (files, sizes, labels)")
    c.add_argument("--dataset", choices=["toy", "voc", "context", "cocostuff"], required=True)
    c.add_argument("--root", help="dataset folder (default: $CAGNET_DATA/DATASET)")
    c.add_argument("--sample", type=_positive_int, default=200,
                   help="label maps to read and check")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=cmd_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cagnet`` and ``python -m cagnet``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CagnetError, ValueError, OSError) as exc:
        if os.environ.get("CAGNET_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"cagnet {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130


def _interrupted(args: argparse.Namespace) -> str:
    """What an interrupted command leaves behind and how to go on."""
    if args.command != "train":
        return f"cagnet {args.command}: interrupted"
    checkpoint = Path(args.out) / "checkpoint.pt"
    if checkpoint.is_file():
        return (f"cagnet train: interrupted; {checkpoint} holds the last saved iteration: run "
                "the same command with --resume to continue from it")
    return ("cagnet train: interrupted before the first checkpoint; nothing was kept, run the "
            "command again")
