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
from cagnet.diagnostics import code_health, format_health
from cagnet.losses import kl_divergence, resize_labels
from cagnet.viz import class_palette, colorize, label_legend

torch.manual_seed(0)
cfg = get_preset("toy")
classes = class_split(cfg.data)

# %% [markdown]
# Where this chapter's pieces sit in the whole (highlighted):

# %%
from cagnet.viz import overview_figure  # noqa: E402

overview_figure(highlight=('z', 'attention', 'f'))
plt.show()

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
# For a diagonal Gaussian,
# $\mathrm{KL}(\mathcal{N}(\mu, \sigma^2) \,\|\, \mathcal{N}(0, I)) = \tfrac{1}{2} \sum_j (\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2)$.
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
colors = class_palette(classes.names)
fig, axes = plt.subplots(3, 4, figsize=(10, 7.5))
attention = torch.sigmoid(ctx.z).mean(1)
for col in range(4):
    axes[0, col].imshow(colorize(y_small[col], colors), interpolation="nearest")
    im1 = axes[1, col].imshow(kl_map[col], cmap="magma", vmin=0,
                              vmax=max(float(kl_map[:4].max()), 1e-3))
    im2 = axes[2, col].imshow(attention[col], cmap="viridis", vmin=0, vmax=1)
    for ax in axes[:, col]:
        ax.set_xticks([])
        ax.set_yticks([])
for ax, t in zip(axes[:, 0], ["label", "KL per pixel", r"mean attention $\sigma(z)$"],
                 strict=True):
    ax.set_ylabel(t)
fig.colorbar(im1, ax=axes[1], shrink=0.8, label="KL per element (from 0)")
fig.colorbar(im2, ax=axes[2], shrink=0.8, label="attention, on [0, 1]")
label_legend(fig, classes.names, colors, classes.unseen, loc="upper left",
             bbox_to_anchor=(0.0, 0.05), ncol=6)
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
closest = min(rows, key=rows.get)
gain = 1 - rows["own code (z = mu)"] / rows["another image's code"]
plt.title(f"closest fake: {closest}; own code vs another image's: {100 * gain:+.1f}%")
plt.gca().invert_yaxis()
plt.tight_layout()
plt.show()

# %%
gap = rows["another image's code"] - rows["own code (z = mu)"]
print(f"advantage of the pixel's own code over another image's: {gap:.4f}")
if gap < 0.01 * rows["own code (z = mu)"]:
    print("On this run the codes carry no information about the pixel: mu is (almost) 0 "
          "everywhere, so G(w, mu) is the same in every context. See 'Diagnosing "
          "collapse' below.")
else:
    print("The codes are informative: with its own code the generator lands closest to the "
          "real feature.")

# %% [markdown]
# ## Diagnosing collapse
#
# Two forces act on $\mu$ and $\log\sigma^2$. The KL term (weight 100) pulls every pixel's
# Gaussian to $\mathcal{N}(0, I)$. Only the residual attention pulls the other way: a
# code that helps the classifier lowers the segmentation loss (weight 0.5). The
# generator does not: its input $z$ is detached (`self.gen(self.sample.detach())` in the
# official `model.py`), so no gradient reaches CM from $G$. If the KL term wins, or the
# module's ReLUs die so that its maps are all zero, then $\mu = 0$ and
# $\log\sigma^2 = 0$ for every pixel: the KL is exactly 0, the attention is
# $\sigma(0) = 0.5$ everywhere, and the generator's "contextual" input in training is
# pure noise. CaGNet then behaves like ZS3Net, and nothing in the losses says so.
#
# Training therefore logs CM's instruments with the losses (`cagnet.diagnostics`, in the
# run's history and in TensorBoard): the fraction of active units after each ReLU of CM
# (the three dilated maps $m_1, m_2, m_3$ and the fused map), the spread of $\mu$ over
# labelled pixels, the mean $\sigma$, the KL per element and the spread of the selector's
# weights. `python -m cagnet eval` prints the same report for any checkpoint, at any
# scale. Here is this run's:

