"""Networks: shapes, the three methods, CM's sampling, detached generator input, frozen BN."""

import dataclasses

import pytest
import torch

from cagnet.config import get_preset
from cagnet.errors import ConfigError
from cagnet.losses import content_loss, gan_loss, kl_divergence, segmentation_ce
from cagnet.models import (
    CaGNet,
    ContextualModule,
    DeepLabV2,
    Discriminator,
    Generator,
    ToyBackbone,
    ZS3Generator,
    build_backbone,
)
from cagnet.models.backbone import max_over_scales
from cagnet.models.dropout import Dropout, keep_mask

K_TOY = 6


def toy_model(method: str = "cagnet", **model_changes) -> CaGNet:
    torch.manual_seed(0)
    cfg = get_preset("toy").replace(method=method)
    model_changes.setdefault("toy_stride", 2)  # the shapes below are written for stride 2
    if model_changes:
        cfg = cfg.replace(model=dataclasses.replace(cfg.model, **model_changes))
    emb = torch.nn.functional.normalize(torch.randn(K_TOY, cfg.model.embed_dim), dim=1)
    return CaGNet(cfg, K_TOY, emb)


def test_toy_backbone_shapes_and_groups():
    torch.manual_seed(0)
    mcfg = get_preset("toy").model
    bb = build_backbone(mcfg)
    assert isinstance(bb, ToyBackbone) and bb.output_stride == mcfg.toy_stride
    assert bb.out_channels == 64
    y = bb(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 64, 64 // mcfg.toy_stride, 64 // mcfg.toy_stride)
    groups = bb.param_groups()
    assert set(groups) == {"trunk", "aspp_weight", "aspp_bias"}
    grouped = [p for ps in groups.values() for p in ps]
    assert len({id(p) for p in grouped}) == len(grouped) == len(list(bb.parameters()))
    for stride, side in ((1, 64), (4, 16), (8, 8)):
        assert ToyBackbone(16, 8, stride)(torch.randn(1, 3, 64, 64)).shape == (1, 16, side, side)
    with pytest.raises(ConfigError, match="toy_stride"):
        ToyBackbone(16, 8, 3)


def test_toy_refine_blocks_mix_fine_and_coarse_paths():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    plain, refined = ToyBackbone(16, 8, 4), ToyBackbone(16, 8, 4, refine=2)
    convs = [m for m in refined.trunk.refine if isinstance(m, torch.nn.Conv2d)]
    assert len(plain.trunk.refine) == 0 and len(convs) == 2
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert refined(x).shape == plain(x).shape == (2, 16, 16, 16)
    # the refine blocks are part of the trunk: their weights get gradients
    refined(x).sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
    assert get_preset("toy").model.toy_refine == 2
    with pytest.raises(ConfigError, match="toy_refine"):
        ToyBackbone(16, 8, 4, refine=-1)


def test_feature_norm_normalises_the_toy_features_before_the_sigmoid_and_trains_with_the_trunk():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 64, 64)
    plain = ToyBackbone(16, 8, 4, refine=1)
    normed = ToyBackbone(16, 8, 4, refine=1, feature_norm=True)
    normed.load_state_dict(plain.state_dict(), strict=False)  # the same convolutions
    raw, out = plain(x), normed(x)
    # each channel of E's output has batch mean 0 and variance 1 (BatchNorm in training mode)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(16), atol=1e-5)
    assert torch.allclose(out.var((0, 2, 3), unbiased=False), torch.ones(16), atol=1e-3)
    assert not torch.allclose(raw.var((0, 2, 3), unbiased=False), torch.ones(16), atol=0.1)
    assert isinstance(plain.norm, torch.nn.Identity)
    trunk = {id(p) for p in normed.param_groups()["trunk"]}
    assert all(id(p) in trunk for p in normed.norm.parameters())
    assert len(trunk) == len({id(p) for p in plain.param_groups()["trunk"]}) + 2
    cfg = get_preset("toy")
    assert cfg.model.feature_norm is True  # the toy preset's deviation (book/deviations.md)
    assert isinstance(build_backbone(cfg.model).norm, torch.nn.BatchNorm2d)
    off = cfg.replace(model=dataclasses.replace(cfg.model, feature_norm=False))
    assert isinstance(build_backbone(off.model).norm, torch.nn.Identity)
    voc = get_preset("voc")
    assert voc.model.feature_norm is False  # the official feature: sigmoid of the raw output
    with pytest.raises(ConfigError, match="feature_norm"):
        build_backbone(dataclasses.replace(voc.model, feature_norm=True, pretrained=False))


