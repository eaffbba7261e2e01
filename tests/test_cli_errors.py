"""Bad input to the command line: one clear line on stderr, exit code 2, nothing overwritten.

`CATALOGUE` runs every subcommand against bad inputs (wrong types, ranges, paths, files) and
checks for each a non-zero exit, exactly one line on stderr naming the option or file, no
traceback, and a workspace left byte for byte as it was. The other tests each cover one
way a run, an output or a message went wrong, and the `--set` parser is tested on
generated values (Hypothesis).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cagnet.checkpoint import load_checkpoint, save_checkpoint
from cagnet.cli import main
from cagnet.config import DataConfig, get_preset
from cagnet.errors import ConfigError
from cagnet.validation import (
    RULES,
    SECTIONS,
    field_types,
    parse_set,
    parse_value,
    rule_of,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]
# a model and data small enough that a whole run (2 + 2 iterations, 4 test images) takes ~2 s
TINY = ["--device", "cpu", "--no-progress", "--iters", "2", "--finetune-iters", "2",
        "--set", "data.num_train=8", "--set", "data.num_test=4", "--set", "train.batch_size=4",
        "--set", "train.log_every=1", "--set", "train.checkpoint_every=2",
        "--set", "train.switch_every=1", "--set", "loss.mmd_max_pixels=32",
        "--set", "model.toy_width=8", "--set", "model.context_hidden=8",
        "--set", "model.generator_hidden=[16]", "--set", "model.disc_hidden=16",
        "--set", "model.toy_refine=0", "--set", "data.image_size=32", "--set", "data.crop=32"]


def run_cli(argv: list[str]) -> int:
    """``main(argv)``, with argparse's exits turned into exit codes."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines[0]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("CAGNET_DEBUG", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished toy run, trained into a folder that exists and is empty."""
    out = tmp_path_factory.mktemp("run")
    assert run_cli(["train", "--preset", "toy", *TINY, "--out", str(out)]) == 0
    return out


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)


def _probe_fails(folder: Path) -> bool:
    try:
        os.rmdir(__import__("tempfile").mkdtemp(dir=folder))
    except OSError:
        return True
    return False


def read_only_folder(base: Path) -> Path | None:
    """A folder nothing can be written in: a chmod 555 folder, or (as root, whom permissions
    do not stop) /sys; None if there is none."""
    ro = base / "read-only"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    if _probe_fails(ro):
        return ro
    if Path("/sys").is_dir() and _probe_fails(Path("/sys")):
        return Path("/sys")
    return None


