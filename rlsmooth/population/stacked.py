"""K members' Q-networks of one shape in stacked parameters, one forward and backward pass for all.

Every layer runs through :mod:`rlsmooth.pieces.member_ops`, which the solo networks use with one
member, so each member computes exactly the numbers its solo run computes.  Each member keeps what
its solo network has: its own weights, and for every layer its solo run normalises or tracks, its own
power-iteration vectors u, v and its sigma, updated exactly when and as the solo layer updates them:

* a training pass (``train()`` mode, gradients on) takes the solo estimator's power-iteration step
  and sigma, with the solo layer's own SN functions (the fused linear pass, divide-by-sigma), one
  call per member: these are small, and they keep the member's numbers its solo run's;
* any other pass uses sigma = u^T W v for a normalised layer (and records it, as the solo layer's
  buffer does, for the members in ``record``); a track-only layer's sigma is left as it is.

``divout`` is a per-member output divisor, and only the members in ``record`` change their SN state.
"""
from __future__ import annotations

import torch
from torch import nn

from rlsmooth.pieces import member_ops
from rlsmooth.pieces.networks import QNetwork
from rlsmooth.pieces.spectral import (SpectralNorm, _DivideBySigma, _normalize, _SpectralLinear, raw_weight,
                                      sn_divisor)


def member_divisor(sigma: torch.Tensor, k: torch.Tensor, shrink: torch.Tensor) -> torch.Tensor:
    """SN's divisor per member (K,): max(sigma / k, 1) where ``shrink``, else sigma / k."""
    return torch.where(shrink, sn_divisor(sigma, k, True), sn_divisor(sigma, k, False))


def _estimator(net: nn.Module, name: str) -> SpectralNorm | None:
    layer = net.get_submodule(name)
    if hasattr(layer, "parametrizations") and "weight" in layer.parametrizations:
        return layer.parametrizations.weight[0]
    return None


def _kind(layer: nn.Module, estimator: SpectralNorm | None) -> str:
    """How a solo layer computes on a training pass: ``plain`` (no estimator), ``track`` (sigma only), or
    SN as the fused linear pass (``sn_linear``), the divide-by-sigma function (``sn_divide``) or plain
    division without a gradient through sigma (``sn_plain``)."""
    if estimator is None:
        return "plain"
    if not estimator.normalise:
        return "track"
    if not estimator.grad_through_sigma:
        return "sn_plain"
    return "sn_linear" if isinstance(layer, nn.Linear) else "sn_divide"


