"""Converting a released official model: every tensor by name and shape, refusals, the CLI."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cagnet import convert
from cagnet.checkpoint import load_model
from cagnet.cli import main
from cagnet.config import Config
from cagnet.convert import (
    OFFICIAL_MEAN_RGB,
    convert_state_dict,
    converted_config,
    fold_input_normalisation,
    official_state_dict,
)
from cagnet.data import class_split
from cagnet.errors import ConfigError
from cagnet.models import CaGNet
from cagnet.official import OFFICIAL_ORDER, official_ids

D, HIDDEN, GEN, DISC = 8, 6, (16, 12, 12, 10, 8), 16  # reduced widths; the trunk is full size


def small(cfg: Config) -> Config:
    return cfg.replace(model=dataclasses.replace(
        cfg.model, embed_dim=D, context_hidden=HIDDEN, generator_hidden=GEN,
        generator_dropout=(0.1,) * 5, disc_hidden=DISC))


def official_layout(n_out: int, n_all: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of model.py ``OurModel.state_dict()`` (networks.py, resnet.py, blocks.py)
    with the reduced widths above."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(prefix, cin, cout, k):  # resnet.py _ConvBatchNormReLU
        shapes[f"{prefix}.conv.weight"] = (cout, cin, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{name}"] = (cout,)
        shapes[f"{prefix}.bn.num_batches_tracked"] = ()

    conv_bn("back.scale.layer1.conv1", 3, 64, 7)
    widths = [(3, 64, 64, 256), (4, 256, 128, 512), (23, 512, 256, 1024), (3, 1024, 512, 2048)]
    for layer, (blocks, cin, mid, cout) in enumerate(widths, start=2):
        for b in range(1, blocks + 1):
            p = f"back.scale.layer{layer}.block{b}"
            conv_bn(f"{p}.reduce", cin if b == 1 else cout, mid, 1)
            conv_bn(f"{p}.conv3x3", mid, mid, 3)
            conv_bn(f"{p}.increase", mid, cout, 1)
            if b == 1:
                conv_bn(f"{p}.proj", cin, cout, 1)
    for j in range(4):
        shapes[f"back.scale.aspp.stages.c{j}.weight"] = (D, 2048, 3, 3)
        shapes[f"back.scale.aspp.stages.c{j}.bias"] = (D,)
    shapes["back.scale.contextual1.conv.weight"] = (HIDDEN, D, 3, 3)
    shapes["back.scale.contextual2.conv.weight"] = (HIDDEN, HIDDEN, 3, 3)
    shapes["back.scale.contextual3.conv.weight"] = (HIDDEN, HIDDEN, 3, 3)
    shapes["back.scale.fc_1.conv.weight"] = (3, 3 * HIDDEN, 3, 3)
    shapes["back.scale.contextualpool.conv.weight"] = (D, 3 * HIDDEN, 1, 1)
    shapes["back.scale.contextuallocalmu.conv.weight"] = (D, D, 3, 3)
    shapes["back.scale.contextuallocalsigma.conv.weight"] = (D, D, 3, 3)
    for i, (cin, cout) in enumerate(zip((2 * D,) + GEN, GEN, strict=False)):
        shapes[f"gen.mlp.{i}.conv.weight"], shapes[f"gen.mlp.{i}.conv.bias"] = (
            (cout, cin, 1, 1), (cout,))
    shapes["gen.mlp.5.weight"], shapes["gen.mlp.5.bias"] = (D, GEN[-1], 1, 1), (D,)
    shapes["dis.fc.conv.weight"], shapes["dis.fc.conv.bias"] = (DISC, D, 1, 1), (DISC,)
    shapes["dis.pred.weight"], shapes["dis.pred.bias"] = (1, DISC, 1, 1), (1,)
    shapes["dis.cls.weight"], shapes["dis.cls.bias"] = (n_out, DISC, 1, 1), (n_out,)
    shapes["Em_vis.weight"], shapes["Em_all.weight"] = (256, D), (n_all, D)
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


@pytest.fixture(scope="module")
def voc():
    cfg = small(converted_config("voc"))
    names = class_split(cfg.data).names
    official = random_state(official_layout(n_out=21, n_all=20))
    converted = convert_state_dict(official_state_dict({"iteration": 7, "state_dict": official}),
                                   cfg, names)
    model = CaGNet(cfg, len(names), torch.zeros(len(names), D))
    model.load_state_dict(converted)  # strict: every tensor of the model is there
    return cfg, names, official, model.eval()


def test_every_tensor_lands_in_its_place(voc):
    cfg, names, off, model = voc
    ours = model.state_dict()
    for official_key, our_key in [
        ("back.scale.layer4.block5.conv3x3.conv.weight", "backbone.trunk.6.4.conv2.weight"),
        ("back.scale.layer3.block1.proj.bn.running_var",
         "backbone.trunk.5.0.downsample.1.running_var"),
        ("back.scale.layer5.block3.increase.bn.bias", "backbone.trunk.7.2.bn3.bias"),
        ("back.scale.layer2.block1.reduce.conv.weight", "backbone.trunk.4.0.conv1.weight"),
        ("back.scale.layer1.conv1.bn.running_var", "backbone.trunk.1.running_var"),
        ("back.scale.aspp.stages.c3.bias", "backbone.aspp.branches.3.bias"),
        ("back.scale.contextual3.conv.weight", "context.dilated.2.weight"),
        ("back.scale.fc_1.conv.weight", "context.selector.conv.weight"),
        ("back.scale.contextuallocalsigma.conv.weight", "context.logvar.weight"),
        ("gen.mlp.1.conv.bias", "generator.mlp.3.bias"),
        ("gen.mlp.5.weight", "generator.mlp.15.weight"),
        ("dis.fc.conv.weight", "discriminator.shared.0.weight"),
        ("dis.pred.bias", "discriminator.gan_head.bias"),
    ]:
        assert torch.equal(ours[our_key], off[official_key]), official_key
    order = OFFICIAL_ORDER["voc"]
    for c, label in enumerate(official_ids("voc", names)):
        row = order.index(label) if c else len(order)  # background: the extra 'bg' output
        assert torch.equal(ours["discriminator.cls_head.weight"][c], off["dis.cls.weight"][row])
        assert torch.equal(ours["discriminator.cls_head.bias"][c], off["dis.cls.bias"][row])
        expected = off["Em_all.weight"][order.index(label)] if c else torch.zeros(D)
        assert torch.equal(ours["class_embeddings"][c], expected)
    assert cfg.model.selector == "official"
    assert model.context.selector.official and not model.context.selector.conv.weight.requires_grad


def test_first_conv_reads_this_package_normalisation_as_the_official_bgr_input():
    g, default = torch.Generator().manual_seed(1), torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        w = torch.randn(64, 3, 7, 7, generator=g) * 0.01
        rm, rv = torch.randn(64, generator=g), torch.rand(64, generator=g) + 1
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        x = torch.rand(1, 3, 40, 40, generator=g)  # RGB in [0, 1]
        bgr = 255 * x.flip(1) - torch.tensor(OFFICIAL_MEAN_RGB[::-1]).view(1, 3, 1, 1)
        ours_in = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    finally:
        torch.set_default_dtype(default)
    official = F.batch_norm(F.conv2d(bgr, w, stride=2, padding=3), rm, rv)
    w2, rm2 = fold_input_normalisation(w, rm, mean, std)
    ours = F.batch_norm(F.conv2d(ours_in, w2, stride=2, padding=3), rm2, rv)
    inner = (..., slice(2, 19), slice(2, 19))  # outputs whose 7x7 window misses the padding
    torch.testing.assert_close(ours[inner], official[inner])
    assert (ours - official).abs().max() < 2.0  # at the border: under a grey level's worth


def test_context_module_and_classifier_compute_what_networks_py_computes(voc):
    cfg, names, off, model = voc
    p = {k.removeprefix("back.scale."): v for k, v in off.items()}
    a = torch.randn(1, D, 9, 9, generator=torch.Generator().manual_seed(2))  # ASPP output
    # networks.py DeepLabV2_local.forward in eval mode (reparameterize returns mu)
    h1 = F.relu(F.conv2d(torch.sigmoid(a), p["contextual1.conv.weight"], padding=1))
    h2 = F.relu(F.conv2d(h1, p["contextual2.conv.weight"], padding=2, dilation=2))
    h3 = F.relu(F.conv2d(h2, p["contextual3.conv.weight"], padding=5, dilation=5))
    f1 = torch.sigmoid(F.relu(F.conv2d(torch.cat([h1, h2, h3], 1), p["fc_1.conv.weight"],
                                       padding=1)))
    pooled = F.relu(F.conv2d(torch.cat([h1 * f1[:, :1], h2 * f1[:, 1:2], h3 * f1[:, 2:]], 1),
                             p["contextualpool.conv.weight"]))
    mu = F.conv2d(pooled, p["contextuallocalmu.conv.weight"], padding=1)
    h0 = torch.sigmoid(a + a * torch.sigmoid(mu))
    hidden = F.relu(F.conv2d(h0, off["dis.fc.conv.weight"], off["dis.fc.conv.bias"]))
    logits = F.conv2d(hidden, off["dis.cls.weight"], off["dis.cls.bias"])  # official order
    with torch.no_grad():
        ctx = model.context(a)
        ours = model.classify(ctx.feature)
    torch.testing.assert_close(ctx.mu, mu)
    torch.testing.assert_close(ctx.feature, h0)
    order = OFFICIAL_ORDER["voc"]
    rows = [order.index(label) for label in official_ids("voc", names[1:])]
    torch.testing.assert_close(ours[:, 1:], logits[:, rows])


def test_what_does_not_fit_is_refused_with_names_and_counts(voc):
    cfg, names, off, _ = voc
    cases = [
        ({k: v for k, v in off.items() if ".layer3." not in k},
         r"^the file does not fit this model: 65 tensors of this model the file lacks "
         r"\(backbone\.trunk\.5\.0\.conv1\.weight, .*, \.\.\.\)$"),
        ({**off, "back.scale.extra.weight": torch.zeros(1), "gen.extra": torch.zeros(1)},
         r"2 official keys with no place here \(back\.scale\.extra\.weight, gen\.extra\)"),
        ({**off, "back.scale.aspp.stages.c0.weight": torch.zeros(D + 1, 2048, 3, 3)},
         r"1 shape mismatches \(back\.scale\.aspp\.stages\.c0\.weight \(9, 2048, 3, 3\) vs "
         r"\(8, 2048, 3, 3\)\)"),
    ]
    for state, message in cases:
        with pytest.raises(ConfigError, match=message):
            convert_state_dict(state, cfg, names)
    context = small(converted_config("context"))
    with pytest.raises(ConfigError, match="dis.cls has 21 outputs, the official context "
                                          "classifier 34"):
        convert_state_dict(off, context, class_split(context.data).names)
    with pytest.raises(ConfigError, match="holds no state dict"):
        official_state_dict({"iteration": 3, "state_dict": {}})
    with pytest.raises(ConfigError, match="no official model"):
        converted_config("toy")


def test_cli_writes_a_checkpoint_that_eval_and_predict_load(voc, tmp_path, monkeypatch, capsys):
    _, names, off, reference = voc
    monkeypatch.setattr(convert, "converted_config",
                        lambda preset, base=convert.converted_config: small(base(preset)))
    released = tmp_path / "voc12_ourbest.pth"
    torch.save({f"module.{k}": v for k, v in off.items()}, released)  # a bare state dict
    out = tmp_path / "voc_official.pt"
    assert main(["convert-official", str(released), "--preset", "voc", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model, cfg, classes = load_model(out, "cpu")
    assert cfg.model.selector == "official" and classes["names"] == names
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        torch.testing.assert_close(model.predict(x), reference.predict(x))
    assert main(["convert-official", str(tmp_path / "none.pth"), "--preset", "voc",
                 "--out", str(out)]) == 2