# %%
health = [r for r in result.history if r["step"] == "real" and "cm_kl" in r]
its_h = [r["iteration"] for r in health]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for key in ("cm_active_m1", "cm_active_m2", "cm_active_m3", "cm_active_fused"):
    axes[0].plot(its_h, [r[key] for r in health], label=key[3:])
axes[0].set(title="active units after each ReLU of CM", xlabel="iteration", ylim=(0, 1))
axes[0].legend(fontsize=8)
axes[1].plot(its_h, [r["cm_mu_spread"] for r in health], label="spread of mu")
axes[1].plot(its_h, [r["cm_selector_spread"] for r in health], label="spread of selector")
axes[1].set(title="spreads over labelled pixels", xlabel="iteration", ylim=(0, None))
axes[1].legend(fontsize=8)
axes[2].plot(its_h, [max(r["cm_kl"], 1e-12) for r in health])
axes[2].set(title="KL per element (log scale; 1e-12 stands for 0)", xlabel="iteration",
            yscale="log")
plt.tight_layout()
plt.show()
print(format_health(code_health(model, x, y)))

# %% [markdown]
# What kills the codes on the toy world was found by changing one thing at a time and
# reading these instruments in short probe runs (seed 0, default split, 250 to 800
# training iterations, Kaiming-initialised heads, on the SGD backbone of the results
# page's `sgd-` rows), before the book moved to the world without light: the `sgd-` rows
# are on the lit world (`data.toy_lighting=1`). The probes are not run again in this
# chapter; their numbers are quoted from those runs, and the whole runs that followed
# them are on the results page:
#
# - **CM's learning rate.** With the official SGD the toy trunk trained from scratch at
#   $3 \cdot 10^{-2}$; with the paper's multiplier ×5, CM got 0.15 with momentum on
#   unnormalised, bias-free convolutions. The fused ReLU died within 20 iterations (0%
#   active units), and with it $\mu$, $\log\sigma^2$ and every gradient into CM: a dead
#   ReLU with no bias never recovers. At ×0.05, CM's $1.5 \cdot 10^{-3}$ (the paper
#   scale's $1.25 \cdot 10^{-3}$), its units stayed active. The toy preset trains E
#   and CM with Adam, CM at $4 \cdot 10^{-4}$ (×0.2 of the trunk's $2 \cdot 10^{-3}$;
#   chapter 8 and the results page say why). The instruments above (this chapter's run,
#   on the world without light) show what the official setting does with it: from the
#   first logged iteration on, CM's ReLUs keep under 10% of their units active; after
#   training, on 64 test images, none in $m_1$, 1% in $m_2$ and 2% in $m_3$ and the fused
#   map, and the codes die with them (spread of $\mu$ $1.8 \cdot 10^{-5}$, KL
#   $1.2 \cdot 10^{-10}$).
# - **The KL term, through the selector.** With the units alive, the spread of $\mu$ still
#   fell to 0.002 and the KL to $4 \cdot 10^{-6}$ by iteration 800: the trained selector
#   learned to switch every context scale off (mean weight 0.006), the cheapest way to
#   satisfy the KL. The official selector (a ReLU before its sigmoid, never trained,
#   `model.selector = "official"`) cannot do that, its weights stay at 0.5, but the
#   codes collapsed anyway (spread 0.007, KL 0 at iteration 250) through the fuse and
#   $\mu$ convolutions.
# - **No gradient from $G$.** Letting the generator's losses reach CM and the backbone
#   through $z$ (`model.latent_grad = "all"`, a deviation from the official code) kept the
#   codes alive (spread of $\mu$ 0.16, KL 0.017 after 800 iterations) and made them
#   informative for $G$: with its own code $G$ landed 50% closer to the real feature than
#   with another image's. But the same gradients reached the backbone, and segmentation
#   suffered: seen mIoU 0.17 after 800 iterations, against 0.53 with a detached $z$.
#
# So on the toy world, with or without light, the official setting cannot keep the codes
# alive, and the toy preset trains it anyway, as the official code does (the
# [results page](../book/results.md) reports its codes run by run: `cagnet` without light,
# `lit-cagnet` on the lit world). The next section tries the switches that revive them.

