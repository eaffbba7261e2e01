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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/04_context.ipynb)

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
# # The Contextual Module
#
# ZS3Net {cite}`bucher2019zs3net` generates the feature of a pixel from its class
# embedding and random noise. But the real feature of a pixel depends on more than its
# class: a cow's pixel looks different on grass and in a stable, at the animal's edge and
# in its middle. CaGNet's idea {cite}`gu2020cagnet` is to let the generator know this
# *context*, as a per-pixel **contextual latent code** $z$ computed from the image.
#
# The **Contextual Module** (CM) sits on top of the backbone. For each pixel it
# aggregates context at three scales with dilated convolutions, lets a **context
# selector** weight the scales per pixel, and turns the result into a Gaussian
# $\mathcal{N}(\mu, \sigma^2)$ over $z$ (chapter 5). This chapter looks at the first
# half: the dilated convolutions and the selector.

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch

from cagnet.book import toy_run
from cagnet.config import get_preset
from cagnet.data import build_dataset, class_split
from cagnet.losses import resize_labels
from cagnet.models import ContextualModule
from cagnet.viz import class_palette, colorize, label_legend

torch.manual_seed(0)
cfg = get_preset("toy")
classes = class_split(cfg.data)

# %% [markdown]
# Where this chapter's pieces sit in the whole (highlighted):

# %%
from cagnet.viz import overview_figure  # noqa: E402

overview_figure(highlight=('CM',))
plt.show()

# %% [markdown]
# ## The module
#
# With $a = E(x)$ the ASPP output and $h = \sigma(a)$:
#
# 1. three chained 3×3 convolutions with ReLU and dilations 1, 2 and 5 give maps
#    $m_1, m_2, m_3$ (256 channels each at paper scale, no bias, no normalisation);
# 2. the context selector, a 3×3 convolution on $[m_1, m_2, m_3]$ followed by a sigmoid,
#    gives one weight $w_i \in (0, 1)$ per scale and pixel;
# 3. a 1×1 convolution with ReLU fuses $[w_1 m_1, w_2 m_2, w_3 m_3]$ back to $d$
#    channels; two 3×3 convolutions read $\mu$ and $\log \sigma^2$ from it.
#
# The package's `forward` is short enough to read in full:

# %%
print(inspect.getsource(ContextualModule.forward))

# %%
# NBVAL_CHECK_OUTPUT
cm = ContextualModule(in_channels=600, hidden=256, dilations=(1, 2, 5))
for name, p in cm.named_parameters():
    print(f"{name:18s} {tuple(p.shape)}")
print(f"total {sum(p.numel() for p in cm.parameters()):,} parameters")

# %% [markdown]
# ## Three receptive fields
#
# Chained, the dilated convolutions see 3×3, 7×7 and 17×17 positions of the feature map:
# $1 + 2 \cdot 1 = 3$, $3 + 2 \cdot 2 = 7$, $7 + 2 \cdot 5 = 17$. At output stride 8 the
# last is a 136-pixel window of the image: $m_1$ describes the pixel's immediate
# surroundings, $m_3$ the object and what it stands on. The gradient of one position of
# each map with respect to the input of CM shows the three windows:

# %%
toy_cm = ContextualModule(cfg.model.embed_dim, cfg.model.context_hidden,
                          cfg.model.context_dilations)
a = torch.randn(1, cfg.model.embed_dim, 33, 33, requires_grad=True)
maps, m = [], torch.sigmoid(a)
for conv in toy_cm.dilated:
    m = torch.relu(conv(m))
    maps.append(m)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for i, (ax, mi) in enumerate(zip(axes, maps, strict=True)):
    (g,) = torch.autograd.grad(mi[0, :, 16, 16].sum(), a, retain_graph=True)
    support = (g[0].abs().sum(0) > 0).float()
    ax.imshow(support, cmap="Blues", vmin=0, vmax=1.2)
    side = int(support.sum(0).gt(0).sum())
    ax.set_title(f"$m_{i + 1}$ (dilation {cfg.model.context_dilations[i]}): {side}×{side}")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Input positions that reach one position of each map")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What the context selector chooses
#
# To see the selector at work we need a trained CaGNet. The next cell trains one on the
# toy world (a few minutes on a CPU) or loads it from the cache; chapters 5 to 10 use
# the same model. Then we run the model on test images and draw the three weights
# $w_1, w_2, w_3$ of every pixel.

# %%
result = toy_run("cagnet")
model = result.model.eval()
test_set = build_dataset(cfg.data, "test")
print(f"toy CaGNet: seen mIoU {result.metrics['miou_seen']:.3f}, "
      f"unseen mIoU {result.metrics['miou_unseen']:.3f}, hIoU {result.metrics['hiou']:.3f}")

