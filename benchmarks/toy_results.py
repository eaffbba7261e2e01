"""Train every method on the toy world and tabulate the test scores for the book.

    python benchmarks/toy_results.py                     # 3 methods x 2 splits x seed 0
    python benchmarks/toy_results.py --seeds 0,1,2 --splits default,alt
    python benchmarks/toy_results.py --methods "zs3net,seen-only@0,cagnet:loss.w_kl=1@0+1"
    python benchmarks/toy_results.py --methods 'cagnet,kl1=cagnet:loss.w_kl=1@0/default'
    # (a named variant, seed 0 on the default split only)

Each run is ``cagnet train --preset toy --method M --split S --seed N --resume`` in a fresh
process, kept in the folder `cagnet.book.run_dir` names, so the book's notebooks load these
runs instead of training them again (and a finished run is only scored). ``--jobs 2`` runs
two at a time with one thread each. Writes ``book/results_toy.md`` (a markdown table: seen /
unseen mIoU and hIoU without and with calibration, training time) and
``book/results_toy.json``, and prints one JSON line per run.
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

from cagnet.book import run_dir, spec_config  # noqa: E402
from cagnet.book import spec_overrides as variant  # noqa: E402
from cagnet.config import METHODS, get_preset  # noqa: E402


def spec_body(spec: str) -> str:
    """``"NAME=METHOD:..."`` -> ``"METHOD:..."``; a spec without a name is its own."""
    name, eq, body = spec.partition("=")
    return body if eq and ":" not in name else spec


def spec_name(spec: str) -> str:
    """The name a run is shown under: NAME of ``"NAME=METHOD:..."``, else the spec."""
    body = spec_body(spec)
    return spec[: len(spec) - len(body) - 1] if body != spec else spec


def planned_runs(methods: str, seeds: list[str], splits: list[str]) -> list[tuple[str, str, int]]:
    """``(spec, split, seed)`` of every run ``--methods`` asks for, in the order of its rows.

    Each comma-separated entry is ``[NAME=]METHOD[:SECTION.FIELD=VALUE;...][@SEED+SEED
    [/SPLIT+SPLIT]]``: values are JSON without ",", ";" or "@" (a tuple value cannot be given
    here); without ``@`` an entry runs ``seeds`` x ``splits``.
    """
    runs = []
    for spec in methods.split(","):
        spec, _, own = spec.partition("@")
        own_seeds, _, own_splits = own.partition("/")
        runs += [(spec, split, int(seed))
                 for split in (own_splits.split("+") if own_splits else splits)
                 for seed in (own_seeds.split("+") if own_seeds else seeds)]
    return runs


def run_one(spec: str, split: str, seed: int, threads: int) -> dict:
    method, over = variant(spec)
    cfg = spec_config(spec, split, seed)
    out = run_dir(cfg)
    extends = start_from_finished_run(cfg, out)
    sets = [f"{sec}.{k}={json.dumps(v)}" for sec, kv in over.items() for k, v in kv.items()]
    cmd = [sys.executable, "-m", "cagnet", "train", "--preset", "toy", "--method", method,
           "--split", split, "--seed", str(seed), "--device", "cpu", "--no-progress",
           "--resume", "--out", str(out), *(a for s in sets for a in ("--set", s))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    m = json.loads((out / "metrics.json").read_text())
    c = m["calibrated"]
    report = json.loads(subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "context_report.py"),
         str(out / "checkpoint.pt")], check=True, cwd=ROOT, env=env, capture_output=True,
        text=True).stdout)
    return {"method": spec_name(spec), "spec": spec_body(spec), "split": split, "seed": seed,
            "context": report,
            "seen": m["miou_seen"], "unseen": m["miou_unseen"], "hiou": m["hiou"],
            "calibration": c["calibration"], "seen_cal": c["miou_seen"],
            "unseen_cal": c["miou_unseen"], "hiou_cal": c["hiou"],
            "train_s": round(m["wall_time_s"], 1), "threads": threads,
            **({"extends": extends} if extends else {})}


def start_from_finished_run(cfg, out: Path) -> str | None:
    """A self-training run with no checkpoint yet starts from the finished run of the same
    configuration without self-training (its checkpoint copied in, then resumed): stages 1-2
    are that run, so they are not trained twice (resuming is bit-identical, and nothing
    before stage 3 depends on ``train.self_train``). Returns that run's folder name (kept in
    ``extends.txt`` in the run's folder, for later scorings), or None. The copied
    checkpoint's wall time is counted in the new run's training time."""
    marker = out / "extends.txt"
    if not cfg.train.self_train:
        return None
    if (out / "checkpoint.pt").exists():
        return marker.read_text().strip() if marker.exists() else None
    import dataclasses
    import shutil

    from cagnet.checkpoint import load_checkpoint

    base = run_dir(cfg.replace(train=dataclasses.replace(cfg.train, self_train=False)))
    t = cfg.train
    if not (base / "checkpoint.pt").exists():
        return None
    if load_checkpoint(base / "checkpoint.pt")["iteration"] != t.iters + t.finetune_iters:
        return None
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(base.name + "\n")
    shutil.copy2(base / "checkpoint.pt", out / "checkpoint.pt")
    return base.name


SCORES = ("seen", "unseen", "hiou", "seen_cal", "unseen_cal", "hiou_cal")


def table(rows: list[dict], keys: tuple[str, ...]) -> str:
    """A markdown table of ``rows``: the ``keys`` columns, the scores and training time."""
    head = ("| " + " | ".join(keys) + " | seen mIoU | unseen mIoU | hIoU | seen mIoU (cal.) "
            "| unseen mIoU (cal.) | hIoU (cal.) | training time (s) |\n"
            "|" + "---|" * (len(keys) + len(SCORES) + 1) + "\n")
    body = "".join(
        "| " + " | ".join(str(r[k]) for k in keys) + " | "
        + " | ".join(f"{r[s]:.3f}" for s in SCORES) + f" | {r['train_s']:.0f} |\n"
        for r in rows)
    return head + body


def means(rows: list[dict]) -> list[dict]:
    """The mean of every score over the seeds of each (method, split)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["split"]), []).append(r)
    return [{"method": m, "split": s, "seeds": len(g),
             **{k: sum(r[k] for r in g) / len(g) for k in (*SCORES, "train_s")}}
            for (m, s), g in groups.items()]


