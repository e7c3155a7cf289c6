"""Optimisers with per-layer parameter groups and the rho-scaling modes (docs/method.md).

With W_bar = W / sigma and G = dL/dW_bar (ignoring the gradient through sigma), dL/dW = G / sigma,
and Adam(g / c; eps) = Adam(g; c * eps).  So normalising a layer acts on its weight like
learning rate eta / sigma with Adam epsilon eps * sigma.  The modes reproduce that without
normalising the forward pass, with rho = the tracked sigma of the selected layers:

* ``lr``      -- the selected layers' weights sit in parameter groups named after the layer,
                 whose learning rate is eta / rho (bias untouched: SN does not rescale it);
* ``grad``    -- the weight gradient is divided by rho before the step (under Adam: eps * rho);
* ``lr+grad`` -- both, the full SN-equivalent update;
* ``divout``  -- the network output is divided by stop_gradient(prod rho).

By default rho is clamped as in the paper's code: the learning rate is divided by max(rho, 1) and
the gradient (and, for ``divout``, the output) by max(rho / k, 1); the two agree at k = 1.
``rho_only_shrink: false`` gives the unclamped SN-equivalent form: everything divided by rho / k,
since SN's W / (sigma / k) acts like learning rate eta k / sigma with epsilon eps sigma / k.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rlsmooth.config.sections import OptimConfig, TrainConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.networks import select_layers
from rlsmooth.pieces.spectral import SpectralNorm, apply_spectral, raw_weight, sn_divisor


def make_optimizer(params: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    impl = cfg.implementation
    if impl == "auto":
        impl = "foreach" if cfg.name == "rmsprop" else "fused"
    if impl == "fused" and cfg.name == "rmsprop":
        raise ConfigError("optim.implementation=fused: PyTorch has no fused RMSprop; use foreach or single")
    kernels = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.eps, **kernels)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                   centered=cfg.centered, momentum=cfg.momentum, **kernels)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, **kernels)


class RhoScaler:
    """``optim.rho_scaling`` parsed once and bound to one network and its sigma estimators.

    It owns everything the mode changes: the per-layer parameter groups (``lr``), the gradient
    division before each step (``grad``) and the output divisor (``divout``), for the online and
    target networks alike (one scaler per network).  With ``only_shrink`` (the paper's code) a layer's
    learning rate is divided by max(rho, 1) and its gradient and the output by max(rho / k, 1)
    (k = ``spectral.k``); without it, all by rho / k.
    """

    def __init__(self, mode: str, layers: dict[str, nn.Module], estimators: dict[str, SpectralNorm],
                 only_shrink: bool, k: float = 1.0):
        self.scale_lr = mode in ("lr", "lr+grad")
        self.scale_grad = mode in ("grad", "lr+grad")
        self.divide_output = mode == "divout"
        self.layers, self.estimators = layers, estimators
        self.only_shrink, self.k = only_shrink, k

    @classmethod
    def from_config(cls, cfg: OptimConfig, k: float, model: nn.Module, estimators: dict[str, SpectralNorm],
                    layers: list[str]) -> "RhoScaler | None":
        """None when ``cfg.rho_scaling`` is ``none``; ``layers`` are resolved names, each tracked in ``estimators``."""
        if cfg.rho_scaling == "none":
            return None
        return cls(cfg.rho_scaling, {n: model.get_submodule(n) for n in layers}, {n: estimators[n] for n in layers},
                   cfg.rho_only_shrink, k)

    def divisor(self, name: str) -> torch.Tensor:
        """The gradient's (and the output's) divisor: SN's, max(rho / k, 1) or rho / k."""
        return sn_divisor(self.estimators[name].sigma.detach(), self.k, self.only_shrink)

    def lr_divisor(self, name: str) -> torch.Tensor:
        """The learning rate's divisor: max(rho, 1) clamped, as the paper's code (k does not enter), else rho / k."""
        return sn_divisor(self.estimators[name].sigma.detach(), 1.0 if self.only_shrink else self.k, self.only_shrink)

    def output_divisor(self) -> torch.Tensor:
        rho = torch.ones((), device=next(iter(self.estimators.values())).sigma.device)
        for name in self.layers:
            rho = rho * self.divisor(name)
        return rho

    def attach_output(self, model: nn.Module) -> None:
        """``divout``: make ``model`` divide its output by stop_gradient(prod of divisors)."""
        if self.divide_output:
            model.output_divisor = self.output_divisor

    def param_groups(self, params: list[nn.Parameter]) -> list[dict]:
        """``lr``: each scaled layer's weight in a group named after the layer; the rest in ``base``."""
        groups = [{"params": [raw_weight(layer)], "name": name} for name, layer in self.layers.items()] \
            if self.scale_lr else []
        taken = {id(p) for g in groups for p in g["params"]}
        return [{"params": [p for p in params if id(p) not in taken], "name": "base"}, *groups]

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Call after backward, before ``optimizer.step()``; ``set_base_lr`` keeps annealing working."""
        if self.scale_lr:
            for group in optimizer.param_groups:
                if group["name"] in self.layers:
                    divisor = self.lr_divisor(group["name"])
                    # fused / capturable kernels take the learning rate as a device tensor: no host sync
                    tensor_lr = group.get("fused") or group.get("capturable")
                    group["lr"] = group["base_lr"] / (divisor if tensor_lr else divisor.item())
        if self.scale_grad:
            for name, layer in self.layers.items():
                weight = raw_weight(layer)
                if weight.grad is not None:
                    weight.grad.div_(self.divisor(name))

    def step_metrics(self, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """After :meth:`before_step`: per rho layer, the divisor its mode applies (``optim/rho``: the
        gradient's for ``grad``, ``lr+grad`` and ``divout``, the learning rate's for ``lr``), the
        norm of its weight gradient as the optimiser receives it (``optim/grad_norm``: after rho
        scaling, before global-norm clipping) and the learning rate its weight is stepped with
        (``optim/lr``).  Device tensors: read on the host at log steps only."""
        lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
        metrics = {}
        for name, layer in self.layers.items():
            grad = raw_weight(layer).grad
            rho = self.lr_divisor(name) if not (self.scale_grad or self.divide_output) else self.divisor(name)
            lr = lrs.get(name, lrs["base"])
            metrics[f"optim/rho/{name}"] = rho
            metrics[f"optim/lr/{name}"] = lr if torch.is_tensor(lr) else torch.tensor(float(lr))
            if grad is not None:
                metrics[f"optim/grad_norm/{name}"] = torch.linalg.vector_norm(grad.detach())
        return metrics


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: RhoScaler | None,
                   loss: torch.Tensor, grad_clip: float) -> dict[str, torch.Tensor]:
    """One gradient step: backward, rho scaling (if any), global-norm clipping (if > 0), step.
    Returns the rho scaler's :meth:`RhoScaler.step_metrics` (none without rho scaling)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    metrics = {}
    if scaler is not None:
        scaler.before_step(optimizer)
        metrics = scaler.step_metrics(optimizer)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return metrics