# %%
idx = [0, 1, 2, 3]
images = torch.stack([test_set[i][0] for i in idx])
labels = torch.stack([test_set[i][1] for i in idx])
with torch.no_grad():
    ctx = model.context(model.backbone(images))
weights = ctx.weights  # (B, 3, h, w)
print("selector weights:", tuple(weights.shape), "in", (float(weights.min()), float(weights.max())))
colors = class_palette(classes.names)
fig, axes = plt.subplots(len(idx), 5, figsize=(11, 2.3 * len(idx)))
for row, i in enumerate(idx):
    axes[row, 0].imshow(test_set.images[i].permute(1, 2, 0))
    axes[row, 1].imshow(colorize(labels[row], colors), interpolation="nearest")
    for s in range(3):
        im = axes[row, 2 + s].imshow(weights[row, s], vmin=0, vmax=1, cmap="viridis")
    for ax, title in zip(axes[row], ["image", "label", "$w_1$ (3×3)", "$w_2$ (7×7)",
                                     "$w_3$ (17×17)"], strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(title)
fig.colorbar(im, ax=axes, shrink=0.6, label="selector weight, on [0, 1]")
label_legend(fig, classes.names, colors, classes.unseen, loc="upper left",
             bbox_to_anchor=(0.0, 0.0), ncol=6)
plt.show()

# %% [markdown]
# Do the weights follow the image? A selector that helps should weight the scales
# differently at object boundaries, inside objects and on backgrounds. A selector that
# training has switched off outputs $\sigma(0) = 0.5$ for every scale at every pixel.
# Averaged over the whole test set, per class of the pixel (things vs stuff, seen vs
# unseen):

# %%
sums = torch.zeros(classes.num_classes, 3)
counts = torch.zeros(classes.num_classes)
loader = torch.utils.data.DataLoader(test_set, batch_size=50)
with torch.no_grad():
    for x, y in loader:
        w = model.context(model.backbone(x)).weights  # (B, 3, h, w)
        y = resize_labels(y, w.shape[-2:]).flatten()
        w = w.permute(0, 2, 3, 1).reshape(-1, 3)
        sums.index_add_(0, y, w)
        counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float))
mean_w = (sums / counts[:, None]).numpy()
fig, ax = plt.subplots(figsize=(11, 3.5))
xs = np.arange(classes.num_classes)
for s in range(3):
    ax.bar(xs + (s - 1) * 0.27, mean_w[:, s], 0.27, label=f"$w_{s + 1}$")
names = [n + (" *" if i in classes.unseen else "") for i, n in enumerate(classes.names)]
ax.set_xticks(xs, names, rotation=60, ha="right", fontsize=8)
ax.set(ylabel="mean weight", title="Context selector weights per class (* unseen)")
ax.legend()
plt.tight_layout()
plt.show()

# %%
per_scale = weights.mean((0, 2, 3))  # (3,): each scale's mean weight
within = float(weights.std((0, 2, 3)).mean())  # spread over pixels, within each scale
print("mean weight of each scale:", ", ".join(f"w{s + 1} {float(v):.2f}"
                                             for s, v in enumerate(per_scale)))
print(f"spread (standard deviation) over pixels, within a scale: {within:.4f}")
between = float(per_scale.max() - per_scale.min())
if within < 0.01 and between < 0.01:
    print("The selector is switched off on this run: every scale gets about the same weight "
          "at every pixel. Chapter 5 measures the consequence for the latent code.")
elif within < 0.05:
    print(f"The selector prefers some scales (its means differ by {between:.2f}) but hardly "
          "varies from pixel to pixel: every pixel weighs the three scales about alike.")
else:
    print("The selector weights the three context scales differently from pixel to pixel.")
assert ((weights > 0) & (weights < 1)).all()

# %% [markdown]
# ### The selector of a CaGNet whose codes live
#
# The model above is the official CaGNet, and chapter 5 shows that its codes collapse. Its
# recipe for codes that carry context trains the same module differently. That run is
# `live-centred` on the [results page](../book/results.md). Does its selector weigh the
# scales differently inside objects, at their edges and on open stuff? Below, the weights
# of both models, averaged over each kind of pixel of the 400 test images
# (`cagnet.context_eval.selector_by_region`). The `live-centred` run is shown once the
# results page's command has trained it; this chapter does not train it.

# %%
from cagnet.book import results_run  # noqa: E402
from cagnet.context_eval import REGIONS, selector_by_region  # noqa: E402
from cagnet.data.toy import STUFF  # noqa: E402

