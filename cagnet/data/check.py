"""Checking a dataset folder: what is there, what is missing, how to get it.

``check_dataset("voc", "/data/voc")`` returns a report dict; ``format_report`` prints it.
``python -m cagnet data check --dataset voc --root DIR`` shows the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cagnet.config import DataConfig
from cagnet.data.base import IGNORE, data_home, read_image
from cagnet.data.files import Sample
from cagnet.data.splits import class_names
from cagnet.errors import ConfigError, DataError


def _loaders(dataset: str) -> tuple[Callable[[Path, str], list[Sample]],
                                    Callable[[Path], np.ndarray], dict[str, int], str]:
    if dataset == "voc":
        from cagnet.data import voc as m

        return m.voc_samples, m.decode_voc_label, m.EXPECTED, m.HOW
    if dataset == "context":
        from cagnet.data import context as m

        return m.context_samples, m.decode_context_label, m.EXPECTED, m.HOW
    if dataset == "cocostuff":
        from cagnet.data import cocostuff as m

        return m.cocostuff_samples, m.decode_cocostuff_label, m.EXPECTED, m.HOW
    raise ConfigError(f"unknown dataset {dataset!r}; choose voc, context, cocostuff or toy")


def _check_toy(sample: int | None) -> dict:
    from cagnet.data.toy import render_toy

    dcfg = DataConfig(dataset="toy")
    names = class_names("toy")
    raw = render_toy(min(sample or dcfg.num_test, dcfg.num_test), dcfg.image_size,
                     dcfg.data_seed, "test")
    present = np.zeros(len(names), dtype=int)
    for lab in raw.labels:
        present[np.unique(lab)] += 1
    return {"dataset": "toy", "root": None, "ok": True,
            "splits": {"train": {"images": dcfg.num_train, "expected": dcfg.num_train},
                       "test": {"images": dcfg.num_test, "expected": dcfg.num_test}},
            "missing": [], "problems": [], "notes": ["generated on the fly; nothing to download"],
            "checked_labels": len(raw.labels),
            "classes_present": dict(zip(names, present.tolist(), strict=True)),
            "how_to_get": ""}


def check_dataset(dataset: str, root: str | Path | None = None, sample: int | None = 200) -> dict:
    """Validate a dataset folder.

    Lists both splits, checks that every listed image and label file exists, then reads
    ``sample`` evenly spaced (image, label) pairs (all of them if ``sample`` is None) and
    checks that they decode, match in size and hold valid class values. Returns a dict:
    ``dataset``, ``root``, ``ok``, ``splits`` (``{split: {images, expected}}``), ``missing``
    (what is absent), ``problems`` (bad files), ``notes``, ``checked_labels``,
    ``classes_present`` (class name -> number of checked label maps showing it) and
    ``how_to_get``.
    """
    if dataset == "toy":
        return _check_toy(sample)
    samples_of, decode, expected, how = _loaders(dataset)
    names = class_names(dataset)
    root = Path(root).expanduser() if root is not None else data_home() / dataset
    report: dict = {"dataset": dataset, "root": str(root), "ok": False, "splits": {},
                    "missing": [], "problems": [], "notes": [], "checked_labels": 0,
                    "classes_present": {}, "how_to_get": how}
    if not root.is_dir():
        report["missing"].append(f"{root} is a file, not a dataset folder" if root.exists()
                                 else f"the folder {root} does not exist")
        return report
    lists: dict[str, list[Sample]] = {}
    for split in ("train", "test"):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                samples = samples_of(root, split)
            report["notes"] += [str(w.message) for w in caught]
        except DataError as e:
            report["missing"].append(f"{split}: {e}")
            continue
        absent = [p for s in samples for p in (s.image, s.label) if not p.is_file()]
        if absent:
            shown = ", ".join(str(p) for p in absent[:5])
            report["missing"].append(f"{split}: {len(absent)} listed file(s) absent, e.g. {shown}")
        if not samples:
            report["problems"].append(f"{split}: the split is empty")
        report["splits"][split] = {"images": len(samples), "expected": expected[split]}
        if samples and len(samples) != expected[split]:
            report["notes"].append(f"{split}: {len(samples):,} images where the paper's setting "
                                   f"has {expected[split]:,}")
        lists[split] = [s for s in samples if s.image.is_file() and s.label.is_file()]

    present = np.zeros(len(names), dtype=int)
    for samples in lists.values():
        if not samples:
            continue
        n = len(samples) if sample is None else min(len(samples), max(1, sample // len(lists)))
        for i in np.linspace(0, len(samples) - 1, n).round().astype(int):
            s = samples[i]
            try:
                image = read_image(s.image)
                label = decode(s.label)
            except DataError as e:
                report["problems"].append(str(e))
                continue
            if label.shape != image.shape[:2]:
                report["problems"].append(f"label {s.label} and image {s.image} differ in size")
                continue
            ids = np.unique(label)
            present[ids[ids != IGNORE]] += 1
            report["checked_labels"] += 1
    report["classes_present"] = dict(zip(names, present.tolist(), strict=True))
    report["ok"] = not report["missing"] and not report["problems"] and bool(lists)
    return report


def format_report(report: dict) -> str:
    """A readable text version of a `check_dataset` report."""
    lines = [f"{report['dataset']} at {report['root'] or '(generated)'}: "
             f"{'OK' if report['ok'] else 'NOT READY'}"]
    for split, s in report["splits"].items():
        lines.append(f"  {split}: {s['images']:,} images (expected: {s['expected']:,})")
    if report["missing"]:
        lines.append("missing:")
        lines += [f"  - {m}" for m in report["missing"]]
    if report["problems"]:
        lines.append("problems:")
        lines += [f"  - {p}" for p in report["problems"][:20]]
        if len(report["problems"]) > 20:
            lines.append(f"  ... and {len(report['problems']) - 20} more")
    if report["notes"]:
        lines.append("notes:")
        lines += [f"  - {n}" for n in report["notes"]]
    if report["checked_labels"]:
        shown = [f"{n} ({c})" for n, c in report["classes_present"].items() if c]
        absent = [n for n, c in report["classes_present"].items() if not c]
        lines.append(f"classes in {report['checked_labels']} checked label maps: "
                     + ", ".join(shown))
        if absent:
            lines.append("not seen in the checked maps: " + ", ".join(absent))
    if not report["ok"] and report["how_to_get"]:
        lines.append("to get it: " + report["how_to_get"])
    return "\n".join(lines)
