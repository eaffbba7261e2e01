"""CaGNet: context-aware feature generation for zero-shot semantic segmentation."""

from cagnet.config import METHODS, Config, get_preset

__all__ = ["Config", "METHODS", "get_preset"]
__version__ = "0.1.0"