class Evil:
    """Unpickling this runs a shell command that leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _toy_vectors(path: Path, drop: str | None = None, nan: str | None = None) -> Path:
    """A 64-d word2vec text file of the toy vocabulary (``drop``: a word left out, ``nan``:
    a word whose vector is NaN)."""
    from cagnet.data.toy import toy_vocabulary

    words = [w for w in toy_vocabulary() if w != drop]
    rng = np.random.default_rng(0)
    lines = [f"{len(words)} 64"]
    for w in words:
        v = ["nan"] * 64 if w == nan else [f"{x:.5f}" for x in rng.normal(size=64)]
        lines.append(" ".join([w, *v]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ws(trained, tmp_path_factory):
    """A workspace of things a user may point the CLI at, good and bad."""
    ws = tmp_path_factory.mktemp("ws")
    shutil.copytree(trained, ws / "run")
    ckpt = ws / "run" / "checkpoint.pt"
    (ws / "file.txt").write_text("not a folder\n")
    (ws / "notes").mkdir()
    (ws / "notes" / "todo.txt").write_text("a folder that holds other files\n")
    (ws / "existing.json").write_text("{}\n")
    _png(ws / "img.png", _rgb())
    _png(ws / "preds" / "img_mask.png", _rgb(seed=1))
    (ws / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (ws / "junk.pt").write_bytes(b"not a checkpoint at all")
    (ws / "truncated.pt").write_bytes(ckpt.read_bytes()[:300])
    torch.save({"format": 1, "model": Evil(ws / "PWNED")}, ws / "evil.pt")
    (ws / "evilrun").mkdir()
    shutil.copy(ws / "evil.pt", ws / "evilrun" / "checkpoint.pt")
    state = load_checkpoint(ckpt)
    model = dict(state["model"])
    model.pop(sorted(model)[0])
    first = next(k for k, v in model.items() if v.ndim == 4)
    model[first] = torch.zeros(1, *model[first].shape[1:])
    save_checkpoint(ws / "mismatch.pt", {**{k: v for k, v in state.items() if k != "format"},
                                         "model": model})
    _toy_vectors(ws / "nan_vectors.txt", nan="cross")
    _toy_vectors(ws / "oov_vectors.txt", drop="cross")
    ro = read_only_folder(ws)
    yield {"ws": ws, "ckpt": ckpt, "run": ws / "run", "ro": ro}
    (ws / "read-only").chmod(0o755)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: kind, size, modification time and content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_dir():
            out[str(p.relative_to(folder))] = ("dir",)
        else:
            st_ = p.stat()
            out[str(p.relative_to(folder))] = (st_.st_size, st_.st_mtime_ns,
                                               hashlib.sha1(p.read_bytes()).hexdigest())
    return out


T = ["train", "--preset", "toy", *TINY]
OUT = ["--out", "{ws}/new-run"]


def _bomb(monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # img.png has 480: over 2 x 100


def _offline_env(monkeypatch):
    monkeypatch.setenv("CAGNET_OFFLINE", "1")
    monkeypatch.delenv("CAGNET_VECTORS_FASTTEXT", raising=False)


def _env_missing_file(monkeypatch):
    monkeypatch.setenv("CAGNET_VECTORS_FASTTEXT", "/nonexistent/cc.en.300.kv")


# (id, argv, words the stderr line must contain, optional setup(monkeypatch))
CATALOGUE: list[tuple] = [
    # the command itself
    ("no-command", [], ["command"]),
    ("unknown-command", ["trian"], ["trian"]),
    # train: options of the wrong type or out of range
    ("train-preset", ["train", "--preset", "imagenet", *OUT], ["--preset", "imagenet"]),
    ("train-method", ["train", "--method", "fcn", *OUT], ["--method", "fcn"]),
    ("train-device", [*T, "--device", "tpu", *OUT], ["--device", "tpu"]),
    ("iters-text", [*T, "--iters", "ten", *OUT], ["--iters", "ten"]),
    ("iters-negative", [*T, "--iters", "-5", "--finetune-iters", "5", *OUT], ["--iters -5"]),
    ("iters-both-zero", [*T, "--iters", "0", "--finetune-iters", "0", *OUT],
     ["--iters 0", "--finetune-iters 0"]),
    ("finetune-negative", [*T, "--finetune-iters", "-1", *OUT], ["--finetune-iters -1"]),
    ("seen-only-zero", [*T, "--method", "seen-only", "--iters", "0", *OUT], ["--iters"]),
    ("seed-negative", [*T, "--seed", "-1", *OUT], ["--seed -1"]),
    ("seed-huge", [*T, "--seed", str(2**40), *OUT], ["--seed"]),
    ("seed-text", [*T, "--seed", "abc", *OUT], ["--seed", "abc"]),
    ("unseen-empty", [*T, "--unseen", "", *OUT], ["--unseen"]),
    ("unseen-commas", [*T, "--unseen", " , ", *OUT], ["--unseen"]),
    ("unseen-unknown", [*T, "--unseen", "unicorn", *OUT], ["unicorn"]),
    ("unseen-twice", [*T, "--unseen", "red cross,red cross", *OUT], ["red cross"]),
    ("split-unknown", [*T, "--split", "zs3-99", *OUT], ["zs3-99"]),
    ("root-toy", [*T, "--root", "{ws}", *OUT], ["--root"]),
    ("set-no-section", [*T, "--set", "lr=1", *OUT], ["--set", "lr=1"]),
    ("set-no-equals", [*T, "--set", "train.lr", *OUT], ["--set", "train.lr"]),
    ("set-unknown-section", [*T, "--set", "optim.lr=1", *OUT], ["optim.lr=1"]),
    ("set-unknown-field", [*T, "--set", "train.learning_rate=1", *OUT], ["learning_rate"]),
    ("lr-text", [*T, "--set", "train.lr=abc", *OUT], ["train.lr=abc"]),
    ("lr-nan", [*T, "--set", "train.lr=nan", *OUT], ["train.lr=nan"]),
    ("lr-inf", [*T, "--set", "train.lr=Infinity", *OUT], ["train.lr=Infinity"]),
    ("lr-negative", [*T, "--set", "train.lr=-1", *OUT], ["train.lr=-1"]),
    ("iters-set-text", [*T, "--set", "train.iters=ten", *OUT], ["train.iters=ten"]),
    ("batch-zero", [*T, "--set", "train.batch_size=0", *OUT], ["train.batch_size=0"]),
    ("batch-fraction", [*T, "--set", "train.batch_size=2.5", *OUT], ["train.batch_size=2.5"]),
    ("batch-list", [*T, "--set", "train.batch_size=[4]", *OUT], ["train.batch_size=[4]"]),
    ("log-every-zero", [*T, "--set", "train.log_every=0", *OUT], ["train.log_every=0"]),
    ("checkpoint-every-zero", [*T, "--set", "train.checkpoint_every=0", *OUT],
     ["train.checkpoint_every=0"]),
    ("switch-every-zero", [*T, "--set", "train.switch_every=0", *OUT], ["train.switch_every"]),
    ("momentum-one", [*T, "--set", "train.momentum=1.5", *OUT], ["train.momentum"]),
    ("betas-length", [*T, "--set", "train.adam_betas=[0.9]", *OUT], ["train.adam_betas"]),
    ("decay-length", [*T, "--set", "train.lr_decay_d=[1,2]", *OUT], ["train.lr_decay_d"]),
    ("decay-every-zero", [*T, "--set", "train.lr_decay_g=[0,0,0.5]", *OUT],
     ["train.lr_decay_g"]),
    ("amp-unknown", [*T, "--set", "train.amp=fp8", *OUT], ["train.amp=fp8"]),
    ("workers-negative", [*T, "--set", "train.num_workers=-2", *OUT], ["train.num_workers"]),
    ("weight-negative", [*T, "--set", "loss.w_kl=-1", *OUT], ["loss.w_kl"]),
    ("gan-unknown", [*T, "--set", "loss.gan=wgan", *OUT], ["loss.gan=wgan"]),
    ("kl-pixels-unknown", [*T, "--set", "loss.kl_pixels=some", *OUT], ["loss.kl_pixels"]),
    ("mmd-pixels-zero", [*T, "--set", "loss.mmd_max_pixels=0", *OUT], ["loss.mmd_max_pixels"]),
    ("sigmas-empty", [*T, "--set", "loss.mmd_sigmas=[]", *OUT], ["loss.mmd_sigmas"]),
    ("init-unknown", [*T, "--set", "model.init=xavier", *OUT], ["model.init=xavier"]),
    ("selector-unknown", [*T, "--set", "model.selector=fixed", *OUT], ["model.selector"]),
    ("lighting-above-one", [*T, "--set", "data.toy_lighting=2", *OUT], ["data.toy_lighting"]),
    ("prior-above-one", [*T, "--set", "data.toy_prior=1.5", *OUT], ["data.toy_prior"]),
    ("optimizer-unknown", [*T, "--set", "train.backbone_optimizer=rmsprop", *OUT],
     ["train.backbone_optimizer"]),
    ("feature-norm-deeplab", ["train", "--preset", "voc", "--set", "model.feature_norm=true",
                              *OUT], ["model.feature_norm", "deeplabv2"]),
    ("pretrained-maybe", [*T, "--set", "model.pretrained=maybe", *OUT], ["model.pretrained"]),
    ("dropout-one", [*T, "--set", "model.disc_dropout=1", *OUT], ["model.disc_dropout"]),
    ("dropout-count", [*T, "--set", "model.generator_dropout=[0.1,0.1,0.1]", *OUT],
     ["model.generator_dropout"]),
    ("stride-odd", [*T, "--set", "model.toy_stride=3", *OUT], ["model.toy_stride"]),
    ("multiscale-empty", [*T, "--set", "model.multiscale=[]", *OUT], ["model.multiscale"]),
    ("scale-range-reversed", [*T, "--set", "data.scale_range=[1.5,0.5]", *OUT],
     ["data.scale_range"]),
    ("num-train-negative", [*T, "--set", "data.num_train=-1", *OUT], ["data.num_train"]),
    ("unseen-set-empty", [*T, "--set", "data.unseen=[]", *OUT], ["data.unseen"]),
    ("embeddings-unknown", [*T, "--set", "data.embeddings=glove", *OUT],
     ["data.embeddings=glove"]),
    ("vectors-file-missing", [*T, "--set", 'data.embedding_sources=["{ws}/none/v.kv"]', *OUT],
     ["{ws}/none/v.kv"]),
    ("vectors-offline", [*T, "--set", 'data.embedding_sources=["fasttext"]', *OUT],
     ["fasttext", "CAGNET_VECTORS_FASTTEXT"], _offline_env),
    ("vectors-env-missing", [*T, "--set", 'data.embedding_sources=["fasttext"]', *OUT],
     ["CAGNET_VECTORS_FASTTEXT", "/nonexistent/cc.en.300.kv"], _env_missing_file),
    ("vectors-nan", [*T, "--set", 'data.embedding_sources=["{ws}/nan_vectors.txt"]', *OUT],
     ["NaN", "{ws}/nan_vectors.txt"]),
    ("vectors-oov", [*T, "--set", 'data.embedding_sources=["{ws}/oov_vectors.txt"]', *OUT],
     ["cross", "--word"]),
    ("word-no-equals", [*T, "--word", "red cross", *OUT], ["--word", "red cross"]),
    ("word-unknown", [*T, "--word", "unicorn=horse", *OUT], ["--word", "unicorn"]),
    ("weights-missing", [*T, "--weights", "{ws}/none.pth", *OUT], ["--weights", "none.pth"]),
    ("weights-toy", [*T, "--weights", "{ckpt}", *OUT], ["--weights"]),
    # train: output folders
    ("out-is-file", [*T, "--out", "{ws}/file.txt"], ["--out", "{ws}/file.txt"]),
    ("out-under-file", [*T, "--out", "{ws}/file.txt/run"], ["--out", "{ws}/file.txt"]),
    ("out-read-only", [*T, "--out", "{ro}/run"], ["--out", "{ro}"]),
    ("out-holds-run", [*T, "--out", "{run}"], ["--out", "{run}", "--resume", "--overwrite"]),
    ("out-holds-files", [*T, "--out", "{ws}/notes"], ["--out", "{ws}/notes"]),
    ("resume-and-overwrite", [*T, "--resume", "--overwrite", "--out", "{run}"],
     ["--resume", "--overwrite"]),
    ("resume-other-preset", ["train", "--preset", "voc", "--resume", "--device", "cpu",
                             "--out", "{run}"], ["{run}", "preset"]),
    ("resume-other-model", [*T, "--resume", "--set", "model.toy_width=16", "--out", "{run}"],
     ["{run}", "model settings"]),
    ("resume-malicious", [*T, "--resume", "--out", "{ws}/evilrun"], ["{ws}/evilrun"]),
    # eval
    ("eval-missing", ["eval", "--checkpoint", "{ws}/none.pt"], ["{ws}/none.pt"]),
    ("eval-folder", ["eval", "--checkpoint", "{ws}"], ["{ws}", "folder"]),
    ("eval-junk", ["eval", "--checkpoint", "{ws}/junk.pt"], ["{ws}/junk.pt", "corrupt"]),
    ("eval-truncated", ["eval", "--checkpoint", "{ws}/truncated.pt"], ["{ws}/truncated.pt"]),
    ("eval-malicious", ["eval", "--checkpoint", "{ws}/evil.pt"], ["{ws}/evil.pt"]),
    ("eval-mismatch", ["eval", "--checkpoint", "{ws}/mismatch.pt"],
     ["{ws}/mismatch.pt", "missing", "shape"]),
    ("eval-calibration-nan", ["eval", "--checkpoint", "{ckpt}", "--calibration", "nan"],
     ["--calibration", "nan"]),
    ("eval-calibration-text", ["eval", "--checkpoint", "{ckpt}", "--calibration", "x"],
     ["--calibration"]),
    ("eval-out-folder", ["eval", "--checkpoint", "{ckpt}", "--out", "{ws}"], ["--out", "{ws}"]),
    ("eval-out-exists", ["eval", "--checkpoint", "{ckpt}", "--out", "{ws}/existing.json"],
     ["--out", "{ws}/existing.json", "--overwrite"]),
    ("eval-out-under-file", ["eval", "--checkpoint", "{ckpt}", "--out", "{ws}/file.txt/m.json"],
     ["--out", "{ws}/file.txt"]),
    ("eval-out-read-only", ["eval", "--checkpoint", "{ckpt}", "--out", "{ro}/m.json"],
     ["--out", "{ro}"]),
    ("eval-no-checkpoint", ["eval"], ["--checkpoint"]),
    # predict
    ("predict-missing-image", ["predict", "--checkpoint", "{ckpt}", "{ws}/none.png",
                               "--out", "{ws}/p"], ["{ws}/none.png"]),
    ("predict-folder-image", ["predict", "--checkpoint", "{ckpt}", "{ws}/notes",
                              "--out", "{ws}/p"], ["{ws}/notes", "folder"]),
    ("predict-corrupt-image", ["predict", "--checkpoint", "{ckpt}", "{ws}/img.png",
                               "{ws}/corrupt.png", "--out", "{ws}/p"], ["{ws}/corrupt.png"]),
    ("predict-not-an-image", ["predict", "--checkpoint", "{ckpt}", "{ws}/file.txt",
                              "--out", "{ws}/p"], ["{ws}/file.txt"]),
    ("predict-bomb", ["predict", "--checkpoint", "{ckpt}", "{ws}/img.png", "--out", "{ws}/p"],
     ["{ws}/img.png", "too large"], _bomb),
    ("predict-out-file", ["predict", "--checkpoint", "{ckpt}", "{ws}/img.png",
                          "--out", "{ws}/file.txt"], ["--out", "{ws}/file.txt"]),
    ("predict-out-under-file", ["predict", "--checkpoint", "{ckpt}", "{ws}/img.png",
                                "--out", "{ws}/file.txt/p"], ["--out", "{ws}/file.txt"]),
    ("predict-out-read-only", ["predict", "--checkpoint", "{ckpt}", "{ws}/img.png",
                               "--out", "{ro}/p"], ["--out", "{ro}"]),
    ("predict-would-overwrite", ["predict", "--checkpoint", "{ckpt}", "{ws}/img.png",
                                 "--out", "{ws}/preds"], ["img_mask.png", "--overwrite"]),
    ("predict-calibration-inf", ["predict", "--checkpoint", "{ckpt}", "{ws}/img.png",
                                 "--calibration", "inf", "--out", "{ws}/p"], ["--calibration"]),
    ("predict-checkpoint-missing", ["predict", "--checkpoint", "{ws}/none.pt", "{ws}/img.png",
                                    "--out", "{ws}/p"], ["{ws}/none.pt"]),
    ("predict-malicious", ["predict", "--checkpoint", "{ws}/evil.pt", "{ws}/img.png",
                           "--out", "{ws}/p"], ["{ws}/evil.pt"]),
    ("predict-no-image", ["predict", "--checkpoint", "{ckpt}", "--out", "{ws}/p"], ["IMAGE"]),
    # describe
    ("describe-preset", ["describe", "--preset", "imagenet"], ["--preset", "imagenet"]),
    ("describe-method", ["describe", "--method", "fcn"], ["--method", "fcn"]),
    # convert-official
    ("convert-missing", ["convert-official", "{ws}/none.pth", "--preset", "voc",
                         "--out", "{ws}/c.pt"], ["{ws}/none.pth"]),
    ("convert-junk", ["convert-official", "{ws}/junk.pt", "--preset", "voc",
                      "--out", "{ws}/c.pt"], ["{ws}/junk.pt"]),
    ("convert-preset", ["convert-official", "{ws}/junk.pt", "--preset", "toy",
                        "--out", "{ws}/c.pt"], ["--preset", "toy"]),
    # data check
    ("data-no-tool", ["data"], ["data_command"]),
    ("check-dataset", ["data", "check", "--dataset", "imagenet"], ["--dataset", "imagenet"]),
    ("check-toy-root", ["data", "check", "--dataset", "toy", "--root", "{ws}"], ["--root"]),
    ("check-root-missing", ["data", "check", "--dataset", "voc", "--root", "{ws}/none"],
     ["{ws}/none"]),
    ("check-root-file", ["data", "check", "--dataset", "context", "--root", "{ws}/file.txt"],
     ["{ws}/file.txt"]),
    ("check-root-empty", ["data", "check", "--dataset", "cocostuff", "--root", "{ws}/notes"],
     ["{ws}/notes"]),
    ("check-sample-zero", ["data", "check", "--dataset", "voc", "--sample", "0"], ["--sample"]),
    ("check-sample-text", ["data", "check", "--dataset", "voc", "--sample", "all"],
     ["--sample"]),
]


def test_catalogue_ids_are_unique():
    ids = [case[0] for case in CATALOGUE]
    assert len(ids) == len(set(ids)) and len(ids) >= 60


@pytest.mark.parametrize("case", CATALOGUE, ids=[case[0] for case in CATALOGUE])
def test_bad_input_gets_one_line_and_changes_nothing(case, ws, capfd, monkeypatch):
    name, argv, words = case[:3]
    if "{ro}" in " ".join(argv) and ws["ro"] is None:
        pytest.skip("no read-only folder on this machine")
    if len(case) > 3:
        case[3](monkeypatch)
    paths = {k: str(v) for k, v in ws.items()}
    argv = [a.format(**paths) for a in argv]
    before = snapshot(ws["ws"])
    capfd.readouterr()
    code = run_cli(argv)
    err = capfd.readouterr().err
    assert code != 0, f"{name}: exit code 0"
    line = one_error_line(err)
    for word in words:
        assert word.format(**paths) in line, f"{name}: {word!r} not in {line!r}"
    assert snapshot(ws["ws"]) == before, f"{name} changed the workspace"


def test_catalogue_cases_run_the_same_through_python_m_cagnet(ws):
    # two of the cases as a user types them: a process of its own, argparse and all
    for argv, word in ((["train", "--set", "train.lr=abc", "--out", "{ws}/x"], "train.lr"),
                       (["eval", "--checkpoint", "{ws}/evil.pt"], "evil.pt")):
        argv = [a.format(**{k: str(v) for k, v in ws.items()}) for a in argv]
        r = subprocess.run([sys.executable, "-m", "cagnet", *argv], capture_output=True,
                           text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 2, r.stderr
        assert word in one_error_line(r.stderr)
    assert not (ws["ws"] / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# 1. a new run never replaces an old one


def test_train_refuses_a_folder_that_holds_a_run_unless_resume_or_overwrite(trained, tmp_path,
                                                                            capsys):
    old = tmp_path / "old"
    shutil.copytree(trained, old)
    before = snapshot(old)
    assert run_cli(["train", "--preset", "toy", *TINY, "--out", str(old)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert snapshot(old) == before
    # an interrupted run (a checkpoint, no metrics yet) is refused just the same
    (old / "metrics.json").unlink()
    before = snapshot(old)
    assert run_cli(["train", "--preset", "toy", *TINY, "--out", str(old)]) == 2
    assert snapshot(old) == before
    # --overwrite replaces it, and keeps files that are not the run's
    (old / "notes.txt").write_text("mine\n")
    assert run_cli(["train", "--preset", "toy", *TINY, "--seed", "3", "--overwrite",
                    "--out", str(old)]) == 0
    assert load_checkpoint(old / "checkpoint.pt")["config"]["train"]["seed"] == 3
    assert (old / "notes.txt").read_text() == "mine\n"


# 2. impossible iteration counts


@pytest.mark.parametrize("iters", [("-5", "5"), ("0", "0"), ("3", "-1")])
def test_impossible_iteration_counts_are_refused_and_nothing_is_written(iters, tmp_path,
                                                                        capsys):
    out = tmp_path / "run"
    code = run_cli(["train", "--preset", "toy", *TINY, "--iters", iters[0],
                    "--finetune-iters", iters[1], "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "wrote" not in captured.out
    assert "--iters" in captured.err or "--finetune-iters" in captured.err
    assert not out.exists()


# 3. finished work is never thrown away


def test_eval_checks_out_before_scoring(ws, tmp_path, capsys, monkeypatch):
    import cagnet.checkpoint

    def no_model(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before --out was checked")

    monkeypatch.setattr(cagnet.checkpoint, "load_model", no_model)
    assert run_cli(["eval", "--checkpoint", str(ws["ckpt"]), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_eval_prints_the_scores_before_writing_them(ws, tmp_path, capsys, monkeypatch):
    import cagnet.evaluate

    def disk_full(metrics, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(cagnet.evaluate, "write_metrics", disk_full)
    out = tmp_path / "m.json"
    assert run_cli(["eval", "--checkpoint", str(ws["ckpt"]), "--device", "cpu",
                    "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "seen mIoU" in captured.out  # the scores were printed
    assert "No space left" in one_error_line(captured.err)


def test_a_run_that_fails_at_start_up_leaves_no_folder_behind(tmp_path, capsys, monkeypatch):
    import cagnet.data
    from cagnet.errors import DataError

    real = cagnet.data.build_dataset

    def no_test_set(dcfg, split):
        if split == "test":
            raise DataError("the test split cannot be read")
        return real(dcfg, split)

    monkeypatch.setattr(cagnet.data, "build_dataset", no_test_set)
    out = tmp_path / "runs" / "new"
    assert run_cli(["train", "--preset", "toy", *TINY, "--out", str(out)]) == 2
    assert "test split" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    monkeypatch.setattr(cagnet.data, "build_dataset", real)
    # a run that diverges before its first checkpoint, after it made its folder and logs
    diverge = ["--set", "train.lr=1e30", "--set", "train.lr_d=1e30", "--set", "train.lr_g=1e30"]
    assert run_cli(["train", "--preset", "toy", *TINY, *diverge, "--out", str(out)]) == 2
    assert "none was saved" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
    # in a folder that existed (empty), only what the run made is removed
    out.mkdir(parents=True)
    assert run_cli(["train", "--preset", "toy", *TINY, *diverge, "--out", str(out)]) == 2
    assert out.is_dir() and not any(out.iterdir())


# 4. predict never overwrites its own outputs


def test_predict_gives_inputs_with_one_name_distinct_outputs(ws, tmp_path, capsys):
    a = _png(tmp_path / "img" / "a" / "x.png", _rgb(seed=1))
    b = _png(tmp_path / "img" / "b" / "x.png", _rgb(seed=2))
    out = tmp_path / "pred"
    assert run_cli(["predict", "--checkpoint", str(ws["ckpt"]), str(a), str(b), str(a),
                    "--device", "cpu", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a_x_mask.png", "a_x_overlay.png", "b_x_mask.png", "b_x_overlay.png"]
    masks = [np.asarray(Image.open(out / f"{n}_overlay.png")) for n in ("a_x", "b_x")]
    assert not np.array_equal(*masks)
    # a second call refuses to replace them, unless asked to
    before = snapshot(out)
    again = ["predict", "--checkpoint", str(ws["ckpt"]), str(a), str(b), "--device", "cpu",
             "--out", str(out)]
    assert run_cli(again) == 2
    assert "--overwrite" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before
    assert run_cli([*again, "--overwrite"]) == 0


# 5. tracebacks replaced by one line (the catalogue has the rest)


def test_every_set_value_is_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    import cagnet.train

    def no_run(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(cagnet.train, "fit", no_run)
    for pair, words in (("train.lr=abc", "a finite number"), ("train.iters=ten", "integer"),
                        ("train.batch_size=0", "positive"), ("train.log_every=0", "positive"),
                        ("train.checkpoint_every=0", "positive")):
        assert run_cli(["train", "--preset", "toy", "--set", pair, "--out",
                        str(tmp_path / "r")]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"--set {pair}" in line and words in line


def test_out_in_a_read_only_folder_is_refused_up_front(tmp_path, capsys):
    ro = read_only_folder(tmp_path)
    if ro is None:
        pytest.skip("no read-only folder on this machine")
    try:
        assert run_cli(["train", "--preset", "toy", "--out", str(ro / "run")]) == 2
        assert str(ro) in one_error_line(capsys.readouterr().err)
    finally:
        (tmp_path / "read-only").chmod(0o755)


def test_an_image_over_the_decompression_bomb_limit_is_refused_by_name(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from cagnet.data.base import read_image
    from cagnet.errors import DataError

    path = _png(tmp_path / "big.png", _rgb(40, 40))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match="too large"):
        read_image(path)


# 6. a zero-shot run needs unseen classes


@pytest.mark.parametrize("unseen", ["", ",", " "])
def test_an_empty_unseen_list_is_refused(unseen, tmp_path, capsys):
    assert run_cli(["train", "--preset", "toy", *TINY, "--unseen", unseen,
                    "--out", str(tmp_path / "r")]) == 2
    assert "--unseen" in one_error_line(capsys.readouterr().err)
    with pytest.raises(ConfigError, match="data.unseen"):
        validate_config(get_preset("toy").replace(data=DataConfig(dataset="toy", unseen=())))


def test_g_reading_mu_without_real_codes_in_fine_tuning_is_refused(tmp_path, capsys):
    assert run_cli(["train", "--preset", "toy", *TINY, "--set", 'model.g_code="mu"',
                    "--out", str(tmp_path / "r")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "train.fake_codes" in err and "g_code" in err
    assert not (tmp_path / "r").exists()
    assert run_cli(["train", "--preset", "toy", *TINY, "--set", 'model.g_code="m"',
                    "--out", str(tmp_path / "r")]) == 2
    assert "model.g_code" in one_error_line(capsys.readouterr().err)


# 7. messages that point at the cause and at a fix the user can apply


def _error(argv, capsys) -> str:
    assert run_cli(argv) == 2
    return one_error_line(capsys.readouterr().err)


def test_a_fractional_batch_size_is_a_type_error(tmp_path, capsys):
    line = _error(["train", "--set", "train.batch_size=2.5", "--out", str(tmp_path / "r")],
                  capsys)
    assert "integer" in line and "divisible" not in line


def test_missing_word_vectors_offline_name_the_file_or_a_usable_variable(tmp_path, capsys,
                                                                        monkeypatch):
    line = _error(["train", *TINY, "--set", f'data.embedding_sources=["{tmp_path}/v.kv"]',
                   "--out", str(tmp_path / "r")], capsys)
    assert f"{tmp_path}/v.kv" in line and "does not exist" in line
    assert "gensim" not in line and "CAGNET_VECTORS__" not in line
    monkeypatch.setenv("CAGNET_OFFLINE", "1")
    monkeypatch.delenv("CAGNET_VECTORS_WORD2VEC", raising=False)
    line = _error(["train", *TINY, "--set", 'data.embedding_sources=["word2vec"]',
                   "--out", str(tmp_path / "r")], capsys)
    assert "CAGNET_VECTORS_WORD2VEC=" in line and "offline" in line


def test_nan_word_vectors_are_blamed_on_the_vectors(tmp_path, capsys):
    vectors = _toy_vectors(tmp_path / "v.txt", nan="square")
    line = _error(["train", *TINY, "--set", f'data.embedding_sources=["{vectors}"]',
                   "--out", str(tmp_path / "r")], capsys)
    assert "NaN" in line and str(vectors) in line and "learning rate" not in line
    assert not (tmp_path / "r").exists()


def test_a_word_missing_from_the_vectors_can_be_replaced_with_word(tmp_path, capsys):
    vectors = _toy_vectors(tmp_path / "v.txt", drop="cross")
    argv = ["train", "--preset", "toy", *TINY, "--set",
            f'data.embedding_sources=["{vectors}"]']
    line = _error([*argv, "--out", str(tmp_path / "a")], capsys)
    assert "--word" in line and "'cross'" in line
    assert run_cli([*argv, "--word", "cross=plus", "--out", str(tmp_path / "b")]) == 0
    # a class name in any spelling works too
    from cagnet.validation import parse_words

    assert parse_words(["Red_Cross=red plus", "cross=plus"], "toy") == {
        "red cross": "red plus", "cross": "plus"}


def test_a_state_dict_mismatch_says_what_mismatches(ws, capsys):
    line = _error(["eval", "--checkpoint", str(ws["ws"] / "mismatch.pt")], capsys)
    assert "1 tensor(s) missing (" in line and "of another shape (" in line
    assert "instead of" in line


def test_a_malicious_or_corrupt_checkpoint_gives_no_unsafe_advice(ws, capsys):
    for name in ("evil.pt", "junk.pt", "truncated.pt"):
        for argv in (["eval", "--checkpoint", str(ws["ws"] / name)],
                     ["predict", "--checkpoint", str(ws["ws"] / name), str(ws["ws"] / "img.png"),
                      "--out", str(ws["ws"] / "p")]):
            line = _error(argv, capsys)
            assert "weights_only" not in line and "can still be loaded" not in line
    assert not (ws["ws"] / "PWNED").exists()
    assert "posix.system" in _error(["eval", "--checkpoint", str(ws["ws"] / "evil.pt")], capsys)


def test_seed_and_checkpoint_folder_messages_name_the_cause(ws, tmp_path, capsys):
    assert "--seed -1" in _error(["train", "--seed", "-1", "--out", str(tmp_path)], capsys)
    line = _error(["eval", "--checkpoint", str(ws["run"])], capsys)
    assert "is a folder" in line and str(ws["ckpt"]) in line


def test_an_interrupted_run_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import cagnet.train

    real = cagnet.train.fit

    def interrupted(*args, **kwargs):
        def on_log(record):
            if record["iteration"] == 3:  # after the checkpoint of iteration 2
                raise KeyboardInterrupt

        return real(*args, **kwargs, on_log=on_log)

    monkeypatch.setattr(cagnet.train, "fit", interrupted)
    out = tmp_path / "run"
    assert run_cli(["train", "--preset", "toy", *TINY, "--out", str(out)]) == 130
    line = one_error_line(capsys.readouterr().err)
    assert "--resume" in line and str(out / "checkpoint.pt") in line
    monkeypatch.setattr(cagnet.train, "fit", real)
    assert run_cli(["train", "--preset", "toy", *TINY, "--resume", "--out", str(out)]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 4


# 8. input that used to be read wrongly without a word


def test_16_bit_images_are_rescaled_not_clipped(tmp_path):
    from cagnet.cli import _read_rgb
    from cagnet.data.base import read_image

    grey = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16).repeat(4, axis=0)
    path = tmp_path / "g16.png"
    Image.fromarray(grey).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    for rgb in (_read_rgb(path), read_image(path)):
        assert rgb.dtype == np.uint8 and rgb.shape == (4, 4, 3)
        np.testing.assert_array_equal(rgb[0, :, 0], [0, 64, 128, 255])


def test_a_16_bit_image_is_predicted_like_its_8_bit_copy(ws, tmp_path):
    eight = _rgb(20, 24, seed=5)[..., 0]
    _png(tmp_path / "a" / "x.png", eight)
    _png(tmp_path / "b" / "x.png", eight.astype(np.uint16) * 257)
    assert run_cli(["predict", "--checkpoint", str(ws["ckpt"]), str(tmp_path / "a" / "x.png"),
                    str(tmp_path / "b" / "x.png"), "--device", "cpu",
                    "--out", str(tmp_path / "out")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / "out" / f"{n}_x_overlay.png")) for n in "ab")
    np.testing.assert_array_equal(a, b)


def test_calibration_nan_is_refused_and_data_check_toy_refuses_root(ws, tmp_path, capsys):
    assert "--calibration" in _error(["eval", "--checkpoint", str(ws["ckpt"]),
                                      "--calibration", "nan"], capsys)
    assert "--root" in _error(["data", "check", "--dataset", "toy", "--root", str(tmp_path)],
                              capsys)


# 9. metrics.json explains itself


def test_metrics_json_records_classes_preset_method_seed_and_version(trained, ws, tmp_path):
    import cagnet

    state = load_checkpoint(trained / "checkpoint.pt")
    names = state["classes"]["names"]
    out = tmp_path / "eval.json"
    assert run_cli(["eval", "--checkpoint", str(ws["ckpt"]), "--device", "cpu",
                    "--out", str(out)]) == 0
    for m in (json.loads((trained / "metrics.json").read_text()), json.loads(out.read_text())):
        assert m["preset"] == "toy" and m["method"] == "cagnet" and m["seed"] == 0
        assert m["cagnet_version"] == cagnet.__version__
        assert m["seen_classes"] == [names[c] for c in state["classes"]["seen"]]
        assert m["unseen_classes"] == [names[c] for c in state["classes"]["unseen"]]
        assert set(m["seen_classes"]) | set(m["unseen_classes"]) <= set(m["iou"])
        assert "red cross" in m["unseen_classes"]


# ---------------------------------------------------------------------------------------------
# --set parsing, on generated values


def _values(tp) -> st.SearchStrategy:
    """A Hypothesis strategy for values of a config field's type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in args if a is not type(None)]
        return st.one_of(st.none(), *(_values(a) for a in inner))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_values(args[0]), max_size=4).map(tuple)
        return st.tuples(*(_values(a) for a in args))
    return {int: st.integers(-10**12, 10**12),
            # no subnormals: a library loaded by the training tests may set flush-to-zero
            float: st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
            bool: st.booleans(),
            str: st.text(max_size=12)}[tp]


