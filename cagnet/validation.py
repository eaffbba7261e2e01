"""Checking what a run is given before anything runs.

- `parse_value` reads a ``--set SECTION.FIELD=VALUE`` text as the dataclass field's type
  (int, float, bool, str, tuples, ``None`` for optional fields);
- `validate_config` checks every field of a `Config` against its type and the ranges of
  `RULES` (positive counts, non-negative weights and rates, probabilities in [0, 1),
  known string choices) and a few rules that tie fields together;
- `check_output_folder`, `check_output_file` and `check_run_folder` refuse, before any
  work, an output that cannot be written or that would replace earlier results.

Every refusal is a `ConfigError` whose message names the option (``--set train.lr=abc``,
``--seed``, ``--out``) or the field and says what would be accepted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import tempfile
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cagnet.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig
from cagnet.errors import ConfigError

SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "loss": LossConfig,
                             "train": TrainConfig}
MAX_SEED = 2**32 - 1  # numpy's global generator takes seeds in [0, 2**32)


@dataclass(frozen=True)
class Rule:
    """The values a field (or each item of a tuple field) may take."""

    text: str  # what is accepted, for messages: "a positive integer"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # ``low`` itself is excluded
    high_open: bool = False  # ``high`` itself is excluded
    choices: tuple[Any, ...] | None = None

    def accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return True  # a type, not a range, question
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None
                    and (value > self.high or (self.high_open and value == self.high)))


def one_of(*choices: Any) -> Rule:
    return Rule("one of " + ", ".join(repr(c) for c in choices), choices=choices)


COUNT = Rule("a positive integer (>= 1)", low=1)
NONNEGATIVE_COUNT = Rule("an integer >= 0", low=0)
NONNEGATIVE = Rule("a number >= 0", low=0)
POSITIVE = Rule("a number > 0", low=0, low_open=True)
PROBABILITY = Rule("a probability in [0, 1)", low=0, high=1, high_open=True)
SEED = Rule(f"an integer in [0, {MAX_SEED}]", low=0, high=MAX_SEED)
# (start, every, gamma) of a step decay: from iteration `start` on, x gamma every `every`
STEP_DECAY = (Rule("a start iteration >= 0", low=0),
              Rule("an interval > 0 (iterations)", low=0, low_open=True),
              Rule("a factor gamma > 0", low=0, low_open=True))

# "section.field" -> the rule of the field, of each item of a tuple field, or one rule per
# position of a fixed-length tuple. Loss weights (``loss.w_*``), learning rates
# (``train.lr*``) and weight decays not named here are non-negative numbers; iteration
# counts (``train.*_iters``, ``train.*_every``) non-negative integers; ``train.*_decay_d``
# and ``train.*_decay_g`` step decays.
RULES: dict[str, Rule | tuple[Rule, ...]] = {
    "model.backbone": one_of("deeplabv2", "toy"),
    "model.embed_dim": COUNT,
    "model.init": one_of("kaiming", "default"),
    "model.selector": one_of("trained", "official"),
    "model.latent_grad": one_of("none", "content", "all"),
    "model.g_code": one_of("z", "mu"),
    "model.patch_size": one_of(1, 3, 5, 7),
    "model.toy_width": COUNT,
    "model.toy_stride": one_of(1, 2, 4, 8),
    "model.toy_refine": NONNEGATIVE_COUNT,
    "model.aspp_dilations": COUNT,
    "model.multiscale": POSITIVE,
    "model.context_hidden": COUNT,
    "model.context_dilations": COUNT,
    "model.generator_hidden": COUNT,
    "model.generator_dropout": PROBABILITY,
    "model.disc_hidden": COUNT,
    "model.disc_dropout": PROBABILITY,
    "data.dataset": one_of("toy", "voc", "context", "cocostuff"),
    "data.crop": COUNT,
    "data.scale_range": POSITIVE,
    "data.std": POSITIVE,
    "data.image_size": COUNT,
    "data.num_train": COUNT,
    "data.num_test": COUNT,
    "data.data_seed": SEED,
    "data.embeddings": one_of("official", "gensim"),
    "data.toy_lighting": Rule("a number in [0, 1]", 0.0, 1.0),
    "data.toy_prior": Rule("a number in [0, 1]", 0.0, 1.0),
    "train.backbone_optimizer": one_of("sgd", "adam"),
    "loss.gan": one_of("l1", "bce", "lsgan"),
    "loss.content": one_of("mmd", "l2"),
    "loss.mmd_sigmas": POSITIVE,
    "loss.mmd_max_pixels": COUNT,
    "loss.kl_pixels": one_of("labelled", "all"),
    "loss.kl_warmup": NONNEGATIVE_COUNT,
    "train.iters": NONNEGATIVE_COUNT,
    "train.finetune_iters": NONNEGATIVE_COUNT,
    "train.switch_every": COUNT,
    "train.unseen_weight": POSITIVE,
    "train.batch_size": COUNT,
    "train.momentum": PROBABILITY,
    "train.poly_power": NONNEGATIVE,
    "train.adam_betas": PROBABILITY,
    "train.lr_decay_d": STEP_DECAY,
    "train.lr_decay_g": STEP_DECAY,
    "train.finetune_decay_d": STEP_DECAY,
    "train.finetune_decay_g": STEP_DECAY,
    "train.top_p": COUNT,
    "train.fake_map_size": COUNT,
    "train.fake_codes": one_of("prior", "real"),
    "train.seed": SEED,
    "train.num_workers": NONNEGATIVE_COUNT,
    "train.log_every": COUNT,
    "train.eval_every": NONNEGATIVE_COUNT,
    "train.checkpoint_every": COUNT,
    "train.amp": one_of("auto", "bf16", "fp16", "off"),
}
# tuple fields that must hold at least one item
NON_EMPTY = {"model.aspp_dilations", "model.multiscale", "model.context_dilations",
             "loss.mmd_sigmas", "data.unseen", "data.embedding_sources"}


def rule_of(key: str) -> Rule | tuple[Rule, ...] | None:
    """The rule of field ``key`` ("section.field"), None when any value of its type goes."""
    if key in RULES:
        return RULES[key]
    section, _, name = key.partition(".")
    if section == "train" and name.endswith(("_decay_d", "_decay_g")):
        return STEP_DECAY
    if section == "train" and name.endswith("_iters"):
        return NONNEGATIVE_COUNT
    if section == "train" and name.endswith("_every"):
        return NONNEGATIVE_COUNT
    if (section == "loss" and name.startswith("w_")) or (
            section == "train" and (name.startswith(("lr", "weight_decay")))):
        return NONNEGATIVE
    return None


# ---------------------------------------------------------------------------------------------
# Types


def field_types(section: str) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config section."""
    return typing.get_type_hints(SECTIONS[section])


