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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/06_generator.ipynb)

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
# # Generator, discriminator and classifier
#
# The **generator** $G$ turns a class embedding $w_c$ and a latent code $z$ into a fake
# feature $\tilde f = G(w_c, z)$, pixel by pixel. The **discriminator** $D$ tells real
# features from fake ones, and the **classifier** $C$ names the class of a feature; $D$
# and $C$ share their first layer. Once $G$ imitates the real features of seen classes
# well, it can be asked for features of *unseen* classes — from their embeddings alone —
# and $C$ can learn those classes from them.
#
# - $G$: 1×1 convolutions on the concatenation $[w, z]$ ($2d = 1200$ channels at paper
#   scale), widths 1024, 960, 864, 784, 720, LeakyReLU(0.2) and dropout, then $d = 600$
#   outputs with a sigmoid, so fake features lie in $(0, 1)$ like real ones.
# - $D$ and $C$: a shared 1×1 convolution $d \to 1024$ with ReLU and dropout, then a
#   real/fake head (1 output) and a class head ($K$ outputs, seen and unseen classes).
#
# Its three losses (official weights) are an adversarial loss $\mathcal{L}_{GAN}$
# {cite}`goodfellow2014gan`, a **content** loss that pulls fakes towards the real features
# of the same pixels, and the classification loss of $C$ on the fakes:
#
# $$\mathcal{L}_G = \mathcal{L}_{GAN}\big(D(\tilde f), \text{real}\big)
#   + 50\, \mathcal{L}_{content}(\tilde f, f) + \mathrm{CE}\big(C(\tilde f), y\big).$$

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from cagnet.book import toy_run
from cagnet.config import get_preset
from cagnet.data import build_dataset, class_split
from cagnet.losses import content_loss, gan_loss, mmd, resize_labels
from cagnet.models import Discriminator, Generator
from cagnet.viz import class_palette, pca_2d

torch.manual_seed(0)
cfg = get_preset("toy")
classes = class_split(cfg.data)

# %% [markdown]
# Where this chapter's pieces sit in the whole (highlighted):

# %%
from cagnet.viz import overview_figure  # noqa: E402

overview_figure(highlight=('w', 'G', 'fake', 'D'))
plt.show()

# %% [markdown]
# ## The networks at paper scale

# %%
# NBVAL_CHECK_OUTPUT
G = Generator(embed_dim=600, latent_dim=600, hidden=(1024, 960, 864, 784, 720), out_dim=600)
D = Discriminator(in_channels=600, hidden=1024, num_classes=21)
print(G)
print(f"G: {sum(p.numel() for p in G.parameters()):,} parameters")
print(f"D and C: {sum(p.numel() for p in D.parameters()):,} parameters")
w, z = torch.rand(2, 600, 8, 8), torch.randn(2, 600, 8, 8)  # embedding map, latent map
with torch.no_grad():
    fake = G.eval()(w, z)
    gan_logit, class_logits = D.eval()(fake)
print("G(w, z):", tuple(fake.shape), "| D:", tuple(gan_logit.shape),
      "| C:", tuple(class_logits.shape))

# %% [markdown]
# ## Adversarial losses
#
# The official code scores $D$'s sigmoid output with an L1 distance to the target
# ($|\sigma(s) - 1|$ for "real", $|\sigma(s)|$ for "fake"); binary cross-entropy, the
# classic GAN loss, and the least-squares loss are the alternatives the package offers
# (`LossConfig.gan`). The L1 loss is bounded: a confident mistake costs at most 1.

# %%
scores = torch.linspace(-6, 6, 121)
fig, ax = plt.subplots(figsize=(6, 3.5))
for kind in ("l1", "bce", "lsgan"):
    ax.plot(scores, [float(gan_loss(s.view(1, 1, 1, 1), True, kind)) for s in scores],
            label=kind)
ax.set(xlabel="D's logit s for a feature whose target is 'real'", ylabel="loss", ylim=(0, 4),
       title="GAN losses (LossConfig.gan)")
ax.legend()
plt.show()

# %% [markdown]
# ## Content loss: L2 or MMD
#
# The paper describes the content loss as the L2 distance between a generated feature
# and the real feature of the same pixel. The official code instead compares, class by
# class, the *distributions* of real and fake features with the maximum mean discrepancy
# {cite}`gretton2012mmd` (RBF kernels with $\sigma \in \{2, 5, 10, 20, 40, 60\}$). The
# difference matters: if the real features of a class are spread out (different
# contexts), a generator that outputs their average has a small L2 but a visibly wrong
# distribution. Two candidate fakes for a class whose real features form two clusters:

# %%
g = torch.Generator().manual_seed(0)
n, d = 200, 16
centre = torch.zeros(d)
centre[0] = 3.0
side = torch.randint(0, 2, (n,), generator=g) * 2 - 1
real_px = side[:, None] * centre + 0.5 * torch.randn(n, d, generator=g)
fakes = {
    "the average (collapsed)": torch.zeros(n, d) + 0.05 * torch.randn(n, d, generator=g),
    "both clusters, unpaired": (side[torch.randperm(n, generator=g)][:, None] * centre
                                + 0.5 * torch.randn(n, d, generator=g)),
}


def as_map(t):  # pixel features (N, d) -> a 1-pixel-high feature map (1, d, 1, N)
    return t.T.reshape(1, d, 1, n)


labels = torch.zeros(1, 1, n, dtype=torch.long)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True, sharey=True)
for ax, (name, fake_px) in zip(axes, fakes.items(), strict=True):
    l2 = float(content_loss(as_map(fake_px), as_map(real_px), labels, kind="l2"))
    mmd_value = float(mmd(fake_px, real_px, sigmas=(0.5, 1.0, 2.0)))
    ax.scatter(real_px[:, 0], real_px[:, 1], s=8, alpha=0.5, label="real")
    ax.scatter(fake_px[:, 0], fake_px[:, 1], s=8, alpha=0.5, label="fake")
    ax.set_title(f"{name}\nL2 {l2:.3f}   MMD {mmd_value:.3f}")
    print(f"{name:26s} L2 {l2:.3f}  MMD {mmd_value:.3f}")
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# L2 prefers the collapsed average; MMD prefers the fake that reproduces the spread.
# Feature generation for classification needs the spread: the classifier must learn the
# whole region of feature space a class occupies. (`LossConfig.content` switches
# between `"mmd"`, the default, and `"l2"`.)
#
# ## Real and generated features of the trained model
#
# We take the trained toy CaGNet, compute real features of test pixels and generate
# features for the same label maps with the pixels' own codes $z = \mu$; unseen classes,
# which have no code of their own in training, are generated with
# $z \sim \mathcal{N}(0, I)$, as in fine-tuning. A 2-D principal-component projection of the real
# features, coloured by class:

# %%
result = toy_run("cagnet")
model = result.model.eval()
test_set = build_dataset(cfg.data, "test")
x = torch.stack([test_set[i][0] for i in range(48)])
y = torch.stack([test_set[i][1] for i in range(48)])
with torch.no_grad():
    ctx = model.context(model.backbone(x))
    y_small = resize_labels(y, ctx.feature.shape[-2:])
    real = ctx.feature.permute(0, 2, 3, 1).reshape(-1, cfg.model.embed_dim)
    fake = model.generate(y_small, ctx.mu).permute(0, 2, 3, 1).reshape(real.shape)
    pixel_class = y_small.flatten()
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:3000]
    real, fake, pixel_class = real[pick], fake[pick], pixel_class[pick]
    unseen = torch.tensor(classes.unseen)
    fake_unseen_class = unseen.repeat_interleave(150)
    fake_unseen = model.generate(fake_unseen_class.view(1, 1, -1), None)[0, :, 0].T

project = pca_2d(real)  # features (N, d) -> the real features' first two PCs (N, 2)

colors = class_palette(classes.names) / 255.0  # the toy world's own colours

fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True, sharey=True)
for c in range(classes.num_classes):
    is_unseen = c in classes.unseen
    r = project(real[pixel_class == c])
    f = project(fake[pixel_class == c]) if not is_unseen else project(
        fake_unseen[fake_unseen_class == c])
    axes[0].scatter(r[:, 0], r[:, 1], s=4, color=colors[c], marker="x" if is_unseen else "o")
    axes[1].scatter(f[:, 0], f[:, 1], s=4, color=colors[c], marker="x" if is_unseen else "o",
                    label=classes.names[c] + (" *" if is_unseen else ""))