def code_table(rows: list[dict]) -> str:
    """Per run with a contextual module: CM's instruments on the test images, the context
    probe on mu and the generator's gain from the pixel's own code."""
    head = ("| method | split | seed | active units (m1 / m2 / m3 / fused) | spread of mu | KL "
            "| selector spread | probe on mu (chance) | G: own code closer by "
            "| G draws the asked class: own code / N(0, I) (C reads the pixel's class) "
            "| hIoU / with z = 0 in the attention "
            "| fakes in their context's mode: seen / unseen things (chance) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = ""
    for r in rows:
        c = r.get("context", {})
        if "health" not in c:
            continue
        h, p, g = c["health"], c["probe"], c["generator"]
        act = " / ".join(f"{h[k]:.2f}" for k in ("active_m1", "active_m2", "active_m3",
                                                  "active_fused"))
        body += (f"| {r['method']} | {r['split']} | {r['seed']} | {act} | {h['mu_spread']:.3g} "
                 f"| {h['kl']:.2g} | {h['selector_spread']:.3g} | {p['probe_acc']:.2f} "
                 f"({p['chance']:.2f}) | {100 * g['gain']:.1f}% | {fidelity(c)} "
                 f"| {ablation(c)} | {modes(c)} |\n")
    return head + body if body else ""


def modes(context: dict) -> str:
    m = context.get("modes")
    if not m:
        return "—"
    seen, unseen = m["seen"], m["unseen"]
    return f"{seen['matched']:.2f} / {unseen['matched']:.2f} ({unseen['chance']:.2f})"


def ablation(context: dict) -> str:
    a = context.get("ablation")
    if not a:
        return "—"
    return f"{a['as_trained']['hiou']:.3f} / {a['zero_z']['hiou']:.3f}"


def fidelity(context: dict) -> str:
    f = context.get("fidelity")
    if not f:
        return "—"
    return f"{f['asked']:.2f} / {f['asked_prior']:.2f} ({f['own']:.2f})"


def context_groups(rows: list[dict], key: str) -> dict[tuple[str, str], list[dict]]:
    """The context report's ``key`` entry of every run that has one, per (method, split)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("context", {}).get(key):
            groups.setdefault((r["method"], r["split"]), []).append(r["context"][key])
    return groups


def context_table(rows: list[dict]) -> str:
    """Unseen mIoU on the pixels of each context, mean over seeds per (method, split)."""
    groups = context_groups(rows, "per_context")
    if not groups:
        return ""
    names = list(next(iter(groups.values()))[0])
    head = ("| method | split | " + " | ".join(f"on {n}" for n in names) + " |\n"
            + "|---|---|" + "---|" * len(names) + "\n")
    body = "".join(
        f"| {m} | {s} | " + " | ".join(
            f"{sum(g[n]['miou_unseen'] for g in gs) / len(gs):.3f}" for n in names) + " |\n"
        for (m, s), gs in groups.items())
    return head + body


def shortcut_table(rows: list[dict]) -> str:
    """Per (method, split), mean over seeds: the share of unseen things' pixels found on their
    shape's favourite stuff and elsewhere, and elsewhere taken for the favourite shape."""
    groups = context_groups(rows, "shortcut")
    if not groups:
        return ""
    keys = ("on_favourite", "elsewhere", "to_favourite_shape")
    head = ("| method | split | found, on the favourite stuff | found, elsewhere "
            "| elsewhere: taken for the stuff's favourite shape |\n|---|---|---|---|---|\n")
    body = "".join(
        f"| {m} | {s} | " + " | ".join(f"{sum(g[k] for g in gs) / len(gs):.2f}" for k in keys)
        + " |\n" for (m, s), gs in groups.items())
    return head + body


def markdown(rows: list[dict], cfg_note: str) -> str:
    codes = code_table(rows)
    ctx = context_table(rows)
    cut = shortcut_table(rows)
    return (f"Mean over seeds:\n\n{table(means(rows), ('method', 'split', 'seeds'))}\n"
            f"Every run:\n\n{table(rows, ('method', 'split', 'seed'))}\n{cfg_note}\n"
            + (f"\nThe contextual code of every CaGNet run (test images):\n\n{codes}" if codes
               else "")
            + (f"\nUnseen mIoU by the stuff a pixel lies on (mean over seeds):\n\n{ctx}"
               if ctx else "")
            + ("\nThe unseen things' pixels by where the thing lies: on the stuff its shape "
               f"favours, or elsewhere (mean over seeds):\n\n{cut}" if cut else ""))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--splits", default=None,
                   help="comma-separated toy splits (default: the first two toy splits)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each if > 1)")
    p.add_argument("--markdown", default=str(ROOT / "book" / "results_toy.md"))
    p.add_argument("--json", default=str(ROOT / "book" / "results_toy.json"))
    p.add_argument("--render", action="store_true",
                   help="only rewrite the markdown from the JSON of the last runs")
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.json).read_text())
        Path(args.markdown).write_text(markdown(saved["runs"], saved["note"]))
        return saved["runs"]

    if args.splits:
        splits = args.splits.split(",")
    else:
        from cagnet.data.splits import SPLITS

        splits = list(SPLITS["toy"])[:2]
    names = [spec_name(spec.partition("@")[0]) for spec in args.methods.split(",")]
    if len(set(names)) != len(names):
        p.error(f"two variants share a name in --methods ({', '.join(names)}); name them apart")
    runs = planned_runs(args.methods, args.seeds.split(","), splits)
    threads = 1 if args.jobs > 1 else (os.cpu_count() or 1)

    def one(run: tuple[str, str, int]) -> dict:
        row = run_one(*run, threads)
        print(json.dumps(row), flush=True)
        return row

    # self-training runs last: each starts from its finished run without self-training
    later = [r for r in runs if variant(r[0])[1].get("train", {}).get("self_train")]
    with ThreadPoolExecutor(args.jobs) as pool:
        first = [r for r in runs if r not in later]
        done = dict(zip(first, pool.map(one, first), strict=True))
        done.update(zip(later, pool.map(one, later), strict=True))
    rows = [done[r] for r in runs]
    t = get_preset("toy").train
    note = (f"Toy preset: {t.iters} training + {t.finetune_iters} fine-tuning iterations, "
            f"batch {t.batch_size}, CPU; E and CM with {t.backbone_optimizer} at {t.lr:g} "
            f"(CM x{t.lr_mult_context:g}) unless a row's spec says otherwise. Calibration "
            f"subtracts {rows[0]['calibration']:g} from the seen classes' scores at test "
            "time. Training time: "
            + (f"{args.jobs} runs at a time, one thread each." if args.jobs > 1
               else f"one run at a time, {threads} threads."))
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(markdown(rows, note))
    Path(args.json).write_text(json.dumps({"note": note, "runs": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
