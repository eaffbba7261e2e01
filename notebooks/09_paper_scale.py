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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cagnet-book/cagnet-step-by-step/blob/main/notebooks/09_paper_scale.ipynb)

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
# # Paper scale: Pascal-VOC on a GPU
#
# Everything so far ran on the toy world. The same code, with the `voc` preset, is the
# paper's setting: DeepLabv2-ResNet-101, Pascal-VOC 2012 with the SBD annotations
# {cite}`everingham2010voc,hariharan2011sbd` (10,582 training and 1,449 validation
# images), fastText ⊕ word2vec class embeddings and the official schedule. This chapter
# walks through a paper-scale run. It needs a GPU and downloads several gigabytes, so
# every cell that would download or train is guarded by a flag: set
# `RUN_PAPER_SCALE = True` on a GPU machine (on Colab: *Runtime → Change runtime type →
# GPU*). With the flag off, as when this book is built, the notebook still runs on a CPU
# and shows the model, the data layout and the schedule.

# %%
import json
import subprocess
import sys

import matplotlib.pyplot as plt
import torch

from cagnet.config import get_preset
from cagnet.data import class_split, data_home
from cagnet.models import CaGNet, count_parameters
from cagnet.train import poly_lr
from cagnet.viz import plot_results

RUN_PAPER_SCALE = False  # True: download Pascal-VOC and the word vectors, train on the GPU
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
cfg = get_preset("voc")
print("device:", DEVICE, "| data folder:", data_home())

# %% [markdown]
# ## The preset
#
# A preset only fills the configuration dataclasses; `--set SECTION.FIELD=VALUE` on the
# command line (or `cagnet.train.config_with` in Python) changes any field.

# %%
# NBVAL_CHECK_OUTPUT
for section in ("model", "data", "loss", "train"):
    values = getattr(cfg, section).__dict__
    print(f"[{section}]", ", ".join(f"{k}={v}" for k, v in values.items()))

# %% [markdown]
# ## The model
#
# Built on the *meta* device, the full network costs no memory and downloads nothing, so
# we can count its parameters and trace its shapes anywhere. `python -m cagnet describe`
# prints the same counts.

# %%
# NBVAL_CHECK_OUTPUT
out = subprocess.run([sys.executable, "-m", "cagnet", "describe", "--preset", "voc"],
                     capture_output=True, text=True, check=True).stdout
print({k: f"{v:,}" for k, v in json.loads(out).items()})
for method in ("seen-only", "zs3net"):
    print(method, f"{count_parameters(cfg.replace(method=method))['total']:,}")

# %%
# NBVAL_CHECK_OUTPUT
classes = class_split(cfg.data)
with torch.device("meta"):
    model = CaGNet(cfg, classes.num_classes, torch.zeros(classes.num_classes, 600))
    out = model.segment(torch.empty(cfg.train.batch_size, 3, cfg.data.crop, cfg.data.crop))
print("scales:", cfg.model.multiscale, "+ max")
print("real features:", [tuple(f.shape) for f in out["features"]])
print("z:", tuple(out["ctx"].z.shape), "| logits (x1):", tuple(out["logits"][0].shape))

# %% [markdown]
# ## The data
#
# `cagnet.data.download.fetch("voc")` downloads Pascal-VOC 2012 and SBD from their
# canonical addresses, verifies the checksums, resumes interrupted transfers and unpacks
# them under `$CAGNET_DATA/voc` (default `~/.cache/cagnet/data/voc`) in the layout the
# loader reads. `python -m cagnet data check --dataset voc` then verifies the folder:
# files present, images readable, label values valid.

# %%
if RUN_PAPER_SCALE:
    from cagnet.data.download import fetch

    root = fetch("voc")
    subprocess.run([sys.executable, "-m", "cagnet", "data", "check", "--dataset", "voc",
                    "--root", str(root)], check=True)
print("unseen:", classes.unseen_names(), "| ignored in training:",
      [classes.names[c] for c in classes.ignore_in_training])