axes[0].set_title("real features of test pixels (x: unseen classes)")
axes[1].set_title("generated: seen with z = μ, unseen with z ~ N(0, I)")
axes[1].legend(fontsize=7, markerscale=3, bbox_to_anchor=(1.01, 1), loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# With $z = \mu$ a generated seen feature is one point per class when the codes carry
# no context (chapter 5); the unseen clouds come from sampled codes. Do the generated
# unseen features land near the real features of their class, a region of feature space
# the segmentation network was never told about? For each unseen class, the real class
# whose mean feature is nearest to the mean of its generated features:

# %%
present = torch.stack([(pixel_class == c).any() for c in range(classes.num_classes)])
real_means = torch.stack([real[pixel_class == c].mean(0) if present[c]
                          else torch.zeros(cfg.model.embed_dim)
                          for c in range(classes.num_classes)])
for u in classes.unseen:
    d = (real_means - fake_unseen[fake_unseen_class == u].mean(0)).norm(dim=1)
    d[~present] = float("inf")
    order = d.argsort()[:3].tolist()
    print(f"{classes.names[u]:15s} nearest real classes: "
          + ", ".join(f"{classes.names[c]} ({float(d[c]):.2f})" for c in order))

# %% [markdown]
# And how often does the trained classifier $C$ give each unseen class to its generated
# features?

# %%
with torch.no_grad():
    predicted = model.classify(fake_unseen.T[None, :, None, :]).argmax(1)[0, 0]
accs = []
for u in classes.unseen:
    acc = float((predicted[fake_unseen_class == u] == u).float().mean())
    accs.append(acc)
    print(f"{classes.names[u]:15s} C(G(w, z)) is classified as itself: {acc:.0%}")
print(f"mean: {np.mean(accs):.0%} "
      + ("(C names them almost perfectly: it was fine-tuned on them)" if min(accs) > 0.9
         else "(C was fine-tuned on such features, yet does not always name them)"))

# %% [markdown]
# Whether that transfers to *real* unseen pixels depends on how close the generated
# features are to the real ones, as measured above; chapter 8 gives the answer on the
# test set.
#
# ## Play: sampling latent codes for one class
#
# The latent code decides *which* feature of a class the generator produces. Choose a
# class and the scale $s$ of the codes, $z \sim \mathcal{N}(0, s^2 I)$, and compare the
# generated cloud (colour) with the real features of that class (black). With $s = 0$
# every sample is the same point; as $s$ grows the fakes spread out. (The slider needs a
# running kernel; the static figure below shows four settings.)

# %%
def sample_class(c, scale, n=300, seed=0):
    torch.manual_seed(seed)
    labels = torch.full((1, 1, n), c)
    with torch.no_grad():
        z = scale * torch.randn(1, cfg.model.embed_dim, 1, n)
        return model.generate(labels, z)[0, :, 0].T


def draw(c, scale, ax):
    r = project(real)
    ax.scatter(r[:, 0], r[:, 1], s=3, color="lightgrey")
    own = project(real[pixel_class == c])
    ax.scatter(own[:, 0], own[:, 1], s=5, color="black", label="real, this class")
    f = project(sample_class(c, scale))
    ax.scatter(f[:, 0], f[:, 1], s=5, color=colors[c], label="generated")
    ax.set_title(f"{classes.names[c]}{' (unseen)' if c in classes.unseen else ''}, s = {scale}")


def show(class_name="red cross", scale=1.0):
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    draw(classes.names.index(class_name), scale, ax)
    ax.legend(fontsize=8)
    plt.show()


# %% tags=["remove-output"]
widgets.interact(show, class_name=widgets.Dropdown(options=classes.names, value="red cross"),
                 scale=widgets.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.25))

# %%
fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), sharex=True, sharey=True)
for ax, s in zip(axes, (0.0, 0.5, 1.0, 2.0), strict=True):
    draw(classes.names.index("red cross"), s, ax)
axes[0].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Fakes that follow the context
#
# In the book's world a thing looks alike on every stuff, yet its *features* do not: the
# backbone's view of a pixel (its receptive field, 143 px in chapter 3) covers the stuff
# around the thing, so the real features of one class form one mode per context. (In the
# lit world, `data.toy_lighting=1`, the thing's own colour changes with the stuff as
# well.) With codes that carry context, $G(w, z)$ should land in the mode of the context
# its code came from. For each unseen thing class, the figure shows every context: the
# mean fake generated with the pixels' own codes there (rows), and its distance to the
# mean real feature of the class in each context (columns). With a row minimum on the
# diagonal, the fakes sit in their own context's mode (`cagnet.context_eval.context_modes`,
# on 200 test images).
# The official CaGNet is set beside chapter 5's `live-centred` run of the results page,
# which is shown once the results page's command has trained it.

