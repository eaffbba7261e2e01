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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/01_problem.ipynb)

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
# # The problem: segmenting classes nobody labelled
#
# Semantic segmentation gives every pixel of an image a class. A supervised segmenter
# learns each class from labelled pixels, so it can only ever answer with a class it was
# trained on. **Zero-shot semantic segmentation** splits the classes in two:
#
# - **seen** classes $\mathcal{S}$: labelled pixels are available in training;
# - **unseen** classes $\mathcal{U}$: no pixel of them is labelled in training; all we know
#   is their *name*.
#
# At test time every pixel must be labelled with a class from
# $\mathcal{S} \cup \mathcal{U}$ (the *generalised* setting, which CaGNet and this book follow). This chapter
# sets up the problem: the data, the splits, the metric, and why an ordinary segmenter
# scores exactly zero on the unseen classes.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from cagnet.config import DataConfig, get_preset
from cagnet.data import build_dataset, class_split, toy_world_figure
from cagnet.metrics import ConfusionMatrix, scores

torch.manual_seed(0)
cfg = get_preset("toy")

# %% [markdown]
# ## The toy world
#
# Every chapter runs on a small synthetic world that the package draws on the fly, so
# nothing has to be downloaded and a CPU is enough. Each 64×64 image has one or two
# *stuff* regions (grass, sand, water, snow) and one to four *things* on top: a coloured
# shape, named by two real words such as "red circle". The classes and the default split:

# %%
# NBVAL_CHECK_OUTPUT
classes = class_split(cfg.data)
print(f"{classes.num_classes} classes")
print("seen:  ", classes.seen_names())
print("unseen:", classes.unseen_names())

# %% [markdown]
# The unseen classes form a Latin square: every colour and every shape is unseen exactly
# once and seen three times. No red cross is ever labelled, but red things and crosses
# are, and the words "red" and "cross" tell the model where a red cross should sit among
# the classes it knows. Objects also favour a background (crosses on grass, circles on
# water, ...), so the *context* of a pixel carries information about its class.
#
# In photographs context also changes how a thing *looks*, and CaGNet's premise is that a
# pixel's feature depends on its context. The book's world has no light
# (`data.toy_lighting=0`): a thing looks alike on every stuff. Its *features* still carry
# its context, because the backbone's view (143 pixels wide, chapter 3) covers the stuff
# around it. One class's features therefore form several *context modes*, and a generator
# that does not know the context of the feature it should produce can only aim at their
# average. Chapters 4 to 6 ask whether CaGNet's contextual code tells the generator which
# mode to produce.
#
# The lit world, `data.toy_lighting=1`, is one setting away: there a thing takes the light
# of the stuff it lies on, in green shade on grass, warm on sand, dark and blue under
# water, pale on snow. The book does not train on it, for two reasons measured on the
# results page (its `lit-` rows). CaGNet does not need the light to show its idea: as
# chapter 5 trains it, it leads ZS3Net by 0.051 and 0.036 hIoU on the two splits without
# light, by 0.047 and 0.028 with it (the same seeds, 0–2). And the light weakens every
# model, since a thing's colour becomes less certain: the three methods score hIoU 0.435
# to 0.489 lit, 0.552 to 0.612 without light.
#
# The same prior that makes context informative also offers a shortcut. A model can guess
# the shape from the stuff and be right seven times in ten without looking at the
# outline. Chapter 8 measures how far the toy models take this shortcut. Two settings
# change the world to test it. `data.toy_prior` sets the prior (0.25: shapes independent
# of stuff). `data.toy_paint_shift` makes each stuff show a paint as another paint, so
# that a colour can be named only together with its context. The results page trains the
# methods on both, in the lit world.
#
# In training the unseen pixels are set to the ignore label 255 (drawn black below);
# the images that contain them are kept.

# %%
fig = toy_world_figure(cfg.data, count=6)
plt.show()

# %% [markdown]
# The same six training images in the lit world, `data.toy_lighting=1`:

# %%
import dataclasses  # noqa: E402

fig = toy_world_figure(dataclasses.replace(cfg.data, toy_lighting=1.0), count=6)
plt.show()

# %% [markdown]
# The datasets return normalised image tensors and label maps; the training split hides
# the unseen classes, the test split keeps every class:

# %%
# NBVAL_CHECK_OUTPUT
train_set = build_dataset(cfg.data, "train")
test_set = build_dataset(cfg.data, "test")
image, label = train_set[0]
print(train_set)
print(test_set)
print("image", tuple(image.shape), image.dtype, "| label", tuple(label.shape), label.dtype)
unseen = torch.tensor(classes.unseen)
print("unseen pixels in the training labels:",
      int(sum(torch.isin(train_set[i][1], unseen).sum() for i in range(len(train_set)))))
print("unseen pixels in the test labels:    ",
      int(sum(torch.isin(test_set[i][1], unseen).sum() for i in range(len(test_set)))))

# %% [markdown]
# ## The paper's splits
#
# The same `class_split` gives the real benchmarks' splits. CaGNet holds out five
# Pascal-VOC classes, four Pascal-Context classes and fifteen COCO-Stuff classes; ZS3Net's
# VOC splits hold out 2, 4, 6, 8 or 10 classes. On Pascal-VOC the background class is
# ignored in training and testing.

# %%
# NBVAL_CHECK_OUTPUT
for preset in ("voc", "context", "cocostuff"):
    split = class_split(get_preset(preset).data)
    print(f"{preset:10s} {len(split.seen):3d} seen, {len(split.unseen):2d} unseen:",
          ", ".join(split.unseen_names()))
for n in (2, 4, 6, 8, 10):
    split = class_split(DataConfig(dataset="voc", split=f"zs3-{n}"))
    print(f"voc zs3-{n:<2d}  unseen:", ", ".join(split.unseen_names()))

# %% [markdown]
# ## The metric: harmonic mean of seen and unseen mIoU
#
# Scores come from one confusion matrix accumulated over the whole test set (rows: ground
# truth, columns: prediction). For class $c$,
# $\mathrm{IoU}_c = \frac{TP_c}{TP_c + FP_c + FN_c}$; the seen and unseen mean IoUs
# average it over $\mathcal{S}$ and $\mathcal{U}$, and the headline number is their
# harmonic mean
#
# $$\mathrm{hIoU} = \frac{2 \cdot \mathrm{mIoU}_\mathcal{S} \cdot \mathrm{mIoU}_\mathcal{U}}
#                        {\mathrm{mIoU}_\mathcal{S} + \mathrm{mIoU}_\mathcal{U}}.$$
#
# A harmonic mean is dominated by the smaller of the two: perfect seen classes and no
# unseen class give hIoU = 0. A three-class example (class 2 unseen), first with a model
# that never predicts the unseen class, then with one that finds half of it:

# %%
# NBVAL_CHECK_OUTPUT
target = torch.tensor([[0, 0, 1, 1, 2, 2, 2, 2]])
for name, pred in [("never predicts class 2", [[0, 0, 1, 1, 0, 1, 0, 1]]),
                   ("finds half of class 2 ", [[0, 0, 1, 1, 2, 2, 0, 1]])]:
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor(pred), target)
    s = scores(cm.matrix, seen=[0, 1], unseen=[2])
    print(f"{name}: mIoU seen {s['miou_seen']:.3f}, unseen {s['miou_unseen']:.3f}, "
          f"mIoU {s['miou']:.3f}, hIoU {s['hiou']:.3f}")

# %%
S, U = np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 101))
H = np.where(S + U > 0, 2 * S * U / np.maximum(S + U, 1e-12), 0)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
cs = axes[0].contourf(S, U, H, levels=20, cmap="viridis")
fig.colorbar(cs, ax=axes[0], label="hIoU")
axes[0].contour(S, U, (S + U) / 2, levels=[0.5], colors="white", linestyles="--")
axes[0].set(xlabel="mIoU seen", ylabel="mIoU unseen", title="hIoU (dashed: arithmetic mean 0.5)")
for s in (0.4, 0.6, 0.8):
    u = np.linspace(0, 1, 101)
    axes[1].plot(u, 2 * s * u / (s + u + 1e-12), label=f"mIoU seen = {s}")
axes[1].set(xlabel="mIoU unseen", ylabel="hIoU", title="unseen classes decide the score")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Why a seen-only segmenter scores 0 on unseen classes
#
# A segmenter's last layer gives each pixel one score (logit) per class, and training
# minimises the cross-entropy of the labelled pixels. Unseen pixels are ignored, so an
# unseen class never appears as a *target*: its logit only ever receives the gradient
# $\partial \mathcal{L}/\partial s_u = p_u > 0$ that pushes it *down* on every labelled
# pixel. After training, it is never the largest logit and the class is never predicted.
#
# We can watch this happen with the package's classifier $C$ (one hidden layer on
# pixel features, chapter 6) trained on synthetic "features": one Gaussian cluster per
# class, with the unseen class's pixels ignored as in training.

