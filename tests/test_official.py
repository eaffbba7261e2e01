"""The paper presets against the official configuration, and the official training path.

Every expected value below is written out with the file and key of the official repository
(bcmi/CaGNet-Zero-Shot-Semantic-Segmentation, commit 249305b) it comes from.
"""

import dataclasses
import math

import pytest
import torch
from small import small_toy, small_trainer

from cagnet.config import get_preset
from cagnet.losses import kl_divergence, resize_labels
from cagnet.models import CaGNet
from cagnet.models.backbone import load_trunk_weights
from cagnet.models.context import ContextualModule
from cagnet.train import StepLosses

# (our field, official value, "file: key") per preset
COMMON = [
    ("train.batch_size", 8, "voc12.yaml: BATCH_SIZE.TRAIN"),
    ("data.crop", 368, "voc12.yaml: IMAGE.SIZE.TRAIN"),
    ("train.lr", 2.5e-4, "voc12.yaml: back_opt.lr"),
    ("train.momentum", 0.9, "voc12.yaml: back_opt.MOMENTUM"),
    ("train.weight_decay", 5e-4, "voc12.yaml: back_opt.WEIGHT_DECAY"),
    ("train.lr_mult_context", 5.0, "trainer.py: get_params key '5x' (contextual)"),
    ("train.lr_mult_aspp_weight", 10.0, "trainer.py: get_params key '10x' (aspp weight)"),
    ("train.lr_mult_aspp_bias", 20.0, "trainer.py: get_params key '20x' (aspp bias)"),
    ("train.poly_power", 0.9, "voc12.yaml: back_scheduler.power"),
    ("train.lr_g", 2e-4, "voc12.yaml: gen_opt.lr"),
    ("train.weight_decay_d", 5e-4, "voc12.yaml: dis_opt.weight_decay"),
    ("train.weight_decay_g", 0.0, "voc12.yaml: gen_opt.weight_decay"),
    ("train.adam_betas", (0.9, 0.999), "trainer.py: torch.optim.Adam, betas not given"),
    ("train.switch_every", 100, "voc12_finetune.yaml: interval_step1 / interval_step2"),
    ("loss.w_kl", 100.0, "voc12.yaml: lambda_B_KLD"),
    ("loss.kl_pixels", "labelled", "networks.py: KLD over localmask (labelled pixels)"),
    ("loss.w_ce_real_backbone", 0.5, "voc12.yaml: lambda_B_cls"),
    ("loss.w_ce_real", 1.0, "voc12.yaml: lambda_D_cls_real"),
    ("loss.w_ce_fake_train", 0.0, "voc12.yaml: lambda_D_cls_fake"),
    ("loss.w_gan_g", 1.0, "voc12.yaml: lambda_G_GAN"),
    ("loss.w_content", 50.0, "voc12.yaml: lambda_G_Content"),
    ("loss.w_ce_fake_g", 0.0, "voc12.yaml: lambda_G_cls"),
    ("loss.content", "mmd", "voc12.yaml: content_loss MMDLoss"),
    ("loss.mmd_sigmas", (2.0, 5.0, 10.0, 20.0, 40.0, 60.0), "losses.py: MMDLoss sigma"),
    ("loss.gan", "l1", "voc12.yaml: gan_type lsgan -> losses.py GANLoss(use_l1=True)"),
    ("loss.w_ce_real_finetune", 0.75, "voc12_finetune.yaml: lambda_D_cls_real"),
    ("loss.w_ce_fake_finetune", 0.25, "voc12_finetune.yaml: lambda_D_cls_fake"),
    ("model.embed_dim", 600, "voc12.yaml: back.n_classes / gen.out_dim_mlp"),
    ("model.generator_hidden", (1024, 960, 864, 784, 720), "networks.py: Generator widths"),
    ("model.generator_dropout", (0.1, 0.1, 0.3, 0.5, 0.5), "networks.py: Generator dropout"),
    ("model.disc_hidden", 1024, "voc12.yaml: dis.out_dim_fc"),
    ("model.disc_dropout", 0.5, "voc12.yaml: dis.drop_fc"),
    ("model.init", "kaiming", "voc12.yaml: init"),
    ("model.pretrained", True, "voc12.yaml: init_model deeplabv2_resnet101_init.pth"),
    ("model.context_hidden", 256, "networks.py: contextual1..3 width"),
    ("model.context_dilations", (1, 2, 5), "networks.py: contextual1..3 dilation"),
    ("model.aspp_dilations", (6, 12, 18, 24), "networks.py: ASPP pyramids"),
    ("model.logvar_relu", True, "networks.py: contextuallocalsigma is a _ConvReLU_"),
    ("data.embeddings", "official", "voc12.yaml: embedding fastnvec (word_vectors/*.pkl)"),
]
PRESETS = {
    "voc": COMMON + [
        ("train.iters", 40_000, "voc12.yaml: ITER_MAX"),
        ("train.finetune_iters", 6_000, "voc12_finetune.yaml: ITER_MAX_TRANSFER"),
        ("train.lr_d", 2.5e-4, "voc12.yaml: dis_opt.lr"),
        ("train.lr_decay_d", (10_000, 5_000, 0.71), "voc12.yaml: dis_scheduler"),
        ("train.lr_decay_g", (10_000, 5_000, 0.71), "voc12.yaml: gen_scheduler"),
        ("train.lr_d_finetune", 5e-5, "voc12_finetune.yaml: dis_opt.lr_transfer"),
        ("train.lr_g_finetune", 5e-5, "voc12_finetune.yaml: gen_opt.lr_transfer"),
        ("train.finetune_decay_d", (3_000, 1_000, 0.1), "voc12_finetune.yaml: dis_scheduler"),
        ("train.finetune_decay_g", (3_000, 1_000, 0.1), "voc12_finetune.yaml: gen_scheduler"),
        ("train.unseen_weight", 10.0, "voc12_finetune.yaml: 1 + gen_unseen_rate 9"),
        ("train.top_p", 1, "configs_st_voc.yaml: top_p"),
        ("loss.w_ce_fake_transfer", 0.125, "voc12_finetune.yaml: lambda_D_cls_fake_transfer"),
        ("loss.w_ce_fake_g_transfer", 0.0, "voc12_finetune.yaml: lambda_G_cls_transfer"),
    ],
    "context": COMMON + [
        ("train.iters", 40_000, "context.yaml: ITER_MAX"),
        ("train.finetune_iters", 10_000, "context_finetune.yaml: ITER_MAX_TRANSFER"),
        ("train.lr_d", 2.5e-4, "context.yaml: dis_opt.lr"),
        ("train.lr_decay_d", (10_000, 10_000, 0.3), "context.yaml: dis_scheduler"),
        ("train.lr_decay_g", (10_000, 10_000, 0.3), "context.yaml: gen_scheduler"),
        ("train.lr_d_finetune", 5e-5, "context_finetune.yaml: dis_opt.lr_transfer"),
        ("train.lr_g_finetune", 5e-5, "context_finetune.yaml: gen_opt.lr_transfer"),
        ("train.finetune_decay_d", (5_000, 1_000, 0.3), "context_finetune.yaml: dis_scheduler"),
        ("train.finetune_decay_g", (5_000, 1_000, 0.3), "context_finetune.yaml: gen_scheduler"),
        ("train.unseen_weight", 15.0, "context_finetune.yaml: 1 + gen_unseen_rate 14"),
        ("train.top_p", 16, "configs_st_context.yaml: top_p"),
        ("loss.w_ce_fake_transfer", 0.125, "context_finetune.yaml: lambda_D_cls_fake_transfer"),
        ("loss.w_ce_fake_g_transfer", 0.0, "context_finetune.yaml: lambda_G_cls_transfer"),
    ],
    "cocostuff": COMMON + [
        ("train.iters", 40_000, "cocostuff.yaml: ITER_MAX"),
        ("train.finetune_iters", 6_000, "cocostuff_finetune.yaml: ITER_MAX_TRANSFER"),
        ("train.lr_d", 5e-4, "cocostuff.yaml: dis_opt.lr"),
        ("train.lr_decay_d", (10_000, 10_000, 0.3), "cocostuff.yaml: dis_scheduler"),
        ("train.lr_decay_g", (10_000, 5_000, 0.3), "cocostuff.yaml: gen_scheduler"),
        ("train.lr_d_finetune", 1e-5, "cocostuff_finetune.yaml: dis_opt.lr_transfer"),
        ("train.lr_g_finetune", 1e-5, "cocostuff_finetune.yaml: gen_opt.lr_transfer"),
        ("train.finetune_decay_d", (3_000, 2_000, 0.3), "cocostuff_finetune.yaml: dis_scheduler"),
        ("train.finetune_decay_g", (3_000, 2_000, 0.3), "cocostuff_finetune.yaml: gen_scheduler"),
        ("train.unseen_weight", 60.0, "cocostuff_finetune.yaml: 1 + gen_unseen_rate 59"),
        ("train.top_p", 1, "configs_st_coco.yaml: top_p"),
        ("loss.w_ce_fake_transfer", 1.0, "cocostuff_finetune.yaml: lambda_D_cls_fake_transfer"),
        ("loss.w_ce_fake_g_transfer", 1.0, "cocostuff_finetune.yaml: lambda_G_cls_transfer"),
    ],
}