class StackedQNetwork(nn.Module):
    """Forward: obs (K, B, C, H, W) -> Q-values (K, B, A), or logits (K, B, A, atoms)."""

    def __init__(self, templates: list[QNetwork], rho: dict):
        super().__init__()
        first = templates[0]
        self.members = len(templates)
        self.conv_names, self.fc_names = list(first.conv_names), list(first.fc_names)
        self.layer_names = self.conv_names + self.fc_names + ["out"]
        self.num_actions, self.num_atoms, self.obs_scale = first.num_actions, first.num_atoms, first.obs_scale
        self.precision = first.precision
        if hasattr(first, "support"):
            self.register_buffer("support", first.support.clone())
        self.geometry = {n: (first.get_submodule(n).stride, first.get_submodule(n).padding) for n in self.conv_names}
        self.weight = nn.ParameterDict({n.replace(".", "_"): nn.Parameter(torch.stack(
            [raw_weight(t.get_submodule(n)).detach() for t in templates]).clone()) for n in self.layer_names})
        self.bias = nn.ParameterDict({n.replace(".", "_"): nn.Parameter(torch.stack(
            [t.get_submodule(n).bias.detach() for t in templates]).clone()) for n in self.layer_names})
        self.spectral = [n for n in self.layer_names if any(_estimator(t, n) is not None for t in templates)]
        self.kinds: dict[str, list[str]] = {}
        self.sn_k: dict[str, list[float]] = {}
        self.sn_shrink: dict[str, list[bool]] = {}
        for n in self.spectral:
            ests = [_estimator(t, n) for t in templates]
            key = n.replace(".", "_")
            shape = self.weight[key].shape[1:]
            fill_u = torch.ones(shape[0]) / shape[0] ** 0.5
            fill_v = torch.ones(shape[1:].numel()) / shape[1:].numel() ** 0.5
            self.register_buffer(f"u_{key}", torch.stack([e.u.detach() if e is not None else fill_u for e in ests]))
            self.register_buffer(f"v_{key}", torch.stack([e.v.detach() if e is not None else fill_v for e in ests]))
            self.register_buffer(f"sigma_{key}", torch.stack([e.sigma.detach() if e is not None else torch.ones(())
                                                             for e in ests]))
            self.kinds[n] = [_kind(t.get_submodule(n), e) for t, e in zip(templates, ests)]
            self.sn_k[n] = [e.k if e is not None else 1.0 for e in ests]   # Python floats, as the solo layers hold
            self.sn_shrink[n] = [bool(e is not None and e.only_shrink) for e in ests]
        live = [e for t in templates for n in self.spectral if (e := _estimator(t, n)) is not None]
        self.power_iterations = live[0].power_iterations if live else 1
        self.grad_through_sigma = live[0].grad_through_sigma if live else True
        # divout: members whose output is divided by the product of their rho layers' divisors
        self.divout = rho["divout"]                  # (K,) bool
        self.rho_on = rho["layers"]                  # {layer: (K,) bool}
        self.rho_shrink, self.rho_k = rho["only_shrink"], rho["k"]   # (K,) bool, (K,) float
        self.record = torch.ones(self.members, dtype=torch.bool)     # members whose SN state a pass may change

    def buffer(self, kind: str, name: str) -> torch.Tensor:
        return getattr(self, f"{kind}_{name.replace('.', '_')}")

    def _power_step(self, weight: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The solo estimator's power iteration up to its new v (no gradient), for one member."""
        matrix = weight.detach().flatten(1)
        for _ in range(self.power_iterations - 1):
            v = _normalize(matrix.t() @ u)
            u = _normalize(matrix @ v)
        return _normalize(matrix.t() @ u)

    def _store(self, name: str, k: int, u: torch.Tensor, v: torch.Tensor | None, sigma: torch.Tensor) -> None:
        if bool(self.record[k]):
            with torch.no_grad():
                if v is not None:
                    self.buffer("v", name)[k].copy_(v)
                self.buffer("u", name)[k].copy_(u)
                self.buffer("sigma", name)[k].copy_(sigma.detach())

    def _member_pass(self, name: str, k: int, weight: torch.Tensor, bias: torch.Tensor,
                     x: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Member ``k``'s used weight of ``name`` from its raw ``weight`` (and, for a normalised linear layer
        on a training pass, its output from its input ``x``), computed with its solo estimator's own
        operations (docs above); an unchanged weight is returned as the same tensor."""
        kind = self.kinds[name][k]
        if kind == "plain":
            return weight, None
        u, v = self.buffer("u", name)[k], self.buffer("v", name)[k]
        est_k, shrink = self.sn_k[name][k], self.sn_shrink[name][k]
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                v = self._power_step(weight, u)
            if kind == "sn_linear":   # the solo layer's fused output-side pass
                y, sigma, u = _SpectralLinear.apply(x, weight, bias, v, est_k, shrink)
                self._store(name, k, u, v, sigma)
                return weight, y
            if kind == "sn_divide":
                used, sigma, u = _DivideBySigma.apply(weight, v, est_k, shrink)
                self._store(name, k, u, v, sigma)
                return used, None
            wv = weight.detach().flatten(1) @ v
            u = _normalize(wv.detach())
            sigma = (u * wv).sum()
            self._store(name, k, u, v, sigma)
            return (weight / sn_divisor(sigma, est_k, shrink) if kind == "sn_plain" else weight), None
        if kind == "track":
            return weight, None   # a track-only layer's sigma changes on training passes only
        sigma = (u * (weight.detach().flatten(1) @ v)).sum()
        if bool(self.record[k]):
            self.buffer("sigma", name)[k].copy_(sigma)
        return weight / sn_divisor(sigma, est_k, shrink), None

    def layer(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Layer ``name`` of every member on x (K, B, ...), before the activation."""
        key = name.replace(".", "_")
        bias = self.bias[key]
        passes, weight = None, self.weight[key]
        if name in self.spectral:
            # per-member views from one unbind: autograd stacks their gradients once, where K selects
            # would each fill a whole (K, ...) gradient with zeros and add it to the others
            weights, biases, kinds = weight.unbind(0), bias.unbind(0), self.kinds[name]
            with member_ops.full_precision(x.device):   # SN and sigma stay float32, as in the solo layers
                inputs = x.float().unbind(0) if "sn_linear" in kinds else [None] * self.members
                passes = [self._member_pass(name, k, weights[k], biases[k], inputs[k]) for k in range(self.members)]
                # a normalised linear layer's other passes: float32 too, as the solo layer's own forward
                passes = [(w, member_ops.linear(inputs[k][None], w[None], biases[k][None])[0]
                           if out is None and kinds[k] == "sn_linear" and name not in self.geometry else out)
                          for k, (w, out) in enumerate(passes)]
            if any(w is not weights[k] for k, (w, _) in enumerate(passes)):   # else: the stacked weight as it is
                weight = torch.stack([w for w, _ in passes])
        if name in self.geometry:
            stride, padding = self.geometry[name]
            return member_ops.conv2d(x, weight, bias, stride, padding)
        y = member_ops.linear(x, weight, bias)
        if passes is not None and any(out is not None for _, out in passes):   # float32 holds both exactly
            rows = y.unbind(0)
            y = torch.stack([out if out is not None else rows[k].float() for k, (_, out) in enumerate(passes)])
        return y

    def rho_divisor(self, name: str, lr: bool = False) -> torch.Tensor:
        """Each member's rho divisor of ``name`` (the optimiser-side modes, docs/method.md): for the
        gradient and the output max(rho / k, 1) clamped, else rho / k; for the learning rate
        (``lr``) max(rho, 1) clamped, else rho / k."""
        sigma = self.buffer("sigma", name).detach()
        shrink, k = self.rho_shrink.to(sigma.device), self.rho_k.to(sigma.device)
        return member_divisor(sigma, torch.where(shrink, torch.ones_like(k), k) if lr else k, shrink)

    def output_divisor(self) -> torch.Tensor | None:
        if not bool(self.divout.any()):
            return None
        device = self.bias["out"].device
        rho = torch.ones(self.members, device=device)
        for name, on in self.rho_on.items():
            rho = rho * torch.where(on.to(device) & self.divout.to(device), self.rho_divisor(name), torch.ones_like(rho))
        return rho

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        with member_ops.compute(self.precision, obs.device):
            return self._features(obs)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        k, b = obs.shape[:2]
        x = obs.float() * self.obs_scale
        for name in self.conv_names:
            x = torch.relu(self.layer(name, x))
        x = x.reshape(k, b, -1)
        for name in self.fc_names:
            x = torch.relu(self.layer(name, x))
        return x

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        k, b = obs.shape[:2]
        with member_ops.compute(self.precision, obs.device):
            out = self.layer("out", self._features(obs))
        out = out.float()
        if self.num_atoms > 1:
            out = out.view(k, b, self.num_actions, self.num_atoms)
        divisor = self.output_divisor()
        if divisor is not None:
            out = out / divisor.detach().view(-1, *([1] * (out.dim() - 1)))
        return out
