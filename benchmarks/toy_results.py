"""Train every method on the toy world and tabulate the test scores for the book.

    python benchmarks/toy_results.py                     # 3 methods x 2 splits x seed 0
    python benchmarks/toy_results.py --seeds 0,1,2 --splits default,alt

Each run is ``cagnet train --preset toy --method M --split S --seed N`` in a fresh process
(so its wall time is what a user waits). Writes ``book/results_toy.md`` (a markdown table:
seen / unseen mIoU and hIoU without and with calibration, run time) and
``book/results_toy.json``, and prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cagnet.config import METHODS, get_preset  # noqa: E402


def run_one(method: str, split: str, seed: int, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "cagnet", "train", "--preset", "toy", "--method", method,
           "--split", split, "--seed", str(seed), "--device", "cpu", "--no-progress",
           "--out", str(out), *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    m = json.loads((out / "metrics.json").read_text())
    c = m["calibrated"]
    return {"method": method, "split": split, "seed": seed,
            "seen": m["miou_seen"], "unseen": m["miou_unseen"], "hiou": m["hiou"],
            "calibration": c["calibration"], "seen_cal": c["miou_seen"],
            "unseen_cal": c["miou_unseen"], "hiou_cal": c["hiou"], "wall_s": round(wall, 1)}


def markdown(rows: list[dict], cfg_note: str) -> str:
    head = ("| method | split | seed | seen mIoU | unseen mIoU | hIoU | seen mIoU (cal.) "
            "| unseen mIoU (cal.) | hIoU (cal.) | run time (s) |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['method']} | {r['split']} | {r['seed']} | {r['seen']:.3f} | {r['unseen']:.3f} "
        f"| {r['hiou']:.3f} | {r['seen_cal']:.3f} | {r['unseen_cal']:.3f} | {r['hiou_cal']:.3f} "
        f"| {r['wall_s']:.0f} |\n" for r in rows)
    return (f"{head}{body}\n{cfg_note}\n")


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--splits", default=None,
                   help="comma-separated toy splits (default: the first two toy splits)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--runs", default=str(ROOT / "runs" / "toy_results"))
    p.add_argument("--markdown", default=str(ROOT / "book" / "results_toy.md"))
    p.add_argument("--json", default=str(ROOT / "book" / "results_toy.json"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="config override passed to every run")
    args = p.parse_args(argv)

    if args.splits:
        splits = args.splits.split(",")
    else:
        from cagnet.data.splits import SPLITS

        splits = list(SPLITS["toy"])[:2]
    extra = [a for s in args.set for a in ("--set", s)]
    rows = []
    for method in args.methods.split(","):
        for split in splits:
            for seed in map(int, args.seeds.split(",")):
                out = Path(args.runs) / f"{method}_{split}_{seed}"
                row = run_one(method, split, seed, out, extra)
                print(json.dumps(row), flush=True)
                rows.append(row)
    t = get_preset("toy").train
    note = (f"Toy preset: {t.iters} training + {t.finetune_iters} fine-tuning iterations, "
            f"batch {t.batch_size}, CPU. Calibration subtracts {rows[0]['calibration']:g} "
            "from the seen classes' scores at test time."
            + (f" Overrides: {' '.join(args.set)}." if args.set else ""))
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(markdown(rows, note))
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
