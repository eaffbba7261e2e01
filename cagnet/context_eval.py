"""Does the contextual code carry context? Three measurements on a labelled dataset.

The *context* of a pixel is the stuff it lies on: for a stuff pixel its own class, for a
thing pixel the most frequent stuff class within ``radius`` feature cells around it
(`context_map`).

- `context_probe`: a linear (softmax) probe trained on mu of thing pixels of one set of
  images predicts their context on another set; its accuracy against chance (the most
  frequent context) says whether mu encodes where the thing lies;
- `generator_gain`: how much closer G(w, mu) lands to the real feature f of the same
  pixel than G(w, mu') with mu' taken from the same position of another image:
  ``1 - mean ||G(w, mu) - f|| / mean ||G(w, mu') - f||`` (0: G ignores the code);
- `class_fidelity`: G asked for another class than the pixel's, with the pixel's own code:
  how often C reads the asked class, and how often the pixel's true class (a code that has
  learnt the class itself overrides the embedding: no transfer to unseen classes);
- `per_context_scores`: seen / unseen mIoU computed separately on the pixels of each
  context, so one sees *where* a method fails;
- `prior_shortcut` (toy world): how much of each unseen thing a model finds when the thing
  lies on its shape's favourite stuff and when it does not, and how often it takes an
  unseen thing elsewhere for the same colour in the shape that stuff favours.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cagnet.losses import resize_labels
from cagnet.metrics import ConfusionMatrix, scores
from cagnet.models.cagnet import centre_codes

IGNORE = 255


def context_map(labels: Tensor, stuff: Sequence[int], radius: int = 4) -> Tensor:
    """(B, h, w) label ids -> (B, h, w) index into ``stuff`` of each pixel's context, -1 where
    no stuff lies within ``radius`` cells (and on ignored pixels)."""
    ids = torch.as_tensor(list(stuff), device=labels.device)
    onehot = (labels[:, None] == ids[None, :, None, None]).float()  # (B, S, h, w)
    k = 2 * radius + 1
    near = F.avg_pool2d(onehot, k, stride=1, padding=radius, count_include_pad=False)
    ctx = near.argmax(1)
    ctx = torch.where(near.amax(1) > 0, ctx, torch.full_like(ctx, -1))
    own = onehot.argmax(1)
    is_stuff = onehot.amax(1) > 0
    ctx = torch.where(is_stuff, own, ctx)
    return torch.where(labels == IGNORE, torch.full_like(ctx, -1), ctx)


@torch.no_grad()
def codes(model, images: Tensor) -> tuple[Tensor, Tensor]:
    """Eval-mode real features f and codes mu, both (B, d, h, w)."""
    model.eval()
    out = model.context(model.backbone(images))
    return out.feature, out.mu


@torch.no_grad()
def features_and_codes(model, images: Tensor, labels: Tensor
                       ) -> tuple[Tensor, Tensor | None, Tensor]:
    """Eval-mode real features f (B, d, h, w), the codes G reads for them (mu, centred by
    the pixels' classes when the model centres, as in training; None without CM) and the
    labels (B, h, w) at the features' size."""
    if model.context is not None:
        f, mu = codes(model, images)
    else:
        model.eval()
        f, mu = torch.sigmoid(model.backbone(images)), None
    y = resize_labels(labels, f.shape[-2:])
    if mu is not None and getattr(model, "code_centring", False):
        mu = centre_codes(mu, y, model.num_classes)
    return f, mu, y


def _pixels(t: Tensor, mask: Tensor) -> Tensor:  # (B, C, h, w), (B, h, w) -> (N, C)
    return t.permute(0, 2, 3, 1)[mask]


def thing_codes(model, batches, stuff: Sequence[int], radius: int = 4) -> tuple[Tensor, Tensor]:
    """mu (N, d) and context (N,) of every thing pixel with a context, over ``batches``."""
    xs, ys = [], []
    dev = next(model.parameters()).device
    stuff_t = torch.as_tensor(list(stuff), device=dev)
    for images, labels in batches:
        _, mu = codes(model, images.to(dev))
        y = resize_labels(labels.to(dev), mu.shape[-2:])
        ctx = context_map(y, stuff, radius)
        things = (y != IGNORE) & ~torch.isin(y, stuff_t) & (ctx >= 0)
        xs.append(_pixels(mu, things).float())
        ys.append(ctx[things])
    return torch.cat(xs), torch.cat(ys)


def context_probe(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                  num_contexts: int, steps: int = 300, seed: int = 0) -> dict[str, float]:
    """Fit a softmax probe on ``train`` (mu (N, d), context (N,)) and score it on ``test``.

    Features are standardised with the training set's statistics; returns accuracy and
    chance (the test share of the most frequent training context).
    """
    x, y = train
    xt, yt = test
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x, xt = (x - mean) / std, (xt - mean) / std
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(x.shape[1], num_contexts, generator=g) * 0.01).requires_grad_()
    b = torch.zeros(num_contexts, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(x @ w + b, y).backward()
        opt.step()
    with torch.no_grad():
        acc = ((xt @ w + b).argmax(1) == yt).float().mean().item()
    majority = torch.bincount(y, minlength=num_contexts).argmax()
    return {"probe_acc": acc, "chance": (yt == majority).float().mean().item()}


@torch.no_grad()
def generator_gain(model, batches) -> dict[str, float]:
    """How much closer G(w, own mu) lands to the real feature than G(w, another image's mu).
    With ``model.code_centring`` each image's codes are first centred by its own labels, as
    in training, so the other image's code brings its context but not its classes."""
    dev = next(model.parameters()).device
    own = other = 0.0
    for images, labels in batches:
        if images.shape[0] < 2:
            continue
        f, own_code, y = features_and_codes(model, images.to(dev), labels.to(dev))
        valid = y != IGNORE
        other_code = own_code.roll(1, dims=0)
        d_own = (model.generate(y, own_code) - f).norm(dim=1)[valid]
        d_other = (model.generate(y, other_code) - f).norm(dim=1)[valid]
        own += d_own.sum().item()
        other += d_other.sum().item()
    return {"dist_own": own, "dist_other": other,
            "gain": 1.0 - own / other if other > 0 else 0.0}


@torch.no_grad()
def class_fidelity(model, batches, seed: int = 0) -> dict[str, float]:
    """G(w of an asked class, the pixel's own mu) classified by C, over labelled pixels.

    Each labelled pixel asks for a class other than its own, drawn uniformly. Returns
    ``asked`` (the share C gives the asked class) and ``own`` (the share it gives the pixel's
    true class); with codes drawn from N(0, I) instead: ``asked_prior``. Without CM (ZS3Net)
    G reads its own noise and ``asked`` equals ``asked_prior`` in distribution.
    """
    dev = next(model.parameters()).device
    K = model.num_classes
    g = torch.Generator(device=dev).manual_seed(seed)
    n = asked = own = asked_prior = 0
    for images, labels in batches:
        f, mu, y = features_and_codes(model, images.to(dev), labels.to(dev))
        valid = y != IGNORE
        shift = torch.randint(1, K, y.shape, generator=g, device=dev)
        other = torch.where(valid, (y + shift) % K, y)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed + n)  # the draws of z ~ N(0, I), seeded
            pred = model.classify(model.generate(other, mu)).argmax(1)
            prior = model.classify(model.generate(other, None)).argmax(1)
        n += int(valid.sum())
        asked += int((pred == other)[valid].sum())
        own += int((pred == y)[valid].sum())
        asked_prior += int((prior == other)[valid].sum())
    n = max(n, 1)
    return {"asked": asked / n, "own": own / n, "asked_prior": asked_prior / n}