class _Mismatch(Exception):
    """A value that is not of the expected type (the message says what was expected)."""


def _optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def describe_type(tp: Any) -> str:
    """Words for what a field takes: ``tuple[float, float]`` -> "a list of 2 numbers"."""
    inner, optional = _optional(tp)
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            text = f"a list of {_plural(args[0])}, e.g. {_example(inner)}"
        else:
            kinds = {_plural(a) for a in args}
            text = (f"a list of {len(args)} {kinds.pop()}" if len(kinds) == 1
                    else f"a list of {len(args)} values") + f", e.g. {_example(inner)}"
    else:
        text = {int: "an integer", float: "a finite number", bool: "true or false",
                str: "text"}.get(inner, getattr(inner, "__name__", str(inner)))
    return text + (" or null" if optional else "")


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", bool: "booleans", str: "names"}.get(tp, "values")


def _example(tp: Any) -> str:
    args = typing.get_args(tp)
    samples = {int: ("1", "2", "3"), float: ("0.5", "1.0", "2.0"), bool: ("true", "false"),
               str: ('"a"', '"b"')}
    if len(args) == 2 and args[1] is Ellipsis:
        return "[" + ", ".join(samples.get(args[0], ("1", "2"))[:2]) + "]"
    return "[" + ", ".join(samples.get(a, ("1", "2", "3"))[i % 2 if a is bool else i % 3]
                           for i, a in enumerate(args)) + "]"


