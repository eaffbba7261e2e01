"""Self-training: the pseudo-label rule, the four-stage schedule, a run, and its resume."""

import dataclasses
import json

import pytest
import torch
from small import assert_resumes_bit_identical, small_toy, small_trainer

from cagnet.checkpoint import load_checkpoint
from cagnet.cli import main
from cagnet.config import get_preset
from cagnet.errors import ConfigError
from cagnet.selftrain import pseudo_labels
from cagnet.train import (
    fit,
    is_finetune_step,
    poly_lr,
    stage_at,
    stage_starts,
    step_lr,
    total_iterations,
)

# six classes: 0 is neither seen nor unseen (like Pascal-VOC's background), 1-3 seen, 4-5 unseen
K, SEEN, UNSEEN = 6, [1, 2, 3], [4, 5]


def _ranked(*rankings):
    """Logits (1, K, 1, P) whose pixel p ranks the classes as rankings[p] (best first)."""
    logits = torch.zeros(1, K, 1, len(rankings))
    for p, order in enumerate(rankings):
        for r, c in enumerate(order):
            logits[0, c, 0, p] = float(K - r)
    return logits


def _labels(*values):
    return torch.tensor(values).view(1, 1, -1)


def test_an_ignored_pixel_takes_the_best_ranked_unseen_class_within_top_p():
    logits = _ranked([4, 1, 5, 2, 3, 0],   # unseen first
                     [1, 5, 4, 2, 3, 0],   # 5 outranks 4: 5, not the smaller id
                     [1, 2, 3, 5, 4, 0],   # first unseen at rank 4
                     [0, 4, 1, 2, 3, 5])   # the unlearnt class 0 counts in the ranking
    y = _labels(255, 255, 255, 255)
    assert pseudo_labels(logits, y, UNSEEN, top_p=2).flatten().tolist() == [4, 5, 255, 4]
    assert pseudo_labels(logits, y, UNSEEN, top_p=3).flatten().tolist() == [4, 5, 255, 4]
    assert pseudo_labels(logits, y, UNSEEN, top_p=4).flatten().tolist() == [4, 5, 5, 4]
    assert pseudo_labels(logits, y, UNSEEN, top_p=1).flatten().tolist() == [4, 255, 255, 255]


def test_labelled_pixels_are_untouched_and_no_seen_class_is_a_pseudo_label():
    logits = _ranked([4, 1, 5, 2, 3, 0], [1, 2, 3, 0, 5, 4], [5, 4, 1, 2, 3, 0])
    y = _labels(2, 255, 1)  # seen labels stay, even where an unseen class scores best
    assert pseudo_labels(logits, y, UNSEEN, top_p=3).flatten().tolist() == [2, 255, 1]
    assert pseudo_labels(logits, y, UNSEEN, top_p=K).flatten().tolist() == [2, 5, 1]


def _literal(logits, labels, unseen, top_p):
    """The rule read literally: sort each pixel's scores, walk the first top_p classes."""
    order = logits.argsort(dim=1, descending=True)  # (B, K, H, W)
    out = labels.clone()
    B, _, H, W = logits.shape
    for b in range(B):
        for i in range(H):
            for j in range(W):
                if labels[b, i, j] != 255:
                    continue
                kept = [int(c) for c in order[b, :top_p, i, j] if int(c) in unseen]
                out[b, i, j] = kept[0] if kept else 255
    return out


@pytest.mark.parametrize("top_p", [1, 2, 3, 5, K])
def test_the_vectorised_rule_equals_the_literal_one(top_p):
    g = torch.Generator().manual_seed(top_p)
    logits = torch.randn(2, K, 5, 7, generator=g)  # (B, K, H, W)
    labels = torch.randint(1, 4, (2, 5, 7), generator=g)
    labels[torch.rand(2, 5, 7, generator=g) < 0.6] = 255
    got = pseudo_labels(logits, labels, UNSEEN, top_p)
    assert torch.equal(got, _literal(logits, labels, UNSEEN, top_p))


