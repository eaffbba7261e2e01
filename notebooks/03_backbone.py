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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/03_backbone.ipynb)

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
# # The backbone: DeepLabv2
#
# CaGNet's feature extractor $E$ is DeepLabv2 {cite}`chen2018deeplab`: a ResNet-101
# {cite}`he2016resnet` whose last two stages trade striding for *dilation*, followed by
# an *atrous spatial pyramid pooling* (ASPP) head. Its output $E(x)$ has one 600-d vector
# per position of a map 8 times smaller than the image — the same width as the class
# embeddings of chapter 2, which is what will let a generator produce features of
# unseen classes from their embeddings. This chapter looks at the three ideas inside
# $E$ (dilation, output stride, ASPP), measures its receptive field, and trains a
# *seen-only* segmenter on the toy world to confirm chapter 1's prediction.

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch

from cagnet.book import toy_run
from cagnet.config import get_preset
from cagnet.data import build_dataset, class_split
from cagnet.models import ASPP, DeepLabV2, build_backbone, count_parameters
from cagnet.models.backbone import receptive_fields
from cagnet.viz import plot_iou, show_predictions

torch.manual_seed(0)
cfg = get_preset("toy")

# %% [markdown]
# Where this chapter's pieces sit in the whole (highlighted):

# %%
from cagnet.viz import overview_figure  # noqa: E402

overview_figure(highlight=('x', 'E'))
plt.show()

# %% [markdown]
# ## Dilation
#
# A 3×3 convolution with dilation $r$ reads the nine pixels $r$ apart: the same nine
# weights cover a $(2r+1) \times (2r+1)$ window. Stacking dilated convolutions grows the
# receptive field quickly without pooling, so the map keeps its resolution.

# %%
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for ax, r in zip(axes, (1, 2, 6, 12), strict=True):
    grid = np.zeros((27, 27))
    for dy in (-r, 0, r):
        for dx in (-r, 0, r):
            grid[13 + dy, 13 + dx] = 1
    ax.imshow(grid, cmap="Greys", vmin=0, vmax=1.3)
    ax.set_title(f"3×3 kernel, dilation {r}\nwindow {2 * r + 1}×{2 * r + 1}")
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Output stride: DeepLabv2-ResNet-101
#
# A plain ResNet-101 downsamples by 32. DeepLabv2 keeps the strides of the first two
# stages and replaces those of `layer3` and `layer4` by dilations 2 and 4: the output
# stride is 8, so a 368×368 training crop gives a 46×46 feature map. The ASPP head sums
# four 3×3 convolutions from 2048 to $d = 600$ channels with dilations 6, 12, 18 and 24.
#
# Built on PyTorch's *meta* device, the network has shapes but no memory and no weights,
# so we can inspect the full-size model on any machine:

# %%
# NBVAL_CHECK_OUTPUT
with torch.device("meta"):
    deeplab = DeepLabV2(embed_dim=600)
    x = torch.empty(1, 3, 368, 368)
    print("input         ", tuple(x.shape))
    h = x
    stages = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    for name, block in zip(stages, deeplab.trunk, strict=True):  # ResNet's names
        h = block(h)
        if name.startswith(("maxpool", "layer")):
            print(f"{name:14s}", tuple(h.shape))
    print("ASPP -> E(x)  ", tuple(deeplab.aspp(h).shape), "output stride", deeplab.output_stride)
print({k: f"{v:,}" for k, v in count_parameters(get_preset("voc")).items()})

# %% [markdown]
# ## Receptive field
#
# The receptive field of an output position is the input window that can influence it.
# Walking the convolutions in order, each $k \times k$ layer with dilation $r$ adds
# $(k-1) \cdot r \cdot J$ pixels, where the *jump* $J$ is the product of the strides
# before it. (ResNet's 1×1 shortcut convolutions add nothing.)

# %%
print(inspect.getsource(receptive_fields))