def _as_json(value):
    return json.dumps(list(value) if isinstance(value, tuple) else value)


FIELDS = [(s, n) for s in SECTIONS for n in field_types(s)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), st.data())
def test_set_values_written_as_json_parse_back_to_themselves(field, data):
    section, name = field
    tp = field_types(section)[name]
    value = data.draw(_values(tp))
    assert parse_value(section, name, _as_json(value)) == value


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), st.text(max_size=20))
def test_any_set_text_parses_to_the_field_type_or_is_a_config_error(field, raw):
    section, name = field
    tp = field_types(section)[name]
    try:
        value = parse_value(section, name, raw)
    except ConfigError as exc:
        assert f"{section}.{name}" in str(exc)
        return
    from cagnet.validation import check_field

    try:
        check_field(f"{section}.{name}", value, tp)
    except ConfigError as exc:  # of the right type, possibly out of range
        assert "must be" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([(s, n) for s, n in FIELDS
                        if typing.get_origin(field_types(s)[n]) is tuple
                        and typing.get_args(field_types(s)[n])[0] in (int, float)]),
       st.data())
def test_numeric_lists_parse_the_same_as_json_or_comma_separated(field, data):
    section, name = field
    value = data.draw(_values(field_types(section)[name]))
    if not value:
        return
    comma = ",".join(json.dumps(v) for v in value)
    assert parse_value(section, name, comma) == parse_value(section, name, _as_json(value))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=3))
