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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/05_latent.ipynb)

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
# # Latent codes, KL and residual attention
#
# The Contextual Module ends in two 3×3 convolutions that read a mean $\mu$ and a
# log-variance $\log\sigma^2$ for every pixel. The **contextual latent code** is a
# sample
#
# $$z = \mu + \epsilon \odot \exp\left(\tfrac{1}{2}\log\sigma^2\right),
#   \qquad \epsilon \sim \mathcal{N}(0, I)$$
#
# in training, and $z = \mu$ at test time. The code has two jobs:
#
# - for **seen** pixels, $z$ is the generator's context input: $G(w_c, z)$ should
#   reproduce the real feature of a pixel of class $c$ *in that context*;
# - for **unseen** classes there are no pixels, hence no $\mu$. Fine-tuning therefore
#   draws $z \sim \mathcal{N}(0, I)$. That only works if the codes of real pixels look
#   like draws from $\mathcal{N}(0, I)$, which a KL term enforces, as in a variational
#   auto-encoder {cite}`kingma2014vae`.
#
# Finally, $z$ feeds back into the segmentation network through **residual attention**.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from cagnet.book import toy_run
from cagnet.config import get_preset
from cagnet.data import build_dataset, class_split
from cagnet.losses import kl_divergence, resize_labels
from cagnet.viz import colorize, palette

torch.manual_seed(0)
cfg = get_preset("toy")
classes = class_split(cfg.data)

# %% [markdown]
# ## The reparameterisation trick
#
# Sampling is not differentiable, but $\mu + \epsilon\,\sigma$ with $\epsilon$ drawn
# independently is: the gradient reaches $\mu$ and $\log\sigma^2$, so the convolutions
# that produce them can learn.

# %%
# NBVAL_CHECK_OUTPUT
mu = torch.tensor([0.5, -1.0], requires_grad=True)
logvar = torch.tensor([0.0, 1.0], requires_grad=True)
eps = torch.tensor([1.0, 2.0])  # a fixed draw, to make the numbers checkable
z = mu + eps * torch.exp(0.5 * logvar)
z.sum().backward()
print("z =", z.detach().numpy().round(4))
print("dz/dmu =", mu.grad.numpy(), "| dz/dlogvar = eps * sigma / 2 =", logvar.grad.numpy().round(4))

# %% [markdown]
# ## The KL term
#
# For a diagonal Gaussian, $\mathrm{KL}\big(\mathcal{N}(\mu, \sigma^2) \,\|\,
# \mathcal{N}(0, I)\big) = \tfrac{1}{2} \sum_j (\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2)$.
# `cagnet.losses.kl_divergence` averages the per-element term over all elements; the
# backbone's loss weights it by 100 (official value). The official code also puts a ReLU
# on $\log\sigma^2$, so $\sigma \ge 1$: the codes can be noisy but never collapse to a
# point.

# %%
# NBVAL_CHECK_OUTPUT
zero = torch.zeros(1, 4, 2, 2)
print("KL(mu=0, logvar=0) =", float(kl_divergence(zero, zero)))
print("KL(mu=1, logvar=0) =", float(kl_divergence(zero + 1, zero)))
print("KL(mu=0, logvar=1) =", round(float(kl_divergence(zero, zero + 1)), 4))

# %%
m = np.linspace(-3, 3, 121)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].plot(m, 0.5 * m**2)
axes[0].set(xlabel=r"$\mu$", ylabel="KL per element", title=r"$\log\sigma^2 = 0$")
lv = np.linspace(-3, 3, 121)
axes[1].plot(lv, 0.5 * (np.exp(lv) - 1 - lv))
axes[1].axvspan(-3, 0, color="grey", alpha=0.2, label="removed by the ReLU")
axes[1].set(xlabel=r"$\log\sigma^2$", title=r"$\mu = 0$")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Residual attention
#
# The feature the classifier reads is not $h = \sigma(a)$ but
#
# $$f = \sigma\big(a + a \odot \sigma(z)\big),$$
#
# the backbone output $a$ amplified channel by channel and pixel by pixel by an attention
# $\sigma(z) \in (0, 1)$ computed from context. Through this path the segmentation loss
# trains the Contextual Module, so $z$ must carry information that helps classify the
# pixel, not just satisfy the KL term.
#
# ## What the trained codes look like
#
# The trained toy CaGNet (from the cache, or trained here as in chapter 4):

# %%
result = toy_run("cagnet")
model = result.model.eval()
test_set = build_dataset(cfg.data, "test")
x = torch.stack([test_set[i][0] for i in range(64)])
y = torch.stack([test_set[i][1] for i in range(64)])
with torch.no_grad():
    a = model.backbone(x)
    ctx = model.context(a)
y_small = resize_labels(y, a.shape[-2:])
kl_map = 0.5 * (ctx.mu**2 + ctx.logvar.exp() - 1 - ctx.logvar).mean(1)  # (B, h, w)
sigma = (0.5 * ctx.logvar).exp()
print("z:", tuple(ctx.z.shape), f"| mean of mu {float(ctx.mu.mean()):.3f}, "
      f"std of mu {float(ctx.mu.std()):.3f}, mean sigma {float(sigma.mean()):.3f}")
print(f"KL per element: mean {float(kl_map.mean()):.4f}, max {float(kl_map.max()):.4f}")