def _get(cfg, dotted):
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_paper_preset_matches_the_official_configuration(preset):
    cfg = get_preset(preset)
    wrong = [f"{field} = {_get(cfg, field)!r}, official {value!r} ({where})"
             for field, value, where in PRESETS[preset] if _get(cfg, field) != value]
    assert not wrong, "\n".join(wrong)


def _small_cfg(**loss):
    return small_toy(loss=loss)


K, SEEN, UNSEEN = 6, [0, 1, 2, 3], [4, 5]


def _trainer(**loss):
    return small_trainer(_small_cfg(**loss), K, SEEN, UNSEEN)


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    y = torch.randint(0, len(SEEN), (2, 32, 32), generator=g)
    y[:, :6] = 255
    return x, y


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_fake_feature_block_trains_only_the_classifier_with_its_weight():
    # model.py step2 with lambda_G_cls_transfer 0: loss_D = 0.125 CE(fake); G takes no gradient
    tr = _trainer(w_ce_fake_transfer=0.125)
    x, y = _batch()
    tr.train_step(x, y, 0)
    tr.set_stage("finetune")
    g0, gan0, c0 = (_params(tr.model.generator), _params(tr.model.discriminator.gan_head),
                    _params(tr.model.discriminator.cls_head))
    parts = tr.finetune_step(tr.cfg.train.iters + tr.cfg.train.switch_every)
    total, d_ce_fake = parts[0].item(), parts[5].item()
    assert total == pytest.approx(0.125 * d_ce_fake, rel=1e-6)
    assert parts[[1, 2, 3, 4, 6, 7, 8]].abs().sum() == 0  # no GAN, no real CE, no G terms
    assert _same(g0, _params(tr.model.generator))
    assert _same(gan0, _params(tr.model.discriminator.gan_head))
    assert not _same(c0, _params(tr.model.discriminator.cls_head))