# %% [markdown]
# ## Keeping the codes alive, and what it costs
#
# The official setting leaves $z$ one reason to carry information, the residual attention,
# and on the toy world the KL term outweighs it. The package offers three switches, each a
# deviation from the official code, that give the code more to do:
#
# - `model.latent_grad = "content"`: the content loss reaches CM through $z$ (CM runs a
#   second time on $E(x)$ detached, with the same noise draw, so the backbone is not
#   pulled by it), as the reconstruction term of a conditional VAE whose encoder is CM;
#   `"all"` lets every loss of $G$ reach CM and $E$;
# - `loss.content = "l2"`: the paper's per-pixel L2 content loss instead of the official
#   MMD, and `model.logvar_relu = False`: $\sigma$ may fall below 1;
# - `loss.w_kl`: the KL weight (100 in the official configuration).
#
# `benchmarks/latent_screen.py` trains the first 800 iterations of the training stage
# with each combination (seed 0, default split) and reads the codes on the test images.
# The screen below was measured before the book moved to the world without light: on the
# lit world, with the 16-image preset of the results page's `b16-` rows (16 images a step,
# CM's dilated convs 64 wide, the MMD on 256 pixels per class). The last two columns ask
# $G$ for *another* class than the pixel's, with the pixel's own code, and let $C$ read
# the fake: the share that comes out as the asked class (with the pixel's own code, then
# with $z \sim \mathcal{N}(0, I)$), and the share $C$ reads as the pixel's true class
# ("own class").

# %%
from cagnet.book import book_results  # noqa: E402

screen = book_results("latent_screen") or []
print(f"{'variant':24s} {'seen':>5s} {'mu spread':>9s} {'KL':>8s} {'probe (chance)':>14s} "
      f"{'G gain':>7s} {'asked (own code / N(0,I))':>26s} {'own class':>9s}")
for r in screen:
    print(f"{r['variant']:24s} {r['seen']:5.3f} {r['mu_spread']:9.3g} {r['kl']:8.2g} "
          f"{r['probe_acc']:7.2f} ({r['chance']:.2f}) {100 * r['gain']:6.1f}% "
          f"{r['asked']:13.2f} / {r['asked_prior']:.2f} {r['own']:11.2f}")
if screen:
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), sharey=True)
    names = [r["variant"] for r in screen]
    axes[0].barh(names, [r["seen"] for r in screen], color="tab:blue")
    axes[0].set(xlabel="seen mIoU after 800 iterations", xlim=(0, 1))
    axes[1].barh(names, [max(r["kl"], 1e-8) for r in screen], color="tab:purple")
    axes[1].set(xscale="log", xlabel="KL per element (log; 1e-8 stands for less)")
    axes[1].axvline(0.01, color="k", ls=":", lw=1)
    axes[2].barh(names, [100 * r["gain"] for r in screen], color="tab:green")
    axes[2].set(xlabel="G: own code closer than another image's (%)")
    axes[2].axvline(10, color="k", ls=":", lw=1)
    axes[0].invert_yaxis()
    alive = [r["variant"] for r in screen if r["gain"] >= 0.1 and r["kl"] >= 0.01]
    fig.suptitle("codes that G uses (gain >= 10%, KL >= 0.01, dotted): "
                 + (", ".join(alive) if alive else "none"))
    plt.tight_layout()
    plt.show()
else:
    print("book/latent_screen.json is missing: run python benchmarks/latent_screen.py")

# %% [markdown]
# The screen says which switch does what; whether live codes *help* needs whole runs,
# fine-tuning included, scored on the unseen classes. The [results page](../book/results.md)
# trains the promising variants in full (`benchmarks/toy_results.py`); here are their
# codes and scores next to the official setting's (seed 0, default split), in three
# settings: the toy preset on the book's world without light (no prefix), the same preset
# on the lit world (`lit-`), and the SGD backbone the preset used before, also on the lit
# world (`sgd-`):