# %% [markdown]
# ## The class embeddings
#
# The `voc` preset's embedding sources are fastText and word2vec. Through gensim's
# downloader that is about 1 GB (fastText) and 1.6 GB (word2vec), fetched once and cached;
# the (21, 600) table is then cached on its own. Point `$CAGNET_VECTORS_FASTTEXT` and
# `$CAGNET_VECTORS_WORD2VEC` at local files to avoid the download.

# %%
if RUN_PAPER_SCALE:
    from cagnet.embeddings import class_embeddings

    emb = class_embeddings(classes.names, cfg.data)
    sim = emb @ emb.T
    for u in classes.unseen:
        near = sorted(classes.seen, key=lambda s: -sim[u, s])[:3]
        print(classes.names[u], "->", [classes.names[s] for s in near])
print("embedding sources:", cfg.data.embedding_sources, "| width:", cfg.model.embed_dim)

# %% [markdown]
# ## The schedule
#
# 40,000 training iterations with batch 8 and 368×368 crops, then 6,000 fine-tuning
# iterations alternating every 100. The backbone uses SGD (momentum 0.9, weight decay
# 5e-4) with a poly learning rate $2.5 \times 10^{-4} (1 - t/T)^{0.9}$ and multipliers
# ×5 for CM, ×10 for the ASPP weights and ×20 for its biases; $D$/$C$ and $G$ use Adam.

# %%
t = cfg.train
its = range(0, t.iters + 1, 200)
plt.figure(figsize=(7, 3.2))
for name, mult in [("trunk", 1), ("CM", t.lr_mult_context),
                   ("ASPP weights", t.lr_mult_aspp_weight), ("ASPP biases", t.lr_mult_aspp_bias)]:
    plt.plot(list(its), [poly_lr(t.lr * mult, i, t.iters, t.poly_power) for i in its],
             label=f"{name} (×{mult:g})")
plt.yscale("log")
plt.xlabel("iteration")
plt.ylabel("learning rate")
plt.title("Backbone learning rates, training stage (voc preset)")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Training
#
# One GPU, from the command line (the same as `cagnet.train.fit(cfg, out_dir=...)`):
#
# ```bash
# python -m cagnet train --preset voc --method cagnet --out runs/voc-cagnet
# python -m cagnet eval --checkpoint runs/voc-cagnet/checkpoint.pt
# ```
#
# On several GPUs of one machine, `torchrun` starts one process per GPU; the global batch
# of 8 is split between them:
#
# ```bash
# torchrun --nproc_per_node=4 -m cagnet train --preset voc --method cagnet --out runs/voc-cagnet
# ```
#
# Runs write a checkpoint every 1,000 iterations and resume with `--resume`; logs go to
# TensorBoard (`runs/voc-cagnet/tb`). Mixed precision (bf16 where the GPU supports it,
# fp16 otherwise) is on by default on a GPU. The ResNet-101 trunk starts from ImageNet
# weights when `model.pretrained` is true (`--set model.pretrained=true`).

# %%
if RUN_PAPER_SCALE:
    subprocess.run([sys.executable, "-m", "cagnet", "train", "--preset", "voc", "--method",
                    "cagnet", "--set", "model.pretrained=true", "--out", "runs/voc-cagnet",
                    "--resume"], check=True)
    subprocess.run([sys.executable, "-m", "cagnet", "eval", "--checkpoint",
                    "runs/voc-cagnet/checkpoint.pt"], check=True)

# %% [markdown]
# ## The paper's numbers
#
# The published Pascal-VOC results (mIoU in %, CaGNet's split), which a full run should
# approach:

# %%
published = [
    {"method": "ZS3Net", "hiou": 0.2874, "miou_seen": 0.7730, "miou_unseen": 0.1765},
    {"method": "CaGNet", "hiou": 0.3972, "miou_seen": 0.7840, "miou_unseen": 0.2659},
    {"method": "CaGNet (patch)", "hiou": 0.4326, "miou_seen": 0.7814, "miou_unseen": 0.2990},
]
for r in published:
    print(f"{r['method']:15s} hIoU {100 * r['hiou']:.2f}  seen {100 * r['miou_seen']:.2f}  "
          f"unseen {100 * r['miou_unseen']:.2f}")
plot_results(published)
plt.title("Pascal-VOC, as published")
plt.show()
