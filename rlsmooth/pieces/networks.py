"""Networks with named layers in forward order: Q-networks and actor-critics.

Layers are attributes named ``conv1`` ... ``fc``, ``out`` (actor-critic: ``torso.conv1`` ...
``torso.fc``, ``actor.out``, ``critic.out``) so that spectral normalisation, per-layer optimiser
groups and logs select them by name or by Python-style index (``-2`` is ``fc``, the penultimate
layer the paper normalises).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from rlsmooth.config.coerce import LayerSelection
from rlsmooth.config.sections import NetworkConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.member_ops import Conv2d, Linear, compute

WeightLayer = (nn.Linear, nn.Conv2d)


def init_xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases (the paper's Atari setup)."""
    for layer in module.modules():
        if isinstance(layer, WeightLayer):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def torso_forward(owner: nn.Module, x: torch.Tensor, conv_names: list[str], fc_names: list[str]) -> torch.Tensor:
    """ReLU after every conv, flatten, ReLU after every hidden layer; layers looked up on ``owner`` by name."""
    for name in conv_names:
        x = torch.relu(getattr(owner, name)(x))
    x = x.flatten(1)
    for name in fc_names:
        x = torch.relu(getattr(owner, name)(x))
    return x


class NatureTorso(nn.Module):
    """Nature CNN torso: 32x8x8/4, 64x4x4/2, 64x3x3/1, FC ``hidden`` (Mnih et al. 2015)."""

    def __init__(self, in_channels: int, height: int, width: int, hidden: int = 512):
        super().__init__()
        self.conv1 = Conv2d(in_channels, 32, 8, stride=4)
        self.conv2 = Conv2d(32, 64, 4, stride=2)
        self.conv3 = Conv2d(64, 64, 3, stride=1)
        h, w = (height - 8) // 4 + 1, (width - 8) // 4 + 1
        h, w = (h - 4) // 2 + 1, (w - 4) // 2 + 1
        h, w = h - 2, w - 2
        self.fc = Linear(64 * h * w, hidden)
        self.out_features = hidden
        self.conv_names, self.fc_names = ["conv1", "conv2", "conv3"], ["fc"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torso_forward(self, x, self.conv_names, self.fc_names)


def hidden_names(count: int) -> list[str]:
    """``fc`` for a single hidden layer, else ``fc1`` ... ``fcM``."""
    return ["fc"] if count == 1 else [f"fc{i + 1}" for i in range(count)]


class MinAtarTorso(nn.Module):
    """MinAtar torso: 3x3 stride-1 convs ``conv1`` ... ``convK`` (no padding), then hidden layers.

    The default, one conv of 16 channels and ``fc`` of 128 units, is Young & Tian's (2019) network;
    Gogianu et al. (2021) vary it from [8, 8, 8] + [32] to [32, 32, 24] + [256].
    """

    def __init__(self, in_channels: int, height: int, width: int, hidden: list[int], channels: list[int]):
        super().__init__()
        if height - 2 * len(channels) < 1 or width - 2 * len(channels) < 1:
            raise ConfigError(f"network.channels: {len(channels)} 3x3 convs do not fit a {height}x{width} input")
        self.conv_names = [f"conv{i + 1}" for i in range(len(channels))]
        self.fc_names = hidden_names(len(hidden))
        c = in_channels
        for name, out in zip(self.conv_names, channels):
            self.add_module(name, Conv2d(c, out, 3, stride=1))
            c = out
        features = c * (height - 2 * len(channels)) * (width - 2 * len(channels))
        for name, units in zip(self.fc_names, hidden):
            self.add_module(name, Linear(features, units))
            features = units
        self.out_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torso_forward(self, x, self.conv_names, self.fc_names)


def make_torso(cfg: NetworkConfig, suite: str, obs_shape: tuple[int, ...]) -> nn.Module:
    kind = cfg.kind if cfg.kind != "auto" else {"atari": "nature", "gym": "mlp"}.get(suite, "minatar")
    c, h, w = obs_shape
    if kind == "nature":
        if h < 36 or w < 36:
            raise ConfigError(f"network.kind=nature needs observations of at least 36x36, got {h}x{w}")
        if len(cfg.hidden) > 1:
            raise ConfigError("network.hidden: the Nature CNN has one hidden layer (fc)")
        return NatureTorso(c, h, w, cfg.hidden[0] if cfg.hidden else 512)
    if kind == "mlp":   # the MinAtar torso without convs: fc1 ... on the flattened observation
        return MinAtarTorso(c, h, w, cfg.hidden or [64, 64], [])
    return MinAtarTorso(c, h, w, cfg.hidden or [128], cfg.channels or [16])


class QNetwork(nn.Module):
    """Torso + linear ``out`` head: Q-values (B, A), or logits (B, A, atoms) when ``num_atoms > 1``.

    ``output_divisor``, when set, divides the output by a (detached) scalar -- the ``divout``
    optimiser-scaling mode.  Inputs (uint8 images, or gym's float vectors) are scaled by ``obs_scale``.
    """

    def __init__(self, torso: nn.Module, num_actions: int, num_atoms: int = 1, obs_scale: float = 1.0):
        super().__init__()
        for name, layer in torso.named_children():  # flatten so names read conv1 ... fc, out
            self.add_module(name, layer)
        self.conv_names, self.fc_names = torso.conv_names, torso.fc_names
        self.out = Linear(torso.out_features, num_actions * num_atoms)
        self.num_actions = num_actions
        self.num_atoms = num_atoms
        self.obs_scale = obs_scale
        self.output_divisor: Callable[[], torch.Tensor] | None = None
        self.precision = "fp32"   # loop.precision, set by the agent that builds it
        init_xavier(self)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Penultimate features (post-ReLU output of ``fc``)."""
        return torso_forward(self, obs.float() * self.obs_scale, self.conv_names, self.fc_names)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        with compute(self.precision, obs.device):
            out = self.out(self.features(obs))
        out = out.float()   # the TD / categorical arithmetic stays float32
        if self.num_atoms > 1:
            out = out.view(-1, self.num_actions, self.num_atoms)
        if self.output_divisor is not None:
            out = out / self.output_divisor().detach()
        return out


def build_q_network(cfg: NetworkConfig, suite: str, obs_shape: tuple[int, ...], num_actions: int,
                    num_atoms: int = 1) -> QNetwork:
    torso = make_torso(cfg, suite, obs_shape)
    return QNetwork(torso, num_actions, num_atoms, obs_scale=1.0 / 255.0 if suite == "atari" else 1.0)


# -- actor-critic: layers named by role (torso.*, actor.out, critic.out, critic.* with a separate critic)

def orthogonal_init(layer: nn.Module, gain: float) -> None:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)


class ActorCritic(nn.Module):
    """Torso + ``actor.out`` (logits) and ``critic.out`` (value); CleanRL's orthogonal init."""

    def __init__(self, make: Callable[[], nn.Module], num_actions: int, separate_critic: bool, obs_scale: float):
        super().__init__()
        self.torso = make()
        self.conv_names, self.fc_names = self.torso.conv_names, self.torso.fc_names
        self.actor = nn.Module()
        self.actor.out = Linear(self.torso.out_features, num_actions)
        self.critic = nn.Module()
        self.separate_critic = separate_critic
        if separate_critic:
            for name, layer in make().named_children():   # critic.conv1 ... critic.fc
                self.critic.add_module(name, layer)
        self.critic.out = Linear(self.torso.out_features, 1)
        self.obs_scale = obs_scale
        self.output_divisor: Callable[[], torch.Tensor] | None = None
        self.divout_heads: tuple[str, ...] = ()
        self.precision = "fp32"   # loop.precision, set by the agent that builds it
        for name, layer in self.named_modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                gain = 0.01 if name == "actor.out" else 1.0 if name == "critic.out" else 2 ** 0.5
                orthogonal_init(layer, gain)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.float() * self.obs_scale
        with compute(self.precision, obs.device):
            features = torso_forward(self.torso, x, self.conv_names, self.fc_names)
            critic_features = (torso_forward(self.critic, x, self.conv_names, self.fc_names) if self.separate_critic
                               else features)
            logits = self.actor.out(features)
            value = self.critic.out(critic_features).squeeze(-1)
        logits, value = logits.float(), value.float()   # the policy / GAE arithmetic stays float32
        if self.output_divisor is not None:
            rho = self.output_divisor().detach()
            logits = logits / rho if "actor" in self.divout_heads else logits
            value = value / rho if "critic" in self.divout_heads else value
        return logits, value


def heads_downstream(layers: list[str], separate_critic: bool) -> tuple[str, ...]:
    """Which heads' outputs a layer feeds: torso layers feed the actor, and the critic if shared."""
    heads = set()
    for name in layers:
        if name.startswith("critic."):
            heads.add("critic")
        elif name.startswith("actor."):
            heads.add("actor")
        else:
            heads.update(("actor",) if separate_critic else ("actor", "critic"))
    return tuple(sorted(heads))


def build_actor_critic(cfg: NetworkConfig, suite: str, obs_shape: tuple, num_actions: int,
                       separate_critic: bool) -> ActorCritic:
    return ActorCritic(lambda: make_torso(cfg, suite, obs_shape), num_actions, separate_critic,
                       1.0 / 255.0 if suite == "atari" else 1.0)


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
