"""Is the contextual latent code alive? Instruments of the Contextual Module CM.

A collapsed CM looks healthy in the losses: its KL is 0 and segmentation still works, because
the residual attention ``sigmoid(a + a * sigmoid(z))`` with z = 0 only rescales the feature.
These numbers tell a live code from a dead one:

- ``active_m1..m3``, ``active_fused``: the fraction of units above 0 after each ReLU of CM
  (the three dilated maps and the fused map c); all zero means the chain is dead and every
  later map is a constant;
- ``mu_spread``: the standard deviation of mu over labelled pixels, averaged over channels
  (0: every pixel gets the same code, so z carries no information about its context);
- ``sigma_mean``: the mean sigma = exp(log sigma^2 / 2);
- ``kl``: KL(N(mu, sigma^2) || N(0, I)) per element, over labelled pixels;
- ``selector_spread`` / ``selector_mean``: the standard deviation and mean of the Context
  Selector's weights over labelled pixels (spread 0: every pixel weighs the scales alike).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from cagnet.losses import kl_divergence, resize_labels

IGNORE = 255
HEALTH_KEYS = ("active_m1", "active_m2", "active_m3", "active_fused", "mu_spread",
               "sigma_mean", "kl", "selector_spread", "selector_mean")
# what a live code shows at least (the toy world's bar; see chapter 5)
ALIVE = {"active": 0.10, "mu_spread": 0.1, "kl": 0.01}


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; every submodule's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def code_health(model, images: Tensor, labels: Tensor | None = None) -> dict[str, float]:
    """CM's instruments on one batch (B, 3, H, W), labels (B, H, W) or None (every pixel).

    Runs the model in eval mode (z = mu, BatchNorm statistics fixed, no random numbers drawn,
    so calling it never changes a training run) and restores every submodule's mode.
    """
    if model.context is None:
        return {}
    with eval_mode(model):
        ctx = model.context(model.backbone(images))
    B, _, h, w = ctx.mu.shape
    valid = (resize_labels(labels, (h, w)) != IGNORE if labels is not None
             else torch.ones(B, h, w, dtype=torch.bool, device=ctx.mu.device))
    if not valid.any():
        valid = torch.ones_like(valid)

    def pixels(t: Tensor) -> Tensor:  # (B, C, h, w) -> (N_valid, C)
        return t.permute(0, 2, 3, 1)[valid].float()

    m1, m2, m3, c = ctx.hidden
    mu, sel = pixels(ctx.mu), pixels(ctx.weights)
    return {
        **{f"active_{n}": (pixels(t) > 0).float().mean().item()
           for n, t in (("m1", m1), ("m2", m2), ("m3", m3), ("fused", c))},
        "mu_spread": mu.std(dim=0).mean().item() if len(mu) > 1 else 0.0,
        "sigma_mean": pixels(torch.exp(0.5 * ctx.logvar)).mean().item(),
        "kl": kl_divergence(ctx.mu.float(), ctx.logvar.float(), valid).item(),
        "selector_spread": sel.std(dim=0).mean().item() if len(sel) > 1 else 0.0,
        "selector_mean": sel.mean().item(),
    }


SATURATED = 4.0  # |h| past which the sigmoid's slope is below 0.018 (0.25 at 0)


@torch.no_grad()
def feature_saturation(model, images: Tensor) -> dict[str, float]:
    """How far E's output h (the input of the feature's sigmoid) lies in the sigmoid's flat
    tails, on a batch (B, 3, H, W): ``saturated``, the share of h's elements with
    ``|h| > SATURATED``, and ``std``, h's standard deviation. A saturated feature passes
    little gradient back to E (``model.feature_norm`` keeps h normalised). Eval mode; every
    submodule's mode is restored."""
    with eval_mode(model):
        h = model.backbone(images).float()  # (B, d, h, w)
    return {"saturated": (h.abs() > SATURATED).float().mean().item(), "std": h.std().item()}


def norms(module: torch.nn.Module) -> dict[str, float]:
    """The L2 norms of a module's weights and of their current gradients (0 without any)."""
    ps = list(module.parameters())
    grads = [p.grad for p in ps if p.grad is not None]
    w = torch.linalg.vector_norm(torch.stack([p.detach().float().norm() for p in ps]))
    g = (torch.linalg.vector_norm(torch.stack([q.float().norm() for q in grads]))
         if grads else torch.zeros(()))
    return {"weight_norm": w.item(), "grad_norm": g.item()}


def dataset_health(model, batches: Iterable[tuple[Tensor, Tensor]],
                   device: torch.device) -> dict[str, float]:
    """`code_health` averaged over batches (weighted by batch size)."""
    total: dict[str, float] = {}
    n = 0
    for images, labels in batches:
        h = code_health(model, images.to(device), labels.to(device))
        b = images.shape[0]
        for k, v in h.items():
            total[k] = total.get(k, 0.0) + v * b
        n += b
    return {k: v / max(n, 1) for k, v in total.items()}


def verdict(h: dict[str, float]) -> str:
    """'alive' when every instrument clears `ALIVE`, else what is dead."""
    dead = [k for k in ("active_m1", "active_m2", "active_m3", "active_fused")
            if h.get(k, 0.0) < ALIVE["active"]]
    if h.get("mu_spread", 0.0) < ALIVE["mu_spread"]:
        dead.append("mu_spread")
    if h.get("kl", 0.0) < ALIVE["kl"]:
        dead.append("kl")
    return "alive" if not dead else "collapsed (" + ", ".join(dead) + " below the bar)"


def format_health(h: dict[str, float]) -> str:
    """One line: active units, mu spread, sigma, KL, selector spread and the verdict."""
    if not h:
        return "no contextual module (this method has no latent code)"
    return (f"active units m1 {h['active_m1']:.2f} m2 {h['active_m2']:.2f} "
            f"m3 {h['active_m3']:.2f} fused {h['active_fused']:.2f} | mu spread "
            f"{h['mu_spread']:.3g} | sigma {h['sigma_mean']:.3g} | KL {h['kl']:.3g} | "
            f"selector spread {h['selector_spread']:.3g} (mean {h['selector_mean']:.3f}) "
            f"| {verdict(h)}")


def health_of(model, dataset, batch: int, images: int = 64) -> dict[str, float]:
    """`dataset_health` over the first ``images`` items of a dataset, ``batch`` at a time."""
    from torch.utils.data import DataLoader, Subset

    subset = Subset(dataset, range(min(images, len(dataset))))
    device = next(model.parameters()).device
    return dataset_health(model, DataLoader(subset, batch_size=batch), device)