def _from_object(value: Any, tp: Any) -> Any:
    """``value`` (Python or JSON data) as type ``tp``; raises `_Mismatch` if it is not one."""
    inner, optional = _optional(tp)
    if value is None:
        if optional:
            return None
        raise _Mismatch
    if typing.get_origin(inner) is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        items = list(value)
        args = typing.get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_object(v, args[0]) for v in items)
        if len(items) != len(args):
            raise _Mismatch
        return tuple(_from_object(v, a) for v, a in zip(items, args, strict=True))
    if inner is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if inner is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise _Mismatch
    if inner is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Mismatch
            return float(value)
        raise _Mismatch
    if inner is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise _Mismatch
    return value  # a type this module does not know: left to the code that uses it


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _from_text(raw: str, tp: Any) -> Any:
    """The text of a ``--set`` value read as type ``tp``; raises `_Mismatch`."""
    inner, optional = _optional(tp)
    text = raw.strip()
    if optional and text.lower() in ("null", "none"):
        return None
    if typing.get_origin(inner) is tuple:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list):
            return _from_object(value, inner)
        args = typing.get_args(inner)
        parts = [p.strip() for p in text.split(",")] if text else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_text(p, args[0]) for p in parts)
        if len(parts) != len(args):
            raise _Mismatch
        return tuple(_from_text(p, a) for p, a in zip(parts, args, strict=True))
    if inner is str:
        if text.startswith('"'):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return raw
            if isinstance(value, str):
                return value
        return raw
    if inner is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise _Mismatch
    if inner in (int, float):
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = float(text)
            except ValueError:
                raise _Mismatch from None
        return _from_object(value, inner)
    try:
        return _from_object(json.loads(text), inner)
    except json.JSONDecodeError:
        return _from_object(raw, inner)


def parse_value(section: str, name: str, raw: str) -> Any:
    """The ``--set section.name=raw`` value as the field's type.

    ``train.lr=1e-3`` -> 0.001, ``train.iters=2e3`` -> 2000, ``model.pretrained=false`` ->
    False, ``model.multiscale=[1, 0.75]`` (or ``1,0.75``) -> (1.0, 0.75),
    ``data.unseen=cow,sheep`` -> ("cow", "sheep"), ``data.root=null`` -> None. A value
    that is not of the field's type (or a NaN or infinite number) raises a `ConfigError`.
    """
    types_ = field_types(section)
    if name not in types_:
        raise _unknown_field(section, name)
    try:
        return _from_text(raw, types_[name])
    except _Mismatch:
        raise ConfigError(f"--set {section}.{name}={raw}: {section}.{name} takes "
                          f"{describe_type(types_[name])}, not {raw!r}") from None


def _unknown_field(section: str, name: str) -> ConfigError:
    import difflib

    names = sorted(field_types(section))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {section}.{close[0]}? " if close else ""
    return ConfigError(f"unknown {section} setting {name!r}; {hint}known: {', '.join(names)}")


