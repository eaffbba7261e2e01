"""The discriminator D and the classifier C, which share their first layer."""

from __future__ import annotations

from torch import Tensor, nn

from cagnet.models.dropout import Dropout


class Discriminator(nn.Module):
    """D and C on pixel features: a shared 1x1 conv d -> hidden + ReLU + dropout, two 1x1 heads.

    The GAN head gives one real/fake logit per pixel (the sigmoid is applied in the loss);
    the classifier head C gives K class logits per pixel (seen + unseen classes).
    """

    def __init__(
        self,
        in_channels: int = 600,
        hidden: int = 1024,
        num_classes: int = 21,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), Dropout(dropout)
        )
        self.gan_head = nn.Conv2d(hidden, 1, 1)
        self.cls_head = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        # f: (B, d, h, w) -> (gan_logit (B, 1, h, w), class_logits (B, K, h, w))
        s = self.shared(f)
        return self.gan_head(s), self.cls_head(s)

    def classify(self, f: Tensor) -> Tensor:
        """C(f): class logits (B, K, h, w) only."""
        return self.cls_head(self.shared(f))