live = results_run("live-centred")
selectors = {"official CaGNet": model}
if live is None:
    print("the live-centred run has not been trained yet, so only the official model is "
          "shown (benchmarks/toy_results.py trains it; see the results page)")
else:
    selectors["live-centred"] = live.model.eval()
by_region = {name: selector_by_region(m, loader, range(len(STUFF)))
             for name, m in selectors.items()}
fig, axes = plt.subplots(1, len(by_region), figsize=(5.5 * len(by_region), 3.4), squeeze=False)
for ax, (name, r) in zip(axes[0], by_region.items(), strict=True):
    xs = np.arange(len(REGIONS))
    for s in range(3):
        ax.bar(xs + (s - 1) * 0.27, r["mean"][:, s], 0.27, yerr=r["std"][:, s], capsize=2,
               label=f"$w_{s + 1}$")
    ax.set_xticks(xs, REGIONS, rotation=15)
    gap = float((r["mean"].amax(0) - r["mean"].amin(0)).max())
    ax.set(ylim=(0, 1.05), ylabel="mean weight (bar: ± sd over pixels)",
           title=f"{name}: regions differ by ≤ {gap:.3f}")
    ax.legend(fontsize=8, ncol=3)
    print(f"{name}: " + "; ".join(
        f"{reg} " + "/".join(f"{v:.2f}" for v in r["mean"][k].tolist())
        for k, reg in enumerate(REGIONS)) + f"  (w1/w2/w3; {r['count'].sum()} pixels)")
plt.tight_layout()
plt.show()

# %%
for name, r in by_region.items():
    scale_gap = float((r["mean"].amax(1) - r["mean"].amin(1)).mean())  # between scales
    region_gap = float((r["mean"].amax(0) - r["mean"].amin(0)).max())  # between regions
    within = float(r["std"].mean())
    print(f"{name}: scales differ by {scale_gap:.3f} on average, regions by at most "
          f"{region_gap:.3f}, pixels within a region by {within:.3f} (sd)")
    if scale_gap < 0.05:
        print("  -> the selector weighs the three scales almost alike everywhere: it hardly "
              "chooses between them")
    elif region_gap < max(0.05, within):
        print("  -> the selector prefers some scales to others, but the same ones inside "
              "objects, at edges and on stuff: its choice hardly depends on the pixel")
    else:
        print("  -> the selector's choice of scale depends on where the pixel lies")

# %% [markdown]
# The official CaGNet's selector (the trained one, `model.selector = "trained"`) chooses
# nothing: it gives each scale 0.50 inside objects, at their edges and on open stuff, with
# no spread over pixels (0.000 above), the $\sigma(0) = 0.5$ of a switched-off selector.
# The maps it reads are dead (chapter 5: almost no active units in $m_1$ and $m_2$, 2% in
# $m_3$), and a bias-free convolution of zeros is 0. Its weights would reach nothing
# anyway: the fused map after it is dead too, so the codes are 0 (chapter 5). In the run
# with live codes (shown above when the results page's command has trained it) the
# selector has made a clear choice, the same order at every kind of pixel: $w_1 \approx 1$
# for the 3 × 3 scale, $w_3$ at most 0.04 for the 17 × 17 one, and $w_2$, for the 7 × 7
# one, in between. How much of the middle scale it lets in depends a little on where the
# pixel lies: $w_2$ is 0.63 inside things and 0.65 at their edges, 0.72 on stuff by a
# thing and 0.74 on open stuff. That gap (0.102 at most) is larger than the spread among
# the pixels of one region (sd 0.028), hence the printed verdict, but small next to the
# gaps between the scales. On the toy world a thing looks alike on every stuff, so its
# own colour does not tell the context; the features CM reads do, since each position of
# the toy backbone's output sees 143 pixels (chapter 3), more than the whole 64 × 64
# image. Even the smallest scale can therefore hold the stuff around a thing. A world
# whose context only a view wider than the backbone's reveals would ask more of the
# selector.

# %% [markdown]
# **Explore.** Pick a test image and a pixel, and see what CM does there: the three
# selector weights and the pixel's code $\mu$ (its first 16 channels). The slider needs a
# running kernel and draws the official CaGNet, whose $\mu$ is 0 at every pixel
# (chapter 5); `inspect_pixel(image, row, col, net=live.model)` draws the live-codes model.
# The static figure below shows the `live-centred` model (the official one where that run
# has not been trained) at three pixels of the first test image: inside a thing, two
# cells to its left (near its edge) and on open stuff (the image's top-left cell). Its
# $\mu$ is not 0, and each of the three pixels has a code of its own. The selector gives
# $w_1 = 1$ at all three; $w_2$ is lowest inside the thing, and $w_3$ is near 0 except at
# the top-left cell.