def test_any_set_pairs_give_sections_or_a_config_error(pairs):
    try:
        sections, origins = parse_set(pairs)
    except ConfigError:
        return
    assert set(sections) <= set(SECTIONS)
    assert all(origin.startswith("--set ") for origin in origins.values())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(k for k, r in RULES.items() if not isinstance(r, tuple)
                              and r.choices is None)),
       st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False))
def test_range_checks_agree_with_the_rules(key, number):
    from cagnet.validation import check_field

    section, name = key.split(".")
    tp = field_types(section)[name]
    origin = typing.get_origin(tp)
    item_tp = typing.get_args(tp)[0] if origin is tuple else tp
    if origin not in (tuple, None):  # optional: the inner type
        item_tp = next(a for a in typing.get_args(tp) if a is not type(None))
    value = int(number) if item_tp is int else number
    if origin is tuple:
        value = (value,) * (1 if typing.get_args(tp)[-1] is Ellipsis else len(typing.get_args(tp)))
    rule = rule_of(key)
    ok = rule.accepts(int(number) if item_tp is int else number)
    if ok:
        check_field(key, value, tp)
    else:
        with pytest.raises(ConfigError, match="must be"):
            check_field(key, value, tp)


def test_every_rule_names_a_field_and_every_preset_passes():
    for key in RULES:
        section, name = key.split(".")
        assert name in field_types(section), key
    from cagnet.config import PRESETS
    from cagnet.data import DATASETS

    assert set(RULES["data.dataset"].choices) == set(DATASETS)
    for preset in PRESETS:
        validate_config(get_preset(preset))