def test_fake_feature_block_trains_the_generator_when_its_weight_is_set():
    # cocostuff_finetune.yaml: lambda_G_cls_transfer 1
    tr = _trainer(w_ce_fake_g_transfer=1.0, w_ce_fake_transfer=1.0)
    x, y = _batch()
    tr.train_step(x, y, 0)
    tr.set_stage("finetune")
    g0 = _params(tr.model.generator)
    parts = tr.finetune_step(tr.cfg.train.iters + tr.cfg.train.switch_every)
    assert parts[8] > 0
    assert not _same(g0, _params(tr.model.generator))


def test_real_image_block_weights_in_fine_tuning():
    # voc12_finetune.yaml: D/C: GAN + 0.75 CE(real) + 0.25 CE(fake); G: GAN + 50 content
    tr = _trainer()
    x, y = _batch()
    tr.set_stage("finetune")
    losses: StepLosses = tr.losses
    torch.manual_seed(3)
    total, p, _ = losses("real-frozen", x, y)
    names = dict(zip(("total", "e_ce", "e_kl", "d_gan", "d_ce_real", "d_ce_fake", "g_gan",
                      "g_content", "g_ce"), p.tolist(), strict=True))
    assert names["e_ce"] == 0 and names["e_kl"] == 0 and names["g_ce"] == 0
    assert names["d_ce_fake"] > 0
    expected = (names["d_gan"] + 0.75 * names["d_ce_real"] + 0.25 * names["d_ce_fake"]
                + names["g_gan"] + 50 * names["g_content"])
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_training_step_kl_is_averaged_over_labelled_pixels_only():
    tr = _trainer()
    x, y = _batch()
    m = tr.model
    torch.manual_seed(5)
    _, parts, _ = tr.losses("real", x, y)
    torch.manual_seed(5)
    ctx = m.segment(x)["ctx"]
    valid = resize_labels(y, ctx.mu.shape[-2:]) != 255
    assert not valid.all() and valid.any()
    kl_lab = kl_divergence(ctx.mu, ctx.logvar, valid).item()
    assert parts[2].item() == pytest.approx(kl_lab, rel=1e-5)
    assert kl_lab != pytest.approx(kl_divergence(ctx.mu, ctx.logvar).item(), rel=1e-3)