def parse_set(pairs: Iterable[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``--set`` pairs -> (``{section: {field: value}}``, ``{"section.field": "--set ..."}``).

    The second dict tells `validate_config` which option set a field, for its messages.
    """
    sections: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in SECTIONS or not name:
            raise ConfigError(f"--set expects SECTION.FIELD=VALUE with SECTION one of "
                              f"{', '.join(SECTIONS)}; got {pair!r}")
        sections.setdefault(section, {})[name] = parse_value(section, name, raw)
        origins[f"{section}.{name}"] = f"--set {pair}"
    return sections, origins


# ---------------------------------------------------------------------------------------------
# Ranges


def _range_error(key: str, value: Any, text: str, origins: Mapping[str, str]) -> ConfigError:
    where = f"{origins[key]}: " if key in origins else ""
    return ConfigError(f"{where}{key} must be {text}, not {value!r}")


def check_field(key: str, value: Any, tp: Any, origins: Mapping[str, str] | None = None) -> None:
    """Raise a `ConfigError` if ``value`` of field ``key`` is not of type ``tp`` or out of range."""
    origins = origins or {}
    try:
        _from_object(value, tp)
    except _Mismatch:
        raise _range_error(key, value, describe_type(tp), origins) from None
    if value is None:
        return
    rule = rule_of(key)
    items = list(value) if isinstance(value, (tuple, list)) else None
    if items is not None and key in NON_EMPTY and not items:
        raise _range_error(key, value, "a non-empty list", origins)
    if rule is None:
        return
    if isinstance(rule, tuple):
        for item, r in zip(items or [], rule, strict=False):
            if not r.accepts(item):
                raise _range_error(key, value, f"({', '.join(x.text for x in rule)})", origins)
        return
    for item in (items if items is not None else [value]):
        if not rule.accepts(item):
            text = rule.text if items is None else f"a list of items each {rule.text}"
            raise _range_error(key, value, text, origins)


def validate_config(cfg: Config, origins: Mapping[str, str] | None = None) -> Config:
    """Check every field of ``cfg`` (types, `RULES`) and the rules that tie fields together.

    ``origins`` maps "section.field" to the option that set it (``"--seed"``,
    ``"--set train.lr=abc"``), named first in the message. Returns ``cfg`` unchanged.
    """
    from cagnet.config import METHODS

    origins = dict(origins or {})
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    for section in SECTIONS:
        part = getattr(cfg, section)
        hints = field_types(section)
        for f in dataclasses.fields(part):
            check_field(f"{section}.{f.name}", getattr(part, f.name), hints[f.name], origins)

    def fail(keys: tuple[str, ...], text: str) -> ConfigError:
        named = [origins[k] for k in keys if k in origins]
        return ConfigError((f"{'; '.join(dict.fromkeys(named))}: " if named else "") + text)

    m, d = cfg.model, cfg.data
    lo, hi = d.scale_range
    if lo > hi:
        raise fail(("data.scale_range",), f"data.scale_range is (low, high) with low <= high, "
                                          f"not {d.scale_range}")
    rates = tuple(m.generator_dropout)
    if len(rates) not in (1, len(m.generator_hidden)):
        raise fail(("model.generator_dropout", "model.generator_hidden"),
                   f"model.generator_dropout has {len(rates)} rates for "
                   f"{len(m.generator_hidden)} hidden layers (model.generator_hidden); give one "
                   "rate, or one per layer")
    if m.g_code == "mu" and cfg.method == "cagnet" and cfg.train.fake_codes == "prior":
        raise fail(("model.g_code", "train.fake_codes"),
                   "model.g_code='mu' trains G on the codes' means, but fine-tuning would feed "
                   "it z ~ N(0, I), codes it never saw; set train.fake_codes='real'")
    if m.feature_norm and m.backbone != "toy":
        raise fail(("model.feature_norm", "model.backbone"),
                   f"model.feature_norm normalises the toy backbone's output; the {m.backbone} "
                   "backbone has no such layer: set model.feature_norm=false")
    if m.weights is not None:
        path = Path(m.weights).expanduser()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise fail(("model.weights",), f"weights file {m.weights} {what}")
        if m.backbone != "deeplabv2":
            raise fail(("model.weights",),
                       f"model.weights loads a ResNet-101 trunk, and the {m.backbone!r} "
                       "backbone has none; use --from-scratch or the deeplabv2 backbone")
    if getattr(d, "embeddings", "gensim") == "gensim":
        from cagnet.data.toy import TOY_SOURCES

        for source in (s for s in d.embedding_sources if s not in TOY_SOURCES):
            env = vector_env_name(source)
            if os.environ.get(env):
                path = Path(os.environ[env]).expanduser()
                if not path.is_file():
                    raise ConfigError(f"{env}={os.environ[env]} (the word vectors "
                                      f"{source!r}) names no file; point it at the file")
                continue
            path = Path(source).expanduser()
            if _looks_like_path(source) and not path.is_file():
                what = "is a folder, not a file" if path.is_dir() else "does not exist"
                raise fail(("data.embedding_sources",),
                           f"word-vector file {source} (data.embedding_sources) {what}")
    return cfg


def vector_env_name(source: str) -> str:
    """The variable naming a file for word-vector ``source``: ``CAGNET_VECTORS_FASTTEXT``."""
    return "CAGNET_VECTORS_" + "".join(c if c.isascii() and c.isalnum() else "_"
                                       for c in source).upper()


def check_schedule(cfg: Config, origins: Mapping[str, str] | None = None) -> None:
    """Refuse a run with no iteration to train (a command-line run must train something)."""
    from cagnet.train import total_iterations

    origins = origins or {}
    if total_iterations(cfg) <= 0:
        named = [origins[k] for k in ("train.iters", "train.finetune_iters") if k in origins]
        where = f"{', '.join(named)}: " if named else ""
        stages = ("--iters" if cfg.method == "seen-only"
                  else "--iters (training) or --finetune-iters (fine-tuning)")
        raise ConfigError(f"{where}the run has no iteration to train; give {stages} a "
                          "positive count")


_VECTOR_SUFFIXES = (".kv", ".bin", ".gz", ".txt", ".vec", ".npy", ".model")


def _looks_like_path(source: str) -> bool:
    """A word-vector source that names a file rather than a toy table or a gensim-data model."""
    return ("/" in source or os.sep in source or source.startswith(("~", "."))
            or source.lower().endswith(_VECTOR_SUFFIXES))


# ---------------------------------------------------------------------------------------------
# Words for out-of-vocabulary classes


def parse_words(pairs: Iterable[str], dataset: str) -> dict[str, str]:
    """``--word "tv monitor=television"`` pairs -> substitutes for `class_embeddings`.

    The left side is a class name (any spelling: ``tv monitor``, ``tvmonitor``) or one word
    of a class name; the right side the words to use instead.
    """
    from cagnet.data.splits import _key, class_names
    from cagnet.embeddings import class_words

    names = class_names(dataset)
    by_key = {_key(n): n for n in names}
    words = {w.lower() for n in names for w in class_words(n)}
    out: dict[str, str] = {}
    for pair in pairs:
        left, sep, right = pair.partition("=")
        left, right = left.strip(), right.strip()
        if not sep or not left or not right:
            raise ConfigError(f"--word {pair!r}: expected NAME=WORDS, e.g. "
                              "--word \"tv monitor=television\"")
        if _key(left) in by_key:
            out[by_key[_key(left)]] = right
        elif left.lower() in words:
            out[left] = right
        else:
            raise ConfigError(f"--word {pair!r}: {left!r} is neither a {dataset} class name nor "
                              "a word of one")
    return out


# ---------------------------------------------------------------------------------------------
# Output paths


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path.cwd()


def _probe_writable(folder: Path) -> str | None:
    """None if a file can be made in ``folder``, else why not (nothing is left behind)."""
    try:
        made = tempfile.mkdtemp(prefix=".cagnet-probe-", dir=folder)
    except OSError as e:
        return e.strerror or type(e).__name__
    os.rmdir(made)
    return None


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse a folder that is a file, or that cannot be made or written; makes nothing."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; give a folder")
    _check_writable(path, path, option)
    return path


def _check_writable(named: Path, folder: Path, option: str) -> None:
    """Refuse ``folder`` (to hold ``named``) if it cannot be made or written in."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise ConfigError(f"{option} {named}: {base} is a file, so nothing can be made "
                          "inside it; give another path")
    why = _probe_writable(base)
    if why is not None:
        what = "write in" if base == folder else "create a folder inside"
        raise ConfigError(f"{option} {named}: cannot {what} {base} ({why}); give a path "
                          "you can write to")


def check_output_file(path: str | os.PathLike, option: str = "--out",
                      overwrite: bool = False) -> Path:
    """Refuse a file path that is a folder, exists (unless ``overwrite``) or cannot be made."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name, e.g. "
                          f"{path / 'metrics.json'}")
    if path.exists() and not overwrite:
        raise ConfigError(f"{option} {path} already exists; pass --overwrite to replace it, "
                          "or give another file name")
    _check_writable(path, path.parent, option)
    return path


RUN_FILES = ("checkpoint.pt", "metrics.json", "history.json", "tb")


def check_run_folder(path: str | os.PathLike, resume: bool, overwrite: bool) -> Path:
    """Refuse a ``train --out`` folder that holds files, unless resuming or overwriting."""
    path = check_output_folder(path)
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it; "
                          "choose one")
    if resume or overwrite or not path.is_dir():
        return path
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        what = ("a run" if any(e in RUN_FILES for e in entries) else "files")
        raise ConfigError(f"--out {path} already holds {what} ({shown}); use --resume to "
                          "continue it, --overwrite to replace it, or another folder")
    return path


def clear_run_files(path: Path) -> None:
    """Remove what a run writes in ``path`` (checkpoint, metrics, history, logs), nothing else."""
    import shutil

    for name in RUN_FILES:
        p = path / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for p in path.glob(".checkpoint.pt.tmp*"):
        p.unlink()