def test_set_parsing_examples():
    assert parse_value("train", "iters", "2e3") == 2000
    assert parse_value("train", "lr", ".5") == 0.5
    assert parse_value("model", "pretrained", "False") is False
    assert parse_value("model", "multiscale", "1") == (1.0,)
    assert parse_value("data", "unseen", "red cross, blue square") == ("red cross",
                                                                        "blue square")
    assert parse_value("data", "root", "null") is None
    assert parse_value("data", "split", "2") == "2"
    assert parse_value("loss", "mmd_max_pixels", "none") is None
    with pytest.raises(ConfigError, match="did you mean train.lr_d"):
        parse_set(["train.lr_dd=1"])


def test_from_scratch_and_weights_set_the_model_options(tmp_path):
    from cagnet.cli import build_config, build_parser

    weights = tmp_path / "resnet101.pth"
    weights.write_bytes(b"checked for existence only here")
    args = build_parser().parse_args(["train", "--preset", "voc", "--from-scratch",
                                      "--out", str(tmp_path / "r")])
    assert build_config(args).model.pretrained is False
    args = build_parser().parse_args(["train", "--preset", "voc", "--weights", str(weights),
                                      "--out", str(tmp_path / "r")])
    assert build_config(args).model.weights == str(weights)
    assert build_config(build_parser().parse_args(
        ["train", "--preset", "voc", "--out", str(tmp_path)])).model.pretrained is True