# %%
from cagnet.book import results_run  # noqa: E402
from cagnet.context_eval import context_modes, mode_match  # noqa: E402
from cagnet.data.toy import STUFF  # noqa: E402

probe = [(torch.stack([test_set[i][0] for i in range(j, j + 20)]),
          torch.stack([test_set[i][1] for i in range(j, j + 20)])) for j in range(0, 200, 20)]
generators = {"official CaGNet": model}
live = results_run("live-centred")
if live is None:
    print("the live-centred run has not been trained yet: only the official model is shown")
else:
    generators["live-centred"] = live.model.eval()
fig, axes = plt.subplots(len(generators), len(classes.unseen),
                         figsize=(4.0 * len(classes.unseen), 3.3 * len(generators)),
                         squeeze=False)
for row, (name, g_model) in enumerate(generators.items()):
    modes = context_modes(g_model, probe, range(len(STUFF)), classes.unseen)
    for k, u in enumerate(classes.unseen):
        ok = (modes["count"][k] >= 20).nonzero().flatten()
        d = torch.cdist(modes["fake"][k, ok], modes["real"][k, ok])
        ax = axes[row, k]
        im = ax.imshow(d.numpy(), cmap="magma_r", vmin=0)
        names = [STUFF[j] for j in ok.tolist()]
        ax.set_xticks(range(len(ok)), names, rotation=45, fontsize=7)
        ax.set_yticks(range(len(ok)), [f"code on {n}" for n in names], fontsize=7)
        hits = int((d.argmin(1) == torch.arange(len(ok))).sum())
        ax.set_title(f"{classes.names[u]}: {hits}/{len(ok)} on the diagonal", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7, label="distance to real mean")
    match = mode_match(modes)
    axes[row, 0].set_ylabel(name, fontsize=10)
    print(f"{name}: fakes in their own context's mode for {match['matched']:.0%} of "
          f"{match['cells']} (unseen class, context) cells (chance {match['chance']:.0%})")
fig.suptitle("unseen classes: mean fake per context of its code (rows) against mean real "
             "feature per context (columns)", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# The official CaGNet's rows are all alike: its codes have collapsed, so a class's fake is
# the same whatever context its code came from, and it lies nearest to one context's real
# features for every row. Its matches are at chance (27% of 15 cells, chance 27%). In the
# run with live codes the minimum of 14 of the 15 rows (93%) lies on the diagonal: $G$ has
# never seen these classes, yet it places their fakes in the mode of the context the code
# describes, although nothing in the thing's own pixels shows that context, only the
# surroundings the backbone sees. The one miss is the yellow circle's code from snow, whose
# fake lies about as near to the water mode as to the snow mode; in some other rows, too,
# the diagonal wins by a small margin. This is the mechanism CaGNet is built on. Chapter 8
# measures what it buys the classifier.

# %% [markdown]
# Training shapes all of this. Chapter 7 puts the losses together into the alternating
# schedule that trains $E$, CM, $G$, $D$ and $C$.

# %% [markdown]
# ## Summary
#
# - The generator G maps a class embedding and a latent code to a fake feature, pixel by pixel.
# - D tells real from fake features; C, which shares D's first layer, names their class.
# - The content loss (the official MMD) asks the fakes of a class to match the *distribution*
#   of its real features, not their average.
# - With codes that carry context (chapter 5), $G$ puts an unseen class's fakes in the
#   feature mode of the context its code came from (14 of 15 cells), even though the
#   context shows only in what the backbone sees around the thing; with the official,
#   collapsed codes it cannot.
#
# ## Exercises

# %% [markdown]
# **Exercise 1.** MMD is zero for identical samples and grows as one sample moves away. Measure it for
# shifts 0, 0.1, 0.3 of a 2-d Gaussian sample.
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
import torch

from cagnet.losses import mmd

torch.manual_seed(0)
x = torch.randn(300, 2)
for shift in (0.0, 0.1, 0.3):
    print(f"shift {shift}: MMD {float(mmd(x, x + shift, (1.0, 4.0))):.4f}")

# %% [markdown]
# **Exercise 2.** How many parameters does the paper-scale generator have, against the discriminator?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
from cagnet.config import get_preset
from cagnet.models import count_parameters

n = count_parameters(get_preset("voc"), 21)
print(f"G {n['generator']:,d} | D and C {n['discriminator']:,d}")
