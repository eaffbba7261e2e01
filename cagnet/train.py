"""Training CaGNet (and its baselines ZS3Net and seen-only) in one readable loop.

Two stages, one code path for every method and scale:

1. **Training** (``cfg.train.iters`` iterations). Each iteration runs the backbone E (and CM)
   once on a batch of real images and builds one graph holding every loss:

   - E and CM: ``w_kl * KL(mu, sigma^2) + w_ce_real_backbone * CE(C(f), y)``, the CE averaged
     over the multi-scale outputs (x1, x0.75, x0.5, max), the KL over labelled pixels;
   - D and C: ``GAN(D(f), real) + GAN(D(G(w, z)), fake) + w_ce_real * CE(C(f), y)
     + w_ce_fake_train * CE(C(G(w, z)), y)``;
   - G: ``w_gan_g * GAN(D(G(w, z)), real) + w_content * content(G(w, z), f) + w_ce_fake_g *
     CE(C(G(w, z)), y)``,

   where f are real features, y the labels (unseen and ignored pixels 255), w the label
   embedding map and z CM's contextual latent code (ZS3Net: random noise). A single
   ``backward`` trains all networks, and each network still learns only from its own
   objective: D and C see detached features, E's CE goes through a *frozen* copy of C
   (`call_frozen`), and G's adversarial and CE terms go through a frozen copy of D.
   (The official code runs two backward passes through the backbone per iteration.)
   D/C and G use Adam with a step decay (``lr_decay_d``, ``lr_decay_g``); E and CM SGD (Adam
   with ``train.backbone_optimizer="adam"``, the toy preset), poly.

2. **Fine-tuning** (``cfg.train.finetune_iters``), as in ``*_finetune.yaml``. E and CM are
   frozen; D/C and G get fresh Adam optimisers (``lr_d_finetune``, ``lr_g_finetune``, their
   own step decay). Blocks of ``switch_every`` iterations alternate:

   - real-image blocks (the training step on real images, E and CM frozen): D/C learn
     ``GAN + w_ce_real_finetune * CE(C(f), y) + w_ce_fake_finetune * CE(C(G(w, z)), y)``
     with z the pixels' own codes; G learns ``GAN + w_content * content``;
   - fake-feature blocks (`fake_step`): a random label map with i.i.d. pixels over seen +
     unseen classes (unseen drawn ``unseen_weight`` times as often), its embedding map and
     z ~ N(0, I) go through G; C learns ``w_ce_fake_transfer * CE(C(G(w, z)), y)`` alone,
     and G learns ``w_ce_fake_g_transfer * CE`` (0 in VOC and Context: G rests). This step
     runs no backbone. C meets unseen classes only here, through G.

With ``cfg.train.self_train`` (ZS3Net's "+ST"; official ``--schedule st`` then ``st_mixed``)
two more stages follow, each with fresh optimisers and its own schedule (``*_st*`` rates):

3. **Self-training** (``st_iters``): the training step with every network learning, on
   batches whose ignored pixels first get pseudo-labels from the current model in eval mode
   (`cagnet.selftrain`: the best unseen class among a pixel's ``top_p`` top-scoring classes).
   D/C weigh their CE terms as in fine-tuning (``w_ce_real_finetune``, ``w_ce_fake_finetune``).
4. **Second fine-tuning** (``st_finetune_iters``): exactly like stage 2.

The seen-only baseline trains E and C by segmentation CE alone and has no other stage.

Fast path on a GPU: autocast (bf16, or fp16 with a gradient scaler), channels-last,
fused optimisers, ``cudnn.benchmark``, optional ``torch.compile``, and no host
synchronisation inside a step: losses are summed on the device and read every
``log_every`` iterations. On several GPUs (``torchrun``) the loss module is wrapped in
``DistributedDataParallel``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from cagnet import distributed
from cagnet.checkpoint import (
    check_same_run,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cagnet.config import Config, TrainConfig
from cagnet.diagnostics import code_health, norms
from cagnet.errors import CagnetError, ConfigError
from cagnet.evaluate import evaluate_calibrations, write_metrics
from cagnet.losses import content_loss, gan_loss, kl_divergence, resize_labels, segmentation_ce
from cagnet.models import CaGNet
from cagnet.models.cagnet import centre_codes
from cagnet.models.context import ContextOutput
from cagnet.patches import centres_only, patch_label_maps, unseen_share
from cagnet.selftrain import label_batch

IGNORE = 255
LOSS_NAMES = ("total", "e_ce", "e_kl", "d_gan", "d_ce_real", "d_ce_fake",
              "g_gan", "g_content", "g_ce")


class TrainingDiverged(CagnetError):
    """A loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


