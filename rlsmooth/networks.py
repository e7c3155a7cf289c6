"""Value networks with named layers in forward order.

Layers are attributes named ``conv1`` ... ``fc``, ``out`` so that spectral normalisation,
per-layer optimiser groups and logs select them by name or by Python-style index
(``-2`` is ``fc``, the penultimate layer of the DESIGN).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from rlsmooth.config import ConfigError, LayerSelection, NetworkConfig

WeightLayer = (nn.Linear, nn.Conv2d)


def init_xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases (the paper's Atari setup)."""
    for layer in module.modules():
        if isinstance(layer, WeightLayer):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class NatureTorso(nn.Module):
    """Nature CNN torso: 32x8x8/4, 64x4x4/2, 64x3x3/1, FC ``hidden`` (Mnih et al. 2015)."""

    def __init__(self, in_channels: int, height: int, width: int, hidden: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 8, stride=4)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 64, 3, stride=1)
        h, w = (height - 8) // 4 + 1, (width - 8) // 4 + 1
        h, w = (h - 4) // 2 + 1, (w - 4) // 2 + 1
        h, w = h - 2, w - 2
        self.fc = nn.Linear(64 * h * w, hidden)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return torch.relu(self.fc(x.flatten(1)))


class MinAtarTorso(nn.Module):
    """MinAtar torso (Young & Tian 2019): conv ``channels``x3x3/1, FC ``hidden``."""

    def __init__(self, in_channels: int, height: int, width: int, hidden: int = 128, channels: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=1)
        self.fc = nn.Linear(channels * (height - 2) * (width - 2), hidden)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        return torch.relu(self.fc(x.flatten(1)))


def make_torso(cfg: NetworkConfig, suite: str, obs_shape: tuple[int, ...]) -> nn.Module:
    kind = cfg.kind if cfg.kind != "auto" else ("nature" if suite == "atari" else "minatar")
    c, h, w = obs_shape
    if kind == "nature":
        if h < 36 or w < 36:
            raise ConfigError(f"network.kind=nature needs observations of at least 36x36, got {h}x{w}")
        return NatureTorso(c, h, w, cfg.hidden or 512)
    return MinAtarTorso(c, h, w, cfg.hidden or 128, cfg.minatar_channels)


class QNetwork(nn.Module):
    """Torso + linear ``out`` head: Q-values (B, A), or logits (B, A, atoms) when ``num_atoms > 1``.

    ``output_divisor``, when set, divides the output by a (detached) scalar -- the ``divout``
    optimiser-scaling mode.  Inputs are uint8 images scaled by ``obs_scale``.
    """

    def __init__(self, torso: nn.Module, num_actions: int, num_atoms: int = 1, obs_scale: float = 1.0):
        super().__init__()
        self.torso_layers = list(dict(torso.named_children()))
        for name, layer in torso.named_children():  # flatten so names read conv1 ... fc, out
            self.add_module(name, layer)
        self._torso_forward = type(torso).forward
        self.out = nn.Linear(torso.out_features, num_actions * num_atoms)
        self.num_actions = num_actions
        self.num_atoms = num_atoms
        self.obs_scale = obs_scale
        self.output_divisor: Callable[[], torch.Tensor] | None = None
        init_xavier(self)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Penultimate features (post-ReLU output of ``fc``)."""
        return self._torso_forward(self, obs.float() * self.obs_scale)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.out(self.features(obs))
        if self.num_atoms > 1:
            out = out.view(-1, self.num_actions, self.num_atoms)
        if self.output_divisor is not None:
            out = out / self.output_divisor().detach()
        return out


def build_q_network(cfg: NetworkConfig, suite: str, obs_shape: tuple[int, ...], num_actions: int,
                    num_atoms: int = 1) -> QNetwork:
    torso = make_torso(cfg, suite, obs_shape)
    return QNetwork(torso, num_actions, num_atoms, obs_scale=1.0 / 255.0 if suite == "atari" else 1.0)


def named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every Linear / Conv2d layer, in forward (registration) order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, WeightLayer)]


def select_layers(model: nn.Module, selection: LayerSelection, what: str = "layer selection") -> list[str]:
    """Resolve names / Python-style indices / 'all' / 'none' to layer names, in forward order."""
    names = [name for name, _ in named_layers(model)]
    if selection == "none":
        return []
    if selection == "all":
        return names
    items = selection if isinstance(selection, list) else [selection]
    chosen = []
    for item in items:
        if isinstance(item, int):
            if not -len(names) <= item < len(names):
                raise ConfigError(f"{what}: index {item} out of range; layers are {', '.join(names)}")
            chosen.append(names[item])
        elif item in names:
            chosen.append(item)
        else:
            raise ConfigError(f"{what}: unknown layer '{item}'; layers are {', '.join(names)}")
    return [n for n in names if n in set(chosen)]


def layer_input_shapes(model: nn.Module, obs_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-sample input shape of each named layer, found with one dummy forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(name, tuple(args[0].shape[1:]))
        return hook

    hooks = [layer.register_forward_pre_hook(record(name)) for name, layer in named_layers(model)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *obs_shape, dtype=torch.uint8, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return shapes
