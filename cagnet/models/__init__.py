"""The networks: backbone E, Contextual Module CM, generator G, discriminator D / classifier C."""

from cagnet.models.backbone import ASPP, DeepLabV2, ToyBackbone, build_backbone
from cagnet.models.cagnet import CaGNet, count_parameters
from cagnet.models.context import ContextOutput, ContextSelector, ContextualModule
from cagnet.models.discriminator import Discriminator
from cagnet.models.generator import Generator, ZS3Generator

__all__ = [
    "ASPP",
    "CaGNet",
    "ContextOutput",
    "ContextSelector",
    "ContextualModule",
    "DeepLabV2",
    "Discriminator",
    "Generator",
    "ToyBackbone",
    "ZS3Generator",
    "build_backbone",
    "count_parameters",
]
