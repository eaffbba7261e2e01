"""CaGNet and its two baselines in one module: segmentation {E, CM, C} and generation {CM, G, D, C}.

``method`` picks the variant:

- ``"cagnet"``: E -> CM -> C; G reads (embedding, contextual latent code z) from CM.
- ``"zs3net"``: E -> sigmoid -> C; G reads (embedding, random noise). No CM.
- ``"seen-only"``: E -> sigmoid -> C; no G. The lower bound on unseen classes.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cagnet.config import METHODS, Config
from cagnet.errors import ConfigError
from cagnet.models.backbone import build_backbone, max_over_scales
from cagnet.models.context import ContextOutput, ContextualModule
from cagnet.models.discriminator import Discriminator
from cagnet.models.generator import Generator, ZS3Generator


class CaGNet(nn.Module):
    """The whole network for one method; ``class_embeddings`` (K, d) is a buffer."""

    def __init__(self, cfg: Config, num_classes: int, class_embeddings: Tensor) -> None:
        super().__init__()
        if cfg.method not in METHODS:
            raise ConfigError(f"unknown method {cfg.method!r}; choose one of {METHODS}")
        m = cfg.model
        d = m.embed_dim
        emb = torch.as_tensor(class_embeddings, dtype=torch.float32)
        if emb.shape != (num_classes, d):
            raise ConfigError(
                f"class_embeddings must have shape (num_classes, embed_dim) = ({num_classes}, "
                f"{d}), got {tuple(emb.shape)}; build them with the same dataset and "
                f"embedding sources as the model config"
            )
        self.method = cfg.method
        self.code_centring = m.code_centring
        if m.g_code not in ("z", "mu"):
            raise ConfigError(f"unknown model.g_code {m.g_code!r}; choose 'z' or 'mu'")
        self.g_code = m.g_code
        self.num_classes = num_classes
        self.backbone = build_backbone(m)  # E
        self.context = (  # CM
            ContextualModule(d, m.context_hidden, m.context_dilations, m.logvar_relu, m.selector)
            if cfg.method == "cagnet"
            else None
        )
        gen_cls = {"cagnet": Generator, "zs3net": ZS3Generator}.get(cfg.method)
        self.generator = (  # G
            gen_cls(d, d, m.generator_hidden, d, m.generator_dropout) if gen_cls else None
        )
        if m.patch_size < 1 or m.patch_size % 2 == 0:
            raise ConfigError(f"model.patch_size must be an odd number >= 1, got "
                              f"{m.patch_size}; 1 is CaGNet, 3 the patch-level CaGNet")
        self.patch_size = m.patch_size
        self.discriminator = Discriminator(d, m.disc_hidden, num_classes, m.disc_dropout,
                                           cls_kernel=m.patch_size)  # D, C
        # Q: a linear probe that reads the pixel's class from its code mu; CM learns to leave
        # it guessing (loss.w_code_adv > 0 only; a deviation that keeps the class out of z)
        self.code_probe = (nn.Linear(d, num_classes)
                           if cfg.method == "cagnet" and cfg.loss.w_code_adv > 0 else None)
        self.register_buffer("class_embeddings", emb)  # (K, d)
        if m.init not in ("kaiming", "default"):
            raise ConfigError(f"unknown model.init {m.init!r}; choose 'kaiming' or 'default'")
        if m.init == "kaiming":
            for part in (self.context, self.generator, self.discriminator):
                if part is not None:
                    kaiming_init(part)

    def _real_feature(self, aspp_out: Tensor) -> tuple[Tensor, ContextOutput | None]:
        # E(x) (B, d, h, w) -> the real feature fed to C, (B, d, h, w) in (0, 1)
        if self.context is None:
            return torch.sigmoid(aspp_out), None
        ctx = self.context(aspp_out)
        return ctx.feature, ctx

    def segment(self, x: Tensor) -> dict:
        """Real features and class logits at every training scale.

        Returns ``features`` = [f(x1), f(x0.75), f(x0.5), ..., max] (each at its own size;
        just [f(x1)] with one scale), ``ctx`` = CM's output at x1 (None without CM),
        ``aspp`` = E(x1), the raw backbone output CM read, and ``logits`` = C applied to
        each feature.
        """
        features: list[Tensor] = []
        ctx = aspp = None
        for i, aspp_out in enumerate(self.backbone.scale_pyramid(x)):
            f, c = self._real_feature(aspp_out)
            features.append(f)
            if i == 0:
                ctx, aspp = c, aspp_out
        if len(features) > 1:
            features.append(max_over_scales(features))
        return {"features": features, "ctx": ctx, "aspp": aspp,
                "logits": [self.classify(f) for f in features]}

    forward = segment

    def embed_labels(self, label_map: Tensor) -> Tensor:
        """Embedding map: (B, h, w) class ids -> (B, d, h, w); ignored / out-of-range ids -> 0."""
        K = self.class_embeddings.shape[0]
        table = F.pad(self.class_embeddings, (0, 0, 0, 1))  # (K + 1, d), last row zeros
        idx = torch.where((label_map >= 0) & (label_map < K), label_map, K)
        return F.embedding(idx, table).permute(0, 3, 1, 2)  # (B, d, h, w)

    def generate(self, label_map: Tensor, latent: Tensor | None = None,
                 detach: bool = True) -> Tensor:
        """Fake features G(w, z) for a label map (B, h, w) -> (B, d, h, w).

        CaGNet: ``latent`` is the contextual code z (B, d, h, w) from CM, detached here so no
        gradient reaches CM from G (``detach=False``: it does); None samples z ~ N(0, I).
        With ``model.code_centring`` G reads z minus the mean z of each class of
        ``label_map`` (`centre_codes`), whatever the codes are: codes already centred by
        their own pixels' classes (fine-tuning's real codes) lose only the small mean left
        among those drawn for each asked class, and z ~ N(0, I) draws likewise.
        ZS3Net: the noise is always random and ``latent`` is not used.
        """
        if self.generator is None:
            raise ConfigError(
                f"method {self.method!r} has no generator; use method 'cagnet' or 'zs3net'"
            )
        w = self.embed_labels(label_map)  # (B, d, h, w)
        if isinstance(self.generator, ZS3Generator):
            return self.generator(w)
        if latent is None:
            B, _, h, wd = w.shape
            latent = torch.randn(
                B, self.generator.latent_dim, h, wd, device=w.device, dtype=w.dtype
            )
        elif latent.shape[-2:] != label_map.shape[-2:]:
            raise ValueError(
                f"latent map {tuple(latent.shape)} and label map {tuple(label_map.shape)} "
                f"differ in size; resize the labels to the feature map (resize_labels)"
            )
        latent = latent.detach() if detach else latent
        if self.code_centring:
            latent = centre_codes(latent, label_map, self.num_classes)
        return self.generator(w, latent)

    def classify(self, features: Tensor) -> Tensor:
        """C: features (B, d, h, w) -> class logits (B, K, h, w)."""
        return self.discriminator.classify(features)

    def predict(self, x: Tensor, upsample: bool = True) -> Tensor:
        """Class logits (B, K, H, W) at the input size from the x1 scale; call ``eval()`` first.

        ``upsample=False``: the logits (B, K, h, w) at the feature map's resolution.
        """
        f, _ = self._real_feature(self.backbone(x))
        logits = self.classify(f)  # (B, K, h, w)
        if not upsample:
            return logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def kaiming_init(module: nn.Module) -> None:
    """trainer.py ``weights_init('kaiming')``: every conv / linear weight ~ Kaiming normal
    (fan_in, gain sqrt(2)), every bias 0. The official code applies it to the whole model
    before loading the backbone's pretrained weights, so CM, G and D/C keep it."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                if m.bias is not None:
                    m.bias.zero_()


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(model_or_cfg: CaGNet | Config, num_classes: int | None = None) -> dict:
    """Parameters per part: backbone (trunk), aspp, context, generator, discriminator, total.

    Given a `Config`, the model is built on the meta device (no memory, no weights
    downloaded); ``num_classes`` defaults to the number of classes of ``cfg.data``.
    """
    if isinstance(model_or_cfg, Config):
        cfg = model_or_cfg
        if num_classes is None:
            from cagnet.data import class_split

            num_classes = len(class_split(cfg.data).names)
        cfg = cfg.replace(model=dataclasses.replace(cfg.model, pretrained=False))
        with torch.device("meta"):
            model = CaGNet(cfg, num_classes, torch.zeros(num_classes, cfg.model.embed_dim))
    elif isinstance(model_or_cfg, CaGNet):
        model = model_or_cfg
    else:
        raise TypeError(
            f"count_parameters takes a CaGNet or a Config, got {type(model_or_cfg).__name__}"
        )
    return {
        "backbone": _numel(model.backbone.trunk),
        "aspp": _numel(model.backbone.aspp),
        "context": _numel(model.context),
        "generator": _numel(model.generator),
        "discriminator": _numel(model.discriminator),
        "total": _numel(model),
    }


def centre_codes(z: Tensor, label_map: Tensor, num_classes: int) -> Tensor:
    """z (B, d, h, w) minus, at each pixel, the mean z over the batch's pixels of its class
    in ``label_map`` (B, h, w); ignored pixels form one group of their own. The mean is part
    of the graph, so a gradient through the result reaches every code of the class. Sums run
    in float32 (half precision cannot count thousands of pixels). The batch is this process's
    own: on several GPUs each centres its share, so a class's mean is per GPU."""
    B, d, h, w = z.shape
    ids = torch.where((label_map >= 0) & (label_map < num_classes), label_map,
                      num_classes).reshape(-1).long()  # (B h w,)
    flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()  # (B h w, d)
    sums = flat.new_zeros(num_classes + 1, d).index_add(0, ids, flat)
    counts = flat.new_zeros(num_classes + 1).index_add(0, ids, torch.ones_like(flat[:, 0]))
    centred = flat - (sums / counts.clamp_min(1)[:, None])[ids]
    return centred.to(z.dtype).view(B, h, w, d).permute(0, 3, 1, 2)