def call_frozen(module: nn.Module, *args: Tensor) -> Any:
    """``module(*args)`` with its parameters treated as constants.

    Gradients reach the inputs but not the module's parameters: how E learns through C, and
    G through D, without changing C or D.
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args)


FROZEN_STAGES = ("finetune", "self-train-finetune")  # E and CM frozen, blocks alternate


def stage_starts(cfg: TrainConfig) -> dict[str, int]:
    """The first iteration of each stage, in order; iterations count over all stages.

    ``train`` and ``finetune``, then, with ``self_train``, ``self-train`` and
    ``self-train-finetune``. The last stage runs on past the end of the schedule.
    """
    starts = {"train": 0, "finetune": cfg.iters}
    if cfg.self_train:
        starts["self-train"] = cfg.iters + cfg.finetune_iters
        starts["self-train-finetune"] = starts["self-train"] + cfg.st_iters
    return starts


def stage_at(cfg: TrainConfig, iteration: int) -> str:
    """The stage of ``iteration`` (0-based); a stage of no iterations is skipped."""
    return [s for s, first in stage_starts(cfg).items() if first <= iteration][-1]


def is_finetune_step(cfg: TrainConfig, iteration: int) -> bool:
    """Whether ``iteration`` (0-based, all stages counted) is a fine-tuning step on fakes.

    Each fine-tuning stage starts with ``switch_every`` training steps, then alternates blocks.
    """
    stage = stage_at(cfg, iteration)
    t = iteration - stage_starts(cfg)[stage]
    return stage in FROZEN_STAGES and (t // cfg.switch_every) % 2 == 1


def total_iterations(cfg: Config) -> int:
    """All stages; seen-only has nothing to fine-tune (no generator) and stops after training."""
    t = cfg.train
    if cfg.method == "seen-only":
        if t.self_train:
            raise ConfigError("self-training (train.self_train, --self-train) pseudo-labels "
                              "unseen classes with a model fine-tuned on generated features; "
                              "the seen-only baseline has none: use method cagnet or zs3net")
        return t.iters
    return t.iters + t.finetune_iters + (t.st_iters + t.st_finetune_iters if t.self_train else 0)


class StepLosses(nn.Module):
    """Every loss of one iteration, returned as one scalar so that one ``backward`` trains all.

    ``forward(kind, x, labels)`` with ``kind``:

    - ``"real"``: training step, x = images (B, 3, H, W), E and CM learn;
    - ``"real-frozen"``: the same with E and CM frozen (no graph through the backbone);
    - ``"self-train"``: ``"real"`` with D/C's fine-tuning CE weights (labels pseudo-labelled);
    - ``"fake"``: fine-tuning step on generated features, x = a real step's label map (B, h, w)
      (only its shape is read), labels = that step's codes or None (`fake_step`).

    Returns ``(total, parts, kept)``: the scalar to differentiate, the detached loss terms
    (a (len(LOSS_NAMES),) float32 vector) and, for the real steps, the label map (B, h, w)
    at the features' size, whose shape the fake-feature steps' label maps take, and its
    codes (``train.fake_codes = "real"``; else None). Routing every step through ``forward`` lets
    ``DistributedDataParallel`` wrap this module.
    """

    def __init__(self, model: CaGNet, cfg: Config, seen: list[int], unseen: list[int]) -> None:
        super().__init__()
        self.model = model
        self.loss = cfg.loss
        self.fake_map_size = cfg.train.fake_map_size
        self.latent_grad = cfg.model.latent_grad
        self.fake_codes = cfg.train.fake_codes
        self.patch_fakes = cfg.train.patch_fakes
        self.shuffle_g_codes = cfg.train.shuffle_g_codes
        # the KL weight's share of loss.w_kl now (loss.kl_warmup ramps it from 0; Trainer.set_lr),
        # a buffer so that a compiled step does not recompile when it changes
        self.register_buffer("kl_scale", torch.ones(()), persistent=False)
        ids = sorted(set(seen) | set(unseen))
        weights = [cfg.train.unseen_weight if c in unseen else 1.0 for c in ids]
        self.register_buffer("fake_classes", torch.tensor(ids), persistent=False)
        self.register_buffer("fake_probs", torch.tensor(weights) / sum(weights), persistent=False)
        # the patch-level CaGNet's structured label maps (`cagnet.patches`): a seen class of a
        # real patch becomes unseen with the unseen classes' share of the i.i.d. maps' draws
        self.register_buffer("seen_ids", torch.tensor(sorted(seen)), persistent=False)
        self.register_buffer("unseen_ids", torch.tensor(sorted(unseen)), persistent=False)
        self.unseen_share = unseen_share(seen, unseen, cfg.train.unseen_weight)

    def forward(self, kind: str, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Any]:
        if kind == "fake":
            return self.fake_step(x, labels)
        return self.real_step(x, labels, train_backbone=kind in ("real", "self-train"),
                              finetune=kind != "real")

    def real_step(self, images: Tensor, labels: Tensor, train_backbone: bool,
                  finetune: bool) -> tuple[Tensor, Tensor, Any]:
        m, L = self.model, self.loss
        with torch.set_grad_enabled(train_backbone and torch.is_grad_enabled()):
            out = m.segment(images)
        feats, ctx = out["features"], out["ctx"]  # [f(x1), f(x0.75), ..., max], CM output at x1
        real = feats[0]  # (B, d, h, w)
        y = resize_labels(labels, real.shape[-2:])  # (B, h, w)
        valid = y != IGNORE
        zero = real.new_zeros((), dtype=torch.float32)
        up = L.ce_upsample

        # D/C's CE weights: training stage, or fine-tuning and self-training (configs_st_voc.yaml
        # lambda_D_cls_real 0.75, lambda_D_cls_fake 0.25, as in voc12_finetune.yaml)
        w_real = L.w_ce_real_finetune if finetune else L.w_ce_real
        w_fake = L.w_ce_fake_finetune if finetune else L.w_ce_fake_train

        # E and CM: CE through a frozen C, averaged over the scales; KL keeps z samplable
        e_ce = e_kl = zero
        if train_backbone:
            e_ce = torch.stack([segmentation_ce(call_frozen(m.discriminator, f)[1], labels,
                                                upsample=up) for f in feats]).mean()
            if ctx is not None:
                e_kl = kl_divergence(ctx.mu, ctx.logvar,
                                     valid if L.kl_pixels == "labelled" else None)
        loss = L.w_ce_real_backbone * e_ce + L.w_kl * self.kl_scale * e_kl

        # D and C on detached real features
        gan_real, cls_real = m.discriminator(real.detach())
        d_ce_real = torch.stack([segmentation_ce(cls_real, labels, upsample=up)] + [
            segmentation_ce(m.classify(f.detach()), labels, upsample=up)
            for f in feats[1:]]).mean()
        loss = loss + w_real * d_ce_real
        d_gan = d_ce_fake = g_gan = g_content = g_ce = zero

        if m.generator is not None:
            # z reaches G detached (official), or with its gradient into CM and E ("all")
            z = g_code(ctx, m.g_code)
            perm = self.code_shuffle(y) if z is not None and self.shuffle_g_codes else None
            fake = m.generate(y, shuffled(z, y, perm, m),
                              detach=self.latent_grad != "all" or not train_backbone)
            ctx_cm = self.cm_only(out, train_backbone)
            # "content": the content loss reads a fake of its own, from z with CM's gradient
            fake_content = (m.generate(y, shuffled(g_code(ctx_cm, m.g_code), y, perm, m),
                                       detach=False)
                            if ctx_cm is not None and self.latent_grad == "content" else fake)
            q_ce, confusion = self.code_adversary(ctx_cm, y)
            loss = loss + q_ce + L.w_code_adv * confusion
            gan_fake, cls_fake = m.discriminator(fake.detach())
            d_gan = (gan_loss(gan_real, True, L.gan, valid)
                     + gan_loss(gan_fake, False, L.gan, valid))
            if w_fake:
                d_ce_fake = segmentation_ce(cls_fake, y)
            # G through a frozen D: look real, keep the real features' content, be classified
            gan_g, cls_g = call_frozen(m.discriminator, fake)
            g_gan = gan_loss(gan_g, True, L.gan, valid)
            g_content = content_loss(fake_content, real, y, L.content, L.mmd_sigmas,
                                     max_pixels=L.mmd_max_pixels)  # MMD runs in float32
            if L.w_ce_fake_g:
                g_ce = segmentation_ce(cls_g, y)
            loss = (loss + d_gan + w_fake * d_ce_fake + L.w_gan_g * g_gan
                    + L.w_content * g_content + L.w_ce_fake_g * g_ce)

        parts = torch.stack([loss, e_ce, e_kl, d_gan, d_ce_real, d_ce_fake,
                             g_gan, g_content, g_ce]).detach().float()
        codes = None
        if self.fake_codes == "real" and ctx is not None:
            z = g_code(ctx, m.g_code).detach()
            if m.code_centring:  # the codes G read in this step, the class taken out
                z = centre_codes(z, y, m.num_classes)
            codes = torch.where(valid.unsqueeze(1), z, torch.nan)  # (B, d, h, w)
        return loss, parts, (y, codes)

    @staticmethod
    def code_shuffle(y: Tensor) -> Tensor:
        """For ``train.shuffle_g_codes``: per pixel of ``y`` (B, h, w), flat, the index of the
        labelled pixel whose code it reads (a random permutation of the labelled pixels;
        unlabelled pixels keep their own)."""
        flat = y.reshape(-1)
        idx = torch.arange(flat.numel(), device=y.device)
        labelled = idx[flat != IGNORE]
        idx[labelled] = labelled[torch.randperm(labelled.numel(), device=y.device)]
        return idx

    def cm_only(self, out: dict, train_backbone: bool) -> ContextOutput | None:
        """CM again on E(x) detached, with the same noise draw (the values equal
        ``out["ctx"]``'s), for the losses that must train CM but not E: the content loss
        (``model.latent_grad`` "content") and the code's class adversary (``loss.w_code_adv``).
        None when neither is on or E and CM are frozen."""
        ctx = out["ctx"]
        wanted = self.latent_grad == "content" or self.model.code_probe is not None
        if ctx is None or not train_backbone or not wanted:
            return None
        return self.model.context(out["aspp"].detach(), eps=ctx.eps)

    def code_adversary(self, ctx_cm: ContextOutput | None, y: Tensor) -> tuple[Tensor, Tensor]:
        """(Q's CE on mu detached, CM's confusion loss): Q learns the class of each labelled
        pixel from its code mu; CM is pushed towards Q's uniform guess (mean -log softmax)."""
        q = self.model.code_probe
        if q is None or ctx_cm is None:
            zero = y.new_zeros((), dtype=torch.float32)
            return zero, zero
        valid = y != IGNORE
        mu = ctx_cm.mu.permute(0, 2, 3, 1)[valid]  # (N, d)
        n = valid.sum().clamp_min(1)  # no host sync; 0 labelled pixels give 0 losses
        q_ce = F.cross_entropy(q(mu.detach()).float(), y[valid].long(), reduction="sum") / n
        logp = F.log_softmax(call_frozen(q, mu).float(), dim=1)  # (N, K)
        confusion = -logp.sum() / (n * logp.shape[1])
        return q_ce, confusion

    def random_labels(self, batch: int, size: tuple[int, int]) -> Tensor:
        """A label map (batch, h, w) of i.i.d. pixels over seen + unseen, unseen up-weighted."""
        n = batch * size[0] * size[1]
        draws = torch.multinomial(self.fake_probs, n, replacement=True)
        return self.fake_classes[draws].view(batch, *size)

    def fake_step(self, like: Tensor, codes: Tensor | None = None) -> tuple[Tensor, Tensor, Any]:
        """A fake-feature block's step (model.py step2) on random label maps of the shape of
        ``like`` (B, h, w), a real step's label map (or ``train.fake_map_size`` square).

        CaGNet's codes are z ~ N(0, I) (official), or, given ``codes`` (B, d, h, w) from a real
        step (NaN at unlabelled pixels; ``train.fake_codes = "real"``), real pixels' codes
        drawn at random, so that each fake takes the context of some real pixel.
        With ``model.patch_size`` p > 1 the label map is tiled with p x p patches of ``like``'s
        layouts, each patch gets one code, or the real codes it was cut with
        (`cagnet.patches.patch_label_maps`), and C's CE counts each patch's centre pixel
        only (`cagnet.patches.centres_only`)."""
        m, L = self.model, self.loss
        size = like.shape[-2:] if self.fake_map_size is None else (self.fake_map_size,) * 2
        if m.patch_size > 1 and self.patch_fakes:
            latent = m.generator.latent_dim if m.context is not None else None
            y_fake, z = patch_label_maps(like, (like.shape[0], *size), m.patch_size,
                                         self.seen_ids, self.unseen_ids, self.unseen_share,
                                         m.num_classes, codes, latent)
            y_ce = centres_only(y_fake, m.patch_size)  # C is scored at the patches' centres
        else:
            y_fake = self.random_labels(like.shape[0], tuple(size))
            z = None if codes is None else draw_codes(codes, y_fake.shape)
            y_ce = y_fake
        train_g = L.w_ce_fake_g_transfer != 0
        with torch.set_grad_enabled(train_g and torch.is_grad_enabled()):
            fake = m.generate(y_fake, z)  # z ~ N(0, I) when z is None
        zero = fake.new_zeros((), dtype=torch.float32)
        d_ce_fake = segmentation_ce(m.classify(fake.detach()), y_ce)
        g_ce = segmentation_ce(call_frozen(m.discriminator, fake)[1], y_ce) if train_g else zero
        loss = L.w_ce_fake_transfer * d_ce_fake + L.w_ce_fake_g_transfer * g_ce
        parts = torch.stack([loss, zero, zero, zero, zero, d_ce_fake,
                             zero, zero, g_ce]).detach().float()
        return loss, parts, None


def shuffled(z: Tensor | None, y: Tensor, perm: Tensor | None, model: CaGNet) -> Tensor | None:
    """``z`` (B, d, h, w) with pixel p reading the code of pixel ``perm[p]`` (flat indices;
    `StepLosses.code_shuffle`), centred by the pixels' own classes first when the model
    centres; ``z`` itself when ``perm`` is None."""
    if z is None or perm is None:
        return z
    if model.code_centring:
        z = centre_codes(z, y, model.num_classes)
    B, d, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, d)[perm]
    return flat.view(B, h, w, d).permute(0, 3, 1, 2)


