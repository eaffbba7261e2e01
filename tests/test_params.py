"""Parameter counts of the paper-scale network (voc preset, d = 600, K = 21), part by part."""

import pytest
import torch

from cagnet.config import get_preset
from cagnet.models import (
    ASPP,
    CaGNet,
    ContextualModule,
    DeepLabV2,
    Discriminator,
    Generator,
    ZS3Generator,
    count_parameters,
)

VOC = {
    "backbone": 42_500_160,  # ResNet-101 without fc, BatchNorm affine parameters included
    "aspp": 44_239_200,  # 4 x (2048 * 600 * 9 + 600)
    "context": 9_523_584,
    "generator": 4_720_088,
    "discriminator": 637_974,
}


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_voc_counts():
    counts = count_parameters(get_preset("voc"), num_classes=21)
    assert counts == {**VOC, "total": sum(VOC.values())}
    assert counts["total"] == 101_621_006


def test_voc_counts_from_the_dataset_classes():
    assert count_parameters(get_preset("voc")) == count_parameters(get_preset("voc"), 21)


def test_baselines_drop_their_parts():
    zs3 = count_parameters(get_preset("voc").replace(method="zs3net"), 21)
    assert zs3["context"] == 0 and zs3["generator"] == VOC["generator"]
    seen_only = count_parameters(get_preset("voc").replace(method="seen-only"), 21)
    assert seen_only["context"] == 0 and seen_only["generator"] == 0
    assert seen_only["total"] == VOC["backbone"] + VOC["aspp"] + VOC["discriminator"]


def test_module_counts_at_d600():
    with torch.device("meta"):
        assert numel(ContextualModule(600)) == VOC["context"]
        assert numel(Generator(600, 600)) == VOC["generator"]
        assert numel(ZS3Generator(600, 600)) == VOC["generator"]
        assert numel(Discriminator(600, 1024, 21)) == VOC["discriminator"]
        assert numel(ASPP(2048, 600)) == VOC["aspp"]
        trunk = DeepLabV2(600).trunk
    assert numel(trunk) == VOC["backbone"]
    frozen = sum(p.numel() for p in trunk.parameters() if not p.requires_grad)
    assert frozen == 105_344  # BatchNorm weight + bias: counted, not trained


def test_count_on_a_model_matches_the_config():
    cfg = get_preset("toy")
    torch.manual_seed(0)
    model = CaGNet(cfg, 7, torch.randn(7, cfg.model.embed_dim))
    counts = count_parameters(model)
    assert counts == count_parameters(cfg, num_classes=7)
    assert counts["total"] == numel(model)
    with pytest.raises(TypeError, match="CaGNet or a Config"):
        count_parameters("voc")