def test_official_selector_is_relu_sigmoid_and_never_trained():
    torch.manual_seed(0)
    cm = ContextualModule(8, 6, selector="official")
    out = cm(torch.randn(2, 8, 5, 5))
    assert out.weights.min() >= 0.5 and out.weights.max() < 1.0
    assert not any(p.requires_grad for p in cm.selector.parameters())
    trained = ContextualModule(8, 6, selector="trained")
    assert all(p.requires_grad for p in trained.selector.parameters())
    with pytest.raises(ValueError, match="selector"):
        ContextualModule(8, 6, selector="relu")


def test_kaiming_init_of_the_heads():
    cfg = _small_cfg()
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, init="kaiming"))
    torch.manual_seed(0)
    model = CaGNet(cfg, K, torch.randn(K, 64))
    conv = model.generator.mlp[0]  # 1x1 conv, fan_in 128
    assert conv.bias.abs().sum() == 0
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.1)
    plain = CaGNet(cfg.replace(model=dataclasses.replace(cfg.model, init="default")), K,
                   torch.randn(K, 64))
    assert plain.generator.mlp[0].bias.abs().sum() > 0  # PyTorch's default: uniform biases


def test_trunk_weights_load_from_a_torchvision_style_file(tmp_path):
    from torchvision.models import resnet101

    from cagnet.errors import ConfigError
    from cagnet.models.backbone import DeepLabV2

    torch.manual_seed(0)
    net = DeepLabV2(600, pretrained=False)
    src = resnet101()
    path = tmp_path / "resnet101.pth"
    torch.save(src.state_dict(), path)
    load_trunk_weights(net.trunk, str(path))
    assert torch.equal(net.trunk[0].weight, src.conv1.weight)
    assert torch.equal(net.trunk[7][2].conv3.weight, src.layer4[2].conv3.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ConfigError, match="shape mismatch in 0.weight"):
        load_trunk_weights(net.trunk, str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_trunk_weights(net.trunk, str(tmp_path / "missing.pth"))


def test_the_deviations_page_is_generated_from_the_package():
    from pathlib import Path

    from cagnet.deviations import markdown

    page = Path(__file__).resolve().parents[1] / "book" / "deviations.md"
    assert page.read_text() == markdown(), "run: python -m cagnet.deviations > book/deviations.md"
