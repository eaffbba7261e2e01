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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/02_embeddings.ipynb)

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
# # Class embeddings: what a name tells us
#
# The only information about an unseen class is its name. To be useful to a network, the
# name has to become a vector that sits *near the vectors of related classes*. Word
# embeddings trained on large text corpora do exactly that: fastText
# {cite}`bojanowski2017fasttext` and word2vec {cite}`mikolov2013word2vec` put words that
# appear in similar contexts close together.
#
# CaGNet represents class $c$ by $w_c \in \mathbb{R}^{600}$: the class's fastText vector
# (300-d) concatenated with its word2vec vector (300-d). A name with several words
# ("potted plant") averages its words' vectors. Each source's vector is L2-normalised,
# and so is the concatenation. This $w_c$ has the same width as the backbone's feature,
# and it is the only thing the generator will know about an unseen class.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from cagnet.config import get_preset
from cagnet.data import class_split, toy_word_vectors
from cagnet.embeddings import class_embeddings, class_words

cfg = get_preset("toy")
classes = class_split(cfg.data)

# %% [markdown]
# Where this chapter's pieces sit in the whole (highlighted):

# %%
from cagnet.viz import overview_figure  # noqa: E402

overview_figure(highlight=('w',))
plt.show()

# %% [markdown]
# ## Word vectors through gensim
#
# The toy world comes with two small word-vector tables, `toy-a` and `toy-b` (32-d
# each), built to behave like real ones: colours near colours, shapes near shapes,
# stuff near stuff ("grass" near "sand" and "ice"), "orange" near "red" and "yellow". The two tables agree
# on meaning but not on coordinates, as fastText and word2vec do. They are written in the
# word2vec text format and read back with gensim's `KeyedVectors`, the same path the real
# vectors take.

# %%
# NBVAL_CHECK_OUTPUT
vectors = toy_word_vectors(cfg.data)
for source, kv in vectors.items():
    print(f"{source}: {len(kv.index_to_key)} words of {kv.vector_size} dimensions")
print("vocabulary:", " ".join(vectors["toy-a"].index_to_key))

# %%
kv = vectors["toy-a"]
for word in ("red", "cross", "grass", "orange"):
    near = ", ".join(f"{w} {s:.2f}" for w, s in kv.most_similar(word, topn=4))
    print(f"{word:7s} -> {near}")

# %% [markdown]
# ## From class names to class embeddings
#
# `class_embeddings` splits each name into words, averages the words' vectors per source,
# normalises, concatenates the sources and normalises again. The toy embedding is
# $32 + 32 = 64$-d, the width of the toy backbone's features.

# %%
# NBVAL_CHECK_OUTPUT
emb = class_embeddings(classes.names, cfg.data)  # (K, d)
print("embeddings:", emb.shape, emb.dtype)
print("row norms:", np.round(np.linalg.norm(emb, axis=1), 4).min(), "to",
      np.round(np.linalg.norm(emb, axis=1), 4).max())
print("words of 'red cross':", class_words("red cross"),
      "| of VOC's 'pottedplant':", class_words("pottedplant"),
      "| of COCO's 'wall-concrete':", class_words("wall-concrete"))

# %% [markdown]
# The recipe, written out for one class, gives the same row:

# %%
def by_hand(name):
    parts = []
    for kv in vectors.values():
        mean = np.mean([kv[w] for w in class_words(name)], axis=0)
        parts.append(mean / np.linalg.norm(mean))
    v = np.concatenate(parts)
    return v / np.linalg.norm(v)


c = classes.names.index("red cross")
print("max difference:", float(np.abs(by_hand("red cross") - emb[c]).max()))
assert np.allclose(by_hand("red cross"), emb[c], atol=1e-5)

# %% [markdown]
# ## Which seen classes does an unseen class resemble?
#
# The cosine similarity of two embeddings is their dot product (rows have norm 1). The
# heat map shows it for every pair of classes; unseen classes are starred. A red cross
# shares a word with the red things and with the crosses, and its embedding says so.

# %%
sim = emb @ emb.T
labels = [n + (" *" if i in classes.unseen else "") for i, n in enumerate(classes.names)]
fig, ax = plt.subplots(figsize=(8, 7))
im = ax.imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
ax.set_yticks(range(len(labels)), labels, fontsize=8)
for i in classes.unseen:
    ax.get_xticklabels()[i].set_color("tab:orange")
    ax.get_yticklabels()[i].set_color("tab:orange")