# %%
import ipywidgets as widgets  # noqa: E402


def inspect_pixel(image=0, row=8, col=8, axes=None, net=None):
    net = net if net is not None else model
    x1 = test_set[image][0][None]
    with torch.no_grad():
        c1 = net.context(net.backbone(x1))
    axes = axes if axes is not None else plt.subplots(1, 3, figsize=(11, 3))[1]
    axes[0].imshow(test_set.images[image].permute(1, 2, 0))
    stride = x1.shape[-1] // c1.mu.shape[-1]
    axes[0].scatter([col * stride + stride / 2], [row * stride + stride / 2], s=80,
                    facecolors="none", edgecolors="white", linewidths=2)
    axes[0].set(title=f"image {image}, cell ({row}, {col})", xticks=[], yticks=[])
    axes[1].bar(["$w_1$", "$w_2$", "$w_3$"], c1.weights[0, :, row, col].numpy())
    axes[1].set(ylim=(0, 1), title="selector weights, on [0, 1]")
    axes[2].bar(range(16), c1.mu[0, :16, row, col].numpy())
    axes[2].set(title=r"$\mu$, first 16 channels", xlabel="channel", xticks=range(0, 16, 3))
    return axes


# %% tags=["remove-output"]
widgets.interact(lambda image, row, col: (inspect_pixel(image, row, col), plt.show()),
                 image=widgets.IntSlider(0, 0, 15), row=widgets.IntSlider(8, 0, 15),
                 col=widgets.IntSlider(8, 0, 15))

# %%
y0 = resize_labels(test_set[0][1][None], (16, 16))[0]
thing = (y0 >= 4).nonzero()
inside = thing[len(thing) // 2].tolist() if len(thing) else [8, 8]
stuff_px = (y0 < 4).nonzero()[0].tolist()
edge = [inside[0], max(inside[1] - 2, 0)]
shown_net, shown_name = ((live.model, "live-centred") if live is not None
                          else (model, "official CaGNet"))
fig, axes = plt.subplots(3, 3, figsize=(11, 8.5))
for k, (name, (r, c)) in enumerate((("inside a thing", inside), ("near its edge", edge),
                                    ("open stuff", stuff_px))):
    inspect_pixel(0, r, c, axes[k], net=shown_net)
    axes[k, 0].set_ylabel(name)
fig.suptitle(f"{shown_name}: three pixels of test image 0")
plt.tight_layout()
plt.show()

# %% [markdown]
# The selector's output is only half of the module's job. The fused context becomes the
# mean and variance of the latent code $z$ — the subject of the next chapter.

# %% [markdown]
# ## Summary
#
# - The Contextual Module reads each pixel's surroundings at three scales (dilated 3x3
#   convolutions, dilations 1, 2, 5) and a context selector weighs the scales per pixel.
# - The fused context becomes a Gaussian over the pixel's latent code (next chapter).
# - The official selector has a ReLU before its sigmoid and is never trained; here it is
#   trained by default, the official one an option (`model.selector`).
# - In the official toy CaGNet the maps the selector reads are dead, so it gives every
#   scale 0.5 at every pixel, and its codes are dead too; with live codes (chapter 5) it
#   keeps the smallest scale, lets in part of the middle one (a little more on stuff than
#   on things) and all but shuts the widest.
#
# ## Exercises

# %% [markdown]
# **Exercise 1.** Three chained 3x3 convolutions with dilations 1, 2 and 5: how many pixels does each
# output see? Check the formula rf = 1 + sum 2 r on a single impulse.
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
import torch
import torch.nn.functional as F

x = torch.zeros(1, 1, 41, 41)
x[0, 0, 20, 20] = 1.0
for k, r in enumerate((1, 2, 5), 1):
    x = F.conv2d(x, torch.ones(1, 1, 3, 3), padding=r, dilation=r)
    width = int((x[0, 0, 20] > 0).sum())
    print(f"after conv {k}: {width} px wide (formula {1 + 2 * sum((1, 2, 5)[:k])})")

# %% [markdown]
# **Exercise 2.** The official selector: check that its weights lie in [0.5, 1) and that it has nothing
# to train.
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
from cagnet.models.context import ContextualModule

torch.manual_seed(0)
official = ContextualModule(16, 8, selector="official")
w = official(torch.randn(2, 16, 9, 9)).weights.detach()
print(f"weights in [{float(w.min()):.3f}, {float(w.max()):.3f}]; trainable selector "
      f"tensors: {sum(p.requires_grad for p in official.selector.parameters())}")
