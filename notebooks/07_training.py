# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["remove-cell"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/07_training.ipynb)

# %% tags=["remove-cell"]
import sys

if "google.colab" in sys.modules:  # on Colab: install the cagnet package first
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q",
         "cagnet @ git+https://github.com/cagnet-book/cagnet-step-by-step"],
        check=True,
    )

# %% [markdown]
# # The alternating optimisation
#
# CaGNet is trained in two stages.
#
# **Training** (40,000 iterations on Pascal-VOC). Every iteration takes a batch of real
# images; unseen pixels (and VOC's background) carry the ignore label. All networks learn
# from real features of seen classes (official weights, `voc12.yaml`):
#
# - $E$ and CM: $100\,\mathrm{KL} + 0.5\,\mathrm{CE}\big(C(f), y\big)$, the KL averaged
#   over labelled pixels;
# - $D$ and $C$:
#   $\mathcal{L}_{GAN}(f, \text{real}) + \mathcal{L}_{GAN}(\tilde f, \text{fake}) + \mathrm{CE}(C(f), y)$;
# - $G$: $\mathcal{L}_{GAN}(\tilde f, \text{real}) + 50\,\mathcal{L}_{content}(\tilde f, f)$,
#   with $\tilde f = G(w_y, z)$ and $z$ the pixels' own contextual codes (the official
#   weight of a CE on $G$'s fakes is 0).
#
# $D$/$C$ and $G$ use Adam; their rates drop by 0.71 every 5,000 iterations from 10,000.
#
# **Fine-tuning** (6,000 iterations, `voc12_finetune.yaml`). $E$ and CM are frozen, and
# $D$/$C$ and $G$ get fresh Adam optimisers at $5 \cdot 10^{-5}$ (×0.1 every 1,000
# iterations from 3,000). Blocks of 100 iterations alternate between two kinds of step:
#
# - **real-image blocks**, the training step with $E$ and CM frozen: $D$/$C$ learn
#   $\mathcal{L}_{GAN} + 0.75\,\mathrm{CE}(\text{real}) + 0.25\,\mathrm{CE}(\text{fake})$,
#   the fakes made from the pixels' own codes; $G$ learns
#   $\mathcal{L}_{GAN} + 50\,\mathcal{L}_{content}$;
# - **fake-feature blocks**: a random label map whose pixels are drawn i.i.d. from *all*
#   classes, unseen ones ten times as often, goes through $G$ with
#   $z \sim \mathcal{N}(0, I)$; $C$ learns $0.125\,\mathrm{CE}(\text{fake})$ and nothing
#   else, and $G$ rests. This is the only place where the classifier sees the unseen
#   classes.

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch

from cagnet.book import toy_run
from cagnet.config import get_preset
from cagnet.data import build_dataset, class_split
from cagnet.embeddings import class_embeddings
from cagnet.train import LOSS_NAMES, StepLosses, Trainer, is_finetune_step, poly_lr, step_lr
from cagnet.viz import class_palette, colorize, label_legend, plot_losses

torch.manual_seed(0)
cfg = get_preset("toy")
classes = class_split(cfg.data)

# %% [markdown]
# This chapter puts every piece together:

# %%
from cagnet.viz import overview_figure  # noqa: E402

overview_figure(highlight=())
plt.show()

# %% [markdown]
# ## The schedule
#
# The toy preset shortens the schedule but keeps its shape: the training stage's Adam
# decays happen at the same fraction of the stage as in the official configuration, and
# E and CM follow the same poly curve. On the toy world they learn from scratch with Adam
# rather than the official SGD (the [deviations](../book/results.md) say why). Its
# fine-tuning differs where it must. With 400 fake-feature steps instead of 3,000, the
# official fine-tuning rates (a fifth of the training rates, decayed from half-way) and
# CE weight 0.125 left the classifier unable to learn the unseen classes. Measured on an
# earlier version of the toy preset (SGD backbone, 16 images a step, on the lit world,
# `data.toy_lighting=1`), from one training-stage checkpoint (seed 0): unseen mIoU 0.02,
# with its CE on generated features still 2.0 at the end. Fresh Adam at the training
# rates, decayed from iteration 600 of 800, and weight 0.5 on the fakes gave 0.30, and the
# toy preset keeps those settings:
#
# | fine-tuning variant (seed 0, one stage-1 checkpoint, earlier preset) | seen mIoU | unseen mIoU | hIoU |
# |---|---|---|---|
# | official: rates 2e-4, x0.1 every 133 from 400, fake CE 0.125 | 0.497 | 0.018 | 0.034 |
# | rates 1e-3 | 0.526 | 0.152 | 0.236 |
# | rates 1e-3, decay from 600 | 0.527 | 0.214 | 0.304 |
# | rates 1e-3, decay from 600, fake CE 1 | 0.467 | 0.294 | 0.361 |
# | rates 1e-3, decay from 600, fake CE 0.5 (the toy preset's settings) | 0.481 | 0.299 | 0.368 |