def test_forward_multiscale():
    torch.manual_seed(0)
    bb = ToyBackbone(8, 8, 2, scales=(1.0, 0.75, 0.5))
    outs = bb.forward_multiscale(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [32, 24, 16, 32]
    assert torch.all(outs[-1] >= outs[0])
    assert len(ToyBackbone(8, 8, 2).forward_multiscale(torch.randn(1, 3, 64, 64))) == 1


def test_max_over_scales_by_hand():
    a = torch.tensor([[[[0.0, 5.0], [2.0, -1.0]]]])
    b = torch.tensor([[[[3.0]]]])  # resized to a constant 2x2 map
    assert max_over_scales([a, b]).tolist() == [[[[3.0, 5.0], [3.0, 3.0]]]]


def test_contextual_module_sampling():
    torch.manual_seed(0)
    cm = ContextualModule(16, hidden=8)
    a = torch.randn(2, 16, 5, 5)
    out = cm.eval()(a)
    assert torch.equal(out.z, out.mu)
    assert out.weights.shape == (2, 3, 5, 5)
    assert out.weights.min() > 0 and out.weights.max() < 1
    assert torch.allclose(out.feature, torch.sigmoid(a + a * torch.sigmoid(out.mu)))
    assert out.logvar.min() >= 0  # ReLU on log sigma^2
    out = cm.train()(a)
    assert not torch.allclose(out.z, out.mu)
    assert out.feature.shape == out.z.shape == out.mu.shape == (2, 16, 5, 5)


def test_generator_and_discriminator_shapes():
    torch.manual_seed(0)
    g = Generator(8, 4, (16, 12), 8, dropout=0.0)
    f = g(torch.randn(2, 8, 3, 3), torch.randn(2, 4, 3, 3))
    assert f.shape == (2, 8, 3, 3) and f.min() > 0 and f.max() < 1
    zs3 = ZS3Generator(8, 4, (16,), 8, dropout=0.5).eval()
    w = torch.randn(2, 8, 3, 3)
    assert not torch.allclose(zs3(w), zs3(w))  # fresh noise every call
    gan, cls = Discriminator(8, 16, 5)(f)
    assert gan.shape == (2, 1, 3, 3) and cls.shape == (2, 5, 3, 3)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_matches_torch_in_distribution(p):
    torch.manual_seed(0)
    x = torch.rand(64, 32, 16, 16) + 0.5  # no zeros of its own
    drop = Dropout(p)
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.01  # 500k draws: the std of the rate is < 0.001
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    ref = torch.nn.Dropout(p)(x)  # torch's own: the same rate and scale
    assert abs((ref == 0).float().mean().item() - dropped) < 0.01
    x.requires_grad_(True)
    y = drop(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / (1 - p))  # gradient through the mask
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0)(x), x) and torch.equal(Dropout(1.0)(x), torch.zeros_like(x))