# %%
runs = (book_results("results_toy") or {}).get("runs", [])
# CaGNet's variants with the preset's backbone (no light, and lit: `lit-`) and the SGD
# backbone (`sgd-`); the other backbones and worlds are chapter 8's, self-training and
# patches chapter 10's, the 16-image preset's rows (`b16-`, `cm`) the results page's
family = [r for r in runs if r.get("spec", r["method"]).startswith("cagnet")
          and not r["method"].startswith(("adam-", "flat-", "half-light-",
                                          "sgd-norm-", "sgd-flat-", "sgd-shift-", "cm",
                                          "b16-"))
          and "self_train" not in r["spec"] and "patch_size" not in r["spec"]
          and "train.iters" not in r["spec"]  # shortened schedules: results page
          and (r["split"], r["seed"]) == ("default", 0)  # every run: the results page
          and "health" in r.get("context", {})]
print(f"{'method':28s} {'split':8s} {'unseen':>6s} {'hIoU':>5s} {'mu spread':>9s} "
      f"{'G gain':>7s} {'G draws: asked class':>20s} {'pixel class':>11s}")
for r in family:
    c = r["context"]
    f = c.get("fidelity", {})
    print(f"{r['method']:28s} {r['split']:8s} {r['unseen']:6.3f} {r['hiou']:5.3f} "
          f"{c['health']['mu_spread']:9.3g} {round(100 * c['generator']['gain'], 1) + 0.0:6.1f}% "
          f"{f.get('asked', float('nan')):20.2f} {f.get('own', float('nan')):11.2f}")