# %%
from cagnet.losses import segmentation_ce
from cagnet.models import Discriminator

g = torch.Generator().manual_seed(0)
K, d, unseen_class = 4, 8, 3
centres = 2.0 * torch.randn(K, d, generator=g)


def sample(n_per_class):  # features (1, d, 1, N) and labels (1, 1, N): a 1-pixel-high "image"
    y = torch.arange(K).repeat_interleave(n_per_class)
    f = centres[y] + torch.randn(len(y), d, generator=g)
    return f.T[None, :, None, :], y[None, None, :]


C = Discriminator(in_channels=d, hidden=32, num_classes=K, dropout=0.0)
opt = torch.optim.Adam(C.parameters(), lr=1e-2)
unseen_logit, seen_logit = [], []
for _ in range(300):
    f, y = sample(64)
    y_train = y.masked_fill(y == unseen_class, 255)  # unseen pixels are not labelled
    logits = C.classify(f)  # (1, K, 1, N)
    loss = segmentation_ce(logits, y_train)
    opt.zero_grad()
    loss.backward()
    opt.step()
    unseen_logit.append(logits[0, unseen_class].mean().item())
    seen_logit.append(logits[0, :unseen_class].mean().item())

f, y = sample(500)
pred = C.classify(f).argmax(1)
is_unseen = y == unseen_class
print(f"pixels predicted as the unseen class: {int((pred == unseen_class).sum())} "
      f"of {pred.numel()}")
print("the unseen class's pixels are predicted as:",
      {int(c): int(n) for c, n in zip(*pred[is_unseen].unique(return_counts=True), strict=True)})

# %%
plt.figure(figsize=(6, 3.5))
plt.plot(seen_logit, label="mean logit of the seen classes")
plt.plot(unseen_logit, label="mean logit of the unseen class")
plt.xlabel("training step")
plt.ylabel("logit")
plt.title("Cross-entropy on seen pixels only pushes the unseen logit down")
plt.legend()
plt.show()
assert (pred == unseen_class).sum() == 0

# %% [markdown]
# The unseen class's pixels are not mistaken for nothing: they are absorbed by whichever
# seen classes lie closest. Its IoU is 0, and so is the hIoU, however good the seen
# classes are. Chapter 3 trains a real seen-only segmenter on the toy world and finds the
# same. To do better, the classifier needs training examples of the unseen classes, and
# the only thing we have of them is their name. The next chapter turns names into
# vectors; the rest of the book turns those vectors into *features* a classifier can
# learn from.

# %% [markdown]
# ## Summary
#
# - Zero-shot segmentation labels every pixel with a seen *or* an unseen class, having
#   seen labelled pixels of the seen classes only; the unseen classes are known by name.
# - A method is scored by the seen and unseen mIoU and their harmonic mean, hIoU, which is
#   high only when both are.
# - The toy world has things named by two real words (colour, shape) on four kinds of stuff.
#   A thing looks alike on every stuff, but the backbone sees the stuff around it, so a
#   thing's features carry its context.
#
# ## Exercises

# %% [markdown]
# **Exercise 1.** The harmonic mean punishes imbalance. Compute the hIoU and the arithmetic mean of seen
# and unseen mIoU for CaGNet's published Pascal-VOC numbers (0.784, 0.266) and for a
# model that ignores the unseen classes (0.80, 0.0).
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
for seen, unseen in ((0.784, 0.266), (0.80, 0.0)):
    hiou = 2 * seen * unseen / (seen + unseen) if seen + unseen else 0.0
    print(f"seen {seen}, unseen {unseen}: hIoU {hiou:.3f}, arithmetic mean {(seen + unseen) / 2:.3f}")

# %% [markdown]
# **Exercise 2.** What fraction of the toy training pixels carry the ignore label because they belong to
# an unseen class? (Hint: compare a training label map with the rendered one.)
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
from cagnet.config import get_preset
from cagnet.data import build_dataset

toy = get_preset("toy")
ds = build_dataset(toy.data, "train")
ignored = sum(int((ds[i][1] == 255).sum()) for i in range(100))
print(f"ignored: {ignored / (100 * 64 * 64):.1%} of the pixels of 100 training images")
