"""The two steps, without a dataset: who learns from what, the schedule, the data order."""

import dataclasses

import numpy as np
import pytest
import torch
from small import small_toy, small_trainer

from cagnet.config import get_preset
from cagnet.train import (
    SeededItems,
    StepLosses,
    call_frozen,
    global_batch,
    is_finetune_step,
    poly_lr,
    step_lr,
)

K, SEEN, UNSEEN = 6, [0, 1, 2, 3], [4, 5]


def _trainer(method="cagnet", amp="off", train=None, **loss):
    cfg = small_toy(method, loss=loss, train={"amp": amp} | (train or {}))
    return small_trainer(cfg, K, SEEN, UNSEEN)


def _batch(b=2, size=32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 3, size, size, generator=g)
    y = torch.randint(0, len(SEEN), (b, size, size), generator=g)
    y[:, :4] = 255
    return x, y


def _snapshot(*modules):
    return [t.detach().clone() for m in modules for t in m.state_dict().values()]


def test_call_frozen_passes_gradient_to_inputs_only():
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3, requires_grad=True)
    call_frozen(lin, x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert lin.weight.grad is None and lin.bias.grad is None


@pytest.mark.parametrize("method", ["cagnet", "zs3net", "seen-only"])
def test_training_step_updates_every_network_with_finite_losses(method):
    tr = _trainer(method)
    m = tr.model
    parts_of = {"E": [m.backbone], "CM": [m.context], "G": [m.generator],
                "C": [m.discriminator.cls_head], "D": [m.discriminator.gan_head]}
    before = {k: _snapshot(*[x for x in v if x is not None]) for k, v in parts_of.items()}
    parts = tr.train_step(*_batch(), 0)
    assert torch.isfinite(parts).all() and parts[0] > 0
    after = {k: _snapshot(*[x for x in v if x is not None]) for k, v in parts_of.items()}
    expect = {"E": True, "CM": method == "cagnet", "G": method != "seen-only", "C": True,
              "D": method != "seen-only"}
    for k, changed in expect.items():
        moved = any(not torch.equal(a, b) for a, b in zip(before[k], after[k], strict=True))
        assert moved == changed, k


def test_fine_tuning_never_touches_backbone_or_context():
    tr = _trainer("cagnet")
    x, y = _batch()
    tr.train_step(x, y, 0)
    tr.set_stage("finetune")
    frozen = _snapshot(tr.model.backbone, tr.model.context)  # weights and BatchNorm statistics
    learners = _snapshot(tr.model.generator, tr.model.discriminator)
    tr.train_step(x, y, 1)  # training step on real features: only G, D, C learn
    tr.finetune_step()
    tr.finetune_step()
    assert all(torch.equal(a, b) for a, b in zip(
        frozen, _snapshot(tr.model.backbone, tr.model.context), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(
        learners, _snapshot(tr.model.generator, tr.model.discriminator), strict=True))
    assert all(p.grad is None for p in tr.model.backbone.parameters())


def test_backbone_ce_does_not_train_the_classifier():
    # seen-only with C's own CE weight at 0: E still learns through C, but C must not move
    # (no weight decay on D/C, which would move it on its own)
    tr = _trainer("seen-only", train={"weight_decay_d": 0.0}, w_ce_real=0.0)
    c_before = _snapshot(tr.model.discriminator)
    e_before = _snapshot(tr.model.backbone.aspp)
    tr.train_step(*_batch(), 0)
    assert all(torch.equal(a, b) for a, b in zip(
        c_before, _snapshot(tr.model.discriminator), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(
        e_before, _snapshot(tr.model.backbone.aspp), strict=True))


def test_generator_losses_do_not_train_the_discriminator():
    # with every D/C weight at 0 and D's GAN replaced by G's, D would move only through G's loss
    tr = _trainer("cagnet", w_ce_real=0.0)
    losses: StepLosses = tr.losses
    x, y = _batch()
    out = losses("real", x, y)
    g_terms = out[1][6:].sum()  # g_gan, g_content, g_ce are all present
    assert g_terms > 0
    tr.model.zero_grad(set_to_none=True)
    m, L = tr.model, tr.cfg.loss
    feats = m.segment(x)
    from cagnet.losses import gan_loss, resize_labels
    yy = resize_labels(y, feats["features"][0].shape[-2:])
    fake = m.generate(yy, feats["ctx"].z)
    gan_g, _ = call_frozen(m.discriminator, fake)
    gan_loss(gan_g, True, L.gan).backward()
    assert all(p.grad is None for p in m.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.generator.parameters())


def test_random_label_maps_favour_unseen_classes():
    tr = _trainer("cagnet")
    torch.manual_seed(0)
    y = tr.losses.random_labels(4, (50, 50))
    counts = torch.bincount(y.flatten(), minlength=K).float()
    assert counts[:len(SEEN)].min() > 0
    # each unseen class ~unseen_weight times as frequent as each seen class
    w = get_preset("toy").train.unseen_weight
    assert w > 1
    ratio = counts[UNSEEN].mean() / counts[SEEN].mean()
    assert 0.8 * w < ratio < 1.2 * w


def test_schedule_alternates_blocks_after_training():
    cfg = dataclasses.replace(get_preset("toy").train, iters=10, finetune_iters=40,
                              switch_every=5)
    kinds = [is_finetune_step(cfg, t) for t in range(50)]
    assert not any(kinds[:15])  # training stage + the first block of training steps
    assert all(kinds[15:20]) and not any(kinds[20:25]) and all(kinds[25:30])


def test_poly_schedule():
    assert poly_lr(1.0, 0, 100, 0.9) == 1.0
    assert poly_lr(1.0, 50, 100, 0.9) == pytest.approx(0.5 ** 0.9)
    assert poly_lr(1.0, 100, 100, 0.9) == 0.0


def test_adam_rates_step_decay_and_fresh_optimisers_in_fine_tuning():
    decay = {"lr_decay_d": (4, 2, 0.5), "lr_decay_g": (6, 3, 0.1),
             "finetune_decay_d": (20, 10, 0.3), "finetune_decay_g": (0, 5, 0.5)}
    tr = _trainer(train={"iters": 10, "finetune_iters": 40, **decay})
    t = tr.cfg.train
    x, y = _batch()
    tr.train_step(x, y, 9)  # decays at 4, 6, 8 (D) and 6, 9 (G)
    rates = {k: o.param_groups[0]["lr"] for k, o in tr.optimizers.items()}
    assert rates["backbone"] == pytest.approx(poly_lr(t.lr, 9, 10, t.poly_power))
    assert rates["discriminator"] == pytest.approx(t.lr_d * 0.5**3)
    assert rates["generator"] == pytest.approx(t.lr_g * 0.1**2)
    adam_before = {k: tr.optimizers[k] for k in ("discriminator", "generator")}
    tr.set_stage("finetune")
    assert all(tr.optimizers[k] is not o for k, o in adam_before.items())  # fresh Adam
    assert all(not tr.optimizers[k].state for k in adam_before)
    tr.train_step(x, y, 30)  # 20 of 40 fine-tuning iterations done
    tr.finetune_step(49)  # the 40th fine-tuning iteration: t = 39
    rates = {k: o.param_groups[0]["lr"] for k, o in tr.optimizers.items()}
    assert rates["backbone"] == pytest.approx(poly_lr(t.lr, 9, 10, t.poly_power))  # frozen
    assert rates["discriminator"] == pytest.approx(t.lr_d_finetune * 0.3**2)  # at 20, 30
    assert rates["generator"] == pytest.approx(t.lr_g_finetune * 0.5**8)  # at 0, 5, ..., 35


def test_step_lr_matches_the_official_lambda_policy():
    # trainer.py get_scheduler 'lambda': 1 before start, gamma ** ((t - start) // every + 1) after
    assert step_lr(1.0, 9_999, (10_000, 5_000, 0.71)) == 1.0
    assert step_lr(1.0, 10_000, (10_000, 5_000, 0.71)) == pytest.approx(0.71)
    assert step_lr(1.0, 14_999, (10_000, 5_000, 0.71)) == pytest.approx(0.71)
    assert step_lr(1.0, 15_000, (10_000, 5_000, 0.71)) == pytest.approx(0.71**2)
    assert step_lr(5e-5, 5_999, (3_000, 1_000, 0.1)) == pytest.approx(5e-5 * 0.1**3)


def test_batches_depend_on_seed_and_iteration_only():
    n, b = 10, 4
    seen = [global_batch(0, t, b, n) for t in range(5)]  # 20 draws = two epochs
    flat = sum(seen, [])
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert global_batch(0, 3, b, n) == seen[3]  # recomputed from (seed, iteration)
    assert global_batch(1, 0, b, n) != seen[0]


class _Noisy(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.rand(2), np.random.rand(), i


def test_seeded_items_are_reproducible_and_leave_the_global_rng_alone():
    items = SeededItems(_Noisy(), seed=3)
    torch.manual_seed(0)
    a = items[(7, 2)]
    after = torch.rand(1)
    torch.manual_seed(0)
    b = items[(7, 2)]
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert torch.equal(torch.rand(1), after)  # loading did not consume the global stream
    assert not torch.equal(items[(8, 2)][0], a[0])


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_steps_stay_finite(amp):
    # the GPU fast path's autocast (and, for fp16, the gradient scaler) on the CPU
    tr = _trainer("cagnet", amp=amp)
    assert tr.amp_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert tr.scaler.is_enabled() == (amp == "fp16")
    x, y = _batch()
    assert torch.isfinite(tr.train_step(x, y, 0)).all()
    tr.set_stage("finetune")
    tr.train_step(x, y, 1)
    assert torch.isfinite(tr.finetune_step()).all()


@pytest.mark.parametrize("latent_grad,cm_learns,e_learns",
                         [("none", False, False), ("content", True, False), ("all", True, True)])
def test_latent_grad_decides_whether_g_losses_reach_cm_and_e(latent_grad, cm_learns, e_learns):
    # only G's content loss is on: D/C see detached features, so any gradient in CM or E
    # came to them through z
    zero = dict(w_ce_real_backbone=0.0, w_kl=0.0, w_ce_real=0.0, w_gan_g=0.0, w_ce_fake_g=0.0)
    tr = _trainer(**zero)
    cfg = tr.cfg.replace(model=dataclasses.replace(tr.cfg.model, latent_grad=latent_grad))
    steps = StepLosses(tr.model, cfg, SEEN, UNSEEN)
    tr.model.train()
    x, y = _batch()
    loss, parts, _ = steps("real", x, y)
    assert parts[7] > 0  # the content term is on
    loss.backward()

    def grad_norm(module):
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    assert (grad_norm(tr.model.context) > 0) == cm_learns
    assert (grad_norm(tr.model.backbone) > 0) == e_learns
    assert grad_norm(tr.model.generator) > 0


def test_content_latent_grad_feeds_g_the_same_code():
    tr = _trainer()
    tr.model.train()
    x, _ = _batch()
    out = tr.model.segment(x)
    again = tr.model.context(out["aspp"].detach(), eps=out["ctx"].eps)
    torch.testing.assert_close(again.z, out["ctx"].z)


@pytest.mark.parametrize("latent_grad,cm_learns", [("content", False), ("all", True)])
def test_only_all_lets_the_adversarial_loss_reach_cm(latent_grad, cm_learns):
    zero = dict(w_ce_real_backbone=0.0, w_kl=0.0, w_ce_real=0.0, w_content=0.0, w_ce_fake_g=0.0)
    tr = _trainer(**zero)
    cfg = tr.cfg.replace(model=dataclasses.replace(tr.cfg.model, latent_grad=latent_grad))
    steps = StepLosses(tr.model, cfg, SEEN, UNSEEN)
    tr.model.train()
    loss, parts, _ = steps("real", *_batch())
    assert parts[6] > 0  # G's adversarial term is on
    loss.backward()
    grads = [p.grad for p in tr.model.context.parameters() if p.grad is not None]
    assert (sum(g.abs().sum().item() for g in grads) > 0) == cm_learns


def test_kl_warmup_ramps_the_kl_weight_from_zero():
    # only the KL term is on: it alone moves CM
    zero = dict(w_ce_real_backbone=0.0, w_ce_real=0.0, w_gan_g=0.0, w_content=0.0,
                w_ce_fake_g=0.0, kl_warmup=10)
    tr = _trainer(**zero)
    tr.model.train()
    x, y = _batch()
    grads = []
    for it in (0, 5, 10):
        tr.set_lr(it)
        tr.model.zero_grad(set_to_none=True)
        tr.losses("real", x, y)[0].backward()
        grads.append(sum(p.grad.abs().sum().item() for p in tr.model.context.parameters()
                         if p.grad is not None))
    assert grads[0] == 0 and 0 < grads[1] < grads[2]
    assert grads[1] == pytest.approx(grads[2] / 2, rel=1e-4)  # half-way: half the weight
def test_real_fake_codes_are_drawn_from_labelled_pixels_only():
    from cagnet.train import draw_codes
    codes = torch.full((2, 3, 4, 4), float("nan"))
    codes[0, :, 1, 2] = torch.tensor([1.0, 2.0, 3.0])
    codes[1, :, 3, 0] = torch.tensor([-1.0, -2.0, -3.0])
    z = draw_codes(codes, torch.Size((3, 5, 5)))
    assert z.shape == (3, 3, 5, 5)
    pixels = {tuple(v.tolist()) for v in z.permute(0, 2, 3, 1).reshape(-1, 3)}
    assert pixels == {(1.0, 2.0, 3.0), (-1.0, -2.0, -3.0)}
    assert draw_codes(torch.full((1, 3, 2, 2), float("nan")), torch.Size((1, 2, 2))) is None


def test_fine_tuning_with_real_codes_feeds_g_the_kept_codes():
    tr = _trainer(train={"fake_codes": "real"})
    tr.set_stage("finetune")
    x, y = _batch()
    tr.train_step(x, y, tr.cfg.train.iters)
    y_kept, codes = tr.kept
    assert codes is not None and codes.shape[1] == tr.cfg.model.embed_dim
    labelled = y_kept != 255
    assert torch.isnan(codes).any(1).eq(~labelled).all()  # NaN exactly where unlabelled
    seen = []
    tr.model.generate = lambda labels, latent=None, detach=True: seen.append(latent) or \
        torch.zeros(labels.shape[0], tr.cfg.model.embed_dim, *labels.shape[-2:])
    tr.losses.fake_step(*tr.kept)
    pool = {tuple(v.tolist()) for v in codes.permute(0, 2, 3, 1)[labelled]}
    drawn = {tuple(v.tolist()) for v in seen[0].permute(0, 2, 3, 1).reshape(-1, codes.shape[1])}
    assert drawn <= pool


def test_code_adversary_trains_q_and_pushes_cm_but_not_e():
    zero = dict(w_ce_real_backbone=0.0, w_kl=0.0, w_ce_real=0.0, w_gan_g=0.0, w_content=0.0,
                w_ce_fake_g=0.0)
    tr = _trainer(w_code_adv=1.0, **zero)
    m = tr.model
    assert m.code_probe is not None
    assert any(p is m.code_probe.weight for g in tr.optimizers["discriminator"].param_groups
               for p in g["params"])
    m.train()
    loss, _, _ = tr.losses("real", *_batch())
    loss.backward()

    def grad(module):
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    assert grad(m.code_probe) > 0 and grad(m.context) > 0
    assert grad(m.backbone) == 0  # the class must stay in E's features
    assert _trainer().model.code_probe is None  # off by default: the official model


def test_older_configurations_keep_their_latent_gradient():
    from cagnet.config import Config
    d = get_preset("toy").to_dict()
    for old, new in ((True, "none"), (False, "all")):
        m = {k: v for k, v in d["model"].items() if k != "latent_grad"} | {"detach_latent": old}
        assert Config.from_dict(d | {"model": m}).model.latent_grad == new


@pytest.mark.parametrize("kept", ["features+labels", "labels", "labels+codes"])
def test_every_kept_format_resumes_a_fine_tuning_block(kept):
    tr = _trainer(train={"fake_codes": "real"})
    tr.set_stage("finetune")
    x, y = _batch()
    tr.train_step(x, y, tr.cfg.train.iters)
    labels, codes = tr.kept
    state = tr.state_dict()
    state["kept"] = {"features+labels": [torch.zeros(2, 64, *labels.shape[-2:]), labels],
                     "labels": labels, "labels+codes": [labels, codes]}[kept]
    other = _trainer(train={"fake_codes": "real"})
    other.load_state_dict(state, tr.cfg.train.iters + 1)
    assert torch.equal(other.kept[0], labels)
    assert (other.kept[1] is None) == (kept != "labels+codes")
    other.finetune_step(tr.cfg.train.iters + 1)  # runs with the loaded label map


def test_the_code_probe_freezes_with_cm_in_fine_tuning():
    tr = _trainer(w_code_adv=1.0)
    tr.set_stage("finetune")
    assert not any(p.requires_grad for p in tr.model.code_probe.parameters())


def test_centred_codes_have_zero_class_means_and_keep_within_class_differences():
    from cagnet.models.cagnet import centre_codes
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (2, 5, 5), generator=g)
    y[0, 0] = 255
    z = torch.randn(2, 4, 5, 5, generator=g) + 3 * y.clamp_max(3).unsqueeze(1).float()
    c = centre_codes(z, y, num_classes=3)
    for k in (0, 1, 2, 255):
        zk, ck = z.permute(0, 2, 3, 1)[y == k], c.permute(0, 2, 3, 1)[y == k]  # (n, 4)
        assert torch.allclose(ck.mean(0), torch.zeros(4), atol=1e-5)
        assert torch.allclose(ck - ck[:1], zk - zk[:1], atol=1e-5)  # differences kept
    z.requires_grad_(True)
    centre_codes(z, y, 3)[0, 0, 2, 2].backward()  # the class mean is in the graph
    assert int((z.grad[:, 0] != 0).sum()) == int((y == y[0, 2, 2]).sum())


def test_code_centring_takes_the_class_out_of_gs_input_and_the_kept_codes():
    tr = _trainer(train={"fake_codes": "real"})
    cfg = tr.cfg.replace(model=dataclasses.replace(tr.cfg.model, code_centring=True))
    tr = small_trainer(cfg, K, SEEN, UNSEEN)
    read = []
    gen = tr.model.generator.forward
    tr.model.generator.forward = lambda w, z: read.append(z) or gen(w, z)
    x, y = _batch()
    tr.train_step(x, y, 0)
    y_small, codes = tr.kept
    labelled = y_small != 255
    for k in y_small[labelled].unique():
        at = (y_small == k)
        assert torch.allclose(read[0].permute(0, 2, 3, 1)[at].mean(0), torch.zeros(
            cfg.model.embed_dim), atol=1e-5)
        assert torch.allclose(codes.permute(0, 2, 3, 1)[at].mean(0), torch.zeros(
            cfg.model.embed_dim), atol=1e-5)


@pytest.mark.parametrize("which", ["z", "mu"])
def test_g_code_chooses_what_g_reads_and_what_is_kept(which):
    tr = _trainer(train={"fake_codes": "real"})
    cfg = tr.cfg.replace(model=dataclasses.replace(tr.cfg.model, g_code=which,
                                                   logvar_relu=False))
    tr = small_trainer(cfg, K, SEEN, UNSEEN)
    read, outs = _record_g_and_cm(tr)
    x, y = _batch()
    tr.train_step(x, y, 0)
    ctx = outs[0]
    want = ctx.mu if which == "mu" else ctx.z
    assert torch.equal(read[0], want.detach())
    assert not torch.equal(ctx.mu, ctx.z)  # sigma > 0: the two choices differ
    y_small, codes = tr.kept
    assert torch.equal(codes.permute(0, 2, 3, 1)[y_small != 255],
                       want.detach().permute(0, 2, 3, 1)[y_small != 255])


def test_unknown_g_code_is_refused():
    from cagnet.errors import ConfigError
    from cagnet.models import CaGNet
    cfg = small_toy("cagnet")
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, g_code="sample"))
    with pytest.raises(ConfigError, match="g_code"):
        CaGNet(cfg, K, torch.randn(K, cfg.model.embed_dim))


def test_shuffled_g_codes_are_a_permutation_of_the_labelled_pixels_codes():
    tr = _trainer()
    cfg = tr.cfg.replace(train=dataclasses.replace(tr.cfg.train, shuffle_g_codes=True))
    tr = small_trainer(cfg, K, SEEN, UNSEEN)
    read, outs = _record_g_and_cm(tr)
    x, y = _batch()
    tr.train_step(x, y, 0)
    y_small = tr.kept[0]
    lab = y_small != 255
    own = outs[0].z.detach().permute(0, 2, 3, 1)
    got = read[0].permute(0, 2, 3, 1)
    assert torch.equal(got[~lab], own[~lab])  # unlabelled pixels keep their code
    a = sorted(map(tuple, own[lab].tolist()))
    b = sorted(map(tuple, got[lab].tolist()))
    assert a == b  # the same codes, moved
    assert not torch.equal(got[lab], own[lab])


def _record_g_and_cm(tr):
    """Lists that fill with G's code input and CM's outputs at each call of ``tr``'s model."""
    read, outs = [], []
    gen = tr.model.generator.forward
    tr.model.generator.forward = lambda w, z: read.append(z) or gen(w, z)
    cm = tr.model.context.forward
    tr.model.context.forward = lambda *a, **k: outs.append(cm(*a, **k)) or outs[-1]
    return read, outs


def test_backbone_optimizer_adam_keeps_the_groups_multipliers_and_poly_schedule():
    sgd = _trainer(train={"backbone_optimizer": "sgd"})  # the paper presets' optimiser
    assert isinstance(sgd.optimizers["backbone"], torch.optim.SGD)
    tr = _trainer(train={"iters": 10, "backbone_optimizer": "adam", "lr": 2e-3})
    opt = tr.optimizers["backbone"]
    assert isinstance(opt, torch.optim.Adam)
    assert [g["lr_mult"] for g in opt.param_groups] == \
        [g["lr_mult"] for g in sgd.optimizers["backbone"].param_groups]
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)
    before = _snapshot(tr.model.backbone)
    x, y = _batch()
    tr.train_step(x, y, 5)
    t = tr.cfg.train
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(poly_lr(2e-3 * g["lr_mult"], 5, 10, t.poly_power))
    assert opt.state  # Adam moments exist: the backbone learnt through Adam
    after = _snapshot(tr.model.backbone)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