# %%
# NBVAL_CHECK_OUTPUT
rows = receptive_fields(deeplab.trunk)
stages = {"3": "stem", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
for index, stage in stages.items():  # trunk[3] is the stem's max-pool, trunk[4:] the layers
    last = [r for r in rows if r[0] == index or r[0].startswith(index + ".")][-1]
    print(f"after {stage:6s}: receptive field {last[1]:4d} px, jump (stride so far) {last[2]}")
trunk_rf, jump = rows[-1][1], rows[-1][2]
for r in (6, 12, 18, 24):
    print(f"ASPP branch, dilation {r:2d}: receptive field {trunk_rf + 2 * r * jump} px")

# %% [markdown]
# Every output position of the trunk already "sees" far more than a 368-pixel crop; the
# ASPP branches mix evidence from positions up to $24 \times 8 = 192$ pixels apart. The
# *theoretical* receptive field overstates what a network uses, though: the gradient of
# one output position with respect to the input (the *effective* receptive field) is
# concentrated near the centre. On the toy backbone (64×64 images):

# %%
toy = build_backbone(cfg.model).eval()
print(toy.__class__.__name__, "output stride", toy.output_stride,
      "| E(x) of a 64×64 image:", tuple(toy(torch.zeros(1, 3, 64, 64)).shape))
x = torch.randn(1, 3, 64, 64, requires_grad=True)
out = toy(x)  # (1, d, 64 / stride, 64 / stride)
c = out.shape[-1] // 2
out[0, :, c, c].sum().backward()
erf = x.grad[0].abs().sum(0)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
im = axes[0].imshow(erf, cmap="magma")
fig.colorbar(im, ax=axes[0], label="|gradient|, summed over RGB")
axes[0].set_title(f"|∂E(x)[{c},{c}] / ∂x| (untrained)")
axes[1].plot(erf.sum(0) / erf.sum(0).max(), label="column profile")
axes[1].set(xlabel="input column", ylabel="relative gradient",
            title="effective receptive field, one output")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## ASPP
#
# ASPP is just the sum of parallel dilated convolutions; in DeepLabv2 there is no
# activation after it, and $E(x)$ is that raw sum:

# %%
# NBVAL_CHECK_OUTPUT
aspp = ASPP(2048, 600, dilations=(6, 12, 18, 24))
print(aspp)
print(f"{sum(p.numel() for p in aspp.parameters()):,} parameters")

# %% [markdown]
# ## A seen-only segmenter on the toy world
#
# With $E$ and a pixel-wise classifier $C$ on top, trained with cross-entropy on the seen
# classes (unseen pixels ignored), we have the seen-only baseline (`method="seen-only"`).
# In the package, $C$ reads $\sigma(E(x))$, the sigmoid of the ASPP output, as it will in
# CaGNet. The toy preset adds one thing the paper presets do not: a BatchNorm on the toy
# backbone's output before the sigmoid (`model.feature_norm`), because a backbone trained
# from scratch with Adam pushes most of its output into the sigmoid's flat tails, where
# almost no gradient passes (63–71% of it lies beyond ±4 in the results page's `adam-` rows,
# against about 1% with the BatchNorm in chapter 8). Training takes a few minutes on a
# CPU; `fit` keeps the result in a checkpoint under the cache folder and, when the
# checkpoint is complete, only loads and scores it.

# %%
seen_only = toy_run("seen-only")
m = seen_only.metrics
print(f"seen mIoU {m['miou_seen']:.3f} | unseen mIoU {m['miou_unseen']:.3f} "
      f"| hIoU {m['hiou']:.3f} | pixel accuracy {m['pixel_acc']:.3f}")
assert m["miou_unseen"] == 0.0

# %%
classes = class_split(cfg.data)
plot_iou(m, classes.unseen_names())
plt.title("Seen-only: IoU per class on the test set (orange: unseen)")
plt.show()

# %% [markdown]
# Most pixels are labelled right (pixel accuracy 0.925) and the seen classes reach a mIoU
# of 0.654; every unseen class has IoU 0. The model mostly does find the unseen *objects* —
# in the four images below, 629 of their 976 pixels go to a seen thing and 347 to the
# stuff — but calls them by the nearest seen class, most often a seen thing of the same
# colour or shape:

# %%
test_set = build_dataset(cfg.data, "test")
model = seen_only.model.eval()
unseen = torch.tensor(classes.unseen)
idx = [i for i in range(len(test_set)) if torch.isin(test_set[i][1], unseen).any()][:4]
images = torch.stack([test_set[i][0] for i in idx])
labels = torch.stack([test_set[i][1] for i in idx])
with torch.no_grad():
    pred = model.predict(images).argmax(1)
raw = [test_set.images[i].permute(1, 2, 0).numpy() for i in idx]
show_predictions(raw, labels.numpy(), pred.numpy(), classes.names, classes.unseen)
plt.show()
on_unseen = pred[torch.isin(labels, unseen)]
print("predictions on unseen pixels:",
      {classes.names[c]: int(n) for c, n in zip(*on_unseen.unique(return_counts=True),
                                                 strict=True)})

# %% [markdown]
# ## Summary
#
# - The backbone E (DeepLabv2: dilated ResNet-101 and a summed ASPP) turns an image into one
#   d-dimensional feature per pixel at output stride 8; d is the width of the class
#   embeddings.
# - A seen-only segmenter trained on it scores 0 on the unseen classes: their pixels go to
#   seen classes that look alike.
#
# ## Exercises

# %% [markdown]
# **Exercise 1.** How many parameters does each part of the paper-scale model have, and which part
# dominates?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
from cagnet.config import get_preset
from cagnet.models import count_parameters

for part, n in count_parameters(get_preset("voc"), 21).items():
    print(f"{part:14s} {n:>12,d}")

# %% [markdown]
# **Exercise 2.** The toy backbone's receptive field: how many pixels does the last layer of its trunk
# see, against the 64-pixel image?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
import torch

from cagnet.models.backbone import build_backbone, receptive_fields

toy_backbone = build_backbone(get_preset("toy").model)
name, rf, jump = receptive_fields(toy_backbone.trunk)[-1]
print(f"last layer {name}: receptive field {rf} px, stride {jump}")