def test_pseudo_labels_refuse_maps_of_other_sizes():
    with pytest.raises(ValueError, match="same pixels"):
        pseudo_labels(torch.zeros(1, K, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long), UNSEEN, 2)


# ---------------------------------------------------------------------------------------------
# The schedule


def _schedule(**kw):
    base = dict(iters=10, finetune_iters=6, switch_every=2, self_train=True, st_iters=5,
                st_finetune_iters=6)
    return dataclasses.replace(get_preset("toy").train, **(base | kw))


def test_stage_boundaries_and_blocks():
    t = _schedule()
    assert stage_starts(t) == {"train": 0, "finetune": 10, "self-train": 16,
                               "self-train-finetune": 21}
    stages = [stage_at(t, i) for i in range(27)]
    assert stages == (["train"] * 10 + ["finetune"] * 6 + ["self-train"] * 5
                      + ["self-train-finetune"] * 6)
    fake = [i for i in range(27) if is_finetune_step(t, i)]
    assert fake == [12, 13, 23, 24]  # each fine-tuning stage opens with a real-image block
    cfg = get_preset("toy").replace(train=t)
    assert total_iterations(cfg) == 27
    off = cfg.replace(train=dataclasses.replace(t, self_train=False))
    assert total_iterations(off) == 16 and stage_at(off.train, 20) == "finetune"
    assert list(stage_starts(off.train)) == ["train", "finetune"]


def test_a_stage_without_iterations_is_skipped():
    t = _schedule(finetune_iters=0)
    assert stage_at(t, 9) == "train" and stage_at(t, 10) == "self-train"
    assert not is_finetune_step(t, 12)


def test_seen_only_has_nothing_to_self_train():
    cfg = get_preset("toy").replace(method="seen-only", train=_schedule())
    with pytest.raises(ConfigError, match="seen-only"):
        total_iterations(cfg)


