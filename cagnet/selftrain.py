"""Self-training (ZS3Net's "+ST"): unseen classes pseudo-labelled in the training images.

After fine-tuning, C can score unseen classes. The self-training stage (``train.self_train``,
`cagnet.train`) then trains every network again on batches whose ignored pixels carry the
current model's guesses: for each pixel labelled 255 (an unseen class, Pascal-VOC's
background, a void boundary or crop padding), the classes are ranked by C's scores, the
first ``top_p`` are kept, and the pixel takes the best-ranked *unseen* class among them;
with none among them it stays ignored. Seen labels are never changed and a seen class is
never a pseudo-label. (Official code: tools.py ``construct_gt_st``, called per batch by
train.py under ``--schedule st``.)

Since the unseen classes are ranked in the same order as all classes, the best-ranked unseen
class among the first ``top_p`` is the unseen class of highest score, provided fewer than
``top_p`` classes score above it; `pseudo_labels` uses this and needs no sort.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cagnet.models import CaGNet

IGNORE = 255


def pseudo_labels(logits: Tensor, labels: Tensor, unseen_ids: Sequence[int] | Tensor,
                  top_p: int) -> Tensor:
    """``labels`` (B, H, W) with each 255 pixel set to its best unseen class among its
    ``top_p`` highest-scoring classes, or left at 255 when none of those is unseen.

    ``logits`` (B, K, H, W) are the class scores at the labels' resolution; ``unseen_ids``
    are class ids (channels of ``logits``). A class tied with the best unseen score does not
    count as ranked above it.
    """
    if logits.shape[-2:] != labels.shape[-2:] or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
                         "must cover the same pixels")
    unseen = torch.as_tensor(unseen_ids, dtype=torch.long, device=logits.device)  # (U,)
    best, which = logits.index_select(1, unseen).max(1)  # (B, H, W): top unseen score, index
    above = (logits > best.unsqueeze(1)).sum(1)  # (B, H, W): classes ranked above it
    guess = torch.where(above < top_p, unseen[which], IGNORE)  # (B, H, W)
    return torch.where(labels == IGNORE, guess.to(labels.dtype), labels)


@torch.no_grad()
def label_batch(model: CaGNet, images: Tensor, labels: Tensor, unseen_ids: Sequence[int],
                top_p: int) -> Tensor:
    """`pseudo_labels` for a batch from ``model``'s predictions in eval mode (x1 scale, no
    dropout, CM's z = mu), as the official trainer's ``test`` call before each step.

    images (B, 3, H, W), labels (B, H, W) -> labels (B, H, W). The logits are upsampled
    bilinearly to the labels' size, so every pixel gets its own guess. The model is left in
    eval mode; the caller puts it back into training mode.
    """
    model.eval()
    logits = model.predict(images, upsample=False).float()  # (B, K, h, w)
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear",
                           align_corners=False)  # (B, K, H, W)
    return pseudo_labels(logits, labels, unseen_ids, top_p)