if family:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [r["context"].get("fidelity", {}).get("asked", np.nan) for r in family]
    ys = [r["unseen"] for r in family]
    ax.scatter(xs, ys, c=["tab:green" if r["context"]["generator"]["gain"] >= 0.1 else "tab:gray"
                          for r in family])
    for r, x_, y_ in zip(family, xs, ys, strict=True):
        ax.annotate(f"{r['method']} ({r['split']})", (x_, y_), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set(xlabel="G draws the asked class from a pixel's own code (share)",
           ylabel="unseen mIoU", xlim=(0, 1.05), ylim=(0, None),
           title="green: G uses its code (gain >= 10%); grey: G ignores it")
    plt.tight_layout()
    plt.show()
    live = [r for r in family if r["context"]["generator"]["gain"] >= 0.1]
    dead = [r for r in family if r["context"]["generator"]["gain"] < 0.1]
    if live and dead:
        best_live = max(live, key=lambda r: r["unseen"])
        print(f"best unseen mIoU with codes G uses: {best_live['unseen']:.3f} "
              f"({best_live['method']}, {best_live['split']}); with codes G ignores: "
              f"{min(r['unseen'] for r in dead):.3f} to {max(r['unseen'] for r in dead):.3f}")

# %% [markdown]
# What the two outputs above say (seed 0; the results page has every run):
#
# - **In the screen** (lit world, 16-image preset), three settings make codes that $G$
#   uses: every loss of $G$ reaching CM and $E$ (`all`), which cost the backbone most of
#   its seen mIoU (0.219 against the official 0.542), and the content loss alone reaching
#   CM with a KL weight of 1 (`content-l2-sigma-kl1`, $G$ 11% closer with its own code) or
#   none (`content-l2-sigma-kl0`, 75% closer), both with segmentation intact. With MMD as
#   the content loss, segmentation suffered (seen 0.488) and $G$ hardly used the code
#   (0.7%); with L2 and a KL weight of 10 or 100, the KL still won. The probe column
#   shows the other half of the story. A dead code names nothing (the official run's
#   probe, 0.22, is at or below chance, 0.28), but a code that is merely small, such as
#   `content-l2-sigma-kl10`'s ($\mu$ spread 0.025), already names the stuff under a thing
#   for most thing pixels. Context is then in the codes; what is missing is a reason for
#   $G$ to read it. And where $G$ leans on the code most (`all`, `content-l2-sigma-kl0`),
#   its own code makes it draw the pixel's class rather than the asked one (the last two
#   columns): the codes have learnt the class. With a KL weight of 1 it still draws the
#   asked class for about half of the pixels.
# - **In whole runs** on the SGD backbone (lit world), the first live codes did not
#   transfer. With its own code, $G$ of the KL-free variant (`sgd-live-kl0`) mostly draws
#   *the pixel's class* (0.57 of the pixels; the asked class 0.09), whatever class it is
#   asked for: the code has learnt the class, not only the context, and overrides the
#   embedding. Unseen fakes then look like seen classes, and unseen mIoU falls to a few
#   hundredths (0.026). An adversary that keeps the class out of $\mu$
#   (`loss.w_code_adv`, `sgd-live-kl0.1-adv1`) gives the embedding back its say, and $G$
#   ignores the code once more (gain 0.1%).
# - **Across the three settings** the rows are not comparable (the printed range "with
#   codes G ignores" mixes them), but within each the order is the same: `live-centred`
#   (next section) first in unseen mIoU, the official setting second and
#   `live-centred-shuffled` last: 0.577, 0.507 and 0.462 without light, 0.443, 0.420 and
#   0.383 on the lit world (`lit-`), 0.392, 0.381 and 0.270 on the SGD backbone (`sgd-`).
#
# This is the tension in CaGNet's design that the toy world makes visible: a code that is
# free to describe a pixel describes its class too; a code kept close to
# $\mathcal{N}(0, I)$ describes nothing. The official weights (KL 100, $\sigma \geq 1$,
# a detached $z$) sit at the second end on the toy world, lit or not (`cagnet` and
# `lit-cagnet` above: spread of $\mu$ about $10^{-5}$, $G$ gains nothing from the code).

# %% [markdown]
# ## A code without the class
#
# The two ends meet if the class is taken out of the code *before* $G$ reads it. Two
# more switches, again deviations from the official code:
#
# - `model.code_centring = True`: $G$ reads $\tilde z = z - \bar z_{c}$, each pixel's code
#   minus the mean code of its class $c$ in the batch (`cagnet.models.cagnet.centre_codes`).
#   Whatever the code says about the class cancels; what is left is how this pixel differs
#   from the other pixels of its class, such as the stuff around it. The class reaches $G$
#   through $w$ alone.
# - `model.g_code = "mu"`: $G$ reads the mean $\mu$ instead of the sample
#   $z = \mu + \epsilon\sigma$. With $\sigma$ near 1, a within-class code of a few
#   hundredths drowns in the noise and $G$ learns to ignore it: `sgd-centred-sampled` in
#   the table above is the run with centring but the sampled $z$ (gain 0%).
#
# With these, the content loss reaching CM (`latent_grad = "content"`, L2, no KL, $\sigma$
# free) and fine-tuning's fakes drawing their codes from real pixels
# (`train.fake_codes = "real"`: a seen pixel's centred code lends its context to an unseen
# class), the run is named `live-centred` on the [results page](../book/results.md). Its
# codes and scores next to the official CaGNet's and ZS3Net's on the world without light,
# over every seed and split that was run (seeds 0–5 on each split; seeds 3–5 ran as the
# results page's `-seeds3-5` rows):

# %%
from cagnet.book import mean_leads, paired_leads, pooled_results  # noqa: E402

pooled = pooled_results()  # seeds 3-5 (the `-seeds3-5` rows) join their variants


def seed_stats(name: str, split: str, key: str) -> tuple[float, float, int]:
    vals = [r[key] for r in pooled if r["method"] == name and r["split"] == split]
    if not vals:
        return float("nan"), float("nan"), 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


trio = ("cagnet", "live-centred", "zs3net")
splits_run = sorted({r["split"] for r in pooled if r["method"] == "live-centred"})
print(f"{'method':14s} {'split':8s} {'n':>2s} {'seen':>13s} {'unseen':>13s} {'hIoU':>13s}")
for split in splits_run:
    for name in trio:
        cells = [seed_stats(name, split, k) for k in ("seen", "unseen", "hiou")]
        print(f"{name:14s} {split:8s} {cells[0][2]:2d} "
              + " ".join(f"{m:.3f} ± {sd:.3f}" for m, sd, _ in cells))
if splits_run:
    fig, axes = plt.subplots(1, len(splits_run), figsize=(5 * len(splits_run), 3.4), sharey=True)
    for ax, split in zip(np.atleast_1d(axes), splits_run, strict=True):
        for i, name in enumerate(trio):
            vals = [r["hiou"] for r in pooled if r["method"] == name and r["split"] == split]
            ax.bar(i, np.mean(vals) if vals else 0, color=("tab:gray", "tab:green",
                                                          "tab:orange")[i], alpha=0.6)
            ax.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
        ax.set_xticks(range(len(trio)), trio)
        ax.set(title=f"{split} split: bars are means, dots are seeds", ylabel="hIoU")
    plt.tight_layout()
    plt.show()
    for rival in ("cagnet", "zs3net"):
        wins = paired_leads(pooled, "live-centred", rival)
        ahead = sum(d > 0 for *_, d in wins)
        by_split = "; ".join(f"{sp} {m:+.3f}" for sp, m in mean_leads(wins).items())
        print(f"live-centred minus {rival}, hIoU per run (split/seed): "
              + ", ".join(f"{sp}/{se} {d:+.3f}" for sp, se, d in wins)
              + f"; ahead in {ahead} of {len(wins)}; mean {by_split}")
    live_runs = [r["context"] for r in pooled if r["method"] == "live-centred"
                 and {"health", "generator", "probe", "fidelity"} <= set(r.get("context", {}))]
    for what, get in (("G: own context closer than another image's (%)",
                       lambda c: 100 * c["generator"]["gain"]),
                      ("probe on mu names the stuff (accuracy)", lambda c: c["probe"]["probe_acc"]),
                      ("G draws the asked class from a pixel's code",
                       lambda c: c["fidelity"]["asked"]),
                      ("KL per element", lambda c: c["health"]["kl"]),
                      ("spread of mu", lambda c: c["health"]["mu_spread"])):
        vals = [get(c) for c in live_runs]
        if vals:
            print(f"{what:48s} {min(vals):.3g} to {max(vals):.3g} over {len(vals)} runs")

# %% [markdown]
# Do the fakes really follow the context, for classes $G$ never saw? The real features of
# one unseen thing class, coloured by the stuff it lies on, fall into clusters that
# overlap but differ by context. The thing looks alike on every stuff; its feature differs
# because the backbone's view of a pixel (143 px, chapter 3) covers the stuff around the
# thing. Ask each model's $G$ for that class at the same pixels, with each pixel's own
# code (centred as in training for `live-centred`), and see where the fakes land.
# `mode_match` scores it for every thing class: the share of (class, context) cells whose
# mean fake lies nearest to the real features of *its own* context among that class's
# contexts (chance: one over the number of contexts).

# %%
from matplotlib.lines import Line2D  # noqa: E402

from cagnet.book import finished_run, spec_config  # noqa: E402
from cagnet.context_eval import (  # noqa: E402
    context_map,
    context_modes,
    features_and_codes,
    mode_match,
)
from cagnet.data.toy import STUFF  # noqa: E402

specs = {r["method"]: r["spec"] for r in runs if r["split"] == "default" and r["seed"] == 0}
# only runs already trained (by the results page's command or earlier chapters): each
# variant trains for minutes, and this figure only reads them
shown = [m for m in ("cagnet", "zs3net", "live-centred")
         if m in specs and finished_run(spec_config(specs[m], "default", 0))]
missing = [m for m in ("cagnet", "zs3net", "live-centred") if m not in shown]
if missing:
    print(f"not trained yet, so not shown: {', '.join(missing)} (the results page's command "
          "trains them)")
probe_images = [test_set[i] for i in range(200)]
probe_batches = [(torch.stack([x for x, _ in probe_images[i:i + 20]]),
                  torch.stack([y for _, y in probe_images[i:i + 20]])) for i in range(0, 200, 20)]
things = list(range(len(STUFF), len(classes.names)))
target = classes.unseen[-1]  # one unseen thing class of the default split
stuff_colours = class_palette(classes.names)[: len(STUFF)] / 255
if shown:
    fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 4.2), squeeze=False)
    for ax, name in zip(axes[0], shown, strict=True):
        mcfg = spec_config(specs[name], "default", 0)
        net = toy_run(mcfg.method, mcfg).model.eval()
        with torch.no_grad():
            reals, fakes, ctxs = [], [], []
            for xb, yb in probe_batches:
                f, code, y_small = features_and_codes(net, xb, yb)  # as G reads them
                g = net.generate(y_small, code)
                ctx_map = context_map(y_small, range(len(STUFF)))
                at = (y_small == target) & (ctx_map >= 0)
                reals.append(f.permute(0, 2, 3, 1)[at])
                fakes.append(g.permute(0, 2, 3, 1)[at])
                ctxs.append(ctx_map[at])
        reals, fakes, ctxs = torch.cat(reals), torch.cat(fakes), torch.cat(ctxs)
        centre = reals.mean(0)
        _, _, v = torch.pca_lowrank(reals - centre, q=2, center=False)
        pr, pf = ((reals - centre) @ v).numpy(), ((fakes - centre) @ v).numpy()
        cols = stuff_colours[ctxs.numpy()]
        ax.scatter(pr[:, 0], pr[:, 1], c=cols, s=6, alpha=0.35)
        ax.scatter(pf[:, 0], pf[:, 1], c=cols, s=40, marker="x", linewidths=1.2)
        score = mode_match(context_modes(net, probe_batches, range(len(STUFF)), things))
        unseen_things = [i for i, c in enumerate(things) if c in set(classes.unseen)]
        modes_u = context_modes(net, probe_batches, range(len(STUFF)),
                                [things[i] for i in unseen_things])
        su = mode_match(modes_u)
        ax.set(title=f"{name}: fakes in their context's mode\n"
                     f"all things {score['matched']:.0%}, unseen {su['matched']:.0%} "
                     f"(chance {su['chance']:.0%})", xlabel="PC 1 of the real features",
               ylabel="PC 2")
    handles = [Line2D([], [], ls="", marker="o", color=stuff_colours[i], label=f"on {n}")
               for i, n in enumerate(STUFF)]
    handles += [Line2D([], [], ls="", marker="o", color="gray", alpha=0.4, label="real"),
                Line2D([], [], ls="", marker="x", color="gray", label="fake")]
    fig.legend(handles=handles, loc="lower center", ncol=6, frameon=False)
    fig.suptitle(f"unseen class {classes.names[target]!r}, test images (seed 0, default split)")
    plt.tight_layout(rect=(0, 0.07, 1, 1))
    plt.show()