# %%
# NBVAL_CHECK_OUTPUT
t = cfg.train
print(f"training: {t.iters} iterations | fine-tuning: {t.finetune_iters} iterations, "
      f"switching every {t.switch_every} | batch {t.batch_size} | unseen weight {t.unseen_weight}")
print(f"E and CM: {t.backbone_optimizer} at {t.lr:g}, CM x{t.lr_mult_context:g} | "
      f"Adam (D/C) decay (start, every, factor): training {t.lr_decay_d}, "
      f"fine-tuning {t.finetune_decay_d} | fine-tuning rates {t.lr_d_finetune:g}, "
      f"CE weight on fakes {cfg.loss.w_ce_fake_transfer}")
voc = get_preset("voc").train
print(f"paper (voc): {voc.iters} + {voc.finetune_iters} iterations, switching every "
      f"{voc.switch_every}, batch {voc.batch_size}, Adam decay {voc.lr_decay_d} and "
      f"{voc.finetune_decay_d}")

# %%
its = np.arange(t.iters + t.finetune_iters)
backbone_opt = {"sgd": "SGD", "adam": "Adam"}[t.backbone_optimizer]
fake_step = np.array([is_finetune_step(t, int(i)) for i in its])
fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
axes[0].plot(its[: t.iters], [poly_lr(t.lr, int(i), t.iters, t.poly_power) / t.lr
                              for i in its[: t.iters]], label=f"E and CM ({backbone_opt}, poly; frozen after)")
adam = [step_lr(t.lr_d, int(i), t.lr_decay_d) / t.lr_d if i < t.iters
        else step_lr(t.lr_d_finetune, int(i) - t.iters, t.finetune_decay_d) / t.lr_d
        for i in its]
axes[0].plot(its, adam, label="D/C (Adam; fresh at fine-tuning)")
axes[0].set(ylabel="lr / training lr", yscale="log", title="Learning rates (log scale)")
axes[0].legend(loc="lower left", fontsize=8)
axes[1].fill_between(its, fake_step, step="post", color="tab:orange",
                     label="fake-feature block")
axes[1].fill_between(its, ~fake_step & (its >= t.iters), step="post", color="tab:blue",
                     label="real-image block, E and CM frozen")
axes[1].set(xlabel="iteration", yticks=[], title="Which step runs")
axes[1].legend(loc="upper left", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## One fake label map
#
# The fake-feature step draws each pixel's class independently: seen and unseen classes,
# the unseen ones with weight `unseen_weight`: 1 + 9 on VOC, 3 on the toy world (with 10,
# its 4 unseen classes made up about 70% of the fake pixels and $C$ over-predicted them).

# %%
emb = torch.from_numpy(class_embeddings(classes.names, cfg.data))
trainer = Trainer(cfg, classes.num_classes, classes.seen, classes.unseen, emb)
torch.manual_seed(0)
fake_map = trainer.losses.random_labels(4, (16, 16))
counts = torch.bincount(trainer.losses.random_labels(1, (256, 256)).flatten(),
                        minlength=classes.num_classes)
colors = class_palette(classes.names)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1, 3]})
axes[0].imshow(colorize(fake_map[0], colors), interpolation="nearest")
axes[0].set(title="a random label map", xticks=[], yticks=[])
label_legend(fig, classes.names, colors, classes.unseen, loc="upper left",
             bbox_to_anchor=(0.0, -0.02), ncol=7)
axes[1].bar(range(classes.num_classes), counts / counts.sum(),
            color=["tab:orange" if c in classes.unseen else "tab:blue"
                   for c in range(classes.num_classes)])
axes[1].set_xticks(range(classes.num_classes), classes.names, rotation=60, ha="right",
                   fontsize=8)