@torch.no_grad()
def per_context_scores(model, batches, classes, stuff: Sequence[int], names: Sequence[str],
                       radius: int = 4) -> dict[str, dict[str, float]]:
    """Seen / unseen mIoU and hIoU on the pixels of each context (scored at full resolution),
    each mean over the classes that occur in that context."""
    dev = next(model.parameters()).device
    seen, unseen = (list(classes["seen"]), list(classes["unseen"])) if isinstance(classes, dict) \
        else (list(classes.seen), list(classes.unseen))
    K = model.num_classes
    mats = [ConfusionMatrix(K, device=dev) for _ in stuff]
    model.eval()
    for images, labels in batches:
        images, labels = images.to(dev), labels.to(dev)
        pred = model.predict(images).argmax(1)
        ctx = context_map(labels, stuff, radius)
        for i, m in enumerate(mats):
            m.update(pred, torch.where(ctx == i, labels, torch.full_like(labels, IGNORE)))
    out = {}
    for name, m in zip(names, mats, strict=True):
        # only the classes present in this context: a class predicted where it never occurs
        # would otherwise count with IoU 0 in every other context's mean
        present = set((m.matrix.sum(1) > 0).nonzero().flatten().tolist())
        s = scores(m.matrix, [c for c in seen if c in present],
                   [c for c in unseen if c in present])
        out[name] = {k: s[k] for k in ("miou_seen", "miou_unseen", "hiou")}
    return out