# %% [markdown]
# What the outputs of this section say (world without light; the lit world's runs are the
# `lit-` rows of the results page):
#
# - **The codes are alive and carry context.** In every `live-centred` run, asked for a
#   class at a pixel, $G$ lands 51 to 56% closer to the real feature with the pixel's own
#   (centred) code than with another image's, and it still draws the class it is asked
#   for (0.91 to 0.94 of the pixels), so the code carries context and the embedding carries
#   the class. A linear probe on $\mu$ names the stuff under a thing for 89 to 94% of thing
#   pixels. The figure shows it for an unseen class: the fakes of the official CaGNet sit
#   on one point whatever the context, ZS3Net's scatter over all contexts alike, and those
#   of `live-centred` fall into the cluster of the real features of the context they were
#   generated in. For the unseen things, 93% of `live-centred`'s (class, context) cells
#   land in their own context's mode, against 27% (official CaGNet) and 33% (ZS3Net), with
#   chance at 27%.
# - **Codes must describe the right context.** `live-centred-shuffled` trains the same
#   model with each pixel's code swapped for another labelled pixel's: the code then tells
#   $G$ nothing, $G$ learns to ignore it (gain 0%, fakes at chance among the context
#   modes; results page), and hIoU falls below `live-centred`'s (the table of variants
#   above: 0.552 against 0.643), below the official CaGNet's 0.582 on that seed too and
#   below ZS3Net's 0.576 (results page): codes that describe another pixel's context cost
#   more than codes that describe none.
# - **The attention does not use the code.** Replacing $z$ by 0 in the residual attention
#   changes no `live-centred` hIoU by more than a thousandth (the results page's code
#   table): on this world the code earns its keep through $G$ alone.
# - **Scores: ahead of ZS3Net, less clearly of the official CaGNet.** Over seeds 0–2, the
#   results page's three seeds per split, `live-centred` is ahead of ZS3Net in 6 of 6 runs,
#   by 0.051 (default) and 0.036 (alt) on average, and of the official CaGNet in 5 of 6, by
#   0.030 and 0.016. Seeds 3–5 shrink both leads: over all twelve runs (the lines above) the
#   live codes lead ZS3Net in 11 of 12, by 0.031 (default) and 0.032 (alt), and the official
#   CaGNet in 9 of 12, by 0.021 and 0.008, with per-run differences from −0.016 to +0.061:
#   within the spread between seeds of one method. The official CaGNet, whose codes are
#   dead, leads ZS3Net too, by 0.011 (default) and 0.024 (alt) over the twelve runs (chapter
#   8). ZS3Net here is the same pipeline without CM, so that part of the lead is what CM
#   does without context: while training its residual attention multiplies $E(x)$'s share
#   by a random gate $\sigma(z)$, $z \sim \mathcal{N}(0, I)$, a noise on the features. That
#   is about a third of the lead on the default split and three quarters on alt; the rest is
#   the context. On the lit world every model scores lower and the lead over ZS3Net is
#   +0.036 and +0.017 (seeds 0–5; results page). A world in which one class in one context
#   looks like another class in another would ask more of the codes.