def test_keep_mask_draws_each_16_bit_field_at_the_rate():
    # four mask elements share one 64-bit draw: each position of the four keeps at 1 - p,
    # including the one that holds the draw's top bit (always 0 in [0, 2^63))
    torch.manual_seed(0)
    for p in (0.1, 0.2, 0.5):
        m = keep_mask(torch.zeros(4 * 250_000 + 3), p)  # an odd length: the last draw is cut
        assert set(m.unique().tolist()) == {0.0, 1.0}
        rates = [1 - m[i::4].mean().item() for i in range(4)]
        assert all(abs(r - p) < 0.004 for r in rates), (p, rates)  # std of a rate < 0.001
    assert keep_mask(torch.zeros(3, 5, 7), 0.2).shape == (3, 5, 7)


def test_embed_labels():
    model = toy_model()
    labels = torch.tensor([[[0, 5], [255, 2]]])
    emb = model.embed_labels(labels)
    assert emb.shape == (1, 64, 2, 2)
    assert torch.equal(emb[0, :, 0, 1], model.class_embeddings[5])
    assert torch.equal(emb[0, :, 1, 1], model.class_embeddings[2])
    assert torch.all(emb[0, :, 1, 0] == 0)


@pytest.mark.parametrize("method", ["cagnet", "zs3net", "seen-only"])
def test_toy_methods_shapes(method):
    model = toy_model(method)
    x = torch.randn(2, 3, 64, 64)
    out = model.segment(x)
    assert len(out["features"]) == len(out["logits"]) == 1
    assert out["features"][0].shape == (2, 64, 32, 32)
    assert out["logits"][0].shape == (2, K_TOY, 32, 32)
    assert (out["ctx"] is not None) == (method == "cagnet")
    assert (model.context is not None) == (method == "cagnet")
    model.eval()
    assert model.predict(x).shape == (2, K_TOY, 64, 64)
    labels = torch.randint(0, K_TOY, (2, 32, 32))
    if method == "seen-only":
        assert model.generator is None
        with pytest.raises(ConfigError, match="no generator"):
            model.generate(labels)
    else:
        fake = model.generate(labels)
        assert fake.shape == (2, 64, 32, 32) and fake.min() > 0 and fake.max() < 1


def test_real_feature_is_sigmoid_without_context():
    model = toy_model("zs3net").eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(model.segment(x)["features"][0], torch.sigmoid(model.backbone(x)))


def test_multiscale_segment():
    model = toy_model(multiscale=(1.0, 0.75, 0.5))
    out = model.segment(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in out["features"]] == [32, 24, 16, 32]
    assert [lg.shape[-1] for lg in out["logits"]] == [32, 24, 16, 32]
    assert out["ctx"].z.shape[-1] == 32  # CM output at x1


def test_generator_input_is_detached():
    model = toy_model()
    out = model.segment(torch.randn(2, 3, 64, 64))
    labels = torch.randint(0, K_TOY, (2, 32, 32))
    fake = model.generate(labels, out["ctx"].z)
    gan_logit, _ = model.discriminator(fake)
    loss = gan_loss(gan_logit, True) + content_loss(fake, out["features"][0], labels)
    loss.backward()
    assert all(p.grad is None for p in model.context.parameters())
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.generator.parameters())
    with pytest.raises(ValueError, match="differ in size"):
        model.generate(labels, out["ctx"].z[..., :5, :5])


def test_zs3net_ignores_latent():
    model = toy_model("zs3net").eval()
    labels = torch.randint(0, K_TOY, (1, 4, 4))
    latent = torch.zeros(1, 64, 4, 4)
    assert not torch.allclose(model.generate(labels, latent), model.generate(labels, latent))


def test_bad_embeddings_rejected():
    cfg = get_preset("toy")
    with pytest.raises(ConfigError, match="class_embeddings"):
        CaGNet(cfg, 5, torch.zeros(5, 32))
    with pytest.raises(ConfigError, match="backbone"):
        build_backbone(dataclasses.replace(cfg.model, backbone="vgg"))