@torch.no_grad()
def attention_ablation(model, batches, classes) -> dict[str, dict[str, float]]:
    """Seen / unseen mIoU and hIoU of a CaGNet on ``batches`` as trained (``"as_trained"``)
    and with z replaced by 0 in CM's residual attention (``"zero_z"``): how much of the
    score the code earns through the attention. The model is left in eval mode."""
    if getattr(model, "context", None) is None:
        raise ValueError("attention_ablation needs a CaGNet (a model with a contextual module)")
    batches = list(batches)  # read twice
    dev = next(model.parameters()).device
    seen, unseen = (list(classes["seen"]), list(classes["unseen"])) if isinstance(classes, dict) \
        else (list(classes.seen), list(classes.unseen))
    model.eval()
    out, before = {}, model.context.zero_attention
    for name, zero in (("as_trained", False), ("zero_z", True)):
        model.context.zero_attention = zero
        try:
            m = ConfusionMatrix(model.num_classes, device=dev)
            for images, labels in batches:
                m.update(model.predict(images.to(dev)).argmax(1), labels.to(dev))
        finally:
            model.context.zero_attention = before
        s = scores(m.matrix, seen, unseen)
        out[name] = {k: s[k] for k in ("miou_seen", "miou_unseen", "hiou")}
    return out


@torch.no_grad()
def context_modes(model, batches, stuff: Sequence[int], class_ids: Sequence[int],
                  radius: int = 4) -> dict[str, Tensor]:
    """Per (thing class, context) the mean real feature and the mean fake G(w, code), where
    the code is the pixel's own mu (centred by the pixels' classes when the model centres,
    as in training); ZS3Net's G reads no code. Returns ``real`` and ``fake`` (C, S, d) means
    and ``count`` (C, S) pixels, for ``class_ids`` (C) and the contexts ``stuff`` (S)."""
    dev = next(model.parameters()).device
    C, S = len(class_ids), len(stuff)
    real = fake = None
    count = torch.zeros(C, S)
    for images, labels in batches:
        f, mu, y = features_and_codes(model, images.to(dev), labels.to(dev))
        g = model.generate(y, mu)
        ctx = context_map(y, stuff, radius)
        if real is None:
            real, fake = (torch.zeros(C, S, f.shape[1]) for _ in range(2))
        for i, c in enumerate(class_ids):
            for j in range(S):
                at = (y == c) & (ctx == j)
                if at.any():
                    real[i, j] += _pixels(f, at).float().sum(0).cpu()
                    fake[i, j] += _pixels(g, at).float().sum(0).cpu()
                    count[i, j] += int(at.sum())
    n = count.clamp_min(1)[..., None]
    return {"real": real / n, "fake": fake / n, "count": count}


def mode_match(modes: dict[str, Tensor], min_pixels: int = 20) -> dict[str, float]:
    """How often the fakes of a (class, context) land nearest to the real features of that
    same context, among the class's contexts (each with >= ``min_pixels`` pixels; classes
    with one such context are skipped). Returns the share ``matched``, its ``chance`` (the
    mean of 1 / number of contexts) and the number of (class, context) ``cells``."""
    real, fake, count = modes["real"], modes["fake"], modes["count"]
    hits, chance, cells = 0, 0.0, 0
    for i in range(real.shape[0]):
        ok = (count[i] >= min_pixels).nonzero().flatten()
        if len(ok) < 2:
            continue
        d = torch.cdist(fake[i, ok], real[i, ok])  # (k, k): fake mode -> real modes
        hits += int((d.argmin(1) == torch.arange(len(ok))).sum())
        chance += 1.0
        cells += len(ok)
    return {"matched": hits / max(cells, 1),
            "chance": chance / max(cells, 1) if cells else float("nan"), "cells": cells}