# (our field, official value, "file: key"): bcmi/CaGNet-Zero-Shot-Semantic-Segmentation 249305b
OFFICIAL = {
    "voc": [("st_iters", 10_000, "configs_st_voc.yaml: ITER_MAX_ST"),
            ("st_finetune_iters", 10_000, "configs_st_transfer_voc.yaml: ITER_MAX_ST_TRANSFER"),
            ("lr_st", 5e-5, "configs_st_voc.yaml: back_opt.lr_st"),
            ("lr_d_st", 1e-4, "configs_st_voc.yaml: dis_opt.lr_st"),
            ("lr_g_st", 5e-5, "configs_st_voc.yaml: gen_opt.lr_st"),
            ("st_decay_d", (5_000, 1_000, 0.3), "configs_st_voc.yaml: dis_scheduler"),
            ("st_decay_g", (5_000, 1_000, 0.3), "configs_st_voc.yaml: gen_scheduler"),
            ("lr_d_st_finetune", 1e-4, "configs_st_transfer_voc.yaml: dis_opt.lr_st_transfer"),
            ("lr_g_st_finetune", 1e-4, "configs_st_transfer_voc.yaml: gen_opt.lr_st_transfer"),
            ("st_finetune_decay_d", (5_000, 2_500, 0.5),
             "configs_st_transfer_voc.yaml: dis_scheduler"),
            ("st_finetune_decay_g", (5_000, 2_500, 0.5),
             "configs_st_transfer_voc.yaml: gen_scheduler")],
    "context": [("st_iters", 10_000, "configs_st_context.yaml: ITER_MAX_ST"),
                ("st_finetune_iters", 10_000,
                 "configs_st_transfer_context.yaml: ITER_MAX_ST_TRANSFER"),
                ("lr_st", 2.5e-4, "configs_st_context.yaml: back_opt.lr_st"),
                ("lr_d_st", 2.5e-4, "configs_st_context.yaml: dis_opt.lr_st"),
                ("lr_g_st", 2e-4, "configs_st_context.yaml: gen_opt.lr_st"),
                ("st_decay_d", (5_000, 1_000, 0.3), "configs_st_context.yaml: dis_scheduler"),
                ("st_decay_g", (5_000, 1_000, 0.3), "configs_st_context.yaml: gen_scheduler"),
                ("lr_d_st_finetune", 1e-4,
                 "configs_st_transfer_context.yaml: dis_opt.lr_st_transfer"),
                ("lr_g_st_finetune", 1e-4,
                 "configs_st_transfer_context.yaml: gen_opt.lr_st_transfer"),
                ("st_finetune_decay_d", (5_000, 2_500, 0.5),
                 "configs_st_transfer_context.yaml: dis_scheduler"),
                ("st_finetune_decay_g", (5_000, 2_500, 0.5),
                 "configs_st_transfer_context.yaml: gen_scheduler")],
    "cocostuff": [("st_iters", 10_000, "configs_st_coco.yaml: ITER_MAX_ST"),
                  ("st_finetune_iters", 10_000,
                   "configs_st_transfer_coco.yaml: ITER_MAX_ST_TRANSFER"),
                  ("lr_st", 5e-5, "configs_st_coco.yaml: back_opt.lr_st"),
                  ("lr_d_st", 5e-5, "configs_st_coco.yaml: dis_opt.lr_st"),
                  ("lr_g_st", 5e-5, "configs_st_coco.yaml: gen_opt.lr_st"),
                  ("st_decay_d", (5_000, 1_000, 0.3), "configs_st_coco.yaml: dis_scheduler"),
                  ("st_decay_g", (5_000, 1_000, 0.3), "configs_st_coco.yaml: gen_scheduler"),
                  ("lr_d_st_finetune", 5e-5,
                   "configs_st_transfer_coco.yaml: dis_opt.lr_st_transfer"),
                  ("lr_g_st_finetune", 5e-5,
                   "configs_st_transfer_coco.yaml: gen_opt.lr_st_transfer"),
                  ("st_finetune_decay_d", (3_000, 1_000, 0.5),
                   "configs_st_transfer_coco.yaml: dis_scheduler"),
                  ("st_finetune_decay_g", (3_000, 1_000, 0.5),
                   "configs_st_transfer_coco.yaml: gen_scheduler")],
}


@pytest.mark.parametrize("preset", sorted(OFFICIAL))
def test_paper_presets_have_the_official_self_training_schedule(preset):
    t = get_preset(preset).train
    assert not t.self_train  # off unless asked for (--self-train)
    wrong = [f"train.{name} = {getattr(t, name)!r}, official {value!r} ({where})"
             for name, value, where in OFFICIAL[preset] if getattr(t, name) != value]
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------------------
# The self-training step


def _trainer(**train):
    cfg = small_toy(train={"iters": 2, "finetune_iters": 2, "self_train": True, "st_iters": 10,
                           "st_finetune_iters": 4} | train)
    return small_trainer(cfg, K, SEEN, UNSEEN)


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    y = torch.randint(1, 4, (2, 32, 32), generator=g)
    y[:, :12] = 255
    return x, y


