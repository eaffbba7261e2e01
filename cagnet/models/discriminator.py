"""The discriminator D and the classifier C, which share their first layer."""

from __future__ import annotations

from torch import Tensor, nn

from cagnet.models.dropout import Dropout


class Discriminator(nn.Module):
    """D and C on pixel features: a shared 1x1 conv d -> hidden + ReLU + dropout, two 1x1 heads.

    The GAN head gives one real/fake logit per pixel (the sigmoid is applied in the loss);
    the classifier head C gives K class logits per pixel (seen + unseen classes).
    ``cls_kernel`` > 1 puts a ``cls_kernel`` x ``cls_kernel`` conv hidden -> hidden before C's
    1x1 head, so that C reads a pixel's neighbours: the patch-level CaGNet (CaGNetv2
    networks.py ``Discriminator_ps3``: ``cls(cls_3(fc(f)))``, no activation between).
    """

    def __init__(
        self,
        in_channels: int = 600,
        hidden: int = 1024,
        num_classes: int = 21,
        dropout: float = 0.5,
        cls_kernel: int = 1,
    ) -> None:
        super().__init__()
        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), Dropout(dropout)
        )
        self.gan_head = nn.Conv2d(hidden, 1, 1)
        self.cls_head: nn.Module = nn.Conv2d(hidden, num_classes, 1)
        if cls_kernel > 1:  # (B, hidden, h, w) -> (B, hidden, h, w) -> (B, K, h, w)
            self.cls_head = nn.Sequential(
                nn.Conv2d(hidden, hidden, cls_kernel, padding=cls_kernel // 2),
                nn.Conv2d(hidden, num_classes, 1),
            )

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        # f: (B, d, h, w) -> (gan_logit (B, 1, h, w), class_logits (B, K, h, w))
        s = self.shared(f)
        return self.gan_head(s), self.cls_head(s)

    def classify(self, f: Tensor) -> Tensor:
        """C(f): class logits (B, K, h, w) only."""
        return self.cls_head(self.shared(f))