axes[1].set(ylabel="fraction of pixels", title="class frequencies (orange: unseen)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The two steps in code
#
# `StepLosses` builds every loss of one iteration into one scalar, so one `backward`
# trains all networks; each network still learns only from its own objective
# (features are detached where a network must not learn from another's loss, and $E$
# learns through a frozen copy of $C$). The training step, the heart of the method:

# %%
print(inspect.getsource(StepLosses.real_step))

# %% [markdown]
# and the fake-feature step of fine-tuning:

# %%
print(inspect.getsource(StepLosses.fake_step))

# %% [markdown]
# A few iterations by hand, on the toy world: three training steps, then the
# fine-tuning stage's two kinds of step. The loss terms are returned as a vector in the
# order of `LOSS_NAMES`:

# %%
train_set = build_dataset(cfg.data, "train")
loader = torch.utils.data.DataLoader(train_set, batch_size=t.batch_size, shuffle=True,
                                     generator=torch.Generator().manual_seed(0))
batches = iter(loader)
for i in range(3):
    images, labels = next(batches)
    parts = trainer.train_step(images, labels, i)
    print("train step     ", {k: round(v, 3) for k, v in zip(LOSS_NAMES, parts.tolist(),
                                                              strict=True)})
trainer.set_stage("finetune")
images, labels = next(batches)
parts = trainer.train_step(images, labels, t.iters)
print("train step, E frozen", {k: round(v, 3) for k, v in zip(LOSS_NAMES, parts.tolist(),
                                                                strict=True)})
parts = trainer.finetune_step()
print("fine-tune step ", {k: round(v, 3) for k, v in zip(LOSS_NAMES, parts.tolist(),
                                                           strict=True)})

# %% [markdown]
# ## Build the training step yourself
#
# The package's step is written for speed (one graph, one `backward`, frozen copies). Here
# is the same step written plainly, one objective per network, from the formulas at the
# top of the chapter, about forty lines of torch. The content loss is chapter 6's MMD. To
# compare exactly, the model is put in eval mode (no dropout, $z = \mu$) and the MMD sees
# every pixel (`mmd_max_pixels = None`), so neither version draws random numbers.

# %%
import torch.nn.functional as F  # noqa: E402

from cagnet.losses import content_loss  # noqa: E402
from cagnet.train import config_with  # noqa: E402


def my_training_step(model, x, labels, w_kl=100.0, w_ce_e=0.5, w_content=50.0):
    """Losses and gradients of E/CM, D/C and G for one batch, each network on its own."""
    cm, D = model.context, model.discriminator
    a = model.backbone(x)  # E(x): (B, d, h, w)
    h = torch.sigmoid(a)
    m1 = F.relu(cm.dilated[0](h))
    m2 = F.relu(cm.dilated[1](m1))
    m3 = F.relu(cm.dilated[2](m2))  # three context scales
    s = torch.sigmoid(cm.selector.conv(torch.cat([m1, m2, m3], 1)))  # (B, 3, h, w)
    c = F.relu(cm.fuse(torch.cat([s[:, 0:1] * m1, s[:, 1:2] * m2, s[:, 2:3] * m3], 1)))
    mu, logvar = cm.mu(c), F.relu(cm.logvar(c))
    z = mu  # eval mode: the code is its mean
    f = torch.sigmoid(a + a * torch.sigmoid(z))  # residual attention: the real feature
    y = F.interpolate(labels[:, None].float(), size=f.shape[-2:], mode="nearest")[:, 0].long()
    valid = y != 255

    def ce(logits):  # scored at the labels' resolution, as the toy preset does
        up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(up, labels, ignore_index=255)

    def gan(logit, target):  # the official L1 GAN loss over labelled pixels
        return (torch.sigmoid(logit) - target).abs()[:, 0][valid].mean()

    kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).permute(0, 2, 3, 1)[valid].mean()
    e_ce = ce(D.classify(f))
    fake = model.generator(model.embed_labels(y), z.detach())  # G(w_y, z), z detached
    d_ce_real = ce(D.classify(f.detach()))
    d_gan = gan(D(f.detach())[0], 1.0) + gan(D(fake.detach())[0], 0.0)
    g_gan = gan(D(fake)[0], 1.0)
    g_content = content_loss(fake, f.detach(), labels, max_pixels=None)
    objectives = {  # network -> (its objective, its parameters)
        "E and CM": (w_ce_e * e_ce + w_kl * kl,
                     [*model.backbone.parameters(), *cm.parameters()]),
        "D and C": (d_ce_real + d_gan, list(D.parameters())),
        "G": (g_gan + w_content * g_content, list(model.generator.parameters())),
    }
    grads = {k: torch.autograd.grad(loss, [p for p in ps if p.requires_grad], allow_unused=True)
             for k, (loss, ps) in objectives.items()}
    losses = {"e_ce": e_ce, "e_kl": kl, "d_gan": d_gan, "d_ce_real": d_ce_real,
              "g_gan": g_gan, "g_content": g_content}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


# %% [markdown]
# The package's step on the same batch and weights, and the comparison:

# %%
exact = config_with(cfg, loss={"mmd_max_pixels": None})
torch.manual_seed(0)
check = Trainer(exact, classes.num_classes, classes.seen, classes.unseen, emb)
check.model.eval()
xb = torch.stack([train_set[i][0] for i in range(4)])
yb = torch.stack([train_set[i][1] for i in range(4)])
mine, my_grads = my_training_step(check.model, xb, yb)
check.model.zero_grad(set_to_none=True)
total, parts, _ = check.losses("real", xb, yb)
total.backward()
theirs = dict(zip(LOSS_NAMES, parts.tolist(), strict=True))
for k, v in mine.items():
    print(f"{k:10s} by hand {v:.6f} | package {theirs[k]:.6f}")
    assert abs(v - theirs[k]) <= 1e-5 * max(1.0, abs(v)), k
