"""Optimisers with per-layer parameter groups and the rho-scaling modes (DESIGN §1).

With W_bar = W / sigma and G = dL/dW_bar (ignoring the gradient through sigma), dL/dW = G / sigma,
and Adam(g / c; eps) = Adam(g; c * eps).  So normalising a layer acts on its weight like
learning rate eta / sigma with Adam epsilon eps * sigma.  The modes reproduce that without
normalising the forward pass, with rho = the tracked sigma of the selected layers:

* ``lr``      -- the selected layers' weights sit in parameter groups named after the layer,
                 whose learning rate is eta / rho (bias untouched: SN does not rescale it);
* ``grad``    -- the weight gradient is divided by rho before the step (under Adam: eps * rho);
* ``lr+grad`` -- both, the full SN-equivalent update;
* ``divout``  -- the network output is divided by stop_gradient(prod rho).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rlsmooth.config import OptimConfig
from rlsmooth.spectral import SpectralNorm, raw_weight


def make_optimizer(params: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.eps)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                   centered=cfg.centered, momentum=cfg.momentum)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


@dataclass
class RhoScaler:
    """Applies ``optim.rho_scaling`` around each optimiser step."""

    mode: str
    layers: dict[str, nn.Module]
    estimators: dict[str, SpectralNorm]
    only_shrink: bool

    def rho(self, name: str) -> torch.Tensor:
        sigma = self.estimators[name].sigma.detach()
        return sigma.clamp_min(1.0) if self.only_shrink else sigma

    def output_divisor(self) -> torch.Tensor:
        rho = torch.ones((), device=next(iter(self.estimators.values())).sigma.device)
        for name in self.layers:
            rho = rho * self.rho(name)
        return rho

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Call after backward, before ``optimizer.step()``; ``set_base_lr`` keeps annealing working."""
        if self.mode in ("lr", "lr+grad"):
            rhos = dict(zip(self.layers, torch.stack([self.rho(n) for n in self.layers]).cpu().tolist()))
            for group in optimizer.param_groups:
                if group["name"] in rhos:
                    group["lr"] = group["base_lr"] / rhos[group["name"]]
        if self.mode in ("grad", "lr+grad"):
            for name, layer in self.layers.items():
                weight = raw_weight(layer)
                if weight.grad is not None:
                    weight.grad.div_(self.rho(name))


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: RhoScaler | None,
                   loss: torch.Tensor, grad_clip: float) -> None:
    """One gradient step: backward, rho scaling (if any), global-norm clipping (if > 0), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if scaler is not None:
        scaler.before_step(optimizer)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def set_base_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the schedule's learning rate; rho-scaled groups apply their factor on the next step."""
    for group in optimizer.param_groups:
        group["base_lr"] = lr
        group["lr"] = lr


def build_optimizer(model: nn.Module, cfg: OptimConfig, estimators: dict[str, SpectralNorm],
                    rho_layers: list[str], params: list[nn.Parameter] | None = None
                    ) -> tuple[torch.optim.Optimizer, RhoScaler | None]:
    """Optimiser over ``params`` (default: all of ``model``'s), with one group per rho-scaled layer.

    ``rho_layers`` are resolved layer names, each already tracked in ``estimators``.
    """
    params = list(model.parameters()) if params is None else params
    scaler = None
    groups: list[dict] = []
    scaled: dict[str, nn.Module] = {}
    if cfg.rho_scaling != "none":
        scaled = {name: model.get_submodule(name) for name in rho_layers}
        scaler = RhoScaler(cfg.rho_scaling, scaled, {n: estimators[n] for n in rho_layers}, cfg.rho_only_shrink)
    if cfg.rho_scaling in ("lr", "lr+grad"):
        for name, layer in scaled.items():
            groups.append({"params": [raw_weight(layer)], "name": name})
    taken = {id(p) for g in groups for p in g["params"]}
    groups.insert(0, {"params": [p for p in params if id(p) not in taken], "name": "base"})
    for group in groups:
        group["base_lr"] = cfg.lr
    optimizer = make_optimizer(groups, cfg)
    if scaler is not None and cfg.rho_scaling == "divout":
        model.output_divisor = scaler.output_divisor
    return optimizer, scaler