def test_deeplab_batchnorm_frozen():
    with torch.device("meta"):
        bb = DeepLabV2(embed_dim=16, scales=(1.0,))
    bb.train()
    bns = [m for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    assert bb.aspp.training
    trainable = {id(p) for p in bb.parameters() if p.requires_grad}
    grouped = [p for ps in bb.param_groups().values() for p in ps]
    assert {id(p) for p in grouped} == trainable and len(grouped) == len(trainable)


def test_voc_forward_backward_on_cpu():
    """The paper-scale network (ResNet-101, d = 600, three scales) at a 65x65 crop."""
    torch.manual_seed(0)
    cfg = get_preset("voc")
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, pretrained=False))  # no download
    model = CaGNet(cfg, 21, torch.randn(21, 600))
    model.train()
    x = torch.randn(1, 3, 65, 65)
    labels = torch.randint(0, 21, (1, 65, 65))
    bn_mean = model.backbone.trunk[1].running_mean.clone()
    out = model.segment(x)
    assert [tuple(f.shape) for f in out["features"]] == [
        (1, 600, 9, 9),
        (1, 600, 6, 6),
        (1, 600, 4, 4),
        (1, 600, 9, 9),
    ]
    assert [lg.shape[1] for lg in out["logits"]] == [21] * 4
    ce = sum(segmentation_ce(lg, labels) for lg in out["logits"]) / 4
    loss = 0.5 * ce + 100 * kl_divergence(out["ctx"].mu, out["ctx"].logvar)
    loss.backward()
    assert torch.equal(bn_mean, model.backbone.trunk[1].running_mean)
    assert model.backbone.trunk[0].weight.grad is not None
    assert model.backbone.trunk[1].weight.grad is None
    fake = model.generate(torch.randint(0, 21, (1, 9, 9)), out["ctx"].z)
    assert fake.shape == (1, 600, 9, 9)


def test_receptive_fields_by_hand():
    from torch import nn

    from cagnet.models.backbone import receptive_fields

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),  # rf 1 + 2 = 3, jump 1
                        nn.Conv2d(4, 4, 3, stride=2, padding=1),  # rf 3 + 2 = 5, jump 2
                        nn.Conv2d(4, 4, 3, padding=2, dilation=2),  # rf 5 + 2*2*2 = 13
                        nn.MaxPool2d(3, stride=2))  # rf 13 + 2*2 = 17, jump 4
    assert receptive_fields(net) == [("0", 3, 1), ("1", 5, 2), ("2", 13, 2), ("3", 17, 4)]


def test_receptive_fields_of_the_toy_trunk_return_to_the_fine_stride_after_the_merge():
    from cagnet.models.backbone import ToyTrunk, receptive_fields

    rows = receptive_fields(ToyTrunk(width=8, stride=2, refine=1))
    # fine: 3x3 s2 -> 3 (jump 2), 3x3 -> 3 + 2*2 = 7; coarse: 3x3 s2 -> 7 + 2*2 = 11 (jump
    # 4), dilations 1, 2, 4 -> 11 + 8 = 19, 19 + 16 = 35, 35 + 32 = 67; refine at jump 2
    # (the merged map is the fine one): 67 + 2*2 = 71
    assert [(rf, j) for _, rf, j in rows] == [(3, 2), (7, 2), (11, 4), (19, 4), (35, 4),
                                             (67, 4), (71, 2)]
    assert rows[-1][0] == "refine.0"


def test_segmentation_ce_upsampled_logits_score_below_the_stride():
    # a 2x2 logit map whose boundary falls between label pixels: nearest-resized labels
    # cannot see the difference, upsampled logits can
    logits = torch.tensor([[[[4.0, -4.0], [4.0, -4.0]], [[-4.0, 4.0], [-4.0, 4.0]]]])
    good = torch.tensor([[[0, 0, 1, 1]] * 4])
    bad = torch.tensor([[[0, 1, 1, 1]] * 4])
    assert segmentation_ce(logits, good) == segmentation_ce(logits, bad)
    assert (segmentation_ce(logits, good, upsample=True)
            < segmentation_ce(logits, bad, upsample=True))
