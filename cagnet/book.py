"""The trained toy models that the book's chapters share.

Chapters 3 to 10 need the same few toy models. `toy_run` trains one the first time it is
asked for and afterwards only loads and scores it, so every notebook runs on its own and
the book as a whole trains each model once. Runs are kept under
``$CAGNET_CACHE/book`` (default ``~/.cache/cagnet/book``) in a folder named after the
method and a hash of the whole configuration and of the toy world's constants: a changed
preset or world never loads a stale model.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from pathlib import Path

from cagnet.config import Config, get_preset
from cagnet.data import cache_home
from cagnet.data.toy import world_constants
from cagnet.train import TrainResult, fit

# Settings added after runs were kept, with the value every earlier run had: at that value
# a setting is left out of the hash, so adding it does not orphan (and retrain) those runs.
LATER_SETTINGS = {("model", "code_centring"): False, ("model", "g_code"): "z",
                  ("train", "shuffle_g_codes"): False, ("model", "patch_size"): 1,
                  ("train", "patch_fakes"): True,
                  ("data", "toy_paint_shift"): False, ("data", "toy_prior"): 0.7,
                  ("train", "backbone_optimizer"): "sgd", ("model", "feature_norm"): False}


# The settings only the self-training stages read (`TrainConfig`, ``train.self_train``).
SELF_TRAINING_SETTINGS = ("st_iters", "st_finetune_iters", "lr_st", "lr_d_st", "lr_g_st",
                          "st_decay_d", "st_decay_g", "lr_d_st_finetune", "lr_g_st_finetune",
                          "st_finetune_decay_d", "st_finetune_decay_g")


def _numbers_by_value(value):
    """``value`` with every int that is not a bool as a float: 1 and 1.0 are one setting."""
    if isinstance(value, dict):
        return {k: _numbers_by_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers_by_value(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _digest(key: dict) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def _key(cfg: Config) -> dict:
    key = cfg.to_dict()
    for (section, name), old in LATER_SETTINGS.items():
        if key[section].get(name, old) == old:
            key[section].pop(name, None)
    if cfg.data.dataset == "toy":
        key["toy_world"] = world_constants(cfg.data)
    return key


def config_digest(cfg: Config) -> str:
    """The 10-hex-digit hash that names the run of ``cfg`` (`run_dir`).

    It covers the whole configuration, numbers by value (``1`` and ``1.0`` are one
    setting), less two kinds of settings the run never reads, so that a change to them
    keeps its folder: the self-training settings of a run that does not self-train, and
    CM's learning-rate multiplier for a method without CM (ZS3Net, seen-only).
    """
    key = _key(cfg)
    if not cfg.train.self_train:
        for name in SELF_TRAINING_SETTINGS:
            key["train"].pop(name)
    if cfg.method != "cagnet":  # only CaGNet has a contextual module
        key["train"].pop("lr_mult_context")
    return _digest(_numbers_by_value(key))


def run_dir(cfg: Config) -> Path:
    """Where `toy_run` keeps the run of ``cfg``: ``<cache>/book/<preset>-<method>-<hash>``,
    the hash being `config_digest`. A folder kept under the earlier hash (the whole
    configuration as written) is renamed to this one the first time it is asked for, so an
    older cache keeps its runs.
    """
    book = cache_home() / "book"
    folder = book / f"{cfg.name}-{cfg.method}-{config_digest(cfg)}"
    legacy = book / f"{cfg.name}-{cfg.method}-{_digest(_key(cfg))}"
    if legacy.is_dir() and not folder.exists():
        legacy.rename(folder)
    return folder


def spec_overrides(spec: str) -> tuple[str, dict[str, dict]]:
    """A run's spec as `benchmarks/toy_results.py` names it: ``"cagnet"``,
    ``"cagnet:model.latent_grad=\"content\";loss.w_kl=0"`` or ``"NAME=cagnet:..."`` ->
    (method, {section: {field: value}}); values are JSON."""
    name, eq, body = spec.partition("=")
    spec = body if eq and ":" not in name else spec
    method, _, rest = spec.partition(":")
    over: dict[str, dict] = {}
    for pair in filter(None, rest.split(";")):
        key, _, raw = pair.partition("=")
        section, _, field = key.partition(".")
        over.setdefault(section, {})[field] = json.loads(raw)
    return method, over


def spec_config(spec: str, split: str, seed: int) -> Config:
    """The toy preset with a spec's method and overrides (`spec_overrides`), on ``split``
    with ``seed``: the configuration of that row of the results page (its run folder is
    `run_dir` of it, so `toy_run` loads the run)."""
    from cagnet.train import config_with

    method, over = spec_overrides(spec)
    return config_with(get_preset("toy").replace(method=method),
                       **{**over, "data": {**over.get("data", {}), "split": split},
                          "train": {**over.get("train", {}), "seed": seed}})


def finished_run(cfg: Config) -> bool:
    """Whether the run of ``cfg`` has finished in the cache (`run_dir` holds its metrics),
    so that `toy_run` would load it rather than train."""
    return (run_dir(cfg) / "metrics.json").is_file()


def toy_run(method: str = "cagnet", cfg: Config | None = None,
            progress: bool = False) -> TrainResult:
    """Train ``cfg`` (default: the toy preset) with ``method``, or load the finished run.

    Returns `cagnet.train.TrainResult`: the model, its test ``metrics`` (scored again on
    every call, a few seconds) and the loss ``history``. A run killed half-way resumes.
    """
    cfg = (cfg if cfg is not None else get_preset("toy")).replace(method=method)
    return fit(cfg, out_dir=run_dir(cfg), resume=True, progress=progress)


def results_run(name: str, split: str = "default", seed: int = 0) -> TrainResult | None:
    """A variant of the results page by its name there (``"live-centred"``, ``"zs3net"``, ...),
    loaded and scored if its run (``split``, ``seed``) has finished in the cache, else None:
    a chapter shows it without training it (the results page's command trains it)."""
    rows = (book_results("results_toy") or {}).get("runs", [])
    spec = next((r["spec"] for r in rows if r["method"] == name), None)
    if spec is None:
        return None
    cfg = spec_config(spec, split, seed)
    return toy_run(cfg.method, cfg) if finished_run(cfg) else None


def book_results(name: str) -> dict | list | None:
    """The JSON a benchmark wrote into the book's folder (``book/<name>.json``, e.g.
    ``results_toy`` from `benchmarks/toy_results.py`, ``latent_screen`` from
    `benchmarks/latent_screen.py`), or None outside a checkout of the repository."""
    path = Path(__file__).resolve().parents[1] / "book" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def pooled_results() -> list[dict]:
    """The rows of the results page's toy table (``book/results_toy.json``), with the rows
    of a variant's extra seeds, run under the variant's name plus ``-seedsA-B``
    (``live-centred-seeds3-5``), counted as that variant's; [] outside a checkout."""
    rows = (book_results("results_toy") or {}).get("runs", [])
    return [{**r, "method": re.sub(r"-seeds\d+-\d+$", "", r["method"])} for r in rows]


def paired_leads(rows: list[dict], name: str, rival: str) -> list[tuple[str, int, float]]:
    """(split, seed, hIoU of ``name`` minus ``rival``) for every split and seed both ran."""
    theirs = {(r["split"], r["seed"]): r["hiou"] for r in rows if r["method"] == rival}
    return [(r["split"], r["seed"], r["hiou"] - theirs[r["split"], r["seed"]])
            for r in rows if r["method"] == name and (r["split"], r["seed"]) in theirs]


def mean_leads(leads: list[tuple[str, int, float]]) -> dict[str, float]:
    """{split: mean difference} of `paired_leads`' rows, splits in sorted order."""
    return {split: statistics.fmean(g for s, _, g in leads if s == split)
            for split in sorted({s for s, _, _ in leads})}