fig.colorbar(im, ax=ax, label="cosine similarity", shrink=0.8)
ax.set_title("Class embeddings: cosine similarity (* unseen)")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
seen = np.array(classes.seen)
for u in classes.unseen:
    order = seen[np.argsort(-sim[u, seen])][:3]
    print(f"{classes.names[u]:15s} nearest seen: "
          + ", ".join(f"{classes.names[s]} ({sim[u, s]:.2f})" for s in order))

# %% [markdown]
# A 2-D projection (PCA) of the 20 embeddings shows the structure the generator will
# exploit: things of one colour or one shape form neighbourhoods. Each unseen class's
# nearest seen class (the printout above) shares one of its words, in three of the four
# the shape: yellow circle's three nearest are two circles and a blue triangle, none of
# them yellow.

# %%
x = torch.from_numpy(emb - emb.mean(0))
_, _, v = torch.linalg.svd(x, full_matrices=False)
xy = (x @ v[:2].T).numpy()
fig, ax = plt.subplots(figsize=(6.5, 5.5))
for i, name in enumerate(classes.names):
    is_unseen = i in classes.unseen
    ax.scatter(*xy[i], marker="*" if is_unseen else "o", s=160 if is_unseen else 50,
               color="tab:orange" if is_unseen else "tab:blue")
    ax.annotate(name, xy[i], textcoords="offset points", xytext=(4, 4), fontsize=8)
ax.set(title="Class embeddings, first two principal components (stars: unseen)",
       xlabel="PC 1", ylabel="PC 2")
plt.show()

# %% [markdown]
# ## At paper scale
#
# The `voc`, `context` and `cocostuff` presets use the official repository's precomputed
# tables (`data.embeddings = "official"`): its fastText and word2vec vectors of each class,
# a few dozen kB, concatenated and L2-normalised into a (21, 600) table for Pascal-VOC, so
# a run starts from exactly the official embeddings. For other class names,
# `data.embeddings = "gensim"` with `embedding_sources = ("fasttext", "word2vec")` builds
# them as this chapter did: gensim's `fasttext-wiki-news-subwords-300` and
# `word2vec-google-news-300` models (1-2 GB, downloaded once; or local files named by
# `$CAGNET_VECTORS_FASTTEXT` / `$CAGNET_VECTORS_WORD2VEC`), a multi-word name averaging
# its words.

# %%
voc = get_preset("voc")
voc_classes = class_split(voc.data)
print("VOC embeddings:", voc.data.embeddings, "| gensim sources:",
      voc.data.embedding_sources, "-> d =", voc.model.embed_dim)
print("multi-word VOC classes:",
      {n: class_words(n) for n in voc_classes.names if len(class_words(n)) > 1})

# %% [markdown]
# ## Summary
#
# - A class is known by its name: word vectors (fastText and word2vec) turn the name into a
#   vector, multi-word names averaging their words, the result L2-normalised.
# - Unseen classes lie near the seen classes that share their words, which is what lets
#   knowledge transfer.
# - The paper presets load the official repository's own tables; `gensim` builds them for
#   any other names.
#
# ## Exercises

# %% [markdown]
# **Exercise 1.** Which seen class is nearest (cosine similarity) to each unseen toy class?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
import torch

from cagnet.config import get_preset
from cagnet.data import class_split
from cagnet.embeddings import class_embeddings

toy = get_preset("toy")
cls = class_split(toy.data)
e = torch.from_numpy(class_embeddings(cls.names, toy.data))
for u in cls.unseen:
    sim = {cls.names[s]: float(e[u] @ e[s]) for s in cls.seen}
    best = max(sim, key=sim.get)
    print(f"{cls.names[u]:15s} -> {best} ({sim[best]:.2f})")

# %% [markdown]
# **Exercise 2.** Does 'red cross' lie closer to 'red circle' (same colour) or to 'green cross' (same
# shape)?
#
# The worked solution is folded below (click to show).

# %% tags=["hide-cell"]
names = list(cls.names)
rc = e[names.index("red cross")]
print("red circle:", round(float(rc @ e[names.index("red circle")]), 3),
      "| green cross:", round(float(rc @ e[names.index("green cross")]), 3))
