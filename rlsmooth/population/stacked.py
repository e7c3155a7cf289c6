"""K members' Q-networks of one shape in stacked parameters, one forward and backward pass for all.

Convolutions run as one grouped convolution over the members (``groups=K``), linear layers as one
batched matrix product.  Each member keeps what its solo network has: its own weights, and for every
layer its solo run normalises or tracks, its own power-iteration vectors u, v and its sigma, updated
exactly when the solo network updates them:

* a training pass (``train()`` mode, gradients on) takes one power-iteration step per member and
  sets sigma = ||W v||; a normalised layer uses W / s with s = sigma / k (only shrink: max(., 1));
* any other pass uses sigma = u^T W v for a normalised layer (and records it, as the solo layer's
  buffer does, for the members in ``record``); a track-only layer's sigma is left as it is.

Spectral normalisation is a per-member divisor (1 for members that do not normalise the layer),
``divout`` a per-member output divisor, and only the members in ``record`` change their SN state.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlsmooth.pieces.networks import QNetwork
from rlsmooth.pieces.spectral import SpectralNorm, raw_weight, sn_divisor


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1, eps=1e-12)


def member_divisor(sigma: torch.Tensor, k: torch.Tensor, shrink: torch.Tensor) -> torch.Tensor:
    """SN's divisor per member (K,): max(sigma / k, 1) where ``shrink``, else sigma / k."""
    return torch.where(shrink, sn_divisor(sigma, k, True), sn_divisor(sigma, k, False))


def _estimator(net: nn.Module, name: str) -> SpectralNorm | None:
    layer = net.get_submodule(name)
    if hasattr(layer, "parametrizations") and "weight" in layer.parametrizations:
        return layer.parametrizations.weight[0]
    return None


class StackedQNetwork(nn.Module):
    """Forward: obs (K, B, C, H, W) -> Q-values (K, B, A), or logits (K, B, A, atoms)."""

    def __init__(self, templates: list[QNetwork], rho: dict):
        super().__init__()
        first = templates[0]
        self.members = len(templates)
        self.conv_names, self.fc_names = list(first.conv_names), list(first.fc_names)
        self.layer_names = self.conv_names + self.fc_names + ["out"]
        self.num_actions, self.num_atoms, self.obs_scale = first.num_actions, first.num_atoms, first.obs_scale
        if hasattr(first, "support"):
            self.register_buffer("support", first.support.clone())
        self.geometry = {n: (first.get_submodule(n).stride, first.get_submodule(n).padding) for n in self.conv_names}
        self.weight = nn.ParameterDict({n.replace(".", "_"): nn.Parameter(torch.stack(
            [raw_weight(t.get_submodule(n)).detach() for t in templates]).clone()) for n in self.layer_names})
        self.bias = nn.ParameterDict({n.replace(".", "_"): nn.Parameter(torch.stack(
            [t.get_submodule(n).bias.detach() for t in templates]).clone()) for n in self.layer_names})
        self.spectral = [n for n in self.layer_names if any(_estimator(t, n) is not None for t in templates)]
        for n in self.spectral:
            ests = [_estimator(t, n) for t in templates]
            key = n.replace(".", "_")
            shape = self.weight[key].shape[1:]
            fill_u, fill_v = torch.ones(shape[0]) / shape[0] ** 0.5, torch.ones(shape[1:].numel()) / shape[1:].numel() ** 0.5
            self.register_buffer(f"u_{key}", torch.stack([e.u.detach() if e is not None else fill_u for e in ests]))
            self.register_buffer(f"v_{key}", torch.stack([e.v.detach() if e is not None else fill_v for e in ests]))
            self.register_buffer(f"sigma_{key}", torch.stack([e.sigma.detach() if e is not None else torch.ones(())
                                                             for e in ests]))
            self.register_buffer(f"normalise_{key}", torch.tensor([bool(e is not None and e.normalise) for e in ests]))
            self.register_buffer(f"k_{key}", torch.tensor([e.k if e is not None else 1.0 for e in ests]))
            self.register_buffer(f"shrink_{key}", torch.tensor([bool(e is not None and e.only_shrink) for e in ests]))
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

    def _set(self, kind: str, name: str, value: torch.Tensor) -> None:
        old = self.buffer(kind, name)
        mask = self.record.to(old.device).view(-1, *([1] * (old.dim() - 1)))
        old.copy_(torch.where(mask, value.detach(), old))

    def _divisor(self, name: str, sigma: torch.Tensor) -> torch.Tensor:
        """Per member: SN's divisor where the member normalises the layer, else 1."""
        s = member_divisor(sigma, self.buffer("k", name), self.buffer("shrink", name))
        return torch.where(self.buffer("normalise", name), s, torch.ones_like(s))

    def weight_used(self, name: str) -> torch.Tensor:
        """The layer's (K, out, ...) weight as each member's forward pass uses it."""
        key = name.replace(".", "_")
        weight = self.weight[key]
        if name not in self.spectral:
            return weight
        matrix = weight.flatten(2)
        u, v = self.buffer("u", name), self.buffer("v", name)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                for _ in range(self.power_iterations - 1):
                    v = _normalize(torch.bmm(matrix.transpose(1, 2), u[..., None]).squeeze(-1))
                    u = _normalize(torch.bmm(matrix, v[..., None]).squeeze(-1))
                v = _normalize(torch.bmm(matrix.transpose(1, 2), u[..., None]).squeeze(-1))
            source = matrix if self.grad_through_sigma else matrix.detach()
            wv = torch.bmm(source, v[..., None]).squeeze(-1)
            sigma = wv.norm(dim=-1)
            self._set("v", name, v)
            self._set("u", name, wv / sigma.clamp_min(1e-12)[:, None])
            self._set("sigma", name, sigma)
            divisor = self._divisor(name, sigma)
        else:
            sigma = (u * torch.bmm(matrix, v[..., None]).squeeze(-1)).sum(-1).detach()
            normalised = self.buffer("normalise", name)
            old = self.buffer("sigma", name)
            old.copy_(torch.where(normalised & self.record.to(old.device), sigma, old))
            divisor = self._divisor(name, sigma)
        return weight / divisor.view(-1, *([1] * (weight.dim() - 1)))

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
        k, b = obs.shape[:2]
        x = obs.float() * self.obs_scale
        for name in self.conv_names:   # one grouped convolution; channels-last is about 2x faster on CPU
            stride, padding = self.geometry[name]
            weight = self.weight_used(name)
            grouped = F.conv2d(x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])
                               .contiguous(memory_format=torch.channels_last),
                               weight.reshape(k * weight.shape[1], *weight.shape[2:]),
                               self.bias[name.replace(".", "_")].reshape(-1), stride=stride, padding=padding, groups=k)
            x = torch.relu(grouped).reshape(b, k, weight.shape[1], *grouped.shape[2:]).transpose(0, 1)
        x = x.reshape(k, b, -1)
        for name in self.fc_names:
            x = torch.relu(torch.baddbmm(self.bias[name.replace(".", "_")][:, None, :], x,
                                         self.weight_used(name).transpose(1, 2)))
        return x

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        k, b = obs.shape[:2]
        out = torch.baddbmm(self.bias["out"][:, None, :], self.features(obs), self.weight_used("out").transpose(1, 2))
        if self.num_atoms > 1:
            out = out.view(k, b, self.num_actions, self.num_atoms)
        divisor = self.output_divisor()
        if divisor is not None:
            out = out / divisor.detach().view(-1, *([1] * (out.dim() - 1)))
        return out