def g_code(ctx: ContextOutput | None, which: str) -> Tensor | None:
    """The code G reads in a training step (``model.g_code``): the sampled z = mu + eps sigma
    (official) or its mean mu; None without CM."""
    if ctx is None:
        return None
    return ctx.mu if which == "mu" else ctx.z


def draw_codes(codes: Tensor, shape: torch.Size) -> Tensor | None:
    """A code map (B', d, h', w') for label maps of ``shape`` (B', h', w'): every pixel's code
    drawn with replacement from the labelled (non-NaN) pixels of ``codes`` (B, d, h, w);
    None when no pixel is labelled."""
    pool = codes.permute(0, 2, 3, 1).flatten(0, 2)  # (B h w, d)
    pool = pool[~pool.isnan().any(1)]
    if pool.shape[0] == 0:
        return None
    idx = torch.randint(pool.shape[0], (shape.numel(),), device=pool.device)
    return pool[idx].view(*shape, -1).permute(0, 3, 1, 2)  # (B', d, h', w')


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.amp`` on ``device`` (None: full precision)."""
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise ConfigError(f"unknown amp setting {amp!r}; choose auto, bf16, fp16 or off")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def build_optimizers(model: CaGNet, tcfg: TrainConfig, device: torch.device,
                     stage: str = "train") -> dict[str, torch.optim.Optimizer]:
    """SGD for E and CM (poly schedule, lr multipliers; Adam with
    ``train.backbone_optimizer="adam"``), Adam for D/C and for G, at the rates of ``stage``
    (``"train"`` or ``"self-train"``).

    SGD groups: trunk x1, CM x ``lr_mult_context``, ASPP weights x ``lr_mult_aspp_weight``,
    ASPP biases x ``lr_mult_aspp_bias`` (no weight decay on biases, as in DeepLab).
    """
    lr = poly_schedule(tcfg, stage)[0]
    fused = True if device.type == "cuda" else None
    groups = model.backbone.param_groups()
    sgd_groups = [{"params": groups["trunk"], "lr_mult": 1.0}]
    if model.context is not None:  # an "official" selector holds no trainable weight
        sgd_groups.append({"params": [p for p in model.context.parameters() if p.requires_grad],
                           "lr_mult": tcfg.lr_mult_context})
    sgd_groups += [
        {"params": groups["aspp_weight"], "lr_mult": tcfg.lr_mult_aspp_weight},
        {"params": groups["aspp_bias"], "lr_mult": tcfg.lr_mult_aspp_bias, "weight_decay": 0.0},
    ]
    for g in sgd_groups:
        g["lr"] = lr * g["lr_mult"]
    if tcfg.backbone_optimizer == "adam":  # a named toy-scale option (TrainConfig)
        for g in sgd_groups:
            g["weight_decay"] = 0.0
        opts = {"backbone": torch.optim.Adam(sgd_groups, lr=lr, fused=fused)}
    else:
        opts = {"backbone": torch.optim.SGD(sgd_groups, lr=lr, momentum=tcfg.momentum,
                                            weight_decay=tcfg.weight_decay, fused=fused)}
    return opts | build_adam(model, tcfg, device, stage)


def poly_schedule(tcfg: TrainConfig, stage: str) -> tuple[float, int]:
    """E and CM's SGD in a stage that trains them: base rate, iterations of the poly decay."""
    return (tcfg.lr_st, tcfg.st_iters) if stage == "self-train" else (tcfg.lr, tcfg.iters)