def test_self_training_pseudo_labels_ignored_pixels_and_trains_every_network():
    tr = _trainer(top_p=K)  # every ignored pixel gets its best unseen class
    x, y = _batch()
    tr.set_stage("finetune")
    assert not any(p.requires_grad for p in tr.trainable)
    adam = tr.optimizers["discriminator"]
    tr.set_stage("self-train")
    assert all(p.requires_grad for p in tr.trainable)
    assert tr.optimizers["discriminator"] is not adam and not tr.optimizers["backbone"].state

    guessed = tr.pseudo_label(x, y)
    assert torch.equal(guessed[y != 255], y[y != 255])  # seen labels kept
    assert set(guessed[y == 255].unique().tolist()) <= set(UNSEEN)  # top_p = K: all labelled
    assert tr.model.training and all(m.training for m in tr.model.modules()
                                     if not isinstance(m, torch.nn.BatchNorm2d))

    before = [p.detach().clone() for p in tr.trainable]
    t = tr.cfg.train
    assert torch.isfinite(tr.train_step(x, y, 4 + 7)).all()  # the 8th self-training iteration
    assert all(not torch.equal(a, p) for a, p in zip(before, tr.trainable, strict=True))
    lr = {k: o.param_groups[0]["lr"] for k, o in tr.optimizers.items()}
    assert lr["backbone"] == pytest.approx(poly_lr(t.lr_st, 7, t.st_iters, t.poly_power))
    assert lr["discriminator"] == pytest.approx(step_lr(t.lr_d_st, 7, t.st_decay_d))
    assert lr["generator"] == pytest.approx(step_lr(t.lr_g_st, 7, t.st_decay_g))

    tr.set_stage("self-train-finetune")  # a second fine-tuning: E and CM frozen again
    assert not any(p.requires_grad for p in tr.trainable) and not tr.model.backbone.training
    tr.train_step(x, y, 16)
    assert tr.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(
        step_lr(t.lr_d_st_finetune, 2, t.st_finetune_decay_d))


def test_a_run_without_self_training_has_no_such_stage():
    tr = _trainer(self_train=False)
    with pytest.raises(ValueError, match="self_train"):
        tr.set_stage("self-train")


# ---------------------------------------------------------------------------------------------
# Runs


TINY = ["--set", "data.num_train=8", "--set", "data.num_test=4", "--set", "train.batch_size=4",
        "--set", "train.log_every=1", "--set", "train.switch_every=1",
        "--set", "train.st_iters=2", "--set", "train.st_finetune_iters=2",
        "--set", "loss.mmd_max_pixels=64", "--set", "model.toy_width=16",
        "--set", "model.context_hidden=16", "--set", "model.generator_hidden=[32]",
        "--set", "model.disc_hidden=32"]


def test_train_with_self_train_runs_all_four_stages(tmp_path):
    assert main(["train", "--preset", "toy", "--self-train", "--iters", "2", "--finetune-iters",
                 "2", "--device", "cpu", "--no-progress", *TINY, "--out", str(tmp_path)]) == 0
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 8 and state["stage"] == "done"
    assert state["config"]["train"]["self_train"] is True
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["iteration"] == 8 and 0.0 <= m["hiou"] <= 1.0
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["stage"] for r in history] == ["train", "train", "finetune", "finetune",
                                             "self-train", "self-train",
                                             "self-train-finetune", "self-train-finetune"]
    assert [r["step"] for r in history if r["stage"].endswith("finetune")] == ["real", "fake"] * 2


def _toy(**train):
    schedule = dict(iters=2, finetune_iters=2, switch_every=1, batch_size=4, log_every=1,
                    self_train=True, st_iters=4, st_finetune_iters=2)
    return small_toy(train=schedule | train, data=dict(num_train=8, num_test=4),
                     loss=dict(mmd_max_pixels=64))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run (checkpoints change nothing in training: one serves every case)."""
    return fit(_toy(), tmp_path_factory.mktemp("straight"), device="cpu", progress=False,
               evaluate=False)


@pytest.mark.parametrize(("every", "saved_stage"), [(4, "finetune"), (5, "self-train")])
def test_a_run_killed_in_self_training_resumes_bit_identical(straight, tmp_path, every,
                                                             saved_stage):
    # checkpoint at 4: after the last fine-tuning step, so the resumed run opens self-training
    # with fresh optimisers; at 5: inside self-training, so its optimisers are restored
    cfg = _toy(checkpoint_every=every)
    # killed once 7 is done: inside self-training (0-based iterations 4-7)
    saved = assert_resumes_bit_identical(straight, cfg, tmp_path / "b", crash_after=7)
    assert saved["iteration"] == every and saved["stage"] == saved_stage