# %% [markdown]
# ## Summary
#
# - CM predicts a Gaussian N(mu, sigma^2) per pixel; z = mu + eps sigma in training, mu at test.
# - The KL term keeps z samplable from N(0, I), which fine-tuning relies on for unseen
#   classes; the residual attention sigmoid(a + a sigmoid(z)) lets z shape the feature.
# - A collapsed code (KL 0, no spread of mu) looks healthy in the losses: the instruments
#   (active units, spread of mu, KL, selector spread) tell it apart, in training and in
#   `python -m cagnet eval`.
# - Letting the content loss reach CM (`model.latent_grad = "content"`) without the KL
#   revives the codes, but they learn the class with the context, and the generator then
#   ignores the class embedding: measure `class_fidelity` before trusting a live code.
# - Taking the class out of the code before $G$ reads it (`model.code_centring`, with $G$
#   reading $\mu$) keeps the code alive *and* the embedding in charge: the fakes follow the
#   context of the pixel they are generated for, for unseen classes too (`mode_match`).
#
# ## Exercises

# %% [markdown]
# **Exercise 1.** Check the closed-form KL against a Monte-Carlo estimate for one Gaussian.
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
import torch

torch.manual_seed(0)
mu, logvar = torch.tensor(0.7), torch.tensor(0.4)
closed = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
z = mu + torch.randn(200_000) * (0.5 * logvar).exp()
log_q = -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar)
log_p = -0.5 * z**2
print(f"closed form {float(closed):.4f} | Monte Carlo {float((log_q - log_p).mean()):.4f}")

# %% [markdown]
# **Exercise 2.** With the official ReLU on log sigma^2, what is the smallest sigma a pixel can have,
# and what is then the smallest KL of a code with mean 0?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
logvar = torch.relu(torch.linspace(-5, 5, 11))
sigma = (0.5 * logvar).exp()
print("smallest sigma:", float(sigma.min()), "| KL at mu = 0, sigma = 1:",
      float(0.5 * (0 + 1 - 1 - 0)))