def adam_schedule(tcfg: TrainConfig, stage: str) -> dict[str, tuple[float, tuple]]:
    """D/C's and G's Adam in ``stage``: base rate and step decay (`step_lr`), counted from
    the stage's first iteration (each official schedule makes its own schedulers)."""
    t = tcfg
    return {
        "train": {"discriminator": (t.lr_d, t.lr_decay_d),
                  "generator": (t.lr_g, t.lr_decay_g)},
        "finetune": {"discriminator": (t.lr_d_finetune, t.finetune_decay_d),
                     "generator": (t.lr_g_finetune, t.finetune_decay_g)},
        "self-train": {"discriminator": (t.lr_d_st, t.st_decay_d),
                       "generator": (t.lr_g_st, t.st_decay_g)},
        "self-train-finetune": {"discriminator": (t.lr_d_st_finetune, t.st_finetune_decay_d),
                                "generator": (t.lr_g_st_finetune, t.st_finetune_decay_g)},
    }[stage]


def build_adam(model: CaGNet, tcfg: TrainConfig, device: torch.device,
               stage: str = "train") -> dict[str, torch.optim.Optimizer]:
    """Adam for D/C and for G (trainer.py ``dis_opt``, ``gen_opt``) at the base rates of
    ``stage`` (`adam_schedule`): every stage starts with fresh ones (the official ``lr``,
    ``lr_transfer``, ``lr_st``, ``lr_st_transfer``)."""
    fused = True if device.type == "cuda" else None
    rates = adam_schedule(tcfg, stage)
    lr_d, lr_g = rates["discriminator"][0], rates["generator"][0]
    d_params = list(model.discriminator.parameters())
    if model.code_probe is not None:  # Q learns with D/C
        d_params += list(model.code_probe.parameters())
    opts = {"discriminator": torch.optim.Adam(d_params, lr=lr_d,
                                              betas=tcfg.adam_betas,
                                              weight_decay=tcfg.weight_decay_d, fused=fused)}
    if model.generator is not None:
        opts["generator"] = torch.optim.Adam(model.generator.parameters(), lr=lr_g,
                                             betas=tcfg.adam_betas,
                                             weight_decay=tcfg.weight_decay_g, fused=fused)
    return opts


