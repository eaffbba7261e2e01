"""Which setting keeps CaGNet's contextual codes alive? A screen of the training stage.

    python benchmarks/latent_screen.py                      # every variant, 800 iterations
    python benchmarks/latent_screen.py --variants official,content-l2-free --jobs 2

Each variant is the toy preset with a few `--set` overrides, trained for the first
``--iters`` iterations of the training stage only (no fine-tuning: the codes are shaped
there) with ``cagnet train ... --resume`` in its own folder under ``--root``, named after
the variant and a hash of its whole configuration (a finished run is only scored again; a
changed preset trains afresh), then read by `benchmarks/context_report.py`: CM's instruments
on the test images, the linear probe on mu for the stuff a thing lies on, how much closer
G(w, own mu) lands to the real feature than G(w, another image's mu), whether G, given a
pixel's own code, still draws the class it is asked for (`cagnet.context_eval.class_fidelity`),
and the seen mIoU the segmentation network reached. Writes a markdown table
(``--markdown``) and JSON
(``--json``) and prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cagnet.book import config_digest, spec_config  # noqa: E402
from cagnet.train import config_with  # noqa: E402

# name -> (what it changes, --set overrides); each adds to the previous "content" ones
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "official": ("the toy preset: z detached from G (official)", ()),
    "all": ("every G loss reaches CM and E through z",
            ('model.latent_grad="all"',)),
    "content-mmd": ("the content loss (MMD) reaches CM, not E",
                    ('model.latent_grad="content"',)),
    "content-l2": ("... with the paper's L2 content loss",
                   ('model.latent_grad="content"', 'loss.content="l2"')),
    "content-l2-sigma": ("... and no ReLU on log sigma^2 (sigma may fall below 1)",
                         ('model.latent_grad="content"', 'loss.content="l2"',
                          "model.logvar_relu=false")),
    "content-l2-sigma-kl10": ("... and KL weight 10 instead of 100",
                              ('model.latent_grad="content"', 'loss.content="l2"',
                               "model.logvar_relu=false", "loss.w_kl=10")),
    "content-l2-sigma-kl1": ("... and KL weight 1",
                             ('model.latent_grad="content"', 'loss.content="l2"',
                              "model.logvar_relu=false", "loss.w_kl=1")),
    "content-l2-sigma-kl0": ("... and no KL term",
                             ('model.latent_grad="content"', 'loss.content="l2"',
                              "model.logvar_relu=false", "loss.w_kl=0")),
}


def run_one(name: str, root: Path, iters: int, threads: int) -> dict:
    what, sets = VARIANTS[name]
    cfg = config_with(spec_config("cagnet:" + ";".join(sets), "default", 0),
                      train={"iters": iters, "finetune_iters": 0})
    out = root / f"{name}-{config_digest(cfg)}"  # a changed preset: a new run
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "cagnet", "train", "--preset", "toy", "--iters", str(iters),
           "--finetune-iters", "0", "--device", "cpu", "--no-progress", "--resume",
           "--out", str(out), *(a for s in sets for a in ("--set", s))]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads(subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "context_report.py"),
         str(out / "checkpoint.pt")], check=True, cwd=ROOT, env=env, capture_output=True,
        text=True).stdout)
    return {"variant": name, "what": what, "sets": list(sets), "iters": iters,
            "seen": metrics["miou_seen"], **report["health"], **report["probe"],
            "gain": report["generator"]["gain"], "asked": report["fidelity"]["asked"],
            "own": report["fidelity"]["own"], "asked_prior": report["fidelity"]["asked_prior"],
            "train_s": round(metrics["wall_time_s"], 1)}


def markdown(rows: list[dict]) -> str:
    head = ("| variant | what changes | seen mIoU | active units, fused | spread of mu "
            "| mean sigma | KL per element | probe on mu (chance) | G: own code closer by "
            "| G draws the asked class: own code / N(0, I) (C reads the pixel's class) |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['variant']} | {r['what']} | {r['seen']:.3f} | {r['active_fused']:.2f} "
        f"| {r['mu_spread']:.3g} | {r['sigma_mean']:.2f} | {r['kl']:.2g} "
        f"| {r['probe_acc']:.2f} ({r['chance']:.2f}) | {100 * r['gain']:.1f}% "
        f"| {r['asked']:.2f} / {r['asked_prior']:.2f} ({r['own']:.2f}) |\n"
        for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--iters", type=int, default=800, help="training-stage iterations")
    p.add_argument("--root", default=str(Path.home() / ".cache" / "cagnet" / "latent_screen"))
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each if > 1)")
    p.add_argument("--markdown", default=str(ROOT / "book" / "latent_screen.md"))
    p.add_argument("--json", default=str(ROOT / "book" / "latent_screen.json"))
    args = p.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    root = Path(args.root).expanduser() / f"iters{args.iters}"
    threads = 1 if args.jobs > 1 else int(os.environ.get("OMP_NUM_THREADS", "2"))
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda n: run_one(n, root, args.iters, threads), names))
    for r in rows:
        print(json.dumps(r))
    Path(args.markdown).write_text(markdown(rows))
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
