"""CM's instruments tell a live contextual code from a dead one, without touching training."""


import pytest
import torch
from small import small_toy

from cagnet.diagnostics import code_health, feature_saturation, format_health, norms, verdict
from cagnet.models import CaGNet

K = 6


def _model(method="cagnet"):
    cfg = small_toy(method)
    torch.manual_seed(0)
    return CaGNet(cfg, K, torch.randn(K, 64))


def _batch():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 32, 32, generator=g)
    y = torch.randint(0, K, (2, 32, 32), generator=g)
    y[:, :8] = 255
    return x, y


def test_a_fresh_model_reports_every_instrument_in_range():
    h = code_health(_model(), *_batch())
    assert 0 < h["active_m1"] <= 1 and 0 < h["active_fused"] <= 1
    assert h["mu_spread"] > 0 and h["kl"] >= 0 and h["sigma_mean"] >= 1.0  # ReLU on log var
    assert 0.0 < h["selector_mean"] < 1.0


def test_a_dead_relu_chain_is_reported_as_collapsed():
    model = _model()
    with torch.no_grad():
        model.context.dilated[0].weight.fill_(-1.0)  # h = sigmoid(a) > 0: m1 = ReLU(<0) = 0
    h = code_health(model, *_batch())
    assert h["active_m1"] == h["active_m2"] == h["active_m3"] == h["active_fused"] == 0.0
    assert h["mu_spread"] == 0.0 and h["kl"] == 0.0
    assert h["selector_spread"] == 0.0 and h["selector_mean"] == pytest.approx(0.5)
    assert verdict(h).startswith("collapsed") and "active_m1" in verdict(h)
    assert "collapsed" in format_health(h)


def test_instruments_leave_modes_weights_and_random_state_alone():
    model = _model()
    model.train()
    model.backbone.eval()  # as in fine-tuning: a frozen backbone keeps its statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    code_health(model, *_batch())
    assert model.training and not model.backbone.training and model.generator.training
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_norms_and_methods_without_a_code():
    model = _model()
    n = norms(model.context)
    assert n["weight_norm"] > 0 and n["grad_norm"] == 0.0
    assert code_health(_model("zs3net"), *_batch()) == {}
    assert "no contextual module" in format_health({})


def test_feature_saturation_counts_outputs_in_the_sigmoids_flat_tails():
    model = _model("zs3net")
    x, _ = _batch()
    fresh = feature_saturation(model, x)
    assert 0.0 <= fresh["saturated"] < 1.0 and fresh["std"] > 0
    branches = model.backbone.aspp.branches
    with torch.no_grad():  # E's output h = 10 everywhere: every element past |4|
        for b in branches:
            b.weight.zero_()
            b.bias.fill_(10.0 / len(branches))
    assert feature_saturation(model, x)["saturated"] == 1.0
    with torch.no_grad():  # h = 1: the sigmoid's steep middle
        for b in branches:
            b.bias.fill_(1.0 / len(branches))
    flat = feature_saturation(model, x)
    assert flat["saturated"] == 0.0 and flat["std"] == pytest.approx(0.0, abs=1e-6)
    model.train()
    feature_saturation(model, x)
    assert model.training and model.backbone.training