def poly_lr(base: float, iteration: int, max_iter: int, power: float) -> float:
    """DeepLab's poly schedule: ``base * (1 - iteration / max_iter) ** power``."""
    return base * (1.0 - min(iteration, max_iter) / max(max_iter, 1)) ** power


def step_lr(base: float, iteration: int, decay: tuple[float, float, float]) -> float:
    """trainer.py's ``lambda`` policy: ``base * gamma ** ((t - start) // every + 1)`` from
    ``t = start`` on, ``base`` before; ``decay = (start, every, gamma)``."""
    start, every, gamma = decay
    if iteration < start:
        return base
    return base * gamma ** ((iteration - start) // max(every, 1) + 1)


class Trainer:
    """One model, its optimisers and the two steps; `fit` drives it over the data.

    ``train_step(images, labels, iteration)`` and ``finetune_step()`` each run one
    iteration and return the detached loss terms (a device tensor, no host sync).
    """

    def __init__(self, cfg: Config, num_classes: int, seen: list[int], unseen: list[int],
                 class_embeddings: Tensor, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.dist = distributed.current()
        tcfg = cfg.train
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        else:
            # subnormal floats (a collapsing code drives CM's maps towards 0) made the toy
            # step 1.7x slower (480 vs 285 ms on one thread); flushing them to 0 costs nothing
            torch.set_flush_denormal(True)
        self.memory_format = (torch.channels_last if cuda and tcfg.channels_last
                              else torch.contiguous_format)
        self.model = CaGNet(cfg, num_classes, torch.as_tensor(class_embeddings))
        self.model.to(self.device, memory_format=self.memory_format)
        self.optimizers = build_optimizers(self.model, tcfg, self.device)
        self.amp_dtype = autocast_dtype(tcfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.losses = StepLosses(self.model, cfg, seen, unseen).to(self.device)
        # the last real step's label map (B, h, w), for its shape, and its codes (train.fake_codes)
        self.kept: tuple[Tensor, Tensor | None] | None = None
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.unseen = list(unseen)  # the classes self-training pseudo-labels
        # what E and CM train (not frozen BatchNorm, nor an "official" selector), and the
        # code's class probe Q, which learns only while CM does: frozen in fine-tuning,
        # trained again in self-training
        self.trainable = [p for m in (self.model.backbone, self.model.context,
                                      self.model.code_probe) if m is not None
                          for p in m.parameters() if p.requires_grad]
        self.stage = ""
        self.set_stage("train")

    def set_stage(self, stage: str) -> None:
        """Enter a stage of `stage_starts`: ``"train"``; ``"finetune"`` or
        ``"self-train-finetune"`` (E and CM frozen, BatchNorm statistics fixed, fresh Adam);
        ``"self-train"`` (E and CM learn again; fresh optimisers)."""
        if stage == self.stage:
            return
        tcfg = self.cfg.train
        if stage not in stage_starts(tcfg):
            raise ValueError(f"unknown stage {stage!r}; this run has "
                             f"{', '.join(stage_starts(tcfg))} (the self-training stages need "
                             "train.self_train)")
        frozen = stage in FROZEN_STAGES
        for p in self.trainable:
            p.requires_grad_(not frozen)
        if frozen:
            self.optimizers["backbone"].zero_grad(set_to_none=True)
            # fresh Adam for D/C and G at the stage's rates (lr_transfer, lr_st_transfer)
            self.optimizers |= build_adam(self.model, tcfg, self.device, stage)
            self.active = [o for k, o in self.optimizers.items() if k != "backbone"]
        else:
            if stage == "self-train":  # the official 'st' run builds every optimiser afresh
                self.optimizers = build_optimizers(self.model, tcfg, self.device, stage)
            self.active = list(self.optimizers.values())
        self.stage = stage
        self.train_mode()
        # DDP registers the parameters that need gradients, so it is built per stage
        step: nn.Module = self.losses
        if self.dist.enabled:
            step = DistributedDataParallel(
                self.losses, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.model.generator is None)  # seen-only: no GAN head
        self.step_module = torch.compile(step) if self.cfg.train.compile else step

    def train_mode(self) -> None:
        """Training mode, except a frozen backbone keeps its BatchNorm statistics."""
        self.model.train()
        if self.stage in FROZEN_STAGES:
            self.model.backbone.eval()

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype,
                              enabled=self.amp_dtype is not None)

    def set_lr(self, iteration: int) -> None:
        """Poly schedule for E and CM over each stage that trains them (`poly_schedule`); step
        decay for the Adam rates (`adam_schedule`); both counted from the stage's start."""
        t = self.cfg.train
        step = iteration - stage_starts(t)[self.stage]
        warmup = self.cfg.loss.kl_warmup
        self.losses.kl_scale.fill_(min(1.0, iteration / warmup) if warmup else 1.0)
        if self.stage in ("train", "self-train"):
            base, span = poly_schedule(t, self.stage)
            for g in self.optimizers["backbone"].param_groups:
                g["lr"] = poly_lr(base * g["lr_mult"], step, span, t.poly_power)
        for name, (base, decay) in adam_schedule(t, self.stage).items():
            opt = self.optimizers.get(name)  # seen-only has no generator
            lr = step_lr(base, step, decay)
            for g in opt.param_groups if opt is not None else []:
                g["lr"] = lr

    def _update(self, kind: str, x: Tensor, labels: Tensor) -> Tensor:
        for opt in self.active:
            opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss, parts, kept = self.step_module(kind, x, labels)
        self.scaler.scale(loss).backward()
        for opt in self.active:  # G rests in fake-feature blocks when its CE weight is 0
            if any(p.grad is not None for g in opt.param_groups for p in g["params"]):
                self.scaler.step(opt)
        self.scaler.update()
        self.nonfinite |= ~torch.isfinite(loss)
        if kept is not None:
            self.kept = kept
        return parts

    def train_step(self, images: Tensor, labels: Tensor, iteration: int) -> Tensor:
        """One training step on real images (B, 3, H, W) and labels (B, H, W)."""
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        self.set_lr(iteration)
        if self.stage == "self-train":
            labels = self.pseudo_label(images, labels)
        kind = {"train": "real", "self-train": "self-train"}.get(self.stage, "real-frozen")
        return self._update(kind, images, labels)

    def pseudo_label(self, images: Tensor, labels: Tensor) -> Tensor:
        """``labels`` (B, H, W) with their ignored pixels pseudo-labelled by the current model
        (`cagnet.selftrain.label_batch`, in eval mode; training mode is restored)."""
        with self.autocast():
            labels = label_batch(self.model, images, labels, self.unseen, self.cfg.train.top_p)
        self.train_mode()
        return labels

    def finetune_step(self, iteration: int | None = None) -> Tensor:
        """One fine-tuning step on generated features (needs a training step before it);
        ``iteration`` sets the learning rates (see `set_lr`)."""
        if self.kept is None:
            raise RuntimeError("a fine-tuning step needs the label map of a training step")
        if iteration is not None:
            self.set_lr(iteration)
        return self._update("fake", *self.kept)

    def health(self, images: Tensor, labels: Tensor) -> dict[str, float]:
        """CM's instruments (`cagnet.diagnostics`) on a batch, with its weight and gradient
        norms (the gradients of the last step); empty without CM."""
        if self.model.context is None:
            return {}
        h = code_health(self.model, images.to(self.device), labels.to(self.device))
        return {f"cm_{k}": v for k, v in (h | norms(self.model.context)).items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "kept": (list(self.kept) if self.kept is not None and self.stage in FROZEN_STAGES
                     else None),
        }

    def load_state_dict(self, state: dict[str, Any], iteration: int) -> None:
        """Resume at ``iteration``: enter its stage and load the weights and, unless the stage
        starts there (its optimisers start fresh), the optimisers."""
        t = self.cfg.train
        stage = stage_at(t, iteration)
        self.set_stage(stage)
        self.model.load_state_dict(state["model"])
        if iteration > 0 and stage_at(t, iteration - 1) == stage:
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        kept = state.get("kept")
        if isinstance(kept, Tensor):  # a label map alone (no codes)
            kept = (kept, None)
        if kept is not None:
            y, codes = kept
            if y.dim() == 4:  # older checkpoints kept (real features, labels)
                y, codes = codes, None
            self.kept = (y.to(self.device), None if codes is None else codes.to(self.device))

    def all_finite(self) -> bool:
        """No NaN/inf loss since the last check, in any process, and finite weights (one sync)."""
        weights_ok = torch.stack([p.isfinite().all() for p in self.model.parameters()]).all()
        bad = (self.nonfinite | ~weights_ok).float()
        self.nonfinite.zero_()
        return not bool(distributed.all_reduce_sum(bad))


# ---------------------------------------------------------------------------------------------
# Data: the batch of iteration t is a function of (seed, t) alone


def global_batch(seed: int, iteration: int, batch_size: int, n: int) -> list[int]:
    """Dataset indices of iteration ``iteration``'s global batch: epochs are seeded permutations."""
    out = []
    for p in range(iteration * batch_size, (iteration + 1) * batch_size):
        epoch, k = divmod(p, n)
        out.append(int(_permutation(seed, epoch, n)[k]))
    return out


_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    key = (seed, epoch, n)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 4:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = np.random.default_rng([seed, epoch]).permutation(n)
    return _PERM_CACHE[key]


class SeededItems(Dataset):
    """``dataset[index]`` with its augmentation drawn from generators seeded by (seed, t, index).

    The global random state is saved and restored around each item, so loading data never
    disturbs the training noise, and a resumed run sees exactly the same crops and flips.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        iteration, index = key
        state = np.random.SeedSequence([self.seed, iteration, index]).generate_state(2)
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(state[0]))  # the CPU generator only
            np.random.seed(int(state[1]))
            random.seed(int(state[1]))
            try:
                return self.dataset[index]
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)


class BatchPlan:
    """Batch sampler: this process's share of the global batch of every real-data iteration."""

    def __init__(self, cfg: Config, n: int, start: int, info: distributed.DistInfo) -> None:
        self.cfg, self.n, self.start, self.info = cfg, n, start, info

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        t = self.cfg.train
        for it in range(self.start, total_iterations(self.cfg)):
            if not is_finetune_step(t, it):
                idx = global_batch(t.seed, it, t.batch_size, self.n)
                yield [(it, i) for i in distributed.shard(idx, self.info.rank,
                                                          self.info.world_size)]

    def __len__(self) -> int:
        t = self.cfg.train
        return sum(not is_finetune_step(t, it)
                   for it in range(self.start, total_iterations(self.cfg)))


def make_loader(dataset: Dataset, cfg: Config, start: int, device: torch.device) -> DataLoader:
    """Batches for the iterations from ``start`` on, in order (fine-tuning steps take none)."""
    info = distributed.current()
    return DataLoader(
        SeededItems(dataset, cfg.train.seed),
        batch_sampler=BatchPlan(cfg, len(dataset), start, info),  # type: ignore[arg-type]
        num_workers=cfg.train.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.train.seed),  # keeps the global RNG still
    )


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    """What `fit` returns: the trained model, test metrics and the logged loss history."""

    model: CaGNet
    metrics: dict | None
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None


def resolve_device(device: str | None) -> torch.device:
    """``None`` -> CUDA when available; under torchrun each process takes its local GPU."""
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available; "
                              "use --device cpu")
        if name == "cuda" and distributed.current().enabled:
            name = f"cuda:{distributed.current().local_rank}"
    elif name != "cpu":
        raise ConfigError(f"unknown device {name!r}; choose cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def class_info(classes: Any) -> dict:
    """The class split as plain data (stored in checkpoints for ``eval`` and ``predict``)."""
    return {"names": list(classes.names), "seen": list(classes.seen),
            "unseen": list(classes.unseen)}


def fit(
    cfg: Config,
    out_dir: str | Path | None = None,
    device: str | None = None,
    resume: bool = False,
    train_set: Dataset | None = None,
    test_set: Dataset | None = None,
    progress: bool = True,
    on_log: Callable[[dict], None] | None = None,
    evaluate: bool = True,
    substitutes: dict[str, str] | None = None,
) -> TrainResult:
    """Train ``cfg`` from scratch (or resume ``out_dir/checkpoint.pt``) and evaluate it.

    With ``out_dir``: checkpoints every ``checkpoint_every`` iterations and at the end
    (``checkpoint.pt``), TensorBoard logs (``tb/``), ``history.json`` and ``metrics.json``
    (test scores without and with the calibration ``cfg.train.calibration``). ``train_set``
    and ``test_set`` replace the datasets the config names. ``on_log`` receives every log
    record (iteration, stage, step kind, losses). ``evaluate=False`` skips the test set.
    ``substitutes`` give other words for classes the word vectors lack (`class_embeddings`).
    Raises a `ConfigError` on a setting of the wrong type or out of range
    (`cagnet.validation.validate_config`), and `TrainingDiverged` on a NaN/inf loss, keeping
    the last good checkpoint.
    """
    from tqdm.auto import tqdm

    from cagnet.data import build_dataset, class_split
    from cagnet.embeddings import class_embeddings
    from cagnet.errors import DataError
    from cagnet.metrics import run_summary
    from cagnet.validation import validate_config

    validate_config(cfg)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    info = distributed.current()
    tcfg = cfg.train
    if tcfg.batch_size % info.world_size:
        raise ConfigError(f"batch size {tcfg.batch_size} must be divisible by the number of "
                          f"processes ({info.world_size})")
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    state = None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        check_same_run(state, cfg, ckpt_path)

    seed_everything(tcfg.seed)  # the same initial weights in every process
    classes = class_split(cfg.data)
    train_set = train_set if train_set is not None else build_dataset(cfg.data, "train")
    emb = class_embeddings(classes.names, cfg.data, substitutes=substitutes)
    if not np.isfinite(emb).all():
        bad = [n for n, row in zip(classes.names, emb, strict=True) if not np.isfinite(row).all()]
        sources = (", ".join(cfg.data.embedding_sources) if cfg.data.embeddings == "gensim"
                   else f"the official tables of {cfg.data.dataset}")
        raise DataError(f"the class embeddings of {', '.join(bad[:5])} hold NaN or infinite "
                        f"values: the word vectors ({sources}) are corrupt; replace the file(s)")
    trainer = Trainer(cfg, len(classes.names), list(classes.seen), list(classes.unseen),
                      torch.as_tensor(emb), dev)
    start, history, elapsed = 0, [], 0.0
    total = total_iterations(cfg)
    if state is not None:
        start = state["iteration"]
        trainer.load_state_dict(state, start)
        history, elapsed = list(state["history"]), float(state["wall_time_s"])
    main = info.is_main
    if state is not None and main:
        set_rng_state(state["rng"])
    elif info.enabled:  # the other processes draw their own noise (dropout, z)
        torch.manual_seed(int(np.random.SeedSequence([tcfg.seed, info.rank, start])
                              .generate_state(1)[0]))
    if test_set is None and (evaluate or tcfg.eval_every):  # before any output is made
        test_set = build_dataset(cfg.data, "test")
    last_saved = start if state is not None else None
    writer = None
    if out is not None and main:
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(out / "tb"), purge_step=start)

    def save(iteration: int, stage: str) -> None:
        nonlocal last_saved
        if ckpt_path is None or not main:
            return
        last_saved = iteration
        save_checkpoint(ckpt_path, {
            "config": cfg.to_dict(), "iteration": iteration, "stage": stage,
            "classes": class_info(classes), **trainer.state_dict(), "rng": rng_state(),
            "history": history, "wall_time_s": elapsed + time.perf_counter() - t0,
        })

    def stop_if_diverged(iteration: int) -> None:
        if trainer.all_finite():
            return
        where = (f"{ckpt_path} (iteration {last_saved})" if last_saved is not None
                 else "none was saved")
        raise TrainingDiverged(
            f"a loss became NaN or infinite by iteration {iteration}; training stopped. "
            f"Last good checkpoint: {where}. Lower the learning rates (train.lr, train.lr_d, "
            "train.lr_g) or the loss weights and train again.")

    sums = {"real": torch.zeros(len(LOSS_NAMES), device=dev),
            "fake": torch.zeros(len(LOSS_NAMES), device=dev)}
    counts = {"real": 0, "fake": 0}

    def log(iteration: int, stage: str, health: dict[str, float]) -> None:
        """Average the losses summed on the device since the last log (one host sync); the
        real-step record also holds CM's instruments (``health``, `Trainer.health`)."""
        for k in ("real", "fake"):
            if not counts[k]:
                continue
            values = (sums[k] / counts[k]).tolist()
            record = {"iteration": iteration, "stage": stage, "step": k,
                      **dict(zip(LOSS_NAMES, values, strict=True))}
            if k == "real" and stage in ("train", "self-train"):
                record["lr"] = trainer.optimizers["backbone"].param_groups[0]["lr"]
            if k == "real":
                record |= health
                if writer is not None and "cm_kl" in health:  # the KL on a log axis
                    writer.add_scalar("cm/log10_kl", math.log10(max(health["cm_kl"], 1e-12)),
                                      iteration)
            history.append(record)
            if writer is not None:
                for name, v in record.items():
                    if isinstance(v, float):
                        writer.add_scalar(f"{k}_step/{name}", v, iteration)
            if on_log is not None:
                on_log(record)
            sums[k].zero_()
            counts[k] = 0
        bar.set_postfix({k: f"{v:.3f}" for k, v in history[-1].items()
                         if k in ("total", "e_ce", "d_gan", "g_content")})

    def test_scores(iteration: int, tag: str) -> tuple[dict, dict]:
        batch = tcfg.batch_size if cfg.data.dataset == "toy" else 1  # real images vary in size
        scores = evaluate_calibrations(trainer.model, test_set, classes,
                                       (0.0, tcfg.calibration), dev, batch)
        if writer is not None:
            for key in ("miou_seen", "miou_unseen", "hiou"):
                writer.add_scalar(f"{tag}/{key}", scores[0][key], iteration)
                writer.add_scalar(f"{tag}_calibrated/{key}", scores[1][key], iteration)
        return scores[0], scores[1]

    batches = iter(make_loader(train_set, cfg, start, dev))
    last_batch: tuple[Tensor, Tensor] | None = None
    bar = tqdm(range(start, total), initial=start, total=total, disable=not (progress and main),
               desc=f"{cfg.name}/{cfg.method}", dynamic_ncols=True)
    try:
        for it in bar:
            stage = stage_at(tcfg, it)
            trainer.set_stage(stage)
            if is_finetune_step(tcfg, it):
                kind, parts = "fake", trainer.finetune_step(it)
            else:
                last_batch = next(batches)
                kind, parts = "real", trainer.train_step(*last_batch, it)
            sums[kind] += parts
            counts[kind] += 1
            done = it + 1
            if done % tcfg.log_every == 0 or done == total:
                stop_if_diverged(done)
                log(done, stage, trainer.health(*last_batch) if main and last_batch else {})
            if done % tcfg.checkpoint_every == 0 and done != total:
                stop_if_diverged(done)
                save(done, stage)
            if tcfg.eval_every and done % tcfg.eval_every == 0 and done != total:
                test_scores(done, "test")
        stop_if_diverged(total)
        finished_before = start == total  # a finished run only loads and scores
        if not finished_before:
            save(total, "done")
        wall = elapsed if finished_before else elapsed + time.perf_counter() - t0

        metrics = None
        if evaluate:
            uncal, cal = test_scores(total, "test")
            metrics = {**run_summary(cfg, classes), "iteration": total,
                       "wall_time_s": wall, **uncal, "calibrated": cal}
        if out is not None and main:
            (out / "history.json").write_text(json.dumps(history, indent=1))
            if metrics is not None:
                write_metrics(metrics, out / "metrics.json")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return TrainResult(trainer.model, metrics, history, ckpt_path)


def config_with(cfg: Config, **sections: dict[str, Any]) -> Config:
    """``cfg`` with fields of its sections replaced: ``config_with(cfg, train={"iters": 10})``."""
    changes: dict[str, Any] = {}
    for section, values in sections.items():
        current = getattr(cfg, section)
        names = {f.name for f in dataclasses.fields(current)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown {section} setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(names))}")
        changes[section] = dataclasses.replace(current, **values)
    return cfg.replace(**changes)