# %%
colors = palette(classes.num_classes)
fig, axes = plt.subplots(3, 4, figsize=(10, 7.5))
attention = torch.sigmoid(ctx.z).mean(1)
for col in range(4):
    axes[0, col].imshow(colorize(y_small[col], colors), interpolation="nearest")
    im1 = axes[1, col].imshow(kl_map[col], cmap="magma")
    im2 = axes[2, col].imshow(attention[col], cmap="viridis")
    for ax in axes[:, col]:
        ax.set_xticks([])
        ax.set_yticks([])
for ax, t in zip(axes[:, 0], ["label", "KL per pixel", r"mean attention $\sigma(z)$"],
                 strict=True):
    ax.set_ylabel(t)
fig.colorbar(im1, ax=axes[1], shrink=0.8)
fig.colorbar(im2, ax=axes[2], shrink=0.8)
plt.show()

# %% [markdown]
# ## What $z$ encodes, measured
#
# If $z$ carries context, then the generator's output for a pixel should depend on it,
# and the code of the *right* context should bring the fake closer to the real feature
# at that pixel. We generate, for the same label maps,
#
# 1. $G(w, \mu)$ with the pixel's own code,
# 2. $G(w, \mu')$ with the codes of *another* image (same class, wrong context),
# 3. $G(w, z)$ with $z \sim \mathcal{N}(0, I)$, as fine-tuning does,
#
# and compare each with the real feature $f$ of that pixel.

# %%
real = ctx.feature  # (B, d, h, w)
valid = y_small != 255
with torch.no_grad():
    torch.manual_seed(0)
    own = model.generate(y_small, ctx.mu)
    other = model.generate(y_small, ctx.mu.roll(1, dims=0))
    noise = model.generate(y_small, None)


def dist(f):  # mean Euclidean distance to the real feature over labelled pixels
    return float((f - real).norm(dim=1)[valid].mean())


rows = {"own code (z = mu)": dist(own), "another image's code": dist(other),
        "z ~ N(0, I)": dist(noise)}
for k, v in rows.items():
    print(f"{k:22s} distance to the real feature: {v:.3f}")
spread = float((noise - own).norm(dim=1)[valid].mean())
# for scale: how far does the fake move when the *class* changes instead (same code)?
shifted = torch.where(valid, (y_small + 1) % classes.num_classes, y_small)
with torch.no_grad():
    between = float((model.generate(shifted, ctx.mu) - own).norm(dim=1)[valid].mean())
print(f"change of G(w, z) when z is resampled: {spread:.3f} "
      f"(changing the class instead: {between:.3f})")

# %%
plt.figure(figsize=(6, 3.2))
plt.barh(list(rows), list(rows.values()), color=["tab:green", "tab:orange", "tab:red"])
plt.xlabel("mean distance of G(w, ·) to the real feature")
plt.title("The pixel's own context code gives the closest fake")
plt.gca().invert_yaxis()
plt.tight_layout()
plt.show()

# %%
gap = rows["another image's code"] - rows["own code (z = mu)"]
print(f"advantage of the pixel's own code over another image's: {gap:.4f}")
if gap < 0.01 * rows["own code (z = mu)"]:
    print("On this run the codes carry no information about the pixel: mu is (almost) 0 "
          "everywhere, so G(w, mu) is the same in every context. See 'When the code "
          "collapses' below.")
else:
    print("The codes are informative: with its own code the generator lands closest to the "
          "real feature.")

# %% [markdown]
# ## When the code collapses
#
# Two forces act on $\mu$ and $\log\sigma^2$. The KL term (weight 100) pulls every pixel's
# Gaussian to $\mathcal{N}(0, I)$. Only the residual attention pulls the other way: a
# code that helps the classifier lowers the segmentation loss (weight 0.5). The
# generator does not: its input $z$ is detached, so no gradient reaches CM from $G$. If
# the KL term wins — or the module's ReLUs die, so that its maps are all zero — then
# $\mu = 0$ and $\log\sigma^2 = 0$ for every pixel: the KL is exactly 0, the attention is
# $\sigma(0) = 0.5$ everywhere, the classifier's feature becomes $\sigma(1.5\,a)$, and the
# generator's "contextual" input in training is pure noise. CaGNet then behaves like
# ZS3Net. Measuring the codes, as above, is how to tell which case a trained model is in;
# the KL per pixel and the spread of $\mu$ are the quickest signs.
#
# On the toy world it is not the KL term that wins. Trained with KL weight 1 or 0.01
# instead of 100 (`cagnet.train.config_with(get_preset("toy"), loss={"w_kl": 1.0})`,
# seed 0), the CaGNet still ends with a spread of $\mu$ over a test image's pixels of
# $2 \cdot 10^{-4}$ and $1 \cdot 10^{-3}$ (hIoU 0.57 and 0.57, inside the spread over
# seeds on the [results page](../book/results.md)): the segmentation loss finds no use
# for the codes here. Letting the generator's losses reach CM ($z$ not detached) made
# training diverge within 20 iterations at KL weights 100 and 0.1; at weight 1 it ran,
# but after 200 iterations its segmentation cross-entropy was still 1.97.
#
# When the codes are informative, sampled codes give the generated features a spread of
# plausible contexts, which is what fine-tuning relies on when it draws $z \sim
# \mathcal{N}(0, I)$ for unseen classes. Chapter 6 looks at the generator that consumes
# them, and at how it is trained.