def set_base_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the schedule's learning rate; rho-scaled groups apply their factor on the next step."""
    for group in optimizer.param_groups:
        group["base_lr"] = lr
        group["lr"] = lr


def build_optimizer(params: list[nn.Parameter], cfg: OptimConfig, scaler: RhoScaler | None) -> torch.optim.Optimizer:
    """Optimiser over ``params``, with the rho scaler's parameter groups (if any)."""
    groups = scaler.param_groups(params) if scaler is not None else [{"params": params, "name": "base"}]
    for group in groups:
        group["base_lr"] = cfg.lr
    return make_optimizer(groups, cfg)


class SpectralSetup(NamedTuple):
    """What ``spectral`` and ``optim.rho_scaling`` put on one network."""

    estimators: dict[str, SpectralNorm]   # every normalised or tracked layer, in forward order
    scaler: RhoScaler | None
    layers: dict[str, list[str]]          # resolved names: normalised, tracked, rho_layers


def rho_layer_names(net: nn.Module, cfg: OptimConfig) -> list[str]:
    """The resolved ``optim.rho_layers`` (none when rho scaling is off); ConfigError for a bad selector."""
    return select_layers(net, cfg.rho_layers, "optim.rho_layers") if cfg.rho_scaling != "none" else []


def apply_spectral_setup(net: nn.Module, cfg: TrainConfig, obs_shape: tuple) -> SpectralSetup:
    """Register SN / track-only estimators and the rho scaler (its output division attached) on ``net``."""
    rho_layers = rho_layer_names(net, cfg.optim)
    estimators = apply_spectral(net, cfg.spectral, obs_shape, extra_track=rho_layers)
    scaler = RhoScaler.from_config(cfg.optim, cfg.spectral.k, net, estimators, rho_layers)
    if scaler is not None:
        scaler.attach_output(net)
    layers = {"normalised": [n for n, e in estimators.items() if e.normalise],
              "tracked": [n for n, e in estimators.items() if not e.normalise], "rho_layers": rho_layers}
    return SpectralSetup(estimators, scaler, layers)