owners = {"E and CM": [*check.model.backbone.parameters(), *check.model.context.parameters()],
          "D and C": list(check.model.discriminator.parameters()),
          "G": list(check.model.generator.parameters())}
for k, ps in owners.items():
    ps = [p for p in ps if p.requires_grad]
    diff = max(float((g - p.grad).abs().max()) if g is not None else float(p.grad.abs().max())
               for g, p in zip(my_grads[k], ps, strict=True))
    print(f"{k:8s}: {len(ps)} tensors, largest gradient difference {diff:.1e}")
    assert diff < 1e-5, k

# %% [markdown]
# ## A full toy training
#
# `cagnet.train.fit` runs both stages, checkpoints, logs the averaged losses every
# `log_every` iterations and scores the model on the test set. `cagnet.book.toy_run` calls
# it with a cache folder, so the same model is shared by chapters 4 to 10: the first of
# them to run trains it, the others load it.

# %%
result = toy_run("cagnet")
m = result.metrics
print(f"seen mIoU {m['miou_seen']:.3f} | unseen mIoU {m['miou_unseen']:.3f} | hIoU {m['hiou']:.3f}")

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 7))
real_rows = [r for r in result.history if r["step"] == "real"]
fake_rows = [r for r in result.history if r["step"] == "fake"]
plot_losses(real_rows, ["e_ce", "e_kl"], ax=axes[0, 0])
axes[0, 0].set_title("backbone and CM: CE on real features, KL")
plot_losses(real_rows, ["d_gan", "g_gan"], ax=axes[0, 1])
axes[0, 1].set_title("adversarial: D and G")
plot_losses(real_rows, ["g_content"], ax=axes[1, 0])
axes[1, 0].set_title("generator: content (MMD)")
plot_losses([r for r in real_rows if r["stage"] == "finetune"], ["d_ce_real", "d_ce_fake"],
            ax=axes[1, 1])
plot_losses(fake_rows, ["d_ce_fake"], ax=axes[1, 1])
axes[1, 1].set_title("fine-tuning: classifier CE on real and generated features")
plt.tight_layout()
plt.show()

# %% [markdown]
# What the curves say, read off the logged values rather than assumed:

# %%
first, last = real_rows[0], [r for r in real_rows if r["stage"] == "train"][-1]
print(f"backbone CE: {first['e_ce']:.3f} -> {last['e_ce']:.3f}")
print(f"KL: {first['e_kl']:.2e} -> {last['e_kl']:.2e}"
      + ("  (0: the codes have collapsed onto the prior; chapter 5 measures why)"
         if last["e_kl"] < 1e-3 else ""))
print(f"D's GAN loss (real + fake, each an L1 distance in [0, 1]): {last['d_gan']:.3f}"
      + ("  (near 1: D gives real and fake features about the same score)"
         if 0.8 < last["d_gan"] < 1.2 else ""))
print(f"G's content (MMD): {first['g_content']:.3f} -> {last['g_content']:.3f}")

# %% [markdown]
# In the fake-feature blocks the classifier learns the generated features, unseen classes
# included. Chapter 8 measures what that buys.

# %%
assert np.isfinite([r["total"] for r in result.history]).all()
assert m["miou_unseen"] > 0

# %% [markdown]
# ## Summary
#
# - Training: E and CM learn from the KL and the segmentation CE; D/C from GAN + CE on real
#   features; G from GAN + 50 MMD with the pixels' own codes.
# - Fine-tuning freezes E and CM and alternates real-image blocks with fake-feature blocks,
#   where C meets the unseen classes through G alone, with fresh Adam optimisers.
# - The package's one-graph step gives the same losses and gradients as the step written by
#   hand.
#
# ## Exercises

# %% [markdown]
# **Exercise 1.** How many fake-feature steps does the toy schedule take, and at which iteration does
# the first one run?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
from cagnet.config import get_preset
from cagnet.train import is_finetune_step

tc = get_preset("toy").train
steps = [i for i in range(tc.iters + tc.finetune_iters) if is_finetune_step(tc, i)]
print(f"{len(steps)} fake-feature steps, the first at iteration {steps[0]}")

# %% [markdown]
# **Exercise 2.** What is D's learning rate at the last training iteration and at the last fine-tuning
# iteration of the voc preset?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
from cagnet.train import step_lr

vc = get_preset("voc").train
print(f"training: {step_lr(vc.lr_d, vc.iters - 1, vc.lr_decay_d):.2e} | fine-tuning: "
      f"{step_lr(vc.lr_d_finetune, vc.finetune_iters - 1, vc.finetune_decay_d):.2e}")