REGIONS = ("thing interior", "thing edge", "stuff by a thing", "open stuff")


def pixel_regions(labels: Tensor, stuff: Sequence[int]) -> Tensor:
    """(B, h, w) label ids -> (B, h, w) index into `REGIONS`: a thing pixel is *interior*
    when its 3 x 3 neighbours all share its class, else an *edge*; a stuff pixel is *by a
    thing* when a thing lies within 2 cells, else *open*; -1 on ignored pixels."""
    ids = torch.as_tensor(list(stuff), device=labels.device)
    thing = ~torch.isin(labels, ids) & (labels != IGNORE)
    padded = F.pad(labels[:, None].float(), (1, 1, 1, 1), mode="replicate")
    same = (F.unfold(padded, 3) == labels.flatten(1)[:, None].float()).all(1)  # (B, h w)
    interior = thing & same.view_as(labels)
    near_thing = F.max_pool2d(thing[:, None].float(), 5, stride=1, padding=2)[:, 0] > 0
    region = torch.where(thing, torch.where(interior, 0, 1), torch.where(near_thing, 2, 3))
    return torch.where(labels == IGNORE, -1, region)


@torch.no_grad()
def selector_by_region(model, batches, stuff: Sequence[int]) -> dict[str, Tensor]:
    """The context selector's weights (eval mode) per `REGIONS` entry: ``mean`` and ``std``
    (R, S) over the region's pixels for each of the S scales, and ``count`` (R,) pixels."""
    model.eval()
    dev = next(model.parameters()).device
    chunks: list[list[Tensor]] = [[] for _ in REGIONS]
    for images, labels in batches:
        w = model.context(model.backbone(images.to(dev))).weights  # (B, S, h, w)
        region = pixel_regions(resize_labels(labels.to(dev), w.shape[-2:]), stuff)
        for r in range(len(REGIONS)):
            chunks[r].append(w.permute(0, 2, 3, 1)[region == r].float().cpu())
    pixels = [torch.cat(c) for c in chunks]
    return {"mean": torch.stack([p.mean(0) for p in pixels]),
            "std": torch.stack([p.std(0) for p in pixels]),
            "count": torch.tensor([len(p) for p in pixels])}


@torch.no_grad()
def prior_shortcut(model, batches, objects, unseen: Sequence[int]) -> dict[str, float]:
    """Where an unseen thing's pixels go, split by the co-occurrence prior (toy world).

    ``batches`` yields (images, labels) in the order of ``objects`` ((N, slots, 4) rows of
    shape, colour, stuff under the centre, class: `ToyImages.objects`). For each unseen
    thing whose class occurs once in its image, the share of its pixels predicted as its
    class, on the favourite stuff of its shape (``"on_favourite"``) and elsewhere
    (``"elsewhere"``), and elsewhere the share predicted as the same colour in the shape
    that its stuff favours (``"to_favourite_shape"``: the prior taken for the shape).
    Shares are over pixels; ``"pixels_on"`` and ``"pixels_elsewhere"`` count them."""
    from cagnet.data.toy import FAVOURITE_SHAPE, thing_class

    unseen = set(int(c) for c in unseen)
    hit = {True: 0, False: 0}
    total = {True: 0, False: 0}
    shortcut = 0
    model.eval()
    start = 0
    for images, labels in batches:
        pred = model.predict(images).argmax(1)
        for b in range(len(labels)):
            rows = [r for r in objects[start + b].tolist() if r[3] >= 0]
            classes = [r[3] for r in rows]
            for shape, colour, home, cls in rows:
                if cls not in unseen or classes.count(cls) != 1:
                    continue
                mask = labels[b] == cls
                p = pred[b][mask]
                favourite = int(FAVOURITE_SHAPE[home])  # the shape the thing's stuff favours
                on = favourite == shape
                hit[on] += int((p == cls).sum())
                total[on] += int(mask.sum())
                if not on:
                    shortcut += int((p == thing_class(colour, favourite)).sum())
        start += len(labels)
    share = lambda a, n: a / n if n else float("nan")  # noqa: E731
    return {"on_favourite": share(hit[True], total[True]),
            "elsewhere": share(hit[False], total[False]),
            "to_favourite_shape": share(shortcut, total[False]),
            "pixels_on": total[True], "pixels_elsewhere": total[False]}
